//! Starting executions: of published versions, for every trigger (manual starts,
//! schedules, webhooks, sub_workflow steps), with the version's frozen definition
//! fetched from the workflow service once per version (versions never change) and
//! kept in a small cache; and retries of executions that did not succeed.

use std::sync::Arc;
use std::time::Duration;

use flowfleet_definitions::definition::Definition;
use flowfleet_runtime::clock::Clock;
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::grpc::GrpcChannel;
use flowfleet_runtime::proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use flowfleet_runtime::proto::workflow::v1::GetPublishedVersionRequest;
use uuid::Uuid;

use crate::dispatch::Dispatcher;
use crate::domain::{Execution, Start};
use crate::store::Store;

/// A published version, as the engine runs it.
#[derive(Debug)]
pub struct Published {
    pub workflow_id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub version: i64,
    pub definition: Definition,
    /// Who owns the workflow (`None` if the workflow service did not say).
    pub owner: Option<Uuid>,
}

#[derive(Clone)]
pub struct Launcher {
    pub store: Store,
    pub dispatcher: Dispatcher,
    pub workflows: WorkflowServiceClient<GrpcChannel>,
    pub clock: Arc<dyn Clock>,
    versions: moka::future::Cache<(Uuid, i64), Arc<Published>>,
}

impl Launcher {
    pub fn new(
        store: Store,
        dispatcher: Dispatcher,
        workflows: WorkflowServiceClient<GrpcChannel>,
        clock: Arc<dyn Clock>,
    ) -> Launcher {
        Launcher {
            store,
            dispatcher,
            workflows,
            clock,
            versions: moka::future::Cache::builder()
                .max_capacity(1_000)
                .time_to_idle(Duration::from_secs(3_600))
                .build(),
        }
    }

    /// Version `version` of a workflow (fetched once).
    pub async fn version(&self, workflow: Uuid, version: i64) -> Result<Arc<Published>, ApiError> {
        if let Some(p) = self.versions.get(&(workflow, version)).await {
            return Ok(p);
        }
        let v = self
            .workflows
            .clone()
            .get_published_version(GetPublishedVersionRequest {
                workflow_id: workflow.to_string(),
                version: version as i32,
            })
            .await
            .map_err(ApiError::from)?
            .into_inner();
        let published = Arc::new(Published {
            workflow_id: workflow,
            workspace_id: v
                .workspace_id
                .parse()
                .map_err(|_| ApiError::internal("the workflow service sent a bad workspace id"))?,
            name: v.name,
            version: v.version as i64,
            definition: serde_json::from_str(&v.definition_json).map_err(ApiError::internal)?,
            owner: v.owner_id.parse().ok(),
        });
        self.versions
            .insert((workflow, published.version), published.clone())
            .await;
        Ok(published)
    }

    /// Records and dispatches an execution of `p` (or returns the one its
    /// idempotency key started already).
    pub async fn launch(&self, p: &Published, start: Start) -> Result<Execution, ApiError> {
        let now = self.clock.now_ms();
        let mut e = Execution::new_run(
            p.workspace_id,
            p.workflow_id,
            p.name.clone(),
            p.version,
            p.definition.clone(),
            start,
            now,
        );
        e.workflow_owner = p.owner;
        let (e, queued) = self.store.create(&e, &[], now).await?;
        self.dispatcher.dispatch(&queued).await;
        Ok(e)
    }

    /// Records and dispatches a retry of `e` for `by` (the rules are in
    /// [`crate::retry`]); from the failed step, it reuses what succeeded.
    pub async fn retry(
        &self,
        e: &Execution,
        by: Uuid,
        from_failed_step: bool,
    ) -> Result<Execution, ApiError> {
        let steps = match from_failed_step {
            true => Some(self.store.steps(e.id).await?),
            false => None,
        };
        let now = self.clock.now_ms();
        let retry = crate::retry::retry(e, steps.as_deref(), by, now)?;
        let (e, queued) = self
            .store
            .create(&retry.execution, &retry.reused, now)
            .await?;
        self.dispatcher.dispatch(&queued).await;
        Ok(e)
    }
}
