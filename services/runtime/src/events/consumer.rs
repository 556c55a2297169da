//! Running an event handler over a queue: one span per message (a child of the
//! trace that produced the event), acknowledgement only after the handler
//! succeeded, requeue with a pause when it failed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{BusError, Event, EventBus, Subscription};
use crate::series::Handled;

#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Handles one event. Must be idempotent: the same event may arrive twice.
    async fn handle(&self, event: &Event) -> anyhow::Result<()>;

    /// The most events [`EventHandler::handle_all`] is given at once. The default, 1,
    /// handles every event alone.
    fn batch_size(&self) -> usize {
        1
    }

    /// Handles events that had already arrived together (a backlog), for handlers
    /// that do better in bulk (one transaction for many). On an error the consumer
    /// handles each of them again alone, so one bad event holds back only itself.
    /// Idempotent, like `handle`.
    async fn handle_all(&self, events: &[Event]) -> anyhow::Result<()> {
        for event in events {
            self.handle(event).await?;
        }
        Ok(())
    }
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
        crate::series::register_consumer(queue);
        Ok(Consumer {
            queue: queue.to_string(),
            subscription: bus.subscribe(queue, bindings).await?,
        })
    }

    /// Consumes until `shutdown`. Whatever has already arrived when a delivery comes
    /// (up to the handler's batch size) is handled together; a quiet queue's events
    /// are handled as they come, without waiting for company.
    pub async fn run(mut self, handler: Arc<dyn EventHandler>, shutdown: CancellationToken) {
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                d = self.subscription.next() => match d {
                    Some(d) => d,
                    None => return,
                },
            };
            let mut batch = vec![first];
            while batch.len() < handler.batch_size() {
                match self.subscription.try_next() {
                    Some(d) => batch.push(d),
                    None => break,
                }
            }
            if batch.len() > 1 {
                let events: Vec<Event> = batch.iter().map(|d| d.event.clone()).collect();
                let span = tracing::info_span!(
                    "event.consume_batch",
                    queue = %self.queue,
                    events = events.len(),
                );
                // Each event's own trace shows its handling too: a span per event, child of
                // the change that produced it, open while its batch is handled.
                let per_event: Vec<tracing::Span> = batch
                    .iter()
                    .map(|delivery| {
                        let own = tracing::info_span!(
                            "event.consume",
                            queue = %self.queue,
                            kind = %delivery.event.kind,
                            event_id = %delivery.event.id,
                            redelivered = delivery.redelivered,
                            batched = true,
                        );
                        crate::telemetry::set_parent_from_map(&own, &delivery.event.trace);
                        own.follows_from(&span);
                        own
                    })
                    .collect();
                let handled = handler.handle_all(&events).instrument(span.clone()).await;
                drop(per_event);
                match handled {
                    Ok(()) => {
                        crate::series::consumed(&self.queue, Handled::Handled, batch.len() as u64);
                        for delivery in batch {
                            settle(&self.queue, delivery.ack().await);
                        }
                        continue;
                    }
                    Err(e) => span.in_scope(|| {
                        tracing::warn!(error = %e, "handling a batch failed; handling its events one by one")
                    }),
                }
            }
            for delivery in batch {
                consume(&self.queue, &*handler, delivery).await;
            }
        }
    }
}

/// Handles one delivery: acknowledged once handled, requeued after a pause if not.
async fn consume(queue: &str, handler: &dyn EventHandler, delivery: super::Delivery) {
    let span = tracing::info_span!(
        "event.consume",
        queue = %queue,
        kind = %delivery.event.kind,
        event_id = %delivery.event.id,
        redelivered = delivery.redelivered,
    );
    crate::telemetry::set_parent_from_map(&span, &delivery.event.trace);
    let result = handler
        .handle(&delivery.event)
        .instrument(span.clone())
        .await;
    let settled = match result {
        Ok(()) => {
            crate::series::consumed(queue, Handled::Handled, 1);
            delivery.ack().await
        }
        Err(e) => {
            crate::series::consumed(queue, Handled::Failed, 1);
            span.in_scope(|| tracing::warn!(error = %e, "event handler failed; requeueing"));
            tokio::time::sleep(Duration::from_millis(500)).await;
            delivery.nack(true).await
        }
    };
    settle(queue, settled);
}

fn settle(queue: &str, settled: Result<(), BusError>) {
    if let Err(e) = settled {
        tracing::warn!(queue = %queue, error = %e, "could not settle a delivery");
    }
}
