//! Events: the asynchronous facts services tell each other.
//!
//! A service records an event in its own `outbox` table in the same transaction
//! as the change it describes ([`outbox::record`]); a relay publishes committed
//! rows to the bus and marks them ([`outbox::Relay`]). So no committed change
//! loses its event and no event exists for a rolled-back change. Delivery is
//! at-least-once: consumers are idempotent (they key their writes on the event id
//! or on the fact's own id).
//!
//! The bus is a topic exchange: events are published with a routing key such as
//! `execution.succeeded` and consumed from named, durable queues bound with
//! patterns (`execution.*`, `#`). [`memory::MemoryBus`] implements it in process
//! for embedded mode; [`amqp::AmqpBus`] on RabbitMQ.

pub mod amqp;
pub mod consumer;
pub mod live;
pub mod memory;
pub mod outbox;

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One fact. `kind` is the routing key; `payload` is the fact's JSON body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub id: Uuid,
    pub kind: String,
    pub occurred_at_ms: i64,
    pub payload: serde_json::Value,
    /// W3C trace context of the change that produced the event.
    #[serde(default)]
    pub trace: HashMap<String, String>,
}

impl Event {
    /// A new event carrying the current span's trace context.
    pub fn new(kind: impl Into<String>, occurred_at_ms: i64, payload: serde_json::Value) -> Self {
        Event {
            id: Uuid::now_v7(),
            kind: kind.into(),
            occurred_at_ms,
            payload,
            trace: crate::telemetry::current_context_map(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("message broker unavailable: {0}")]
    Unavailable(String),
    #[error("message could not be encoded or decoded: {0}")]
    Codec(String),
    #[error("the bus is closed")]
    Closed,
}

/// How a consumer settles a delivery.
#[async_trait]
pub trait Acker: Send + Sync {
    async fn ack(&self) -> Result<(), BusError>;
    /// `requeue = false` drops (or dead-letters) the message.
    async fn nack(&self, requeue: bool) -> Result<(), BusError>;
}

pub struct Delivery {
    pub event: Event,
    /// How many times this message was delivered before (0 on first delivery).
    pub redelivered: bool,
    acker: Box<dyn Acker>,
}

impl Delivery {
    pub fn new(event: Event, redelivered: bool, acker: Box<dyn Acker>) -> Self {
        Delivery {
            event,
            redelivered,
            acker,
        }
    }
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }
    pub async fn nack(self, requeue: bool) -> Result<(), BusError> {
        self.acker.nack(requeue).await
    }
}

/// A stream of deliveries from one queue.
#[async_trait]
pub trait Subscription: Send {
    /// The next delivery; `None` when the bus closed.
    async fn next(&mut self) -> Option<Delivery>;
    /// A delivery that has already arrived, without waiting for one.
    fn try_next(&mut self) -> Option<Delivery>;
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes durably: returns only once the broker has accepted the event.
    async fn publish(&self, event: &Event) -> Result<(), BusError>;
    /// Publishes `events` in order, durably: returns once the broker has accepted all
    /// of them. A bus may pipeline them (the outbox relay's batches).
    async fn publish_all(&self, events: &[Event]) -> Result<(), BusError> {
        for event in events {
            self.publish(event).await?;
        }
        Ok(())
    }
    /// Declares the durable queue `queue`, binds it with `bindings` (topic
    /// patterns) and starts consuming from it. Several subscribers on one queue
    /// compete for its messages.
    async fn subscribe(
        &self,
        queue: &str,
        bindings: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError>;

    /// Listens to every event matching `bindings` from now on, on a queue of this
    /// listener's own: each listener of each process receives every matching event (where
    /// [`EventBus::subscribe`]'s consumers compete). For live views (subscriptions), not
    /// for work: the queue is not durable and goes away with the listener, and what is
    /// published while no listener exists is not kept. Ack deliveries as usual.
    async fn listen(&self, bindings: &[&str]) -> Result<Box<dyn Subscription>, BusError>;
}

/// Topic matching with AMQP semantics: words separated by `.`, `*` matches one
/// word, `#` matches zero or more words.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&"#", rest)) => (0..=k.len()).any(|i| go(rest, &k[i..])),
            Some((&"*", rest)) => !k.is_empty() && go(rest, &k[1..]),
            Some((w, rest)) => k.first() == Some(w) && go(rest, &k[1..]),
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn topic_patterns() {
        assert!(topic_matches("execution.*", "execution.succeeded"));
        assert!(!topic_matches("execution.*", "execution.step.done"));
        assert!(topic_matches("execution.#", "execution.step.done"));
        assert!(topic_matches("#", "anything.at.all"));
        assert!(topic_matches("#.failed", "execution.failed"));
        assert!(!topic_matches("workflow.published", "workflow.archived"));
        assert!(topic_matches("workflow.published", "workflow.published"));
    }
}
