//! The workflow service's gRPC server, for the execution engine: published
//! versions, the trigger feed, validation, and credential values.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use flowfleet_definitions::definition::Trigger;
use flowfleet_definitions::validation::{self, Problem};
use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_runtime::proto::workflow::v1 as pb;
use flowfleet_runtime::proto::workflow::v1::workflow_service_server::WorkflowService;
use flowfleet_security::access::{Access, Target};
use flowfleet_security::identity::Role;
use flowfleet_security::secrets::SecretKeyRing;
use flowfleet_security::service_auth::GrpcGuard;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::credentials;
use crate::store::{Store, TriggerRow};

/// How often a watcher re-reads the feed when nothing woke it: changes
/// committed by another replica of this service arrive within this.
pub const WATCH_POLL: Duration = Duration::from_secs(1);
/// Changes read from the feed per query.
const WATCH_BATCH: i64 = 200;

/// What a workflow without such a published version, or one the caller may not see,
/// answers.
const NO_VERSION: &str =
    "the workflow does not exist or has no such published version; publish it first";

pub struct WorkflowGrpc {
    pub store: Store,
    pub guard: GrpcGuard,
    pub access: Access,
    pub secrets: Arc<SecretKeyRing>,
    /// Ends open trigger watches when the service stops, so its server can
    /// finish shutting down (a watch otherwise lasts as long as its caller).
    pub shutdown: tokio_util::sync::CancellationToken,
}

fn trigger_to_proto(t: &Trigger) -> pb::Trigger {
    let mut out = pb::Trigger {
        kind: t.kind().into(),
        ..Default::default()
    };
    match t {
        Trigger::Manual => {}
        Trigger::Cron {
            expression,
            timezone,
        } => {
            out.cron_expression = expression.clone();
            out.timezone = timezone.clone();
        }
        Trigger::Webhook { path, .. } => out.webhook_path = path.clone(),
        Trigger::Event { event } => out.event = event.clone(),
    }
    out
}

fn row_to_proto(row: TriggerRow) -> pb::WorkflowTriggers {
    pb::WorkflowTriggers {
        workflow_id: row.workflow_id.to_string(),
        workspace_id: row.workspace_id.to_string(),
        version: row.version.unwrap_or(0) as i32,
        triggers: row.triggers.iter().map(trigger_to_proto).collect(),
        cursor: row.seq,
    }
}

fn problem_to_proto(p: Problem) -> pb::Problem {
    let name = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
    pb::Problem {
        severity: name(serde_json::to_value(p.severity).unwrap_or_default()),
        code: name(serde_json::to_value(p.code).unwrap_or_default()),
        path: p.path,
        node_id: p.node_id.unwrap_or_default(),
        edge_index: p.edge_index.map(|i| i as i32).unwrap_or(-1),
        message: p.message,
    }
}

type TriggerStream = Pin<Box<dyn Stream<Item = Result<pb::WorkflowTriggers, Status>> + Send>>;

