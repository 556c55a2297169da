//! How each node type runs. [`Nodes::execute`] matches [`NodeKind`] with no
//! wildcard arm: a kind added to the catalog does not compile until it runs here.
//! Pure types live in [`crate::domain`]; those that reach out live here.

pub mod http;
pub mod notify;
pub mod store_file;
pub mod sub_workflow;
pub mod transform;

use flowfleet_definitions::catalog::NodeKind;
use flowfleet_definitions::definition::Node;
use serde_json::Value;

use crate::domain::{self, Execution, Outcome, StepRun};

/// Why an attempt failed, and whether another attempt could succeed.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeError {
    pub message: String,
    /// Network trouble or an overloaded server: worth retrying. A bad config or a
    /// refused address is not: the step fails at once.
    pub retryable: bool,
}

impl NodeError {
    pub fn permanent(message: impl Into<String>) -> NodeError {
        NodeError {
            message: message.into(),
            retryable: false,
        }
    }
    pub fn retryable(message: impl Into<String>) -> NodeError {
        NodeError {
            message: message.into(),
            retryable: true,
        }
    }

    /// A fleet service's gRPC answer: an unreachable, overloaded or failing service is
    /// worth retrying (`"{unavailable}: {message}"`); a refusal is not
    /// (`"{refused}: {message}"`).
    pub fn from_status(status: &tonic::Status, unavailable: &str, refused: &str) -> NodeError {
        match status.code() {
            tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Internal
            | tonic::Code::Unknown => {
                NodeError::retryable(format!("{unavailable}: {}", status.message()))
            }
            _ => NodeError::permanent(format!("{refused}: {}", status.message())),
        }
    }
}

/// How an attempt that did not fail ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ran {
    /// The node produced its outcome: record it.
    Done(Outcome),
    /// The step now waits (for a child execution) and is no longer this
    /// worker's: nothing to record.
    Waiting,
}

/// What nodes need from the outside world.
#[derive(Clone)]
pub struct Nodes {
    pub http: http::HttpNode,
    pub children: sub_workflow::Children,
    pub notify: notify::NotifyNode,
    pub store_file: store_file::StoreFileNode,
}

impl Nodes {
    /// Runs one attempt of `step` (of `node`) on `input`, appending to `logs`.
    pub async fn execute(
        &self,
        e: &Execution,
        step: &StepRun,
        node: &Node,
        input: Value,
        logs: &mut Vec<String>,
    ) -> Result<Ran, NodeError> {
        let kind = NodeKind::parse(&node.node_type).ok_or_else(|| {
            NodeError::permanent(format!(
                "node type `{}` is not in the catalog",
                node.node_type
            ))
        })?;
        let pure = |r: Result<Outcome, String>| r.map(Ran::Done).map_err(NodeError::permanent);
        match kind {
            NodeKind::Passthrough => Ok(Ran::Done(domain::single(input))),
            NodeKind::Set => pure(domain::set(node, input)),
            NodeKind::Condition => pure(domain::condition(node, input)),
            NodeKind::Switch => pure(domain::switch(node, input)),
            NodeKind::Foreach => pure(domain::foreach(node, input)),
            NodeKind::Merge => pure(domain::merge(&e.definition, node, input)),
            NodeKind::WebhookResponse => pure(domain::webhook_response(node, input)),
            // The wait is over: the step was due no earlier than its end.
            NodeKind::Delay => {
                logs.push(format!(
                    "waited {} ms",
                    (step.due_at - step.queued_at).max(0)
                ));
                Ok(Ran::Done(domain::single(input)))
            }
            NodeKind::Transform => {
                let program = node
                    .config
                    .get("expression")
                    .and_then(Value::as_str)
                    .ok_or_else(|| NodeError::permanent("`config.expression` is missing"))?;
                transform::transform(program, input).map(|o| Ran::Done(domain::single(o)))
            }
            NodeKind::HttpRequest => self
                .http
                .run(e.workspace_id, &node.config, &input, logs)
                .await
                .map(|o| Ran::Done(domain::single(o))),
            NodeKind::SubWorkflow => self.children.start(e, step, node, input, logs).await,
            NodeKind::Notify => self
                .notify
                .run(e, step, node, input, logs)
                .await
                .map(|o| Ran::Done(domain::single(o))),
            NodeKind::StoreFile => self
                .store_file
                .run(e, node, input, logs)
                .await
                .map(|o| Ran::Done(domain::single(o))),
        }
    }
}
