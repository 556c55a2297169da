//! Live events for subscriptions: one bus listener per process, fanned out in memory.
//!
//! Why one listener: a process may serve thousands of subscriptions; each opening a broker
//! queue would cost the broker a queue per subscriber. Instead the process listens once
//! ([`EventBus::listen`]: every replica gets every event) and hands each event to the
//! resolvers that asked, through a bounded broadcast channel. A subscriber that falls
//! behind learns how many events it missed ([`LiveEvent::Missed`]) instead of missing
//! them silently. The listener exists only while someone subscribes (and half a minute
//! after the last one leaves), so a process nobody watches adds nothing to the bus's work.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt as _};
use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::{Event, EventBus};

/// What a live subscriber receives.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    Event(Arc<Event>),
    /// This many events were dropped because the subscriber read too slowly.
    Missed(u64),
}

/// The ids of the last events seen, to drop repeats.
#[derive(Default)]
struct RecentIds {
    order: std::collections::VecDeque<uuid::Uuid>,
    seen: std::collections::HashSet<uuid::Uuid>,
}

impl RecentIds {
    const KEPT: usize = 4096;

    /// Whether `id` is new (and remembers it).
    fn first_sighting(&mut self, id: uuid::Uuid) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::KEPT {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

/// The process's live event feed.
#[derive(Clone)]
pub struct LiveEvents {
    sender: broadcast::Sender<Arc<Event>>,
    /// Woken when a subscriber arrives, so an idle feed starts listening.
    demand: Arc<Notify>,
    /// Whether the bus listener is bound (events published from then on arrive).
    listening: watch::Receiver<bool>,
}

/// How long a feed nobody reads keeps listening before it lets its bus queue go.
const IDLE_BEFORE_STOPPING: Duration = Duration::from_secs(30);

/// How long a new subscriber waits for the feed to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The feed could not start listening in time (the broker is unreachable).
#[derive(Debug, thiserror::Error)]
#[error("live events are unavailable right now; try again in a moment")]
pub struct Unavailable;

impl LiveEvents {
    /// A feed of the events matching `bindings`, and the task that fills it (run it
    /// until `shutdown`). The task listens to the bus only while someone subscribes:
    /// a process nobody watches costs the bus and the engine nothing.
    pub fn start(
        bus: Arc<dyn EventBus>,
        bindings: &[&str],
        capacity: usize,
        shutdown: CancellationToken,
    ) -> (Self, futures::future::BoxFuture<'static, ()>) {
        let (sender, _) = broadcast::channel(capacity.max(16));
        let (listening_tx, listening) = watch::channel(false);
        let demand = Arc::new(Notify::new());
        let feed = sender.clone();
        let wake = demand.clone();
        let bindings: Vec<String> = bindings.iter().map(|b| b.to_string()).collect();
        let task = async move {
            let patterns: Vec<&str> = bindings.iter().map(String::as_str).collect();
            let mut recent = RecentIds::default();
            loop {
                // Idle until someone subscribes.
                while feed.receiver_count() == 0 {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = wake.notified() => {}
                    }
                }
                let Some(mut listener) = listen(&*bus, &patterns, &shutdown).await else {
                    return;
                };
                let _ = listening_tx.send(true);
                let mut idle_since: Option<tokio::time::Instant> = None;
                loop {
                    let delivery = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        delivery = listener.next() => delivery,
                        _ = tokio::time::sleep(IDLE_BEFORE_STOPPING / 3) => {
                            if feed.receiver_count() > 0 {
                                idle_since = None;
                                continue;
                            }
                            let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
                            if since.elapsed() < IDLE_BEFORE_STOPPING {
                                continue;
                            }
                            // Stopping: say so first, then look again. A subscriber who
                            // came meanwhile saw `true` before counting itself, or will
                            // wait for the next listener; either way it misses nothing.
                            let _ = listening_tx.send(false);
                            if feed.receiver_count() > 0 {
                                let _ = listening_tx.send(true);
                                idle_since = None;
                                continue;
                            }
                            break;
                        }
                    };
                    let Some(delivery) = delivery else { return };
                    let event = Arc::new(delivery.event.clone());
                    let _ = delivery.ack().await;
                    // Delivery is at least once (two relays may both publish a row): a
                    // repeat of a recent event is not news.
                    if !recent.first_sighting(event.id) {
                        continue;
                    }
                    // No receivers is fine: nobody is watching right now.
                    let _ = feed.send(event);
                }
            }
        };
        (
            Self {
                sender,
                demand,
                listening,
            },
            Box::pin(task),
        )
    }

    /// Events from now on, with a marker where some were missed. Returns once the feed
    /// listens to the bus, so that whatever happens after this call is delivered.
    pub async fn subscribe(&self) -> Result<BoxStream<'static, LiveEvent>, Unavailable> {
        // Counted first, then waiting: the listener cannot stop unseen in between.
        let receiver = self.sender.subscribe();
        self.demand.notify_one();
        let mut listening = self.listening.clone();
        tokio::time::timeout(START_TIMEOUT, listening.wait_for(|on| *on))
            .await
            .map_err(|_| Unavailable)?
            .map_err(|_| Unavailable)?;
        Ok(
            futures::stream::unfold(receiver, |mut receiver| async move {
                match receiver.recv().await {
                    Ok(event) => Some((LiveEvent::Event(event), receiver)),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        Some((LiveEvent::Missed(missed), receiver))
                    }
                    Err(broadcast::error::RecvError::Closed) => None,
                }
            })
            .boxed(),
        )
    }
}

