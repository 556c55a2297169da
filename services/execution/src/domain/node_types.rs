//! The node types that are pure functions of their configuration and input (`set`,
//! `condition`, `switch`, `passthrough`, `foreach`, `merge`, `delay`'s due time,
//! `webhook_response`), and how a graph's sinks make its output. No I/O: the worker
//! runs them in place; `http_request`, `transform` and `sub_workflow` live in
//! [`crate::nodes`].

use flowfleet_definitions::definition::{Definition, Node};
use serde_json::{Map, Value};

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

/// The output of a graph (or a loop body) from its sinks: the output of the
/// sink that ran, an object keyed by sink when several ran (sinks on untaken
/// branches are left out), null when none ran.
pub fn sinks_output(sinks: &[&str], outputs: &Map<String, Value>) -> Value {
    let ran: Vec<&str> = sinks
        .iter()
        .copied()
        .filter(|s| outputs.contains_key(*s))
        .collect();
    match ran.as_slice() {
        [] => Value::Null,
        [one] => outputs[*one].clone(),
        many => Value::Object(
            many.iter()
                .map(|s| (s.to_string(), outputs[*s].clone()))
                .collect(),
        ),
    }
}

/// Items a `foreach` may loop over.
pub const MAX_ITEMS: usize = 10_000;

/// `foreach`: the array it loops over (at `config.items`, or the whole input).
pub fn foreach(node: &Node, input: Value) -> Result<Outcome, String> {
    let pointer = node
        .config
        .get("items")
        .and_then(Value::as_str)
        .unwrap_or("");
    let items = match input.pointer(pointer) {
        Some(Value::Array(items)) => items.clone(),
        Some(other) => {
            return Err(format!(
                "node `{}`: the value at `{pointer}` is {}, not an array",
                node.id,
                kind_of(other)
            ))
        }
        None => {
            return Err(format!(
                "node `{}`: the input has no value at `{pointer}`",
                node.id
            ))
        }
    };
    if items.len() > MAX_ITEMS {
        return Err(format!(
            "node `{}`: {} items; a loop takes at most {MAX_ITEMS}",
            node.id,
            items.len()
        ));
    }
    Ok(single(Value::Array(items)))
}

/// Items of a loop whose body runs at once.
pub fn foreach_concurrency(node: &Node) -> usize {
    node.config
        .get("concurrency")
        .and_then(Value::as_u64)
        .unwrap_or(10)
        .clamp(1, 1000) as usize
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `merge`: the incoming outputs (`input`, keyed by source node id) combined in
/// edge order.
pub fn merge(def: &Definition, node: &Node, input: Value) -> Result<Outcome, String> {
    let Value::Object(by_source) = input else {
        return Err(format!(
            "node `{}`: a merge receives its branches keyed by node",
            node.id
        ));
    };
    let mut sources: Vec<&str> = def.predecessors(&node.id);
    sources.dedup();
    let ran: Vec<(&str, &Value)> = sources
        .iter()
        .filter_map(|s| by_source.get(*s).map(|v| (*s, v)))
        .collect();
    let mode = node
        .config
        .get("mode")
        .and_then(Value::as_str)
        .unwrap_or("append");
    let output = match mode {
        "append" => Value::Array(
            ran.iter()
                .flat_map(|(_, v)| match v {
                    Value::Array(items) => items.clone(),
                    other => vec![(*other).clone()],
                })
                .collect(),
        ),
        "object" => {
            let mut merged = Map::new();
            for (source, v) in &ran {
                let Value::Object(fields) = v else {
                    return Err(format!(
                        "node `{}`: mode `object` merges objects, but `{source}` gave {}",
                        node.id,
                        kind_of(v)
                    ));
                };
                merged.extend(fields.clone());
            }
            Value::Object(merged)
        }
        "keyed" => Value::Object(by_source),
        "first" => ran
            .first()
            .map(|(_, v)| (*v).clone())
            .unwrap_or(Value::Null),
        other => return Err(format!("node `{}`: unknown merge mode `{other}`", node.id)),
    };
    Ok(single(output))
}

/// Longest `delay`.
pub const MAX_DELAY_MS: i64 = 30 * 24 * 3600 * 1000;

/// `delay`: when the step is due, if it was reached at `reached` (ms): that plus
/// `config.durationMs`, or the timestamp at `config.until` in the input (RFC
/// 3339 or epoch milliseconds), never more than 30 days ahead.
pub fn delay_due(node: &Node, input: &Value, reached: i64) -> Result<i64, String> {
    if let Some(ms) = node.config.get("durationMs") {
        let ms = ms
            .as_i64()
            .filter(|ms| (0..=MAX_DELAY_MS).contains(ms))
            .ok_or_else(|| {
                format!(
                    "node `{}`: `durationMs` must be 0 to {MAX_DELAY_MS}",
                    node.id
                )
            })?;
        return Ok(reached + ms);
    }
    let pointer = node
        .config
        .get("until")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("node `{}`: set `durationMs` or `until`", node.id))?;
    let at = match input.pointer(pointer) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis()),
        _ => None,
    }
    .ok_or_else(|| {
        format!(
            "node `{}`: the input at `{pointer}` is not a timestamp (RFC 3339 or epoch milliseconds)",
            node.id
        )
    })?;
    if at - reached > MAX_DELAY_MS {
        return Err(format!(
            "node `{}`: `{pointer}` is more than 30 days ahead",
            node.id
        ));
    }
    Ok(at.max(reached))
}

