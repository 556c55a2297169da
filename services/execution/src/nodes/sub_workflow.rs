//! `sub_workflow`: starts a child execution and waits for it without holding a
//! worker. The step goes RUNNING → WAITING in the transaction that records the
//! child (keyed by the step's id, so a redelivered task starts no second child);
//! the child's end settles the step and moves the parent on
//! ([`crate::store::lifecycle`]).

use std::sync::Arc;

use flowfleet_shared::clock::Clock;
use flowfleet_shared::definition::{Definition, Node};
use flowfleet_shared::grpc::GrpcChannel;
use flowfleet_shared::proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use flowfleet_shared::proto::workflow::v1::GetPublishedVersionRequest;
use serde_json::Value;
use tonic::Code;
use uuid::Uuid;

use super::{NodeError, Ran};
use crate::dispatch::Dispatcher;
use crate::domain::{Execution, ParentStep, Start, StepRun, MAX_DEPTH};
use crate::store::Store;

#[derive(Clone)]
pub struct Children {
    pub workflows: WorkflowServiceClient<GrpcChannel>,
    pub store: Store,
    pub dispatcher: Dispatcher,
    pub clock: Arc<dyn Clock>,
    /// The worker running the steps (only the step's holder may make it wait).
    pub worker: String,
}

impl Children {
    pub async fn start(
        &self,
        e: &Execution,
        step: &StepRun,
        node: &Node,
        input: Value,
        logs: &mut Vec<String>,
    ) -> Result<Ran, NodeError> {
        let workflow_id: Uuid = node
            .config
            .get("workflowId")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| NodeError::permanent("`config.workflowId` must be a workflow id"))?;
        let version = node
            .config
            .get("version")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if e.depth + 1 > MAX_DEPTH {
            return Err(NodeError::permanent(format!(
                "sub_workflow calls nest at most {MAX_DEPTH} deep; this one would be {}",
                e.depth + 1
            )));
        }
        let missing = || {
            NodeError::permanent(format!(
                "no published workflow {workflow_id}{} in this workspace",
                if version > 0 {
                    format!(" version {version}")
                } else {
                    String::new()
                }
            ))
        };
        let v = self
            .workflows
            .clone()
            .get_published_version(GetPublishedVersionRequest {
                workflow_id: workflow_id.to_string(),
                version: version as i32,
            })
            .await
            .map_err(|s| match s.code() {
                Code::NotFound | Code::InvalidArgument | Code::PermissionDenied => missing(),
                _ => NodeError::retryable(format!(
                    "the workflow service did not answer: {}",
                    s.message()
                )),
            })?
            .into_inner();
        // Another workspace's workflow is as good as missing.
        if v.workspace_id != e.workspace_id.to_string() {
            return Err(missing());
        }
        let definition: Definition = serde_json::from_str(&v.definition_json).map_err(|err| {
            NodeError::permanent(format!("the child's definition is unreadable: {err}"))
        })?;
        let now = self.clock.now_ms();
        let child = Execution::new_run(
            e.workspace_id,
            workflow_id,
            v.name,
            v.version as i64,
            definition,
            Start {
                input: node.config.get("input").cloned().unwrap_or(input),
                priority: Some(e.priority),
                idempotency_key: Some(format!("parent-step:{}", step.id)),
                trigger: "SUB_WORKFLOW",
                triggered_by: e.triggered_by,
                parent: Some(ParentStep {
                    execution: e.id,
                    step: step.id,
                }),
                depth: e.depth + 1,
                retry_of: None,
            },
            now,
        );
        match self
            .store
            .wait_for_child(step, &self.worker, &child, now)
            .await
        {
            Ok(Some((child, queued))) => {
                logs.push(format!(
                    "started child execution {} of workflow {} version {}; waiting for it",
                    child.id, workflow_id, child.version
                ));
                self.dispatcher.dispatch(&queued).await;
                Ok(Ran::Waiting)
            }
            // Not this worker's step any more: nothing was recorded.
            Ok(None) => Ok(Ran::Waiting),
            Err(err) => Err(NodeError::retryable(format!(
                "could not record the child execution: {}",
                err.message
            ))),
        }
    }
}
