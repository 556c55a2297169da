//! What a recorded transition sets off outside the database, in one place for every
//! caller that records one (the worker settling a step, a user cancelling, a
//! sub_workflow step starting its child): dispatching the steps it queued, waking the
//! outbox relay when an execution ended (its outcome event is waiting), and finishing
//! every execution it completed (its own, and parents their child resumed): storing
//! the output artifact, then marking it SUCCEEDED, which may set off more of the same.
//! Each part is idempotent, so a crash between them is repaired by redoing them.

use std::sync::Arc;

use flowfleet_runtime::clock::Clock;
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::events::outbox::Relay;
use flowfleet_runtime::grpc::GrpcChannel;
use flowfleet_runtime::proto::storage::v1::storage_service_client::StorageServiceClient;
use flowfleet_runtime::proto::storage::v1::NewFile;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::dispatch::Dispatcher;
use crate::domain::{Execution, Status};
use crate::store::{Store, Transition};

#[derive(Clone)]
pub struct Effects {
    pub store: Store,
    pub dispatcher: Dispatcher,
    pub relay: Relay,
    pub clock: Arc<dyn Clock>,
    /// Where output artifacts go.
    pub storage: StorageServiceClient<GrpcChannel>,
}

impl Effects {
    /// Carries out `t`, recorded for execution `e`.
    pub async fn apply(&self, e: &Execution, t: Transition) -> Result<(), ApiError> {
        self.dispatcher.dispatch(&t.queued).await;
        if let Some(status) = t.ended {
            metrics::counter!("flowfleet_executions_finished_total", "status" => status.as_str())
                .increment(1);
            self.relay.wake();
        }
        if let Some(output) = t.completed {
            self.complete(e, output).await?;
        }
        for r in t.resumed {
            if let Some(output) = r.completed {
                self.complete(&r.parent, output).await?;
            }
        }
        Ok(())
    }

    /// Stores the output artifact, then marks the execution SUCCEEDED (with its
    /// outcome event), which resumes its parent if it is a child. Both are
    /// idempotent: redone after a crash, nothing doubles.
    pub fn complete<'a>(
        &'a self,
        e: &'a Execution,
        output: Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let Some(mut e) = self.store.get(e.id).await? else {
                return Ok(());
            };
            if e.status.is_terminal() {
                return Ok(());
            }
            if e.artifact_file_id.is_none() {
                let content = serde_json::to_vec_pretty(&output).map_err(ApiError::internal)?;
                let file = flowfleet_runtime::files::put(
                    &mut self.storage.clone(),
                    artifact(&e, "output.json", "application/json"),
                    content.into(),
                )
                .await
                .map_err(|s| {
                    ApiError::internal(format!("storing the output artifact failed: {s}"))
                })?;
                self.store.set_artifact(e.id, &file.id).await?;
            }
            e.status = Status::Succeeded;
            e.output = Some(output);
            e.finished_at = Some(self.clock.now_ms());
            match self.store.finish(&e).await? {
                Some(t) => self.apply(&e, t).await,
                None => Ok(()),
            }
        })
    }
}

/// A file `e` stores as one of its artifacts (its workspace's, owned by whoever started
/// it, under its workflow for retention).
pub fn artifact(e: &Execution, name: &str, content_type: &str) -> NewFile {
    NewFile {
        workspace_id: e.workspace_id.to_string(),
        owner_id: e.triggered_by.to_string(),
        execution_id: e.id.to_string(),
        workflow_id: e.workflow_id.to_string(),
        name: name.to_string(),
        content_type: content_type.to_string(),
        size: 0,
    }
}
