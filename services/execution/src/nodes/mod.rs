//! How each node type runs. [`Nodes::execute`] matches [`NodeKind`] with no
//! wildcard arm: a kind added to the catalog does not compile until it runs here.
//! Pure types live in [`crate::domain`]; those that reach out live here.

pub mod guard;
pub mod http;
pub mod transform;

use flowfleet_shared::catalog::NodeKind;
use flowfleet_shared::definition::Node;
use serde_json::Value;

use crate::domain::{self, Execution, Outcome};

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
}

/// What nodes need from the outside world.
#[derive(Clone)]
pub struct Nodes {
    pub http: http::HttpNode,
}

impl Nodes {
    /// Runs one attempt of `node` on `input`, appending to `logs`.
    pub async fn execute(
        &self,
        e: &Execution,
        node: &Node,
        input: Value,
        logs: &mut Vec<String>,
    ) -> Result<Outcome, NodeError> {
        let kind = NodeKind::parse(&node.node_type).ok_or_else(|| {
            NodeError::permanent(format!(
                "node type `{}` is not in the catalog",
                node.node_type
            ))
        })?;
        match kind {
            NodeKind::Passthrough => Ok(domain::single(input)),
            NodeKind::Set => domain::set(node, input).map_err(NodeError::permanent),
            NodeKind::Condition => domain::condition(node, input).map_err(NodeError::permanent),
            NodeKind::Switch => domain::switch(node, input).map_err(NodeError::permanent),
            NodeKind::Transform => {
                let program = node
                    .config
                    .get("expression")
                    .and_then(Value::as_str)
                    .ok_or_else(|| NodeError::permanent("`config.expression` is missing"))?;
                transform::transform(program, input).map(domain::single)
            }
            NodeKind::HttpRequest => self
                .http
                .run(e.workspace_id, &node.config, &input, logs)
                .await
                .map(domain::single),
        }
    }
}
