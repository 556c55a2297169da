//! The execution service's and worker pool's Prometheus series, registered when each
//! starts (see `flowfleet_runtime::series` for why): executions and steps by outcome,
//! step durations and retries by node type, the cron scheduler, the pool's size and
//! the queued steps per priority.

use std::time::Duration;

use flowfleet_definitions::catalog::CATALOG;
use tokio_util::sync::CancellationToken;

use crate::domain::Status;
use crate::store::Store;

/// Step outcomes as `flowfleet_steps_total` labels them.
const STEP_OUTCOMES: &[&str] = &["SUCCEEDED", "FAILED", "TIMED_OUT"];

/// Priorities a step may have (`priority` is clamped to this range when dispatched).
pub const PRIORITIES: std::ops::RangeInclusive<i64> = 0..=9;

/// Registers the execution service's series.
pub fn register_service(cron_holder: Option<&str>) {
    metrics::describe_counter!(
        "flowfleet_executions_finished_total",
        "Executions that ended, by status"
    );
    for status in [
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
        Status::TimedOut,
    ] {
        metrics::counter!("flowfleet_executions_finished_total", "status" => status.as_str())
            .increment(0);
    }
    metrics::describe_gauge!(
        "flowfleet_steps_queued",
        "Steps waiting for a worker (queued, not yet claimed), by priority"
    );
    if let Some(holder) = cron_holder {
        metrics::describe_counter!("flowfleet_cron_fires_total", "Cron schedules fired");
        metrics::describe_gauge!(
            "flowfleet_cron_leader",
            "1 while this replica holds the cron lease and fires schedules, else 0"
        );
        metrics::counter!("flowfleet_cron_fires_total", "replica" => holder.to_string())
            .increment(0);
        metrics::gauge!("flowfleet_cron_leader").set(0.0);
    }
}

/// Registers the worker pool's series.
pub fn register_worker() {
    metrics::describe_counter!(
        "flowfleet_steps_total",
        "Step attempts that ended, by outcome"
    );
    for status in STEP_OUTCOMES {
        metrics::counter!("flowfleet_steps_total", "status" => *status).increment(0);
    }
    metrics::describe_counter!(
        "flowfleet_step_retries_total",
        "Failed step attempts given another attempt, by node type"
    );
    for node in CATALOG {
        metrics::counter!("flowfleet_step_retries_total", "node_type" => node.name).increment(0);
    }
    metrics::describe_histogram!(
        "flowfleet_step_duration_seconds",
        metrics::Unit::Seconds,
        "How long a step attempt ran on a worker, by node type"
    );
    metrics::describe_gauge!("flowfleet_worker_concurrency", "Slots the worker pool runs");
    metrics::describe_gauge!("flowfleet_worker_busy", "Slots running a step now");
    metrics::describe_gauge!(
        "flowfleet_queue_backlog",
        "Step tasks ready in the queue and not yet delivered"
    );
    metrics::gauge!("flowfleet_worker_concurrency").set(0.0);
    metrics::gauge!("flowfleet_worker_busy").set(0.0);
    metrics::gauge!("flowfleet_queue_backlog").set(0.0);
}

/// Samples the queued steps per priority into `flowfleet_steps_queued` until `shutdown`.
/// Every replica samples the one table, so the gauge is the same on each: dashboards
/// take `max` over replicas, not `sum`.
pub async fn sample_queued_steps(store: Store, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.queued_by_priority().await {
            Ok(counts) => {
                for priority in PRIORITIES {
                    let n = counts
                        .iter()
                        .find(|(p, _)| *p == priority)
                        .map_or(0, |(_, n)| *n);
                    metrics::gauge!("flowfleet_steps_queued", "priority" => priority.to_string())
                        .set(n as f64);
                }
            }
            Err(e) => tracing::debug!(error = %e.message, "could not count the queued steps"),
        }
    }
}
