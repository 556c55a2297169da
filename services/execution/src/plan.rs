//! What an execution does next, given where its steps stand. Pure: the store calls
//! it inside the transaction that records a step's result, so deciding and
//! recording are one atomic transition.
//!
//! A node becomes decidable once every node with an edge into it is settled
//! (succeeded or skipped): that is what makes a join wait for all its incoming
//! branches. It then runs, with the input [`readiness`] builds from the edges that
//! carry data, or is skipped when none do; a skip settles it at once, so skips
//! propagate down the graph in the same pass (nodes are visited in topological
//! order).

use std::collections::HashMap;

use flowfleet_shared::definition::Definition;
use serde_json::{Map, Value};

use crate::domain::{execution_output, readiness, Readiness};

/// Where one node stands, from its latest attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeState {
    /// Queued, running, or failed with another attempt queued.
    Open,
    Succeeded {
        output: Value,
        branch: Option<String>,
    },
    Skipped,
    /// Failed for good, cancelled or timed out on its last attempt.
    Failed,
}

/// A node to start now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Run { node: String, input: Value },
    Skip { node: String },
}

impl Decision {
    pub fn node(&self) -> &str {
        match self {
            Decision::Run { node, .. } | Decision::Skip { node } => node,
        }
    }
}

/// The outputs of the nodes that ran and the branches branching nodes took.
fn settled(states: &HashMap<String, NodeState>) -> (Map<String, Value>, Map<String, Value>) {
    let mut outputs = Map::new();
    let mut branches = Map::new();
    for (node, state) in states {
        if let NodeState::Succeeded { output, branch } = state {
            outputs.insert(node.clone(), output.clone());
            if let Some(b) = branch {
                branches.insert(node.clone(), Value::String(b.clone()));
            }
        }
    }
    (outputs, branches)
}

/// Every node that can start now and has not: nodes without state whose
/// predecessors are all settled, including those settled by skips decided in this
/// same pass. Never returns a node that already has a state.
pub fn next_steps(
    def: &Definition,
    execution_input: &Value,
    states: &HashMap<String, NodeState>,
) -> Vec<Decision> {
    let Some(order) = def.topological_order() else {
        return Vec::new(); // validation refuses cycles before publishing
    };
    let (outputs, branches) = settled(states);
    let mut skipped_now: Vec<String> = Vec::new();
    let mut decisions = Vec::new();
    for node in order {
        if states.contains_key(&node) {
            continue;
        }
        let ready = def.predecessors(&node).iter().all(|p| {
            matches!(
                states.get(*p),
                Some(NodeState::Succeeded { .. } | NodeState::Skipped)
            ) || skipped_now.iter().any(|s| s == p)
        });
        if !ready {
            continue;
        }
        match readiness(def, &node, execution_input, &outputs, &branches) {
            Readiness::Run(input) => decisions.push(Decision::Run { node, input }),
            Readiness::Skip => {
                skipped_now.push(node.clone());
                decisions.push(Decision::Skip { node });
            }
        }
    }
    decisions
}

