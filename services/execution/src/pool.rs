//! The worker pool: one queue consumer feeding up to `max_concurrency` step tasks at
//! once. Concurrency starts at `min_concurrency`; a scaler adds a slot each tick
//! while tasks wait (a delivery waiting for a slot, or a backlog on the queue) and
//! takes one away each tick the pool has idle slots and nothing waits.
//!
//! Shutdown stops taking tasks and gives in-flight ones `shutdown_grace_ms` to
//! finish; the rest are stopped, their steps released and their tasks requeued, so
//! another worker takes them at once.
//!
//! Every `sample_interval_ms` the pool publishes `worker.sampled` on the event bus: its
//! slot time and busy time (integrated over the scaler's ticks), the steps it finished
//! and the step queue's backlog. Each pool reports for itself, so the figures add up
//! across any number of workers, and the in-process pool of embedded mode reports the
//! same way. A lost sample only leaves a gap.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flowfleet_runtime::events::{Event, EventBus};
use flowfleet_runtime::queue::TaskQueue;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dispatch::STEP_QUEUE;
use crate::worker::Worker;

const SCALE_EVERY: Duration = Duration::from_millis(250);

/// The slots and what the scaler watches.
struct Slots {
    permits: Arc<Semaphore>,
    size: AtomicUsize,
    waiting: AtomicBool,
    min: usize,
    max: usize,
}

impl Slots {
    fn busy(&self) -> usize {
        self.size
            .load(Ordering::SeqCst)
            .saturating_sub(self.permits.available_permits())
    }

    /// One step of scaling; returns the new size.
    fn scale(&self, backlog: u64) -> usize {
        let size = self.size.load(Ordering::SeqCst);
        let waiting = self.waiting.load(Ordering::SeqCst) || backlog > 0;
        if waiting && self.busy() >= size && size < self.max {
            self.permits.add_permits(1);
            self.size.store(size + 1, Ordering::SeqCst);
            return size + 1;
        }
        if !waiting && size > self.min && self.permits.available_permits() > 0 {
            if let Ok(p) = self.permits.try_acquire() {
                p.forget();
                self.size.store(size - 1, Ordering::SeqCst);
                return size - 1;
            }
        }
        size
    }
}

/// What the pool did since its last sample.
#[derive(Default)]
struct Usage {
    slot_ms: AtomicU64,
    busy_ms: AtomicU64,
    steps: AtomicU64,
    backlog_max: AtomicU64,
}

/// The kind of the pool's periodic report.
pub const WORKER_SAMPLED: &str = "worker.sampled";

