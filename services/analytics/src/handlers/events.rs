//! Execution outcomes become facts.
//!
//! Bound to `analytics.execution-facts` with `execution.succeeded` and
//! `execution.failed`. Idempotent: the fact is keyed on the execution id, so a
//! redelivered event (at-least-once delivery, outbox republish) is counted once.

use std::sync::Arc;

use async_trait::async_trait;
use flowfleet_runtime::events::consumer::{Consumer, EventHandler};
use flowfleet_runtime::events::{BusError, Event, EventBus};

use crate::domain::ExecutionOutcome;
use crate::store::Store;

pub const QUEUE: &str = "analytics.execution-facts";
pub const BINDINGS: &[&str] = &["execution.succeeded", "execution.failed"];

/// Declares and binds the queue (so events published from now on are kept).
pub async fn bind(bus: &Arc<dyn EventBus>) -> Result<Consumer, BusError> {
    Consumer::bind(bus, QUEUE, BINDINGS).await
}

pub struct ExecutionFacts {
    pub store: Store,
}

#[async_trait]
impl EventHandler for ExecutionFacts {
    #[tracing::instrument(skip_all, fields(kind = %event.kind, event_id = %event.id))]
    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        let outcome = match ExecutionOutcome::from_payload(&event.payload) {
            Ok(o) => o,
            Err(e) => {
                // A malformed payload never becomes well-formed: requeueing it
                // would loop forever, so it is logged and acknowledged.
                tracing::error!(error = %e, "dropping an execution event with an unreadable payload");
                return Ok(());
            }
        };
        let new = self.store.record(&outcome).await?;
        tracing::debug!(execution_id = %outcome.execution_id, new, "execution fact recorded");
        Ok(())
    }
}
