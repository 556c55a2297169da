//! Every metric a dashboard or an alert names is one the fleet's processes expose (the
//! catalogue here) or one a standard exporter provides, and the tokenizer that finds those
//! names reads PromQL right: a typo in a query would otherwise chart or alert on nothing.

use std::collections::BTreeSet;

use crate::support::deploy::venv;
use crate::support::observability::{
    exporter_of, expressions, metric_names, metrics_used, unknown, EXPORTER_METRICS,
};

/// What the fleet's processes expose (histograms by their base name: they appear as
/// `_bucket`, `_sum` and `_count`).
const CATALOGUE: &[&str] = &[
    // Every process.
    "flowfleet_build_info",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
    "process_threads",
    // The gateway.
    "flowfleet_gateway_operations_total",
    "flowfleet_gateway_requests_in_flight",
    "flowfleet_gateway_streaming_connections",
    "flowfleet_gateway_subgraph_requests_total",
    "flowfleet_gateway_subgraph_retries_total",
    "flowfleet_gateway_subgraph_retry_budget_exhausted_total",
    "flowfleet_gateway_subgraph_ejections_total",
    "flowfleet_gateway_subgraph_rejected_total",
    "flowfleet_gateway_subgraph_replicas",
    "flowfleet_gateway_subgraph_replicas_available",
    "flowfleet_gateway_subgraph_breaker_state",
    "flowfleet_gateway_rate_limited_total",
    "flowfleet_gateway_rate_limit_fallbacks_total",
    "flowfleet_gateway_apq_total",
    "flowfleet_gateway_response_cache_lookups_total",
    "flowfleet_gateway_response_cache_invalidations_total",
    "flowfleet_gateway_plan_cache_lookups_total",
    // Databases, outbox, events, task queue, caches.
    "flowfleet_db_pool_connections",
    "flowfleet_db_pool_max_connections",
    "flowfleet_outbox_pending_events",
    "flowfleet_outbox_lag_seconds",
    "flowfleet_outbox_published_total",
    "flowfleet_events_consumed_total",
    "flowfleet_tasks_retried_total",
    "flowfleet_tasks_dead_lettered_total",
    "flowfleet_queue_backlog",
    "flowfleet_steps_queued",
    "flowfleet_cache_lookups_total",
    // Executions and workers.
    "flowfleet_executions_finished_total",
    "flowfleet_steps_total",
    "flowfleet_step_retries_total",
    "flowfleet_cron_fires_total",
    "flowfleet_cron_leader",
    "flowfleet_worker_concurrency",
    "flowfleet_worker_busy",
    // Notifications.
    "flowfleet_notification_deliveries_total",
];

const CATALOGUE_HISTOGRAMS: &[&str] = &[
    "flowfleet_gateway_operation_duration_seconds",
    "flowfleet_gateway_subgraph_request_duration_seconds",
    "flowfleet_subgraph_request_seconds",
    "flowfleet_step_duration_seconds",
    "flowfleet_notification_delivery_seconds",
];

fn catalogue() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = CATALOGUE.iter().map(|n| n.to_string()).collect();
    for histogram in CATALOGUE_HISTOGRAMS {
        for suffix in ["_bucket", "_sum", "_count"] {
            names.insert(format!("{histogram}{suffix}"));
        }
    }
    names
}

#[test]
fn the_tokenizer_finds_the_metric_names_of_an_expression() {
    let cases: &[(&str, &[&str])] = &[
        (
            "histogram_quantile(0.99, sum by (le) (rate(flowfleet_gateway_operation_duration_seconds_bucket[5m])))",
            &["flowfleet_gateway_operation_duration_seconds_bucket"],
        ),
        (
            r#"sum by (job, instance) (rate(process_cpu_seconds_total{job=~"flowfleet-.*", instance!="x"}[$__rate_interval]))"#,
            &["process_cpu_seconds_total"],
        ),
        (
            r#"up{job="flowfleet-gateway"} == 0 or absent(up{job="flowfleet-worker"} == 1)"#,
            &["up"],
        ),
        (
            "a / on (instance) group_left (version) b offset 5m > bool 1",
            &["a", "b"],
        ),
        (
            "sum(rate(x_total[5m] offset -1h30m)) without (le) unless ignoring(job) y",
            &["x_total", "y"],
        ),
        (
            "(sum(flowfleet_cron_leader) or vector(0)) < 1",
            &["flowfleet_cron_leader"],
        ),
        (
            r#"label_replace(foo, "dst", "$1 {not_this}", "src", '(.*)')"#,
            &["foo"],
        ),
        (
            "max_over_time(flowfleet_x[5m:1m]) * 1e3 + 0x1f - .5 + Inf",
            &["flowfleet_x"],
        ),
        ("SUM BY (le) (bar) AND baz", &["bar", "baz"]),
        (
            "count by (version) (flowfleet_build_info) # not_a_metric in a comment",
            &["flowfleet_build_info"],
        ),
        ("job:requests:rate5m > 2", &["job:requests:rate5m"]),
        (
            "topk(10, histogram_quantile(0.95, sum by (operation, le) (rate(m_bucket[${__rate_interval}]))))",
            &["m_bucket"],
        ),
        ("m_sum / m_count + m_sum", &["m_sum", "m_count"]),
        (
            "sum(increase(flowfleet_tasks_dead_lettered_total[$__range])) @ end()",
            &["flowfleet_tasks_dead_lettered_total"],
        ),
    ];
    for (expr, expected) in cases {
        assert_eq!(metric_names(expr), *expected, "in {expr}");
    }
}

/// Every name a dashboard or an alert uses is one the fleet exposes (the catalogue) or one
/// a standard exporter provides; and every exporter listed is used (the list stays exact).
#[test]
fn every_metric_used_is_catalogued_or_comes_from_an_exporter() {
    let Some(python) = venv() else { return };
    let unknown = unknown(&python, &catalogue());
    assert!(
        unknown.is_empty(),
        "metrics that no Flowfleet process exposes and no exporter provides (a typo, or a \
         metric to add to the catalogue and the code):\n{}",
        unknown
            .iter()
            .map(|(name, places)| format!("  {name}: {}", places.join("; ")))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let used = metrics_used(&python);
    for (prefix, exporter) in EXPORTER_METRICS {
        assert!(
            used.keys().any(|name| exporter_of(name) == Some(exporter)),
            "nothing uses {prefix} ({exporter}): drop it from EXPORTER_METRICS"
        );
    }
    for (place, expr) in expressions(&python) {
        assert!(
            !metric_names(&expr).is_empty(),
            "{place} selects no metric: {expr}"
        );
    }
    // Both sides are there: the fleet's own series and the exporters'.
    assert!(used.keys().any(|n| n.starts_with("flowfleet_")));
    assert!(used.keys().any(|n| n.starts_with("pg_")));
}