/// `webhook_response`: the reply `{status, headers, body}`.
pub fn webhook_response(node: &Node, input: Value) -> Result<Outcome, String> {
    let status = node
        .config
        .get("status")
        .and_then(Value::as_u64)
        .unwrap_or(200);
    if !(200..=599).contains(&status) {
        return Err(format!("node `{}`: `status` must be 200 to 599", node.id));
    }
    let headers = node
        .config
        .get("headers")
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let body = node.config.get("body").cloned().unwrap_or(input);
    Ok(single(
        serde_json::json!({"status": status, "headers": headers, "body": body}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{readiness, Readiness};
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
        (sinks_output(&def.sinks(), &outputs), skipped)
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

    fn node(v: Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn foreach_takes_the_array_at_its_pointer() {
        let n = node(json!({"id": "l", "type": "foreach", "config": {"items": "/xs"}}));
        assert_eq!(
            foreach(&n, json!({"xs": [1, 2]})).unwrap().output,
            json!([1, 2])
        );
        assert!(foreach(&n, json!({"xs": 3}))
            .unwrap_err()
            .contains("a number, not an array"));
        assert!(foreach(&n, json!({}))
            .unwrap_err()
            .contains("no value at `/xs`"));
        let whole = node(json!({"id": "l", "type": "foreach"}));
        assert_eq!(foreach(&whole, json!(["a"])).unwrap().output, json!(["a"]));
        assert_eq!(foreach_concurrency(&whole), 10);
    }

    #[test]
    fn merge_modes_combine_in_edge_order() {
        let def = Definition::from_json(&json!({
            "nodes": [
                {"id": "b", "type": "passthrough"}, {"id": "a", "type": "passthrough"},
                {"id": "m", "type": "merge"}
            ],
            "edges": [{"source": "b", "target": "m"}, {"source": "a", "target": "m"}]
        }))
        .unwrap();
        let with = |mode: &str| {
            let mut n = def.node("m").unwrap().clone();
            n.config = json!({"mode": mode});
            n
        };
        let input = json!({"a": {"x": 1, "k": "a"}, "b": [{"y": 2}]});
        assert_eq!(
            merge(&def, &with("append"), input.clone()).unwrap().output,
            json!([{"y": 2}, {"x": 1, "k": "a"}])
        );
        assert!(merge(&def, &with("object"), input.clone())
            .unwrap_err()
            .contains("`b` gave an array"));
        assert_eq!(
            merge(
                &def,
                &with("object"),
                json!({"a": {"k": "a"}, "b": {"k": "b", "z": 0}})
            )
            .unwrap()
            .output,
            json!({"k": "a", "z": 0})
        );
        assert_eq!(
            merge(&def, &with("first"), input.clone()).unwrap().output,
            json!([{"y": 2}])
        );
        assert_eq!(
            merge(&def, &with("keyed"), input.clone()).unwrap().output,
            input
        );
        // A skipped branch is simply absent.
        assert_eq!(
            merge(&def, &with("first"), json!({"a": 7})).unwrap().output,
            json!(7)
        );
    }

    #[test]
    fn a_merge_gets_its_input_keyed_even_from_one_branch() {
        let def = Definition::from_json(&json!({
            "nodes": [{"id": "a", "type": "passthrough"}, {"id": "m", "type": "merge"}],
            "edges": [{"source": "a", "target": "m"}]
        }))
        .unwrap();
        let outputs: Map<String, Value> = [("a".to_string(), json!(1))].into_iter().collect();
        match readiness(&def, "m", &json!({}), &outputs, &Map::new()) {
            Readiness::Run(input) => assert_eq!(input, json!({"a": 1})),
            Readiness::Skip => panic!("skipped"),
        }
    }

    #[test]
    fn delays_are_due_after_their_duration_or_at_their_time() {
        let d = node(json!({"id": "d", "type": "delay", "config": {"durationMs": 1500}}));
        assert_eq!(delay_due(&d, &json!({}), 1_000), Ok(2_500));
        let u = node(json!({"id": "d", "type": "delay", "config": {"until": "/at"}}));
        assert_eq!(
            delay_due(&u, &json!({"at": "1970-01-01T00:00:05Z"}), 1_000),
            Ok(5_000)
        );
        assert_eq!(delay_due(&u, &json!({"at": 7_000}), 1_000), Ok(7_000));
        // A time already past is due now.
        assert_eq!(delay_due(&u, &json!({"at": 10}), 1_000), Ok(1_000));
        assert!(delay_due(&u, &json!({"at": "soon"}), 0)
            .unwrap_err()
            .contains("not a timestamp"));
        assert!(delay_due(&u, &json!({"at": MAX_DELAY_MS + 10}), 0)
            .unwrap_err()
            .contains("30 days"));
    }

    #[test]
    fn webhook_response_builds_the_reply() {
        let n = node(
            json!({"id": "r", "type": "webhook_response", "config": {"status": 201, "headers": {"x-a": "1"}}}),
        );
        assert_eq!(
            webhook_response(&n, json!({"ok": true})).unwrap().output,
            json!({"status": 201, "headers": {"x-a": "1"}, "body": {"ok": true}})
        );
    }
}
