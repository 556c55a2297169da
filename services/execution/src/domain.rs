//! The execution service's domain: executions, step runs, and how a node turns
//! its input into its output. No I/O here.

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

/// Where one attempt of a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum StepStatus {
    /// Waiting for a worker (or for its retry to come due).
    Queued,
    Running,
    Succeeded,
    /// Failed; a later attempt may follow.
    Failed,
    /// Reached only through untaken branches.
    Skipped,
    /// Its execution was cancelled or failed elsewhere before it ran.
    Cancelled,
    /// Ran past its timeout; a later attempt may follow.
    TimedOut,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Queued => "QUEUED",
            StepStatus::Running => "RUNNING",
            StepStatus::Succeeded => "SUCCEEDED",
            StepStatus::Failed => "FAILED",
            StepStatus::Skipped => "SKIPPED",
            StepStatus::Cancelled => "CANCELLED",
            StepStatus::TimedOut => "TIMED_OUT",
        }
    }
    pub fn parse(s: &str) -> Option<StepStatus> {
        [
            StepStatus::Queued,
            StepStatus::Running,
            StepStatus::Succeeded,
            StepStatus::Failed,
            StepStatus::Skipped,
            StepStatus::Cancelled,
            StepStatus::TimedOut,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// One attempt of one node in one execution.
#[derive(Debug, Clone)]
pub struct StepRun {
    pub id: Uuid,
    pub execution_id: Uuid,
    pub node_id: String,
    pub node_type: String,
    pub status: StepStatus,
    /// 1 for the first try.
    pub attempt: i64,
    pub priority: i64,
    pub input: Value,
    pub output: Option<Value>,
    /// The branch a branching node took.
    pub branch: Option<String>,
    pub error: Option<String>,
    pub logs: Vec<String>,
    /// Who holds or held it.
    pub worker: Option<String>,
    pub queued_at: i64,
    /// Not to start before this (a retry's backoff).
    pub due_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// Where a node stands once its predecessors are settled.
pub enum Readiness {
    /// Run with this input.
    Run(Value),
    /// Every edge into it comes from a skipped node or an untaken branch.
    Skip,
}

/// A node's input, from the edges into it that carry data: those whose source
/// ran (it is in `outputs`) and, for a branching source, took the edge's branch
/// (recorded in `branches`). No edge in: the execution input. One live edge:
/// its source's output. Several: an object keyed by source node id (a join).
/// Edges in but none live: the node is skipped, and so, in turn, are the nodes
/// only it leads to.
pub fn readiness(
    def: &Definition,
    node: &str,
    execution_input: &Value,
    outputs: &Map<String, Value>,
    branches: &Map<String, Value>,
) -> Readiness {
    let incoming: Vec<_> = def.edges.iter().filter(|e| e.target == node).collect();
    if incoming.is_empty() {
        return Readiness::Run(execution_input.clone());
    }
    let mut live: Vec<&str> = incoming
        .iter()
        .filter(|e| outputs.contains_key(&e.source))
        .filter(|e| match &e.source_handle {
            None => true,
            Some(h) => branches.get(&e.source).and_then(Value::as_str) == Some(h.as_str()),
        })
        .map(|e| e.source.as_str())
        .collect();
    live.dedup();
    match live.as_slice() {
        [] => Readiness::Skip,
        [one] => Readiness::Run(outputs[*one].clone()),
        many => Readiness::Run(Value::Object(
            many.iter()
                .map(|p| (p.to_string(), outputs[*p].clone()))
                .collect(),
        )),
    }
}

/// What a node produced, and which branch it took if it branches.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub output: Value,
    pub branch: Option<String>,
}

/// `set`: outputs `config.value`, or merges an object value into an object input.
pub fn set(node: &Node, input: Value) -> Result<Outcome, String> {
    let config = &node.config;
    let value = config
        .get("value")
        .cloned()
        .ok_or_else(|| format!("node `{}`: `config.value` is missing", node.id))?;
    let merge = config
        .get("merge")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match (merge, input, value) {
        (true, Value::Object(mut base), Value::Object(extra)) => {
            base.extend(extra);
            Ok(single(Value::Object(base)))
        }
        (true, _, _) => Err(format!(
            "node `{}`: `merge` needs an object input and an object value",
            node.id
        )),
        (false, _, value) => Ok(single(value)),
    }
}

/// `condition`: the `true` or `false` branch, with the input unchanged.
pub fn condition(node: &Node, input: Value) -> Result<Outcome, String> {
    let field = text(node, "field")?;
    let operator = text(node, "operator")?;
    let found = input.pointer(field);
    let expected = node.config.get("value").unwrap_or(&Value::Null);
    let holds = compare(found, operator, expected)
        .ok_or_else(|| format!("node `{}`: unknown operator `{operator}`", node.id))?;
    Ok(Outcome {
        output: input,
        branch: Some(holds.to_string()),
    })
}

/// `switch`: the first matching case's branch, else `default`.
pub fn switch(node: &Node, input: Value) -> Result<Outcome, String> {
    let field = text(node, "field")?;
    let found = input.pointer(field);
    let cases = node
        .config
        .get("cases")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("node `{}`: `config.cases` is missing", node.id))?;
    let branch = cases
        .iter()
        .find(|c| found.is_some_and(|v| same(v, c.get("equals").unwrap_or(&Value::Null))))
        .and_then(|c| c.get("handle").and_then(Value::as_str))
        .unwrap_or("default");
    Ok(Outcome {
        output: input,
        branch: Some(branch.to_string()),
    })
}

pub fn single(output: Value) -> Outcome {
    Outcome {
        output,
        branch: None,
    }
}

fn text<'a>(node: &'a Node, key: &str) -> Result<&'a str, String> {
    node.config
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("node `{}`: `config.{key}` must be a string", node.id))
}

