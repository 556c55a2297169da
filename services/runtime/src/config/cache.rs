//! The gateway's response cache (`[gateway.response_cache]`): which subgraph answers may
//! be kept, for how long and for whom, and where.
//!
//! The defaults keep what is safe to keep: the node catalog (the same for everyone, five
//! minutes) and a workflow's own fields as the workflow service answers them (per
//! credential, thirty seconds; its events evict it at once).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ResponseCacheSettings {
    /// `false` switches the cache off.
    pub enabled: bool,
    /// Answers kept in each gateway process.
    pub max_entries: u64,
    /// Where answers are shared: `auto` (Redis when the gateway runs distributed with
    /// `redis.url` set, this process only otherwise), `local` or `redis`.
    pub store: String,
    /// How long Redis may take before the fetch goes to the subgraph instead.
    pub store_timeout_ms: u64,
    /// `Type` or `Type.field` → its policy. A fetch is kept only when every field it
    /// selects has one (its own or its type's); the shortest age and the narrowest scope
    /// win.
    pub policies: BTreeMap<String, CachePolicySettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CachePolicySettings {
    pub max_age_secs: u64,
    /// `public` (one answer for everyone) or `private` (one per credential).
    pub scope: String,
}

impl Default for CachePolicySettings {
    fn default() -> Self {
        CachePolicySettings {
            max_age_secs: 30,
            scope: "private".into(),
        }
    }
}

impl Default for ResponseCacheSettings {
    fn default() -> Self {
        let public = |secs| CachePolicySettings {
            max_age_secs: secs,
            scope: "public".into(),
        };
        let mut policies: BTreeMap<String, CachePolicySettings> =
            ["Query.nodeTypes", "NodeTypeInfo", "HandlesFromConfig"]
                .into_iter()
                .map(|name| (name.to_string(), public(300)))
                .collect();
        for field in [
            "Query.workflow",
            "Workflow.id",
            "Workflow.name",
            "Workflow.description",
            "Workflow.tags",
            "Workflow.status",
            "Workflow.definition",
            "Workflow.revision",
            "Workflow.version",
            "Workflow.createdAt",
            "Workflow.updatedAt",
        ] {
            policies.insert(field.to_string(), CachePolicySettings::default());
        }
        ResponseCacheSettings {
            enabled: true,
            max_entries: 10_000,
            store: "auto".into(),
            store_timeout_ms: 50,
            policies,
        }
    }
}
