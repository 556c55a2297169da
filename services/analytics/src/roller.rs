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
use crate::store::Store;

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
            // A short pause gathers the facts of a burst into one batch.
            tokio::time::sleep(Duration::from_millis(20)).await;
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
