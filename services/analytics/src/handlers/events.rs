//! Events become facts.
//!
//! Bound to `analytics.execution-facts` with every kind that carries one: execution outcomes
//! (also cancelled and timed-out runs), step attempts, and workflow edits and
//! publications (for active users). Idempotent: a fact is keyed on its subject (the
//! execution, the step attempt, the person and quarter-hour), so a redelivered event
//! (at-least-once delivery, outbox republish) is recorded once.

use std::sync::Arc;

use async_trait::async_trait;
use flowfleet_runtime::events::consumer::{Consumer, EventHandler};
use flowfleet_runtime::events::{BusError, Event, EventBus};

use crate::domain::{facts_of, Fact};
use crate::roller::Roller;
use crate::store::Store;

/// The queue's name predates step and workflow events: it is kept so that an upgraded
/// fleet goes on consuming the queue it already has (a new name would leave the old one
/// bound and filling with nobody reading it).
pub const QUEUE: &str = "analytics.execution-facts";
pub const BINDINGS: &[&str] = &[
    "execution.succeeded",
    "execution.failed",
    "execution.cancelled",
    "step.finished",
    "workflow.updated",
    "workflow.published",
    "worker.sampled",
];

/// Declares and binds the queue (so events published from now on are kept).
pub async fn bind(bus: &Arc<dyn EventBus>) -> Result<Consumer, BusError> {
    Consumer::bind(bus, QUEUE, BINDINGS).await
}

pub struct Facts {
    pub store: Store,
    /// Told about new facts, so it rolls them up soon.
    pub roller: Roller,
}

impl Facts {
    /// The facts `event` carries; none (logged) for a malformed payload, which never
    /// becomes well-formed: requeueing it would loop forever, so it is acknowledged.
    fn facts(event: &Event) -> Vec<Fact> {
        facts_of(&event.kind, event.occurred_at_ms, &event.payload).unwrap_or_else(|e| {
            tracing::error!(kind = %event.kind, event_id = %event.id, error = %e,
                "dropping an event with an unreadable payload");
            Vec::new()
        })
    }
}

/// Events taken together when a backlog has built up: one transaction records them all.
const BATCH: usize = 200;

#[async_trait]
impl EventHandler for Facts {
    #[tracing::instrument(skip_all, fields(kind = %event.kind, event_id = %event.id))]
    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        let facts = Self::facts(event);
        let new = self.store.record(&facts).await?;
        if new > 0 {
            self.roller.nudge();
        }
        tracing::debug!(new, "facts recorded");
        Ok(())
    }

    fn batch_size(&self) -> usize {
        BATCH
    }

    #[tracing::instrument(skip_all, fields(events = events.len()))]
    async fn handle_all(&self, events: &[Event]) -> anyhow::Result<()> {
        let facts: Vec<Fact> = events.iter().flat_map(Self::facts).collect();
        let new = self.store.record_many(&facts).await?;
        if new > 0 {
            self.roller.nudge();
        }
        tracing::debug!(new, "facts recorded");
        Ok(())
    }
}
