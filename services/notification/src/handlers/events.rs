//! Execution outcomes become in-app notifications to whoever started them, or, for runs
//! no user started (schedules, webhooks), to the workflow's owner.
//!
//! Bound to `notification.execution-outcomes` with `execution.succeeded` and
//! `execution.failed`. Idempotent: the notification is keyed on the execution
//! id (`source_event_id = execution:<id>`), so a redelivered event stores one row.

use std::sync::Arc;

use async_trait::async_trait;
use flowfleet_runtime::clock::Clock;
use flowfleet_runtime::events::consumer::{Consumer, EventHandler};
use flowfleet_runtime::events::outbox::Relay;
use flowfleet_runtime::events::{BusError, Event, EventBus};

use crate::domain::{ExecutionOutcome, Notification};
use crate::store::Store;

pub const QUEUE: &str = "notification.execution-outcomes";
pub const BINDINGS: &[&str] = &["execution.succeeded", "execution.failed"];

/// Declares and binds the queue (so events published from now on are kept).
pub async fn bind(bus: &Arc<dyn EventBus>) -> Result<Consumer, BusError> {
    Consumer::bind(bus, QUEUE, BINDINGS).await
}

pub struct ExecutionOutcomes {
    pub store: Store,
    pub relay: Relay,
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl EventHandler for ExecutionOutcomes {
    #[tracing::instrument(skip_all, fields(kind = %event.kind, event_id = %event.id))]
    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        let outcome: ExecutionOutcome = match serde_json::from_value(event.payload.clone()) {
            Ok(o) => o,
            Err(e) => {
                // A malformed payload never becomes well-formed: requeueing it
                // would loop forever, so it is logged and acknowledged.
                tracing::error!(error = %e, "dropping an execution event with an unreadable payload");
                return Ok(());
            }
        };
        let Some(recipient) = outcome.recipient() else {
            tracing::debug!(execution_id = %outcome.execution_id, "no one to tell of this outcome");
            return Ok(());
        };
        let notification = Notification::in_app(
            outcome.workspace_id,
            recipient,
            outcome.message(),
            self.clock.now_ms(),
        );
        let new = self
            .store
            .insert(&notification, Some(&outcome.source_key()))
            .await
            .map_err(|e| anyhow::anyhow!("storing the notification failed: {}", e.message))?;
        if new {
            self.relay.wake();
        }
        tracing::debug!(execution_id = %outcome.execution_id, new, "outcome notification stored");
        Ok(())
    }
}
