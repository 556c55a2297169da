//! What the gateway reports at `/metrics`: rate, errors and duration (RED) per operation
//! and per subgraph, plan cache lookups, requests and streaming connections in flight.
//! Rate-limit refusals are counted where they are decided (`rate_limit`).
//!
//! Recorded through the `metrics` facade, so the embedding process chooses the exporter
//! (the `flowfleet` binary renders Prometheus text). Every name starts with
//! `flowfleet_gateway_`; durations are in seconds.
//!
//! Operation names come from clients, so they are not trusted as labels: only names of
//! operations that were admitted (parsed, validated and planned) are used, and at most
//! [`MAX_OPERATION_LABELS`] of them per process; the rest share the label `"(other)"`, and
//! anonymous operations `"(anonymous)"`. A client inventing names cannot grow `/metrics`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use smol_str::SmolStr;

/// Distinct operation names given their own label, per process.
pub const MAX_OPERATION_LABELS: usize = 500;

/// The operation-name labels handed out so far.
#[derive(Default)]
pub(crate) struct OperationLabels {
    known: Mutex<HashSet<SmolStr>>,
}

impl OperationLabels {
    /// The label for an admitted operation named `name`.
    pub fn label(&self, name: Option<&str>) -> SmolStr {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return SmolStr::new_static("(anonymous)");
        };
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(label) = known.get(name) {
            return label.clone();
        }
        if known.len() >= MAX_OPERATION_LABELS {
            return SmolStr::new_static("(other)");
        }
        let label = SmolStr::new(name);
        known.insert(label.clone());
        label
    }
}

/// How an operation ended, for `flowfleet_gateway_operations_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Executed without errors.
    Ok,
    /// Executed, with errors next to (possibly partial) data.
    Errors,
    /// Refused before execution (parse, validation, limits, variables).
    Refused,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Errors => "errors",
            Outcome::Refused => "refused",
        }
    }
}

/// Outcomes of a subgraph request as `flowfleet_gateway_subgraph_requests_total` labels them.
pub(crate) const SUBGRAPH_OUTCOMES: &[&str] =
    &["ok", "timeout", "circuit_open", "overloaded", "failed"];

/// Registers the gateway's series at zero, per subgraph of the supergraph where they
/// have one, so that an idle gateway shows them (a dashboard is not blank, and an
/// `increase()` alert sees the first event). Operation series appear with their first
/// operation: their labels are the operations' names.
pub(crate) fn register<'s>(subgraphs: impl Iterator<Item = &'s str>) {
    for name in [
        "flowfleet_gateway_requests_in_flight",
        "flowfleet_gateway_streaming_connections",
    ] {
        metrics::gauge!(name).increment(0.0);
    }
    for limit in crate::rate_limit::LimitKind::ALL {
        metrics::counter!("flowfleet_gateway_rate_limited_total", "limit" => limit.as_str())
            .increment(0);
    }
    metrics::counter!("flowfleet_gateway_rate_limit_fallbacks_total").increment(0);
    for result in ["registered", "hit"] {
        metrics::counter!("flowfleet_gateway_apq_total", "result" => result).increment(0);
    }
    for result in ["hit_local", "hit_shared", "miss"] {
        metrics::counter!("flowfleet_gateway_response_cache_lookups_total", "result" => result)
            .increment(0);
    }
    for result in ["hit", "miss"] {
        metrics::counter!("flowfleet_gateway_plan_cache_lookups_total", "result" => result)
            .increment(0);
    }
    metrics::counter!("flowfleet_gateway_response_cache_invalidations_total").increment(0);
    for subgraph in subgraphs {
        for outcome in SUBGRAPH_OUTCOMES {
            metrics::counter!(
                "flowfleet_gateway_subgraph_requests_total",
                "subgraph" => subgraph.to_string(),
                "outcome" => *outcome
            )
            .increment(0);
        }
    }
}

/// One client operation, executed or refused.
pub(crate) fn operation(label: &SmolStr, outcome: Outcome, elapsed: Duration) {
    let operation = label.to_string();
    metrics::counter!(
        "flowfleet_gateway_operations_total",
        "operation" => operation.clone(),
        "outcome" => outcome.as_str()
    )
    .increment(1);
    metrics::histogram!("flowfleet_gateway_operation_duration_seconds", "operation" => operation)
        .record(elapsed.as_secs_f64());
}

/// One request to a subgraph (not counted when it joined an identical one in flight).
pub(crate) fn subgraph_call(subgraph: &str, outcome: &'static str, elapsed: Duration) {
    metrics::counter!(
        "flowfleet_gateway_subgraph_requests_total",
        "subgraph" => subgraph.to_string(),
        "outcome" => outcome
    )
    .increment(1);
    metrics::histogram!(
        "flowfleet_gateway_subgraph_request_duration_seconds",
        "subgraph" => subgraph.to_string()
    )
    .record(elapsed.as_secs_f64());
}

/// A lookup in the plan cache: `hit` (either level) or `miss` (planned now).
pub(crate) fn plan_cache(hit: bool) {
    metrics::counter!(
        "flowfleet_gateway_plan_cache_lookups_total",
        "result" => if hit { "hit" } else { "miss" }
    )
    .increment(1);
}

/// Counts something in flight while it lives (requests, streaming connections).
pub(crate) struct InFlight(&'static str);

impl InFlight {
    pub fn requests() -> Self {
        Self::start("flowfleet_gateway_requests_in_flight")
    }

    pub fn streaming_connections() -> Self {
        Self::start("flowfleet_gateway_streaming_connections")
    }

    fn start(name: &'static str) -> Self {
        metrics::gauge!(name).increment(1.0);
        InFlight(name)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_names_cannot_grow_the_labels() {
        let labels = OperationLabels::default();
        assert_eq!(labels.label(None), "(anonymous)");
        assert_eq!(labels.label(Some("")), "(anonymous)");
        for i in 0..MAX_OPERATION_LABELS {
            assert_eq!(labels.label(Some(&format!("Op{i}"))), format!("Op{i}"));
        }
        assert_eq!(labels.label(Some("OneTooMany")), "(other)");
        // Names already known keep their label.
        assert_eq!(labels.label(Some("Op0")), "Op0");
    }
}
