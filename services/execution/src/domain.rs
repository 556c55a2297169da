//! The execution service's domain: executions, step runs, and how a node turns
//! its input into its output. No I/O here.

use flowfleet_shared::catalog;
use flowfleet_shared::definition::{Definition, Node};
use serde_json::{Map, Value};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
#[graphql(name = "ExecutionStatus")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "QUEUED",
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::Cancelled => "CANCELLED",
            Status::TimedOut => "TIMED_OUT",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Queued,
            Status::Running,
            Status::Succeeded,
            Status::Failed,
            Status::Cancelled,
            Status::TimedOut,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }
}

#[derive(Debug, Clone)]
pub struct Execution {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub workflow_id: Uuid,
    pub workflow_name: String,
    pub version: i64,
    pub definition: Definition,
    pub status: Status,
    pub trigger: String,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub priority: i64,
    pub idempotency_key: Option<String>,
    pub triggered_by: Uuid,
    pub steps_total: i64,
    pub steps_done: i64,
    pub artifact_file_id: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct StepRun {
    pub id: Uuid,
    pub execution_id: Uuid,
    pub node_id: String,
    pub node_type: String,
    pub status: String,
    pub attempt: i64,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub worker: String,
    pub started_at: i64,
    pub finished_at: i64,
}

/// The input of a node: the execution input for a node without predecessors,
/// the predecessor's output for one, and an object keyed by predecessor id for
/// several (a join).
pub fn node_input(
    def: &Definition,
    node: &str,
    execution_input: &Value,
    outputs: &Map<String, Value>,
) -> Value {
    let preds = def.predecessors(node);
    match preds.as_slice() {
        [] => execution_input.clone(),
        [one] => outputs.get(*one).cloned().unwrap_or(Value::Null),
        many => Value::Object(
            many.iter()
                .map(|p| {
                    (
                        p.to_string(),
                        outputs.get(*p).cloned().unwrap_or(Value::Null),
                    )
                })
                .collect(),
        ),
    }
}

/// Runs one node of a type from the catalog. Errors are user-facing messages.
pub fn run_node(node: &Node, input: Value) -> Result<Value, String> {
    match node.node_type.as_str() {
        catalog::PASSTHROUGH => Ok(input),
        catalog::SET => {
            let value = node
                .config
                .get("value")
                .cloned()
                .ok_or_else(|| format!("node `{}`: `config.value` is missing", node.id))?;
            let merge = node
                .config
                .get("merge")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            match (merge, input, value) {
                (true, Value::Object(mut base), Value::Object(extra)) => {
                    base.extend(extra);
                    Ok(Value::Object(base))
                }
                (true, _, _) => Err(format!(
                    "node `{}`: `merge` needs an object input and an object value",
                    node.id
                )),
                (false, _, value) => Ok(value),
            }
        }
        other => Err(format!(
            "node `{}`: node type `{other}` is not implemented by this engine",
            node.id
        )),
    }
}

/// The execution's output: the single sink's output, or an object keyed by sink.
pub fn execution_output(def: &Definition, outputs: &Map<String, Value>) -> Value {
    let sinks = def.sinks();
    match sinks.as_slice() {
        [one] => outputs.get(*one).cloned().unwrap_or(Value::Null),
        many => Value::Object(
            many.iter()
                .map(|s| {
                    (
                        s.to_string(),
                        outputs.get(*s).cloned().unwrap_or(Value::Null),
                    )
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_and_merge() {
        let def = Definition::from_json(&json!({
            "nodes": [
                {"id": "a", "type": "set", "config": {"value": {"x": 1}}},
                {"id": "b", "type": "set", "config": {"value": {"y": 2}, "merge": true}},
                {"id": "c", "type": "passthrough"}
            ],
            "edges": [{"source": "a", "target": "b"}, {"source": "a", "target": "c"}],
            "triggers": [{"kind": "MANUAL"}]
        }))
        .unwrap();
        let mut outputs = Map::new();
        for id in def.topological_order().unwrap() {
            let node = def.nodes.iter().find(|n| n.id == id).unwrap();
            let input = node_input(&def, &id, &json!({"in": true}), &outputs);
            outputs.insert(id.clone(), run_node(node, input).unwrap());
        }
        assert_eq!(
            execution_output(&def, &outputs),
            json!({"b": {"x": 1, "y": 2}, "c": {"x": 1}})
        );
    }

    #[test]
    fn merge_needs_objects() {
        let node: Node = serde_json::from_value(
            json!({"id": "m", "type": "set", "config": {"value": 3, "merge": true}}),
        )
        .unwrap();
        assert!(run_node(&node, json!(1)).unwrap_err().contains("merge"));
    }
}
