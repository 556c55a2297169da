//! The workflow definition: the graph of nodes and edges a user draws, with its
//! triggers and settings. The workflow service stores and validates it
//! ([`crate::validation`]); the execution engine runs frozen copies of it. Both
//! parse it with these types, so a definition that parses here means the same
//! thing to both.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

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
    pub config: Value,
    #[serde(default)]
    pub position: Position,
    /// Overrides `settings.timeoutMs` for this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Overrides `settings.maxRetries` for this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

impl Node {
    /// How long one attempt may run.
    pub fn timeout_ms(&self, settings: &Settings) -> u64 {
        self.timeout_ms.unwrap_or(settings.timeout_ms)
    }

    /// Attempts after the first before the step fails.
    pub fn max_retries(&self, settings: &Settings) -> u32 {
        self.max_retries.unwrap_or(settings.max_retries)
    }
}

fn empty_object() -> Value {
    serde_json::json!({})
}

/// Where an editor draws the node; no meaning to the engine.
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
    /// The source's branch this edge leaves from (`true`, `false`, a switch
    /// case); absent for a node with a single output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_handle: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub enum Trigger {
    /// Started by a user or through the API.
    Manual,
    /// Started on a schedule: five fields (minute hour day month weekday), or
    /// six with seconds first; evaluated in `timezone` (an IANA name).
    #[serde(rename_all = "camelCase")]
    Cron {
        expression: String,
        #[serde(default = "utc")]
        timezone: String,
    },
    /// Started by an HTTP request to the workflow's webhook; `path` tells the
    /// workflow's webhooks apart.
    ///
    /// It answers at `/hooks/<workflow id>/<path>`. Callers prove themselves with
    /// the secret held by the SECRET credential `secretCredentialId`: as the
    /// `X-Flowfleet-Token` header (`auth: TOKEN`), or as the
    /// `X-Flowfleet-Signature: sha256=<hex>` HMAC-SHA256 of the raw body
    /// (`auth: HMAC`). With `respond: WITH_NODE` the caller waits (at most
    /// `timeoutMs`) for the execution's `webhook_response` node to answer;
    /// with `IMMEDIATELY` it gets `202` and the execution id at once.
    #[serde(rename_all = "camelCase")]
    Webhook {
        #[serde(default)]
        path: String,
        #[serde(default)]
        auth: WebhookAuth,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret_credential_id: Option<String>,
        #[serde(default)]
        respond: WebhookRespond,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// Started by an event: one of the platform's (`execution.failed`) or a custom one
    /// (`order.created`); [`crate::events`] says which names are allowed.
    #[serde(rename_all = "camelCase")]
    Event { event: String },
}

/// How a webhook's caller proves it holds the secret.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WebhookAuth {
    /// The secret itself in the `X-Flowfleet-Token` header.
    #[default]
    Token,
    /// `X-Flowfleet-Signature: sha256=<hex HMAC-SHA256 of the raw body>`.
    Hmac,
}

/// When a webhook's caller gets its answer.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WebhookRespond {
    /// `202 Accepted` with the execution id, without waiting.
    #[default]
    Immediately,
    /// The reply of the execution's `webhook_response` node (or `504` after
    /// the trigger's `timeoutMs`).
    WithNode,
}

/// How long a `WITH_NODE` webhook waits for its reply by default, and at most.
pub const WEBHOOK_TIMEOUT_MS: u64 = 30_000;
pub const MAX_WEBHOOK_TIMEOUT_MS: u64 = 300_000;

fn utc() -> String {
    "UTC".into()
}

