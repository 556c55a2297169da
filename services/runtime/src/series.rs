//! The fleet's own Prometheus series that every process shares: build information,
//! process figures, connection pools, the outbox, event consumers and the task queue.
//!
//! Why register at start-up: a series that appears only after its first event leaves
//! a dashboard blank and an alert such as "dead letters increased" unable to see the
//! first one (`increase` needs a sample before the change). So each owner registers its
//! series with their known label values at zero when it starts ([`register_outbox`],
//! [`register_queue`], ...); a metric whose labels are only known later (a subgraph's
//! name, an operation's) appears with its first use.
//!
//! The dashboards and alerts under `docker/` use these names; `tests/metrics.rs` starts
//! the fleet and fails when they name a series no process exposes.

use std::sync::OnceLock;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::db::Db;

/// How often the sampled gauges (pools, outbox) are refreshed: finer than a scrape.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The process collector, described once; [`collect_process`] refreshes it per scrape.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let collector = metrics_process::Collector::default();
        collector.describe();
        collector
    })
}

/// Registers what every process exposes: `flowfleet_build_info` and the `process_*`
/// series. Called once the recorder is installed.
pub(crate) fn register_process() {
    metrics::describe_gauge!(
        "flowfleet_build_info",
        "Always 1; the version label says which build runs"
    );
    metrics::gauge!("flowfleet_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    process_collector().collect();
}

/// Refreshes the `process_*` series (CPU, memory, file descriptors, threads).
pub(crate) fn collect_process() {
    process_collector().collect();
}

/// Samples `db`'s connection pool into `flowfleet_db_pool_*` until `shutdown`.
pub async fn sample_pool(db: Db, shutdown: CancellationToken) {
    metrics::describe_gauge!(
        "flowfleet_db_pool_connections",
        "Connections of a database pool, by state (idle, busy)"
    );
    metrics::describe_gauge!(
        "flowfleet_db_pool_max_connections",
        "The most connections a database pool opens"
    );
    let schema = db.schema().to_string();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let pool = db.pool();
        let open = pool.size() as f64;
        let idle = pool.num_idle() as f64;
        metrics::gauge!("flowfleet_db_pool_connections", "schema" => schema.clone(), "state" => "idle")
            .set(idle);
        metrics::gauge!("flowfleet_db_pool_connections", "schema" => schema.clone(), "state" => "busy")
            .set((open - idle).max(0.0));
        metrics::gauge!("flowfleet_db_pool_max_connections", "schema" => schema.clone())
            .set(pool.options().get_max_connections() as f64);
    }
}

/// Registers the outbox series of the service whose database schema is `schema`.
pub fn register_outbox(schema: &str) {
    metrics::describe_gauge!(
        "flowfleet_outbox_pending_events",
        "Events recorded in an outbox and not yet published"
    );
    metrics::describe_gauge!(
        "flowfleet_outbox_lag_seconds",
        "Age of the oldest unpublished outbox event (0 when none waits)"
    );
    metrics::describe_counter!(
        "flowfleet_outbox_published_total",
        "Outbox events published to the bus"
    );
    let schema = schema.to_string();
    metrics::gauge!("flowfleet_outbox_pending_events", "schema" => schema.clone()).set(0.0);
    metrics::gauge!("flowfleet_outbox_lag_seconds", "schema" => schema.clone()).set(0.0);
    metrics::counter!("flowfleet_outbox_published_total", "schema" => schema).increment(0);
}

/// Event handling outcomes, for [`consumed`].
#[derive(Debug, Clone, Copy)]
pub enum Handled {
    Handled,
    Failed,
}

impl Handled {
    fn as_str(self) -> &'static str {
        match self {
            Handled::Handled => "handled",
            Handled::Failed => "failed",
        }
    }
}

/// Registers the series of the event consumer reading `queue`.
pub fn register_consumer(queue: &str) {
    metrics::describe_counter!(
        "flowfleet_events_consumed_total",
        "Events a consumer handled or failed to handle (a failure is requeued)"
    );
    for outcome in [Handled::Handled, Handled::Failed] {
        consumed(queue, outcome, 0);
    }
}

/// Counts `n` events of the consumer reading `queue`.
pub fn consumed(queue: &str, outcome: Handled, n: u64) {
    metrics::counter!(
        "flowfleet_events_consumed_total",
        "consumer" => queue.to_string(),
        "outcome" => outcome.as_str()
    )
    .increment(n);
}

/// Registers the retry and dead-letter counters of the task queue `queue`.
pub fn register_queue(queue: &str) {
    metrics::describe_counter!(
        "flowfleet_tasks_retried_total",
        "Tasks given another attempt through the queue's delayed redelivery"
    );
    metrics::describe_counter!(
        "flowfleet_tasks_dead_lettered_total",
        "Tasks moved to their queue's dead-letter queue"
    );
    metrics::counter!("flowfleet_tasks_retried_total", "queue" => queue.to_string()).increment(0);
    metrics::counter!("flowfleet_tasks_dead_lettered_total", "queue" => queue.to_string())
        .increment(0);
}

/// Registers the hit and miss counters of the cache named `cache`.
pub fn register_cache(cache: &'static str) {
    metrics::describe_counter!(
        "flowfleet_cache_lookups_total",
        "Lookups in a shared cache, by result (hit, miss)"
    );
    cache_lookup(cache, true, 0);
    cache_lookup(cache, false, 0);
}

/// Counts `n` lookups in the cache named `cache`.
pub fn cache_lookup(cache: &'static str, hit: bool, n: u64) {
    metrics::counter!(
        "flowfleet_cache_lookups_total",
        "cache" => cache,
        "result" => if hit { "hit" } else { "miss" }
    )
    .increment(n);
}
