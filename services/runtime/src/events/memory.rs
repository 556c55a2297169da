//! The in-process bus for embedded mode: the same topic-exchange semantics as
//! RabbitMQ (durable named queues, pattern bindings, competing consumers,
//! acknowledgement, requeue on nack), held in memory.
//!
//! Events survive a restart because they are only marked published in the
//! service's outbox after the bus took them, and consumers are idempotent; what
//! sits in a queue at a crash is republished from the outbox only if the relay had
//! not yet marked it, so embedded mode trades that window for having no broker.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{topic_matches, Acker, BusError, Delivery, Event, EventBus, Subscription};

#[derive(Default)]
struct Queue {
    ready: Mutex<VecDeque<(Event, bool)>>,
    notify: Notify,
}

impl Queue {
    fn push(&self, event: Event, redelivered: bool) {
        self.ready
            .lock()
            .expect("queue lock poisoned")
            .push_back((event, redelivered));
        self.notify.notify_one();
    }
}

#[derive(Default)]
struct State {
    queues: HashMap<String, Arc<Queue>>,
    bindings: Vec<(String, String)>, // (pattern, queue)
}

/// A topic exchange with named queues, in memory.
#[derive(Clone, Default)]
pub struct MemoryBus {
    state: Arc<Mutex<State>>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Messages waiting (not yet delivered) in a queue.
    /// Listener queues open now ([`EventBus::listen`]).
    pub fn live_queues(&self) -> usize {
        let state = self.state.lock().expect("bus lock poisoned");
        state
            .queues
            .keys()
            .filter(|q| q.starts_with("live."))
            .count()
    }

    pub fn depth(&self, queue: &str) -> usize {
        let state = self.state.lock().expect("bus lock poisoned");
        state
            .queues
            .get(queue)
            .map(|q| q.ready.lock().expect("queue lock poisoned").len())
            .unwrap_or(0)
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        let targets: Vec<Arc<Queue>> = {
            let state = self.state.lock().expect("bus lock poisoned");
            let mut names: Vec<&String> = state
                .bindings
                .iter()
                .filter(|(pattern, _)| topic_matches(pattern, &event.kind))
                .map(|(_, q)| q)
                .collect();
            names.sort();
            names.dedup();
            names
                .into_iter()
                .filter_map(|n| state.queues.get(n).cloned())
                .collect()
        };
        for q in targets {
            q.push(event.clone(), false);
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        queue: &str,
        bindings: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        let q = {
            let mut state = self.state.lock().expect("bus lock poisoned");
            let q = state.queues.entry(queue.to_string()).or_default().clone();
            for b in bindings {
                let binding = (b.to_string(), queue.to_string());
                if !state.bindings.contains(&binding) {
                    state.bindings.push(binding);
                }
            }
            q
        };
        Ok(Box::new(MemorySubscription { queue: q }))
    }

    async fn listen(&self, bindings: &[&str]) -> Result<Box<dyn Subscription>, BusError> {
        let name = format!("live.{}", uuid::Uuid::new_v4());
        let queue = self.subscribe(&name, bindings).await?;
        Ok(Box::new(Listener {
            queue,
            name,
            bus: self.clone(),
        }))
    }
}

/// A listener's queue; removed with its bindings when the listener is dropped, so nothing
/// piles up for a listener that is gone.
struct Listener {
    queue: Box<dyn Subscription>,
    name: String,
    bus: MemoryBus,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut state = self.bus.state.lock().expect("bus lock poisoned");
        state.queues.remove(&self.name);
        state.bindings.retain(|(_, queue)| queue != &self.name);
    }
}

#[async_trait]
impl Subscription for Listener {
    async fn next(&mut self) -> Option<Delivery> {
        self.queue.next().await
    }

    fn try_next(&mut self) -> Option<Delivery> {
        self.queue.try_next()
    }
}

struct MemorySubscription {
    queue: Arc<Queue>,
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            let queue = self.queue.clone();
            let notified = queue.notify.notified();
            if let Some(delivery) = self.try_next() {
                return Some(delivery);
            }
            notified.await;
        }
    }

    fn try_next(&mut self) -> Option<Delivery> {
        let (event, redelivered) = self
            .queue
            .ready
            .lock()
            .expect("queue lock poisoned")
            .pop_front()?;
        // Wake a competing consumer if more is waiting.
        if !self
            .queue
            .ready
            .lock()
            .expect("queue lock poisoned")
            .is_empty()
        {
            self.queue.notify.notify_one();
        }
        let acker = MemoryAcker {
            queue: self.queue.clone(),
            event: Mutex::new(Some(event.clone())),
        };
        Some(Delivery::new(event, redelivered, Box::new(acker)))
    }
}

struct MemoryAcker {
    queue: Arc<Queue>,
    event: Mutex<Option<Event>>,
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.event.lock().expect("acker lock poisoned").take();
        Ok(())
    }
    async fn nack(&self, requeue: bool) -> Result<(), BusError> {
        if let Some(event) = self.event.lock().expect("acker lock poisoned").take() {
            if requeue {
                self.queue.push(event, true);
            }
        }
        Ok(())
    }
}

impl Drop for MemoryAcker {
    /// A delivery dropped without being settled goes back to its queue, as an
    /// unacknowledged message does when a RabbitMQ channel closes.
    fn drop(&mut self) {
        if let Ok(mut guard) = self.event.lock() {
            if let Some(event) = guard.take() {
                self.queue.push(event, true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str) -> Event {
        Event::new(kind, 0, serde_json::json!({"k": kind}))
    }

    #[tokio::test]
    async fn routes_by_pattern_and_requeues_on_nack() {
        let bus = MemoryBus::new();
        let mut a = bus.subscribe("a", &["execution.*"]).await.unwrap();
        let mut b = bus.subscribe("b", &["workflow.#"]).await.unwrap();
        bus.publish(&ev("execution.succeeded")).await.unwrap();
        bus.publish(&ev("workflow.published")).await.unwrap();
        bus.publish(&ev("user.deleted")).await.unwrap();

        let d = a.next().await.unwrap();
        assert_eq!(d.event.kind, "execution.succeeded");
        assert!(!d.redelivered);
        d.nack(true).await.unwrap();
        let d = a.next().await.unwrap();
        assert!(d.redelivered, "a requeued message is marked redelivered");
        d.ack().await.unwrap();
        assert_eq!(bus.depth("a"), 0);

        let d = b.next().await.unwrap();
        assert_eq!(d.event.kind, "workflow.published");
        drop(d); // unsettled: goes back
        assert_eq!(bus.depth("b"), 1);
    }
}