impl Trigger {
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Manual => "MANUAL",
            Trigger::Cron { .. } => "CRON",
            Trigger::Webhook { .. } => "WEBHOOK",
            Trigger::Event { .. } => "EVENT",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Settings {
    /// Per-step timeout (a node may not run longer).
    pub timeout_ms: u64,
    /// Attempts after the first before a step fails.
    pub max_retries: u32,
    /// 0 (lowest) to 9 (highest).
    pub priority: u8,
    /// Executions of this workflow running at once; 0 means no limit.
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

/// A definition that does not have the right shape, located by the JSON path
/// of the offending value (`nodes[2].position.x`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Definition {
    /// Parses JSON into a definition, naming the path of the first value that
    /// does not fit.
    pub fn from_json(value: &Value) -> Result<Definition, Malformed> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            Malformed {
                path: if path == "." {
                    "definition".into()
                } else {
                    path
                },
                message: e.into_inner().to_string(),
            }
        })
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// SHA-256 (hex) of the definition's canonical JSON: object keys sorted at
    /// every level, so the same definition always hashes the same however its
    /// configs were written.
    pub fn content_hash(&self) -> String {
        let value = serde_json::to_value(self).expect("a definition serialises");
        let canonical = serde_json::to_vec(&canonical(value)).expect("JSON serialises");
        hex::encode(Sha256::digest(canonical))
    }

    /// Node ids in an order where every node comes after its predecessors
    /// (Kahn's algorithm, ties broken by declaration order); `None` on a cycle.
    pub fn topological_order(&self) -> Option<Vec<String>> {
        let (order, _) = self.kahn();
        (order.len() == self.nodes.len()).then_some(order)
    }

    /// Kahn's algorithm: the ordered node ids it reaches, and the indices of the
    /// nodes it does not (on or behind a cycle).
    pub(crate) fn kahn(&self) -> (Vec<String>, Vec<usize>) {
        let next = self.successors();
        let mut indegree = vec![0usize; self.nodes.len()];
        for &t in next.iter().flatten() {
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
        let left = (0..self.nodes.len()).filter(|&i| indegree[i] > 0).collect();
        (order, left)
    }

    /// For each node (by position), the positions its edges lead to, one entry
    /// per edge; edges naming a missing node are left out. An id used twice
    /// resolves to its first node.
    pub(crate) fn successors(&self) -> Vec<Vec<usize>> {
        let index = self.index();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for e in &self.edges {
            if let (Some(&s), Some(&t)) =
                (index.get(e.source.as_str()), index.get(e.target.as_str()))
            {
                next[s].push(t);
            }
        }
        next
    }

    /// Node id to position (the first node with an id wins).
    pub(crate) fn index(&self) -> BTreeMap<&str, usize> {
        let mut index = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            index.entry(n.id.as_str()).or_insert(i);
        }
        index
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

    /// The body of every `foreach` node: the nodes reachable from its `item`
    /// branch, in topological order (declaration order when there is a cycle,
    /// which validation reports anyway). The body runs once per item; what
    /// follows the loop hangs off its `done` branch.
    pub fn loop_bodies(&self) -> BTreeMap<String, Vec<String>> {
        let order = self
            .topological_order()
            .unwrap_or_else(|| self.nodes.iter().map(|n| n.id.clone()).collect());
        let mut bodies = BTreeMap::new();
        for n in self.nodes.iter().filter(|n| n.node_type == FOREACH) {
            let mut body = std::collections::BTreeSet::new();
            let mut stack: Vec<&str> = self
                .edges
                .iter()
                .filter(|e| e.source == n.id && e.source_handle.as_deref() == Some(LOOP_ITEM))
                .map(|e| e.target.as_str())
                .collect();
            while let Some(id) = stack.pop() {
                if id != n.id && body.insert(id) {
                    stack.extend(
                        self.edges
                            .iter()
                            .filter(|e| e.source == id)
                            .map(|e| e.target.as_str()),
                    );
                }
            }
            let ordered = order
                .iter()
                .filter(|id| body.contains(id.as_str()))
                .cloned()
                .collect();
            bodies.insert(n.id.clone(), ordered);
        }
        bodies
    }
}

/// The `foreach` node type, and its two branches.
pub const FOREACH: &str = "foreach";
pub const LOOP_ITEM: &str = "item";
pub const LOOP_DONE: &str = "done";

/// The value with every object's keys sorted.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(v: Value) -> Definition {
        Definition::from_json(&v).unwrap()
    }

    #[test]
    fn order_and_sinks() {
        let d = def(json!({
            "nodes": [{"id": "b", "type": "passthrough"}, {"id": "a", "type": "set", "config": {"value": 1}}],
            "edges": [{"source": "a", "target": "b"}],
            "triggers": [{"kind": "MANUAL"}]
        }));
        assert_eq!(d.topological_order().unwrap(), vec!["a", "b"]);
        assert_eq!(d.sinks(), vec!["b"]);
    }

    #[test]
    fn malformed_definitions_name_the_path() {
        let e = Definition::from_json(&json!({"nodes": [{"id": "a", "type": "set"}, {"id": "b", "type": "set", "position": {"x": "left", "y": 0}}]})).unwrap_err();
        assert_eq!(e.path, "nodes[1].position.x");
        let e = Definition::from_json(&json!({"nodes": [], "bogus": 1})).unwrap_err();
        assert!(e.message.contains("bogus"), "{e}");
        let e = Definition::from_json(
            &json!({"triggers": [{"kind": "CRON", "expression": "* * * * *", "zone": "UTC"}]}),
        )
        .unwrap_err();
        assert!(e.message.contains("zone"), "{e}");
        let e = Definition::from_json(&json!({"triggers": [{"kind": "HOURLY"}]})).unwrap_err();
        assert_eq!(e.path, "triggers[0].kind");
    }

    #[test]
    fn the_content_hash_ignores_key_order_but_not_content() {
        let a = def(
            json!({"nodes": [{"id": "a", "type": "set", "config": {"value": {"x": 1, "y": 2}}}]}),
        );
        let b = def(
            json!({"nodes": [{"id": "a", "type": "set", "config": {"value": {"y": 2, "x": 1}}}]}),
        );
        let c = def(
            json!({"nodes": [{"id": "a", "type": "set", "config": {"value": {"y": 2, "x": 3}}}]}),
        );
        assert_eq!(a.content_hash(), b.content_hash());
        assert_ne!(a.content_hash(), c.content_hash());
        assert_eq!(a.content_hash().len(), 64);
    }
}
