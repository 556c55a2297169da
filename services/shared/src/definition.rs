//! The workflow definition: the graph of nodes and edges a user draws, with its
//! triggers and settings. The workflow service stores and validates it; the
//! execution engine runs frozen copies of it. Both parse it with these types, so
//! a definition that parses here means the same thing to both.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::catalog;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Definition {
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub edges: Vec<Edge>,
    #[serde(default)]
    pub triggers: Vec<Trigger>,
    #[serde(default)]
    pub settings: Settings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    pub id: String,
    #[serde(rename = "type")]
    pub node_type: String,
    #[serde(default)]
    pub name: String,
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    #[serde(default)]
    pub position: Position,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Position {
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Edge {
    pub source: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_handle: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Trigger {
    Manual,
    #[serde(rename_all = "camelCase")]
    Cron {
        expression: String,
        #[serde(default = "utc")]
        timezone: String,
    },
    #[serde(rename_all = "camelCase")]
    Webhook {
        #[serde(default)]
        path: String,
    },
    #[serde(rename_all = "camelCase")]
    Event {
        event: String,
    },
}

fn utc() -> String {
    "UTC".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Settings {
    pub timeout_ms: u64,
    pub max_retries: u32,
    pub priority: u8,
    pub concurrency_limit: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timeout_ms: 30_000,
            max_retries: 3,
            priority: 5,
            concurrency_limit: 0,
        }
    }
}

/// One problem found in a definition, located precisely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A JSON-pointer-like location, e.g. `nodes[2].type` or `edges[0].target`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Definition {
    /// Parses JSON into a definition, with a located error.
    pub fn from_json(value: &serde_json::Value) -> Result<Definition, Problem> {
        serde_json::from_value(value.clone()).map_err(|e| Problem {
            path: "definition".into(),
            message: e.to_string(),
        })
    }

    /// The problems that block publishing: unknown node types, duplicate ids,
    /// edges to missing nodes, cycles, no nodes, no trigger, bad settings.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut p = |path: String, message: String| out.push(Problem { path, message });
        if self.nodes.is_empty() {
            p("nodes".into(), "a workflow needs at least one node".into());
        }
        if self.triggers.is_empty() {
            p(
                "triggers".into(),
                "a workflow needs at least one trigger (e.g. {\"kind\": \"MANUAL\"})".into(),
            );
        }
        let mut seen = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.id.trim().is_empty() {
                p(
                    format!("nodes[{i}].id"),
                    "node ids must not be empty".into(),
                );
            } else if !seen.insert(n.id.as_str()) {
                p(
                    format!("nodes[{i}].id"),
                    format!("duplicate node id `{}`", n.id),
                );
            }
            if catalog::find(&n.node_type).is_none() {
                let known: Vec<&str> = catalog::CATALOG.iter().map(|t| t.name).collect();
                p(
                    format!("nodes[{i}].type"),
                    format!(
                        "unknown node type `{}`; known types: {}",
                        n.node_type,
                        known.join(", ")
                    ),
                );
            }
            if !n.config.is_object() {
                p(
                    format!("nodes[{i}].config"),
                    "config must be a JSON object".into(),
                );
            } else if n.node_type == catalog::SET && n.config.get("value").is_none() {
                p(
                    format!("nodes[{i}].config.value"),
                    "a `set` node needs a `value`".into(),
                );
            }
        }
        for (i, e) in self.edges.iter().enumerate() {
            if !seen.contains(e.source.as_str()) {
                p(
                    format!("edges[{i}].source"),
                    format!("no node `{}`", e.source),
                );
            }
            if !seen.contains(e.target.as_str()) {
                p(
                    format!("edges[{i}].target"),
                    format!("no node `{}`", e.target),
                );
            }
            if e.source == e.target {
                p(
                    format!("edges[{i}]"),
                    "an edge cannot connect a node to itself".into(),
                );
            }
        }
        if self.settings.priority > 9 {
            p(
                "settings.priority".into(),
                "priority must be between 0 and 9".into(),
            );
        }
        if out.is_empty() && self.topological_order().is_none() {
            out.push(Problem {
                path: "edges".into(),
                message: "the graph has a cycle; workflows must be acyclic".into(),
            });
        }
        out
    }

    /// Node ids in an order where every node comes after its predecessors
    /// (Kahn's algorithm, ties broken by declaration order); `None` on a cycle.
    pub fn topological_order(&self) -> Option<Vec<String>> {
        let index: BTreeMap<&str, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let mut indegree = vec![0usize; self.nodes.len()];
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for e in &self.edges {
            let (Some(&s), Some(&t)) = (index.get(e.source.as_str()), index.get(e.target.as_str()))
            else {
                continue;
            };
            next[s].push(t);
            indegree[t] += 1;
        }
        let mut ready: VecDeque<usize> = (0..self.nodes.len())
            .filter(|&i| indegree[i] == 0)
            .collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(i) = ready.pop_front() {
            order.push(self.nodes[i].id.clone());
            for &t in &next[i] {
                indegree[t] -= 1;
                if indegree[t] == 0 {
                    ready.push_back(t);
                }
            }
        }
        (order.len() == self.nodes.len()).then_some(order)
    }

    /// Ids of the nodes with an edge into `node`, in edge order.
    pub fn predecessors(&self, node: &str) -> Vec<&str> {
        self.edges
            .iter()
            .filter(|e| e.target == node)
            .map(|e| e.source.as_str())
            .collect()
    }

    /// Nodes with no outgoing edge: their outputs form the execution's output.
    pub fn sinks(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|n| !self.edges.iter().any(|e| e.source == n.id))
            .map(|n| n.id.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(v: serde_json::Value) -> Definition {
        Definition::from_json(&v).unwrap()
    }

    #[test]
    fn valid_definition_has_no_problems_and_an_order() {
        let d = def(json!({
            "nodes": [{"id": "b", "type": "passthrough"}, {"id": "a", "type": "set", "config": {"value": 1}}],
            "edges": [{"source": "a", "target": "b"}],
            "triggers": [{"kind": "MANUAL"}]
        }));
        assert!(d.problems().is_empty(), "{:?}", d.problems());
        assert_eq!(d.topological_order().unwrap(), vec!["a", "b"]);
        assert_eq!(d.sinks(), vec!["b"]);
    }

    #[test]
    fn problems_are_located() {
        let d = def(json!({
            "nodes": [{"id": "a", "type": "nope"}, {"id": "a", "type": "set"}],
            "edges": [{"source": "a", "target": "zz"}]
        }));
        let paths: Vec<String> = d.problems().into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            vec![
                "triggers",
                "nodes[0].type",
                "nodes[1].id",
                "nodes[1].config.value",
                "edges[0].target"
            ]
        );
    }

    #[test]
    fn cycles_are_refused() {
        let d = def(json!({
            "nodes": [{"id": "a", "type": "passthrough"}, {"id": "b", "type": "passthrough"}],
            "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
            "triggers": [{"kind": "MANUAL"}]
        }));
        assert_eq!(
            d.problems()[0].message,
            "the graph has a cycle; workflows must be acyclic"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(Definition::from_json(&json!({"nodes": [], "bogus": 1})).is_err());
    }
}
