//! `sub_workflow`: starts a child execution and waits for it without holding a
//! worker. The step goes RUNNING → WAITING in the transaction that records the
//! child (keyed by the step's id, so a redelivered task starts no second child);
//! the child's end settles the step and moves the parent on
//! ([`crate::store::lifecycle`]).

use flowfleet_definitions::definition::Node;
use flowfleet_runtime::error::ErrorCode;
use serde_json::Value;
use uuid::Uuid;

use super::{NodeError, Ran};
use crate::domain::{Execution, ParentStep, Start, StepRun, TriggerKind, MAX_DEPTH};
use crate::effects::Effects;
use crate::launch::Launcher;
use crate::store::Transition;

#[derive(Clone)]
pub struct Children {
    /// Fetches the child's version (and records and dispatches through its store).
    pub launcher: Launcher,
    /// The worker running the steps (only the step's holder may make it wait).
    pub worker: String,
    /// Dispatches the child's first steps.
    pub effects: Effects,
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
            .launcher
            .version(workflow_id, version)
            .await
            .map_err(|e| match e.code {
                ErrorCode::NotFound | ErrorCode::BadUserInput | ErrorCode::Forbidden => missing(),
                _ => NodeError::retryable(format!(
                    "the workflow service did not answer: {}",
                    e.message
                )),
            })?;
        // Another workspace's workflow is as good as missing.
        if v.workspace_id != e.workspace_id {
            return Err(missing());
        }
        let now = self.launcher.clock.now_ms();
        let mut child = Execution::new_run(
            e.workspace_id,
            workflow_id,
            v.name.clone(),
            v.version,
            v.definition.clone(),
            Start {
                input: node.config.get("input").cloned().unwrap_or(input),
                priority: Some(e.priority),
                idempotency_key: Some(format!("parent-step:{}", step.id)),
                trigger: TriggerKind::SubWorkflow,
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
        child.workflow_owner = v.owner;
        match self
            .launcher
            .store
            .wait_for_child(step, &self.worker, &child, now)
            .await
        {
            Ok(Some((child, queued))) => {
                logs.push(format!(
                    "started child execution {} of workflow {} version {}; waiting for it",
                    child.id, workflow_id, child.version
                ));
                let started = Transition {
                    queued,
                    ..Transition::default()
                };
                if let Err(err) = self.effects.apply(&child, started).await {
                    // Recorded already: the dispatch sweeper sends what did not go.
                    logs.push(format!(
                        "dispatching the child's first steps: {}",
                        err.message
                    ));
                }
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
