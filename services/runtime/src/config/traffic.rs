//! How the gateway treats subgraphs over the network (`[gateway.traffic]`): replicas and
//! how requests are spread over them, health checks, outlier ejection, retries, circuit
//! breakers and bulkheads. The defaults are the seed's: a breaker opens after 5 failed
//! fetches in a row, stays open 60 s and closes after 3 successful probes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TrafficSettings {
    /// `round_robin`, `least_outstanding`, `power_of_two_choices`, `weighted` or
    /// `consistent_hash:<header>`.
    pub balance: String,
    /// Tries of one fetch in all (1: no retries). Only fetches that surely did not run,
    /// or are idempotent (queries, entity fetches), are retried.
    pub retry_attempts: u32,
    /// Retries may add this share of a subgraph's requests, plus `retry_min_per_second`.
    pub retry_budget_ratio: f64,
    pub retry_min_per_second: u32,
    /// Failed fetches in a row that open a subgraph's breaker (0: no breaker).
    pub breaker_failures: u32,
    pub breaker_open_ms: u64,
    /// Fetches let through a half-open breaker; it closes when all of them succeed.
    pub breaker_probes: u32,
    /// Fetches to one subgraph at once, and waiting for a turn (0: no bound).
    pub max_concurrent: usize,
    pub max_queued: usize,
    /// Active health checks of every replica (`{ __typename }`); 0 switches them off.
    pub health_check_interval_ms: u64,
    pub health_check_timeout_ms: u64,
    /// Failed checks in a row before a replica gets no traffic, passed checks to return.
    pub unhealthy_after: u32,
    pub healthy_after: u32,
    /// Failed requests in a row that eject a replica (0: no ejection), for
    /// `ejection_ms`, doubling on each ejection up to `max_ejection_ms`.
    pub eject_after_failures: u32,
    pub ejection_ms: u64,
    pub max_ejection_ms: u64,
    /// Per subgraph: replicas and what differs (`[gateway.traffic.subgraphs.<name>]`).
    pub subgraphs: BTreeMap<String, SubgraphTrafficSettings>,
}

impl Default for TrafficSettings {
    fn default() -> Self {
        TrafficSettings {
            balance: "round_robin".into(),
            retry_attempts: 3,
            retry_budget_ratio: 0.2,
            retry_min_per_second: 10,
            breaker_failures: 5,
            breaker_open_ms: 60_000,
            breaker_probes: 3,
            max_concurrent: 1024,
            max_queued: 4096,
            health_check_interval_ms: 5_000,
            health_check_timeout_ms: 1_000,
            unhealthy_after: 2,
            healthy_after: 1,
            eject_after_failures: 3,
            ejection_ms: 10_000,
            max_ejection_ms: 300_000,
            subgraphs: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct SubgraphTrafficSettings {
    /// The replicas' GraphQL endpoints; empty: `gateway.subgraph_urls` or the service's
    /// own URL.
    pub urls: Vec<String>,
    /// One weight per URL (for `weighted` and `consistent_hash`); empty: all 1.
    pub weights: Vec<u32>,
    /// Overrides `gateway.traffic.balance` for this subgraph.
    pub balance: String,
    /// Overrides `gateway.subgraph_timeout_ms` (0: not overridden).
    pub timeout_ms: u64,
    /// Override the bulkhead (0: not overridden).
    pub max_concurrent: usize,
    pub max_queued: usize,
}
