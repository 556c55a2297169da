//! Live events for subscriptions: one bus listener per process, fanned out in memory.
//!
//! Why one listener: a process may serve thousands of subscriptions; each opening a broker
//! queue would cost the broker a queue per subscriber. Instead the process listens once
//! ([`EventBus::listen`]: every replica gets every event) and hands each event to the
//! resolvers that asked, through a bounded broadcast channel. A subscriber that falls
//! behind learns how many events it missed ([`LiveEvent::Missed`]) instead of missing
//! them silently.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt as _};
use tokio::sync::broadcast;
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
}

impl LiveEvents {
    /// A feed of the events matching `bindings`, and the task that fills it (run it
    /// until `shutdown`).
    pub fn start(
        bus: Arc<dyn EventBus>,
        bindings: &[&str],
        capacity: usize,
        shutdown: CancellationToken,
    ) -> (Self, futures::future::BoxFuture<'static, ()>) {
        let (sender, _) = broadcast::channel(capacity.max(16));
        let feed = sender.clone();
        let bindings: Vec<String> = bindings.iter().map(|b| b.to_string()).collect();
        let task = async move {
            let patterns: Vec<&str> = bindings.iter().map(String::as_str).collect();
            let mut wait = Duration::from_millis(100);
            let mut listener = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    listened = bus.listen(&patterns) => match listened {
                        Ok(listener) => break listener,
                        Err(error) => {
                            tracing::warn!(%error, "cannot listen to live events yet; retrying");
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(Duration::from_secs(5));
                        }
                    },
                }
            };
            let mut recent = RecentIds::default();
            loop {
                let delivery = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    delivery = listener.next() => delivery,
                };
                let Some(delivery) = delivery else { return };
                let event = Arc::new(delivery.event.clone());
                let _ = delivery.ack().await;
                // Delivery is at least once (two relays may both publish a row): a repeat
                // of a recent event is not news.
                if !recent.first_sighting(event.id) {
                    continue;
                }
                // No receivers is fine: nobody is watching right now.
                let _ = feed.send(event);
            }
        };
        (Self { sender }, Box::pin(task))
    }

    /// Events from now on, with a marker where some were missed.
    pub fn subscribe(&self) -> BoxStream<'static, LiveEvent> {
        let receiver = self.sender.subscribe();
        futures::stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(event) => Some((LiveEvent::Event(event), receiver)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Some((LiveEvent::Missed(missed), receiver))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .boxed()
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
        let mut fast = live.subscribe();
        let mut slow = live.subscribe();
        // The listener registers its queue asynchronously; publish until it delivers.
        let probe = Event::new("execution.probe", 0, serde_json::json!({}));
        let first = loop {
            bus.publish(&probe).await.expect("publish");
            if let Ok(Some(item)) =
                tokio::time::timeout(Duration::from_millis(50), fast.next()).await
            {
                break item;
            }
        };
        assert!(matches!(first, LiveEvent::Event(e) if e.kind == "execution.probe"));
        // A repeat delivery of the same event (at-least-once) is dropped.
        let repeat = Event::new("execution.repeat", 0, serde_json::json!({}));
        bus.publish(&repeat).await.expect("publish");
        bus.publish(&repeat).await.expect("publish");
        let mut probes = 0;
        loop {
            match fast.next().await.expect("open") {
                LiveEvent::Event(e) if e.kind == "execution.probe" => probes += 1,
                LiveEvent::Event(e) => {
                    assert_eq!(e.id, repeat.id);
                    break;
                }
                LiveEvent::Missed(n) => panic!("missed {n}"),
            }
        }
        assert!(probes < 100);
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
            loop {
                match fast.next().await.expect("open") {
                    LiveEvent::Event(e) if e.kind == "execution.step" => {
                        assert_eq!(e.occurred_at_ms, received, "in order, none lost");
                        received += 1;
                        break;
                    }
                    LiveEvent::Event(e) => assert_eq!(e.kind, "execution.probe"),
                    LiveEvent::Missed(n) => panic!("the fast reader missed {n}"),
                }
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
}
