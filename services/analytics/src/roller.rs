//! The roller: folds recorded facts into rollups, in batches, soon after they arrive.
//!
//! It wakes when the consumer records a fact (`nudge`) or every `roll_interval_ms`
//! (facts recorded by another replica's consumer, or left by a roller that stopped),
//! and rolls until nothing waits. Replicas may all run one: on PostgreSQL they take
//! turns on an advisory lock (see `store::rollups`).

use std::sync::Arc;
use std::time::Duration;

use flowfleet_runtime::clock::Clock;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::buckets::DAY_MS;
use crate::store::retention::Retention;
use crate::store::Store;

/// How long the roller waits after a nudge before rolling, to take a burst's facts at once.
const GATHER: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct Roller {
    wake: Arc<Notify>,
}

impl Default for Roller {
    fn default() -> Self {
        Roller {
            wake: Arc::new(Notify::new()),
        }
    }
}

pub struct RollerSettings {
    pub interval: Duration,
    pub batch: i64,
    pub minute_days: i64,
}

impl Roller {
    /// New facts wait: roll soon.
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Rolls until `shutdown`.
    pub async fn run(
        self,
        store: Store,
        clock: Arc<dyn Clock>,
        settings: RollerSettings,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(settings.interval) => {}
            }
            // A pause gathers the facts of a burst into one batch: under a steady stream
            // of steps a roll per fact would cost the engine's machine more than the
            // quarter of a second of freshness it buys.
            tokio::time::sleep(GATHER).await;
            loop {
                let minutes_since = clock.now_ms() - settings.minute_days * DAY_MS;
                match store.roll(settings.batch, minutes_since).await {
                    Ok(0) => break,
                    Ok(n) => tracing::debug!(facts = n, "rolled up"),
                    Err(e) => {
                        tracing::warn!(error = ?e, "rolling up facts failed; retrying soon");
                        break;
                    }
                }
                if shutdown.is_cancelled() {
                    return;
                }
            }
        }
    }
}

/// Runs the retention cleanup once per `interval` across replicas, until `shutdown`: each
/// period is claimed by the first replica to try.
pub async fn clean_up_periodically(
    store: Store,
    clock: Arc<dyn Clock>,
    retention: Retention,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let period_ms = (interval.as_millis() as i64).max(1);
    loop {
        let now = clock.now_ms();
        let period = now.div_euclid(period_ms);
        match store.claim_cleanup(period, now).await {
            Ok(true) => match store.clean_up(period, retention, now).await {
                Ok(deleted) => tracing::info!(deleted, "analytics retention cleanup done"),
                Err(e) => tracing::warn!(error = ?e, "analytics retention cleanup failed"),
            },
            Ok(false) => {}
            Err(e) => tracing::warn!(error = ?e, "claiming the analytics cleanup failed"),
        }
        // Wakes at the next period's start.
        let wait = (period + 1) * period_ms - clock.now_ms();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(wait.clamp(1_000, period_ms) as u64)) => {}
        }
    }
}

/// Rebuilds the rollups from `from` on out of the facts (`flowfleet analytics rebuild`):
/// drops them, queues the facts again and rolls them, calling `progress(done, total)` as it
/// goes. Refused when facts from `from` are no longer kept.
pub async fn rebuild(
    store: &Store,
    from: i64,
    retention: Retention,
    batch: i64,
    now: i64,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, RebuildError> {
    let horizon = Store::facts_horizon(retention, now);
    if crate::domain::buckets::Grain::Day.start(from) < horizon {
        return Err(RebuildError::BeforeHorizon {
            horizon: flowfleet_runtime::clock::to_datetime(horizon).to_rfc3339(),
            days: retention.fact_days,
        });
    }
    let total = store.unroll_since(from).await? as u64;
    progress(0, total);
    let minutes_since = now - retention.minute_days * DAY_MS;
    let mut done = 0;
    while store.roll(batch, minutes_since).await? > 0 {
        let left = store.unrolled().await? as u64;
        done = total.saturating_sub(left);
        progress(done, total);
    }
    progress(total, total);
    Ok(done.max(total))
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(
        "facts are kept {days} days: rebuild from {horizon} or later (rollups before that \
         have no facts left to be rebuilt from)"
    )]
    BeforeHorizon { horizon: String, days: i64 },
    #[error("the analytics database failed: {0:?}")]
    Store(flowfleet_runtime::error::ApiError),
}

impl From<flowfleet_runtime::error::ApiError> for RebuildError {
    fn from(e: flowfleet_runtime::error::ApiError) -> Self {
        RebuildError::Store(e)
    }
}
