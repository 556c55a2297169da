//! The worker: takes `execution.run` tasks from the queue and runs executions.
//!
//! At-least-once delivery is safe because every transition is idempotent: a step
//! result already recorded for an attempt is reused instead of re-run, the
//! artifact is stored only if none is recorded, and finishing only moves an
//! execution that is still QUEUED or RUNNING. The task is acknowledged only
//! after the outcome (and its event) is committed.

use std::sync::Arc;

use async_trait::async_trait;
use flowfleet_shared::clock::Clock;
use flowfleet_shared::error::ApiError;
use flowfleet_shared::events::consumer::EventHandler;
use flowfleet_shared::events::outbox::Relay;
use flowfleet_shared::events::Event;
use flowfleet_shared::grpc::GrpcChannel;
use flowfleet_shared::proto::storage::v1::storage_service_client::StorageServiceClient;
use flowfleet_shared::proto::storage::v1::PutFileRequest;
use serde_json::Map;
use uuid::Uuid;

use crate::domain::{self, Status, StepRun};
use crate::store::Store;

/// The queue workers consume and the routing key of its tasks.
pub const TASK_QUEUE: &str = "execution.tasks";
pub const TASK_KIND: &str = "execution.run";

pub struct Worker {
    pub store: Store,
    pub storage: StorageServiceClient<GrpcChannel>,
    pub clock: Arc<dyn Clock>,
    pub relay: Relay,
    pub name: String,
}

fn internal(e: ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message)
}

#[async_trait]
impl EventHandler for Worker {
    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        let id: Uuid = match event
            .payload
            .get("executionId")
            .and_then(|v| v.as_str())
            .map(str::parse)
        {
            Some(Ok(id)) => id,
            _ => {
                // Unreadable task: retrying cannot help; drop it loudly.
                tracing::error!(payload = %event.payload, "task without a valid executionId dropped");
                return Ok(());
            }
        };
        self.run(id).await
    }
}

impl Worker {
    #[tracing::instrument(skip(self), fields(worker = %self.name))]
    pub async fn run(&self, id: Uuid) -> anyhow::Result<()> {
        let Some(mut e) = self.store.get(id).await.map_err(internal)? else {
            tracing::warn!("task for an unknown execution dropped");
            return Ok(());
        };
        if e.status.is_terminal() {
            return Ok(()); // redelivered after completion
        }
        self.store
            .mark_running(id, self.clock.now_ms())
            .await
            .map_err(internal)?;
        e.started_at = e.started_at.or(Some(self.clock.now_ms()));
        let order = e
            .definition
            .topological_order()
            .ok_or_else(|| anyhow::anyhow!("published definition has a cycle"))?;
        let done: std::collections::HashMap<String, StepRun> = self
            .store
            .steps(id)
            .await
            .map_err(internal)?
            .into_iter()
            .filter(|s| s.status == "SUCCEEDED" || s.status == "SKIPPED")
            .map(|s| (s.node_id.clone(), s))
            .collect();
        // Outputs of the nodes that ran, and the branch each branching node took.
        let mut outputs = Map::new();
        let mut branches = Map::new();
        for node_id in order {
            let node = e
                .definition
                .node(&node_id)
                .ok_or_else(|| anyhow::anyhow!("node {node_id} vanished"))?;
            let readiness =
                domain::readiness(&e.definition, &node_id, &e.input, &outputs, &branches);
            if let Some(previous) = done.get(&node_id) {
                // Recorded by an earlier delivery: reuse it. Nodes are pure
                // today, so a branching node's branch is recomputed from its
                // recorded input.
                if previous.status == "SUCCEEDED" {
                    if let Ok(outcome) = domain::run_node(node, previous.input.clone()) {
                        if let Some(b) = outcome.branch {
                            branches.insert(node_id.clone(), b.into());
                        }
                    }
                    outputs.insert(node_id, previous.output.clone().unwrap_or_default());
                }
                continue;
            }
            let started = self.clock.now_ms();
            let (input, result) = match readiness {
                domain::Readiness::Skip => (serde_json::Value::Null, None),
                domain::Readiness::Run(input) => {
                    let span =
                        tracing::info_span!("step", node = %node_id, node_type = %node.node_type);
                    let result = span.in_scope(|| domain::run_node(node, input.clone()));
                    (input, Some(result))
                }
            };
            let finished = self.clock.now_ms();
            let (status, output, error) = match &result {
                None => ("SKIPPED", None, None),
                Some(Ok(v)) => ("SUCCEEDED", Some(v.output.clone()), None),
                Some(Err(msg)) => ("FAILED", None, Some(msg.clone())),
            };
            self.store
                .record_step(&StepRun {
                    id: Uuid::now_v7(),
                    execution_id: id,
                    node_id: node_id.clone(),
                    node_type: node.node_type.clone(),
                    status: status.into(),
                    attempt: 1,
                    input,
                    output: output.clone(),
                    error: error.clone(),
                    worker: self.name.clone(),
                    started_at: started,
                    finished_at: finished,
                })
                .await
                .map_err(internal)?;
            metrics::counter!("flowfleet_steps_total", "status" => status).increment(1);
            match result {
                None => {}
                Some(Ok(outcome)) => {
                    if let Some(b) = outcome.branch {
                        branches.insert(node_id.clone(), b.into());
                    }
                    outputs.insert(node_id, outcome.output);
                }
                Some(Err(msg)) => {
                    e.status = Status::Failed;
                    e.error = Some(msg);
                    e.finished_at = Some(self.clock.now_ms());
                    self.store.finish(&e).await.map_err(internal)?;
                    self.relay.wake();
                    return Ok(());
                }
            }
        }
        let output = domain::execution_output(&e.definition, &outputs);
        if e.artifact_file_id.is_none() {
            let file = self
                .storage
                .clone()
                .put_file(PutFileRequest {
                    workspace_id: e.workspace_id.to_string(),
                    owner_id: e.triggered_by.to_string(),
                    execution_id: id.to_string(),
                    name: "output.json".into(),
                    content_type: "application/json".into(),
                    content: serde_json::to_vec_pretty(&output)?,
                })
                .await
                .map_err(|s| anyhow::anyhow!("storing the output artifact failed: {s}"))?
                .into_inner();
            self.store
                .set_artifact(id, &file.id)
                .await
                .map_err(internal)?;
        }
        e.status = Status::Succeeded;
        e.output = Some(output);
        e.finished_at = Some(self.clock.now_ms());
        self.store.finish(&e).await.map_err(internal)?;
        metrics::counter!("flowfleet_executions_finished_total", "status" => "SUCCEEDED")
            .increment(1);
        self.relay.wake();
        Ok(())
    }
}
