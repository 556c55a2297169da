//! The node-type catalog: the one list of node types, shared by the workflow
//! service (which validates definitions against it and serves it to editors)
//! and the execution engine (which implements every type listed here).

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeType {
    pub name: &'static str,
    pub description: &'static str,
    /// JSON Schema of the node's `config`.
    pub config_schema: &'static str,
}

pub const SET: &str = "set";
pub const PASSTHROUGH: &str = "passthrough";

pub const CATALOG: &[NodeType] = &[
    NodeType {
        name: SET,
        description: "Outputs `config.value`. With `config.merge: true` and an object input and value, outputs the input with the value's keys set.",
        config_schema: r#"{"type":"object","required":["value"],"properties":{"value":{},"merge":{"type":"boolean"}},"additionalProperties":false}"#,
    },
    NodeType {
        name: PASSTHROUGH,
        description: "Outputs its input unchanged (the merged outputs of its predecessors, or the execution input for a first node).",
        config_schema: r#"{"type":"object","additionalProperties":false}"#,
    },
];

pub fn find(name: &str) -> Option<&'static NodeType> {
    CATALOG.iter().find(|t| t.name == name)
}