/// JSON equality, with numbers compared by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// `found <operator> expected`; `None` for an operator the catalog lacks.
/// Orderings hold between two numbers or two strings, never across types; a
/// missing value only satisfies `notEquals`.
fn compare(found: Option<&Value>, operator: &str, expected: &Value) -> Option<bool> {
    use std::cmp::Ordering;
    let order = || -> Option<Ordering> {
        match (found?, expected) {
            (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
            (a, b) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        }
    };
    Some(match operator {
        "equals" => found.is_some_and(|v| same(v, expected)),
        "notEquals" => !found.is_some_and(|v| same(v, expected)),
        "greaterThan" => order() == Some(Ordering::Greater),
        "greaterOrEqual" => matches!(order(), Some(Ordering::Greater | Ordering::Equal)),
        "lessThan" => order() == Some(Ordering::Less),
        "lessOrEqual" => matches!(order(), Some(Ordering::Less | Ordering::Equal)),
        "contains" => match (found, expected) {
            (Some(Value::String(s)), Value::String(part)) => s.contains(part.as_str()),
            (Some(Value::Array(items)), x) => items.iter().any(|i| same(i, x)),
            (Some(Value::Object(map)), Value::String(key)) => map.contains_key(key),
            _ => false,
        },
        "exists" => found.is_some_and(|v| !v.is_null()),
        _ => return None,
    })
}

/// The execution's output: the output of the sink that ran, or an object keyed
/// by sink when several ran (sinks on untaken branches are left out).
pub fn execution_output(def: &Definition, outputs: &Map<String, Value>) -> Value {
    let ran: Vec<&str> = def
        .sinks()
        .into_iter()
        .filter(|s| outputs.contains_key(*s))
        .collect();
    match ran.as_slice() {
        [one] => outputs[*one].clone(),
        many => Value::Object(
            many.iter()
                .map(|s| (s.to_string(), outputs[*s].clone()))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The pure node types, as the worker dispatches them.
    fn run_node(node: &Node, input: Value) -> Result<Outcome, String> {
        match node.node_type.as_str() {
            "set" => set(node, input),
            "condition" => condition(node, input),
            "switch" => switch(node, input),
            "passthrough" => Ok(single(input)),
            other => panic!("not a pure node type: {other}"),
        }
    }

    /// Runs a definition in topological order the way the worker does.
    fn run(def: &Definition, input: Value) -> (Value, Vec<String>) {
        let mut outputs = Map::new();
        let mut branches = Map::new();
        let mut skipped = Vec::new();
        for id in def.topological_order().unwrap() {
            let node = def.node(&id).unwrap();
            match readiness(def, &id, &input, &outputs, &branches) {
                Readiness::Skip => skipped.push(id),
                Readiness::Run(node_input) => {
                    let outcome = run_node(node, node_input).unwrap();
                    if let Some(b) = outcome.branch {
                        branches.insert(id.clone(), Value::String(b));
                    }
                    outputs.insert(id, outcome.output);
                }
            }
        }
        (execution_output(def, &outputs), skipped)
    }

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
        assert_eq!(
            run(&def, json!({"in": true})).0,
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

    fn branching() -> Definition {
        Definition::from_json(&json!({
            "nodes": [
                {"id": "big", "type": "condition", "config": {"field": "/total", "operator": "greaterThan", "value": 100}},
                {"id": "review", "type": "set", "config": {"value": "review"}},
                {"id": "notify", "type": "passthrough"},
                {"id": "ship", "type": "set", "config": {"value": "ship"}}
            ],
            "edges": [
                {"source": "big", "sourceHandle": "true", "target": "review"},
                {"source": "review", "target": "notify"},
                {"source": "big", "sourceHandle": "false", "target": "ship"}
            ],
            "triggers": [{"kind": "MANUAL"}]
        }))
        .unwrap()
    }

    #[test]
    fn a_condition_takes_one_branch_and_skips_what_only_the_other_reaches() {
        let def = branching();
        assert_eq!(
            run(&def, json!({"total": 250})),
            (json!("review"), vec!["ship".to_string()])
        );
        assert_eq!(
            run(&def, json!({"total": 20})),
            (
                json!("ship"),
                vec!["review".to_string(), "notify".to_string()]
            )
        );
        // A missing field is not greater than anything.
        assert_eq!(run(&def, json!({})).0, json!("ship"));
    }

    #[test]
    fn a_join_after_branches_runs_with_the_branch_that_ran() {
        let def = Definition::from_json(&json!({
            "nodes": [
                {"id": "s", "type": "switch", "config": {"field": "/region", "cases": [{"handle": "eu", "equals": "EU"}, {"handle": "us", "equals": "US"}]}},
                {"id": "eu", "type": "set", "config": {"value": "vat"}},
                {"id": "us", "type": "set", "config": {"value": "sales tax"}},
                {"id": "other", "type": "set", "config": {"value": "none"}},
                {"id": "join", "type": "passthrough"}
            ],
            "edges": [
                {"source": "s", "sourceHandle": "eu", "target": "eu"},
                {"source": "s", "sourceHandle": "us", "target": "us"},
                {"source": "s", "sourceHandle": "default", "target": "other"},
                {"source": "eu", "target": "join"},
                {"source": "us", "target": "join"},
                {"source": "other", "target": "join"}
            ],
            "triggers": [{"kind": "MANUAL"}]
        }))
        .unwrap();
        assert_eq!(run(&def, json!({"region": "US"})).0, json!("sales tax"));
        assert_eq!(run(&def, json!({"region": "EU"})).0, json!("vat"));
        assert_eq!(run(&def, json!({"region": "JP"})).0, json!("none"));
    }

    #[test]
    fn condition_operators() {
        let cases = [
            (json!(5), "equals", json!(5.0), true),
            (json!("a"), "notEquals", json!("b"), true),
            (json!(3), "greaterOrEqual", json!(3), true),
            (json!("apple"), "lessThan", json!("banana"), true),
            (json!("10"), "greaterThan", json!(9), false),
            (json!("hello world"), "contains", json!("world"), true),
            (json!([1, 2, 3]), "contains", json!(2), true),
            (json!({"k": 1}), "contains", json!("k"), true),
            (json!(null), "exists", json!(null), false),
            (json!(0), "exists", json!(null), true),
        ];
        for (value, op, expected, holds) in cases {
            assert_eq!(
                compare(Some(&value), op, &expected),
                Some(holds),
                "{value} {op} {expected}"
            );
        }
        assert_eq!(compare(None, "notEquals", &json!(1)), Some(true));
        assert_eq!(compare(None, "exists", &json!(1)), Some(false));
        assert_eq!(compare(Some(&json!(1)), "between", &json!(1)), None);
    }
}