/// The execution's output once every node is settled; `None` while any is open
/// (or failed, which fails the execution instead).
pub fn completion(def: &Definition, states: &HashMap<String, NodeState>) -> Option<Value> {
    let all_settled = def.nodes.iter().all(|n| {
        matches!(
            states.get(&n.id),
            Some(NodeState::Succeeded { .. } | NodeState::Skipped)
        )
    });
    if !all_settled {
        return None;
    }
    let (outputs, _) = settled(states);
    Some(execution_output(def, &outputs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(v: Value) -> Definition {
        Definition::from_json(&v).unwrap()
    }

    fn ok(output: Value) -> NodeState {
        NodeState::Succeeded {
            output,
            branch: None,
        }
    }

    fn diamond() -> Definition {
        def(json!({
            "nodes": [
                {"id": "a", "type": "passthrough"},
                {"id": "b", "type": "passthrough"},
                {"id": "c", "type": "passthrough"},
                {"id": "d", "type": "passthrough"}
            ],
            "edges": [
                {"source": "a", "target": "b"}, {"source": "a", "target": "c"},
                {"source": "b", "target": "d"}, {"source": "c", "target": "d"}
            ],
            "triggers": [{"kind": "MANUAL"}]
        }))
    }

    #[test]
    fn entry_nodes_start_with_the_execution_input() {
        let d = diamond();
        assert_eq!(
            next_steps(&d, &json!({"x": 1}), &HashMap::new()),
            vec![Decision::Run {
                node: "a".into(),
                input: json!({"x": 1})
            }]
        );
    }

    #[test]
    fn a_join_waits_for_every_incoming_branch() {
        let d = diamond();
        let mut states = HashMap::from([("a".to_string(), ok(json!(1)))]);
        let next = next_steps(&d, &json!({}), &states);
        assert_eq!(
            next.iter().map(Decision::node).collect::<Vec<_>>(),
            ["b", "c"]
        );
        states.insert("b".into(), ok(json!("from b")));
        states.insert("c".into(), NodeState::Open);
        assert_eq!(next_steps(&d, &json!({}), &states), vec![]);
        states.insert("c".into(), ok(json!("from c")));
        assert_eq!(
            next_steps(&d, &json!({}), &states),
            vec![Decision::Run {
                node: "d".into(),
                input: json!({"b": "from b", "c": "from c"})
            }]
        );
        assert_eq!(completion(&d, &states), None);
        states.insert("d".into(), ok(json!("done")));
        assert_eq!(completion(&d, &states), Some(json!("done")));
        assert_eq!(next_steps(&d, &json!({}), &states), vec![]);
    }

    #[test]
    fn an_untaken_branch_skips_everything_only_it_reaches_in_one_pass() {
        let d = def(json!({
            "nodes": [
                {"id": "if", "type": "condition", "config": {"field": "/ok", "operator": "exists"}},
                {"id": "yes", "type": "passthrough"},
                {"id": "yes2", "type": "passthrough"},
                {"id": "no", "type": "passthrough"},
                {"id": "end", "type": "passthrough"}
            ],
            "edges": [
                {"source": "if", "sourceHandle": "true", "target": "yes"},
                {"source": "yes", "target": "yes2"},
                {"source": "if", "sourceHandle": "false", "target": "no"},
                {"source": "yes2", "target": "end"},
                {"source": "no", "target": "end"}
            ],
            "triggers": [{"kind": "MANUAL"}]
        }));
        let mut states = HashMap::from([(
            "if".to_string(),
            NodeState::Succeeded {
                output: json!({"v": 1}),
                branch: Some("false".into()),
            },
        )]);
        assert_eq!(
            next_steps(&d, &json!({}), &states),
            vec![
                Decision::Skip { node: "yes".into() },
                Decision::Run {
                    node: "no".into(),
                    input: json!({"v": 1})
                },
                Decision::Skip {
                    node: "yes2".into()
                },
            ]
        );
        states.insert("yes".into(), NodeState::Skipped);
        states.insert("yes2".into(), NodeState::Skipped);
        states.insert("no".into(), ok(json!("n")));
        // The join runs with the branch that ran.
        assert_eq!(
            next_steps(&d, &json!({}), &states),
            vec![Decision::Run {
                node: "end".into(),
                input: json!("n")
            }]
        );
    }

    #[test]
    fn a_failed_node_blocks_what_follows_and_completes_nothing() {
        let d = diamond();
        let states = HashMap::from([
            ("a".to_string(), ok(json!(1))),
            ("b".to_string(), NodeState::Failed),
            ("c".to_string(), ok(json!(2))),
        ]);
        assert_eq!(next_steps(&d, &json!({}), &states), vec![]);
        assert_eq!(completion(&d, &states), None);
    }
}