#[tonic::async_trait]
impl WorkflowService for WorkflowGrpc {
    #[tracing::instrument(skip_all, fields(workflow_id = %request.get_ref().workflow_id))]
    async fn get_published_version(
        &self,
        request: Request<pb::GetPublishedVersionRequest>,
    ) -> Result<Response<pb::WorkflowVersion>, Status> {
        let caller = self.guard.caller(&request).await?;
        let r = request.get_ref();
        let id = parse_id("workflow_id", &r.workflow_id)?;
        if r.version < 0 {
            return Err(
                ApiError::bad_input("`version` must be 0 (newest) or a version number").into(),
            );
        }
        let number = (r.version > 0).then_some(r.version as i64);
        let (w, v) = self
            .store
            .version(id, number)
            .await?
            .ok_or_else(|| ApiError::not_found(NO_VERSION))?;
        // Services (the engine) read any workflow; a user only their workspaces', and
        // another workspace's workflow is indistinguishable from a missing one.
        self.access
            .authorize(
                &caller,
                w.workspace_id,
                Role::Viewer,
                Target::Resource(NO_VERSION),
            )
            .await?;
        Ok(Response::new(pb::WorkflowVersion {
            workflow_id: w.id.to_string(),
            workspace_id: w.workspace_id.to_string(),
            version: v.version as i32,
            name: w.name,
            definition_json: serde_json::to_string(&v.definition).map_err(ApiError::internal)?,
            content_hash: v.content_hash,
            owner_id: w.owner_id.to_string(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_active_triggers(
        &self,
        request: Request<pb::ListActiveTriggersRequest>,
    ) -> Result<Response<pb::ListActiveTriggersResponse>, Status> {
        self.guard.caller(&request).await?.require_service()?;
        let (rows, cursor) = self.store.live_triggers().await?;
        Ok(Response::new(pb::ListActiveTriggersResponse {
            workflows: rows.into_iter().map(row_to_proto).collect(),
            cursor,
        }))
    }

    type WatchTriggersStream = TriggerStream;

    #[tracing::instrument(skip_all, fields(cursor = request.get_ref().cursor))]
    async fn watch_triggers(
        &self,
        request: Request<pb::WatchTriggersRequest>,
    ) -> Result<Response<Self::WatchTriggersStream>, Status> {
        self.guard.caller(&request).await?.require_service()?;
        let mut cursor = request.get_ref().cursor;
        if cursor < 0 {
            return Err(ApiError::bad_input(
                "`cursor` must be 0 or a cursor from ListActiveTriggers or this stream",
            )
            .into());
        }
        let (tx, rx) = mpsc::channel(WATCH_BATCH as usize);
        let store = self.store.clone();
        let shutdown = self.shutdown.clone();
        let span = tracing::info_span!("trigger_watch", cursor);
        tokio::spawn(
            async move {
                loop {
                    let feed = store.feed().clone();
                    let woken = feed.changed();
                    tokio::pin!(woken);
                    woken.as_mut().enable();
                    let rows = match store.trigger_changes(cursor, WATCH_BATCH).await {
                        Ok(rows) => rows,
                        Err(e) => {
                            let _ = tx.send(Err(e.into())).await;
                            return;
                        }
                    };
                    let full = rows.len() as i64 == WATCH_BATCH;
                    for row in rows {
                        cursor = row.seq;
                        if tx.send(Ok(row_to_proto(row))).await.is_err() {
                            return; // the watcher went away
                        }
                    }
                    if full {
                        continue;
                    }
                    tokio::select! {
                        _ = &mut woken => {}
                        _ = tokio::time::sleep(WATCH_POLL) => {}
                        _ = tx.closed() => return,
                        // The stream ends; the watcher lists again elsewhere.
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
            .instrument(span),
        );
        Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as Self::WatchTriggersStream
        ))
    }

    #[tracing::instrument(skip_all, fields(workspace_id = %request.get_ref().workspace_id))]
    async fn validate_definition(
        &self,
        request: Request<pb::ValidateDefinitionRequest>,
    ) -> Result<Response<pb::ValidateDefinitionResponse>, Status> {
        let caller = self.guard.caller(&request).await?;
        let r = request.get_ref();
        let workspace = parse_id("workspace_id", &r.workspace_id)?;
        self.access
            .authorize(&caller, workspace, Role::Viewer, Target::Workspace)
            .await?;
        let json: serde_json::Value = serde_json::from_str(&r.definition_json)
            .map_err(|e| ApiError::bad_input(format!("`definition_json` is not JSON: {e}")))?;
        let definition = crate::domain::parse_definition(&json)?;
        let problems = self.store.validate(workspace, &definition).await?;
        let publishable = validation::errors(&problems).next().is_none();
        Ok(Response::new(pb::ValidateDefinitionResponse {
            problems: problems.into_iter().map(problem_to_proto).collect(),
            publishable,
        }))
    }

    #[tracing::instrument(skip_all, fields(credential_id = %request.get_ref().credential_id))]
    async fn get_credential_value(
        &self,
        request: Request<pb::GetCredentialValueRequest>,
    ) -> Result<Response<pb::CredentialValue>, Status> {
        self.guard.caller(&request).await?.require_service()?;
        let r = request.get_ref();
        let id = parse_id("credential_id", &r.credential_id)?;
        let workspace = parse_id("workspace_id", &r.workspace_id)?;
        // Another workspace's credential answers as a missing one: a definition
        // cannot borrow a credential by naming its id.
        let (credential, sealed) = self
            .store
            .sealed_credential(id)
            .await?
            .filter(|(c, _)| c.workspace_id == workspace)
            .ok_or_else(|| ApiError::not_found("no such credential in this workspace"))?;
        let value = self
            .secrets
            .open(&sealed, &credentials::seal_context(id))
            .map_err(ApiError::internal)?;
        Ok(Response::new(pb::CredentialValue {
            credential_id: id.to_string(),
            kind: credential.kind.as_str().into(),
            value_json: String::from_utf8(value).map_err(ApiError::internal)?,
        }))
    }
}