/// Binds a listener, retrying while the bus is unreachable; `None` on shutdown.
async fn listen(
    bus: &dyn EventBus,
    patterns: &[&str],
    shutdown: &CancellationToken,
) -> Option<Box<dyn super::Subscription>> {
    let mut wait = Duration::from_millis(100);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            listened = bus.listen(patterns) => match listened {
                Ok(listener) => return Some(listener),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen to live events yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::memory::MemoryBus;

    #[tokio::test]
    async fn every_subscriber_gets_every_event_and_a_slow_one_hears_what_it_missed() {
        let bus = Arc::new(MemoryBus::new());
        let shutdown = CancellationToken::new();
        let (live, task) = LiveEvents::start(bus.clone(), &["execution.#"], 16, shutdown.clone());
        let running = tokio::spawn(task);
        tokio::task::yield_now().await;
        assert_eq!(
            bus.live_queues(),
            0,
            "nobody subscribed: no queue on the bus"
        );
        let mut fast = live.subscribe().await.expect("listening");
        let mut slow = live.subscribe().await.expect("listening");
        assert_eq!(bus.live_queues(), 1, "one listener for the process");
        // Subscribing returned once the listener was bound: this event arrives.
        let probe = Event::new("execution.probe", 0, serde_json::json!({}));
        bus.publish(&probe).await.expect("publish");
        let first = fast.next().await.expect("the probe");
        assert!(matches!(first, LiveEvent::Event(e) if e.kind == "execution.probe"));
        // A repeat delivery of the same event (at-least-once) is dropped.
        let repeat = Event::new("execution.repeat", 0, serde_json::json!({}));
        bus.publish(&repeat).await.expect("publish");
        bus.publish(&repeat).await.expect("publish");
        assert!(matches!(fast.next().await, Some(LiveEvent::Event(e)) if e.id == repeat.id));
        // Not bound: never delivered.
        bus.publish(&Event::new("workflow.updated", 0, serde_json::json!({})))
            .await
            .expect("publish");
        // The fast reader reads each event as it comes; the slow one reads nothing.
        let mut received = 0;
        for i in 0..40 {
            bus.publish(&Event::new(
                "execution.step",
                i,
                serde_json::json!({"i": i}),
            ))
            .await
            .expect("publish");
            match fast.next().await.expect("open") {
                LiveEvent::Event(e) if e.kind == "execution.step" => {
                    assert_eq!(e.occurred_at_ms, received, "in order, none lost");
                    received += 1;
                }
                // The repeat's second copy, or the unbound kind, would land here.
                LiveEvent::Event(e) => panic!("unexpected {} {}", e.kind, e.id),
                LiveEvent::Missed(n) => panic!("the fast reader missed {n}"),
            }
        }
        // The slow one never read: of 40+ events, the oldest ones are gone, and it is told.
        let mut missed = 0;
        let mut kept = 0;
        while let Ok(Some(item)) =
            tokio::time::timeout(Duration::from_millis(50), slow.next()).await
        {
            match item {
                LiveEvent::Missed(n) => missed += n,
                LiveEvent::Event(_) => kept += 1,
            }
        }
        assert!(missed > 0, "a full buffer is reported");
        assert!(
            kept > 0 && kept <= 16,
            "what is kept fits the buffer: {kept}"
        );
        shutdown.cancel();
        running.await.expect("listener ends on shutdown");
        assert_eq!(bus_queues(&bus), 0, "the listener's queue left with it");
    }

    fn bus_queues(bus: &MemoryBus) -> usize {
        bus.live_queues()
    }

    #[tokio::test(start_paused = true)]
    async fn the_listener_goes_when_nobody_has_watched_for_a_while_and_comes_back() {
        let bus = Arc::new(MemoryBus::new());
        let shutdown = CancellationToken::new();
        let (live, task) = LiveEvents::start(bus.clone(), &["execution.#"], 16, shutdown.clone());
        tokio::spawn(task);
        let watcher = live.subscribe().await.expect("listening");
        assert_eq!(bus.live_queues(), 1);
        drop(watcher);
        tokio::time::sleep(IDLE_BEFORE_STOPPING / 2).await;
        assert_eq!(bus.live_queues(), 1, "kept a while for the next subscriber");
        tokio::time::sleep(IDLE_BEFORE_STOPPING * 2).await;
        assert_eq!(bus.live_queues(), 0, "let go once idle");
        let mut again = live.subscribe().await.expect("listening again");
        let event = Event::new("execution.later", 0, serde_json::json!({}));
        bus.publish(&event).await.expect("publish");
        assert!(matches!(again.next().await, Some(LiveEvent::Event(e)) if e.id == event.id));
        shutdown.cancel();
    }
}
