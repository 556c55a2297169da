//! Running an event handler over a queue: one span per message (a child of the
//! trace that produced the event), acknowledgement only after the handler
//! succeeded, requeue with a pause when it failed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{BusError, Event, EventBus, Subscription};

#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Handles one event. Must be idempotent: the same event may arrive twice.
    async fn handle(&self, event: &Event) -> anyhow::Result<()>;
}

/// A subscription bound to its queue, ready to run a handler.
pub struct Consumer {
    queue: String,
    subscription: Box<dyn Subscription>,
}

impl Consumer {
    /// Declares and binds the queue now, so that events published after this
    /// returns reach it even before [`Consumer::run`] starts.
    pub async fn bind(
        bus: &Arc<dyn EventBus>,
        queue: &str,
        bindings: &[&str],
    ) -> Result<Self, BusError> {
        Ok(Consumer {
            queue: queue.to_string(),
            subscription: bus.subscribe(queue, bindings).await?,
        })
    }

    pub async fn run(mut self, handler: Arc<dyn EventHandler>, shutdown: CancellationToken) {
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => return,
                d = self.subscription.next() => match d {
                    Some(d) => d,
                    None => return,
                },
            };
            let span = tracing::info_span!(
                "event.consume",
                queue = %self.queue,
                kind = %delivery.event.kind,
                event_id = %delivery.event.id,
                redelivered = delivery.redelivered,
            );
            crate::telemetry::set_parent_from_map(&span, &delivery.event.trace);
            let result = handler
                .handle(&delivery.event)
                .instrument(span.clone())
                .await;
            let settle = match result {
                Ok(()) => delivery.ack().await,
                Err(e) => {
                    span.in_scope(
                        || tracing::warn!(error = %e, "event handler failed; requeueing"),
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    delivery.nack(true).await
                }
            };
            if let Err(e) = settle {
                tracing::warn!(queue = %self.queue, error = %e, "could not settle a delivery");
            }
        }
    }
}