/// Runs the pool until `shutdown`, then drains it.
pub async fn run(
    worker: Arc<Worker>,
    queue: Arc<dyn TaskQueue>,
    bus: Arc<dyn EventBus>,
    shutdown: CancellationToken,
) {
    crate::series::register_worker();
    let settings = worker.settings.clone();
    let max = settings.max_concurrency.max(1);
    let min = settings.min_concurrency.clamp(1, max);
    let slots = Arc::new(Slots {
        permits: Arc::new(Semaphore::new(min)),
        size: AtomicUsize::new(min),
        waiting: AtomicBool::new(false),
        min,
        max,
    });
    let mut consumer = loop {
        match queue
            .consume(STEP_QUEUE, max.min(u16::MAX as usize) as u16)
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot consume step tasks yet; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let usage = Arc::new(Usage::default());
    let scaler = tokio::spawn(scale(
        slots.clone(),
        queue.clone(),
        usage.clone(),
        Reporter {
            bus,
            worker: worker.clone(),
        },
        shutdown.clone(),
    ));
    let mut running = JoinSet::new();
    // Cancelled when the shutdown grace runs out: in-flight steps stop and go back.
    let give_back = CancellationToken::new();
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => break,
            d = consumer.next() => match d {
                Some(d) => d,
                None => break,
            },
        };
        slots.waiting.store(true, Ordering::SeqCst);
        let permit = tokio::select! {
            _ = shutdown.cancelled() => { drop(delivery); break; }
            p = slots.permits.clone().acquire_owned() => p,
        };
        slots.waiting.store(false, Ordering::SeqCst);
        let Ok(permit) = permit else { break };
        let w = worker.clone();
        let give_back = give_back.clone();
        let usage = usage.clone();
        running.spawn(async move {
            w.handle(delivery, &give_back).await;
            usage.steps.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
        // Reap finished tasks so the set does not grow.
        while running.try_join_next().is_some() {}
    }
    drop(consumer);
    scaler.abort();
    let grace = Duration::from_millis(settings.shutdown_grace_ms);
    let drained = tokio::time::timeout(grace, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            in_flight = running.len(),
            "shutdown grace elapsed; returning unfinished step tasks to the queue"
        );
        give_back.cancel();
        let returned = tokio::time::timeout(Duration::from_secs(5), async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if returned.is_err() {
            running.shutdown().await;
        }
    }
}

/// Publishes the pool's samples.
struct Reporter {
    bus: Arc<dyn EventBus>,
    worker: Arc<Worker>,
}

impl Reporter {
    async fn report(&self, usage: &Usage, interval_ms: i64, slots: usize, backlog: u64) {
        let payload = serde_json::json!({
            "workerId": self.worker.name,
            "atMs": self.worker.clock.now_ms(),
            "intervalMs": interval_ms,
            "slots": slots,
            "slotMs": usage.slot_ms.swap(0, Ordering::Relaxed),
            "busyMs": usage.busy_ms.swap(0, Ordering::Relaxed),
            "stepsFinished": usage.steps.swap(0, Ordering::Relaxed),
            "backlog": backlog,
            "backlogMax": usage.backlog_max.swap(0, Ordering::Relaxed),
        });
        let event = Event::new(WORKER_SAMPLED, self.worker.clock.now_ms(), payload);
        if let Err(e) = self.bus.publish(&event).await {
            tracing::debug!(error = %e, "a worker sample was not published");
        }
    }
}

async fn scale(
    slots: Arc<Slots>,
    queue: Arc<dyn TaskQueue>,
    usage: Arc<Usage>,
    reporter: Reporter,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(SCALE_EVERY);
    let every = reporter.worker.settings.sample_interval_ms.max(1) as i64;
    let mut since = reporter.worker.clock.now_ms();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let backlog = queue.depth(STEP_QUEUE).await.unwrap_or(0);
        let size = slots.scale(backlog);
        let tick_ms = SCALE_EVERY.as_millis() as u64;
        usage
            .slot_ms
            .fetch_add(size as u64 * tick_ms, Ordering::Relaxed);
        usage
            .busy_ms
            .fetch_add(slots.busy() as u64 * tick_ms, Ordering::Relaxed);
        usage.backlog_max.fetch_max(backlog, Ordering::Relaxed);
        metrics::gauge!("flowfleet_worker_concurrency").set(size as f64);
        metrics::gauge!("flowfleet_worker_busy").set(slots.busy() as f64);
        metrics::gauge!("flowfleet_queue_backlog").set(backlog as f64);
        let now = reporter.worker.clock.now_ms();
        if now - since >= every {
            reporter.report(&usage, now - since, size, backlog).await;
            since = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(min: usize, max: usize) -> Slots {
        Slots {
            permits: Arc::new(Semaphore::new(min)),
            size: AtomicUsize::new(min),
            waiting: AtomicBool::new(false),
            min,
            max,
        }
    }

    #[test]
    fn grows_while_tasks_wait_up_to_max_and_shrinks_when_idle_down_to_min() {
        let s = slots(1, 3);
        // Idle at the minimum: stays.
        assert_eq!(s.scale(0), 1);
        // Every slot busy and a backlog: one more each tick, up to max.
        let held: Vec<_> = (0..1).map(|_| s.permits.try_acquire().unwrap()).collect();
        assert_eq!(s.scale(10), 2);
        let held2 = s.permits.try_acquire().unwrap();
        assert_eq!(s.scale(10), 3);
        let held3 = s.permits.try_acquire().unwrap();
        assert_eq!(s.scale(10), 3, "never past max");
        // Not saturated (a slot free): no growth even with a backlog.
        drop(held3);
        assert_eq!(s.scale(0), 2, "an idle slot goes when nothing waits");
        drop(held2);
        drop(held);
        assert_eq!(s.scale(0), 1);
        assert_eq!(s.scale(0), 1, "never below min");
        // A delivery waiting for a slot counts as backlog.
        let _h = s.permits.try_acquire().unwrap();
        s.waiting.store(true, Ordering::SeqCst);
        assert_eq!(s.scale(0), 2);
    }
}
