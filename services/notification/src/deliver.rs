//! The delivery worker: takes `deliver` and `digest` tasks off the queue and carries
//! them out, in every process running the notification service (the queue shares the
//! work among replicas).
//!
//! A `deliver` task names a delivery and the attempt it is: the worker claims that
//! attempt (so a duplicate task sends nothing), opens the channel's secrets, sends, logs
//! the attempt with the provider's answer, and then either settles the delivery (`SENT`,
//! or `FAILED` with the last error) or puts the next attempt on the queue after the
//! retry policy's backoff. A `digest` task closes a digest: one delivery listing what it
//! gathered.

use std::sync::Arc;

use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::queue::{TaskDelivery, TaskQueue};
use flowfleet_security::secrets::SecretKeyRing;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::dispatch::{Dispatcher, CLOSE_DIGEST, DELIVER, QUEUE};
use crate::domain::channels::{ChannelConfig, Secrets, Settings};
use crate::domain::delivery::{
    delivery_key, Attempt, Delivery, DeliveryStatus, Next, RetryPolicy, SendOutcome,
};
use crate::domain::templates::default_template;
use crate::domain::Channel;
use crate::senders::Senders;

pub struct Worker {
    pub dispatcher: Dispatcher,
    pub senders: Senders,
    pub secrets: Arc<SecretKeyRing>,
    pub policy: RetryPolicy,
}

impl Worker {
    /// Consumes the queue until `shutdown`, `concurrency` tasks at a time.
    pub async fn run(
        self: Arc<Self>,
        queue: Arc<dyn TaskQueue>,
        concurrency: u16,
        shutdown: CancellationToken,
    ) {
        register_deliveries();
        let mut backoff = std::time::Duration::from_millis(200);
        loop {
            let mut consumer = match queue.consume(QUEUE, concurrency).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "notification deliveries: cannot consume; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
                    continue;
                }
            };
            let slots = Arc::new(Semaphore::new(concurrency.max(1).into()));
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = consumer.next() => next,
                };
                let Some(task) = next else { break };
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let worker = self.clone();
                tokio::spawn(async move {
                    worker.settle(task).await;
                    drop(permit);
                });
            }
        }
    }

    #[tracing::instrument(name = "notification task", skip_all, fields(kind = %task.task.kind, attempt = task.task.attempt))]
    async fn settle(&self, task: TaskDelivery) {
        let id = task
            .task
            .payload
            .get("deliveryId")
            .or_else(|| task.task.payload.get("digestId"))
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse::<Uuid>().ok());
        let Some(id) = id else {
            tracing::error!("a notification task without an id; dropped");
            let _ = task.ack().await;
            return;
        };
        let result = match task.task.kind.as_str() {
            DELIVER => self.deliver(id, task).await,
            CLOSE_DIGEST => match self.close_digest(id).await {
                Ok(()) => task
                    .ack()
                    .await
                    .map_err(|e| ApiError::internal(e.to_string())),
                Err(e) => {
                    tracing::warn!(error = %e.message, "closing a digest failed; it is retried");
                    let _ = task
                        .retry(std::time::Duration::from_secs(1), &e.message)
                        .await;
                    return;
                }
            },
            other => {
                tracing::error!(kind = other, "an unknown notification task; dropped");
                task.ack()
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e.message, "a notification task failed; it will be redelivered");
        }
    }

    /// One attempt of one delivery.
    async fn deliver(&self, id: Uuid, task: TaskDelivery) -> Result<(), ApiError> {
        let attempt = i64::from(task.task.attempt);
        let store = &self.dispatcher.store;
        let claimed = store.claim_attempt(id, attempt).await?;
        let Some(d) = store.delivery(id).await? else {
            return task
                .ack()
                .await
                .map_err(|e| ApiError::internal(e.to_string()));
        };
        // A task given back because its worker died after claiming (it was never
        // settled) runs its attempt again rather than leaving the delivery pending.
        let resumed = !claimed
            && task.redelivered
            && d.status == DeliveryStatus::Pending
            && d.attempts == attempt;
        if !claimed && !resumed {
            // Sent, given up, or this attempt is another task's: nothing to do.
            tracing::debug!(%id, attempt, "not this task's attempt");
            return task
                .ack()
                .await
                .map_err(|e| ApiError::internal(e.to_string()));
        }
        let sending = std::time::Instant::now();
        let outcome = self.send(&d).await;
        metrics::histogram!("flowfleet_notification_delivery_seconds", "channel" => d.channel.as_str())
            .record(sending.elapsed().as_secs_f64());
        let now = self.dispatcher.clock.now_ms();
        let (ok, detail) = match &outcome {
            SendOutcome::Sent { detail } => (true, detail.clone()),
            SendOutcome::Transient { detail } | SendOutcome::Permanent { detail } => {
                (false, detail.clone())
            }
        };
        let log = Attempt {
            attempt,
            at: now,
            ok,
            detail: detail.clone(),
        };
        let next = self.policy.next(task.task.attempt, &outcome);
        delivered(d.channel, &next);
        match next {
            Next::Done => {
                store
                    .record_attempt(id, &log, DeliveryStatus::Sent, None)
                    .await?;
                task.ack()
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))
            }
            Next::GiveUp => {
                tracing::warn!(%id, attempt, %detail, "a delivery failed for good");
                store
                    .record_attempt(id, &log, DeliveryStatus::Failed, Some(&detail))
                    .await?;
                task.ack()
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))
            }
            Next::RetryAfter(wait) => {
                store
                    .record_attempt(id, &log, DeliveryStatus::Pending, Some(&detail))
                    .await?;
                task.retry(wait, &detail)
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))
            }
        }
    }

    /// Sends through the delivery's channel, as it is configured now.
    async fn send(&self, d: &Delivery) -> SendOutcome {
        let (channel, secrets) = match self.channel(d).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                return SendOutcome::Permanent {
                    detail: "the channel was deleted".into(),
                }
            }
            Err(e) => {
                return SendOutcome::Transient {
                    detail: format!("the channel could not be read: {}", e.message),
                }
            }
        };
        let now = self.dispatcher.clock.now_ms();
        // An invitation's body carries its token, sealed at rest.
        let opened;
        let d = if d.event_kind == "member.invited" {
            match self
                .secrets
                .open(&d.body, &crate::grpc::invitation_context(d.id))
            {
                Ok(body) => {
                    opened = Delivery {
                        body: String::from_utf8_lossy(&body).into_owned(),
                        ..d.clone()
                    };
                    &opened
                }
                Err(e) => {
                    return SendOutcome::Permanent {
                        detail: format!("the invitation could not be opened: {e}"),
                    }
                }
            }
        } else {
            d
        };
        match &channel.settings {
            Settings::Email(s) => {
                let to: Vec<String> = d.destination.split(", ").map(str::to_string).collect();
                self.senders.email(s, &secrets, &to, d).await
            }
            Settings::Webhook(s) => self.senders.webhook(s, &secrets, d, now).await,
            Settings::Sms(s) => self.senders.sms(s, &secrets, &d.destination, d).await,
        }
    }

    async fn channel(&self, d: &Delivery) -> Result<Option<(ChannelConfig, Secrets)>, ApiError> {
        let Some((channel, sealed)) = self
            .dispatcher
            .store
            .channel_secrets(d.workspace_id, d.channel_id)
            .await?
        else {
            return Ok(None);
        };
        let context = ChannelConfig::secret_context(d.workspace_id, d.channel_id);
        let opened = self
            .secrets
            .open(&sealed, &context)
            .map_err(|e| ApiError::internal(format!("opening channel secrets: {e}")))?;
        let secrets: Secrets = serde_json::from_slice(&opened).map_err(ApiError::internal)?;
        Ok(Some((channel, secrets)))
    }

    /// Sends what a digest gathered as one message, through the channel and to the
    /// destination its deliveries share. The digest is closed first (so later events
    /// open the next one) and read after; a digest closed by an earlier try only has its
    /// delivery enqueued again if it never ran.
    async fn close_digest(&self, digest: Uuid) -> Result<(), ApiError> {
        let store = &self.dispatcher.store;
        let delivery_id = Uuid::now_v7();
        let closed_now = store.close_digest(digest, delivery_id).await?;
        let items = store.digest_items(digest).await?;
        let Some(first) = items.first() else {
            return Ok(());
        };
        let data = json!({
            "count": items.len(),
            "items": items.iter().map(|d| json!({
                "subject": d.subject, "body": d.body, "event": d.event_kind, "data": d.data,
            })).collect::<Vec<_>>(),
        });
        let template = match store
            .template(first.workspace_id, "digest", first.channel)
            .await?
        {
            Some((t, _)) => t,
            None => default_template("digest", first.channel),
        };
        let rendered = template
            .render(&data, "digest")
            .or_else(|_| default_template("digest", first.channel).render(&data, "digest"))?;
        let now = self.dispatcher.clock.now_ms();
        let d = Delivery {
            id: delivery_id,
            subject: rendered.subject,
            body: rendered.body,
            html: rendered.html,
            data,
            event_kind: "digest".into(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_error: None,
            notification_id: None,
            key: delivery_key(
                &format!("digest:{digest}"),
                first.recipient_id,
                first.channel_id,
            ),
            created_at: now,
            finished_at: None,
            ..first.clone()
        };
        let (stored, new) = store.insert_delivery(&d, None).await?;
        if closed_now || new || stored.attempts == 0 {
            self.dispatcher
                .enqueue_delivery(stored.id, stored.attempts + 1)
                .await?;
        }
        Ok(())
    }
}

/// What an attempt led to, as `flowfleet_notification_deliveries_total` labels it.
fn outcome_label(next: &Next) -> &'static str {
    match next {
        Next::Done => "delivered",
        Next::RetryAfter(_) => "retried",
        Next::GiveUp => "failed",
    }
}

const OUTCOMES: [&str; 3] = ["delivered", "retried", "failed"];

/// Registers the delivery series, at zero, for every channel and outcome.
fn register_deliveries() {
    metrics::describe_counter!(
        "flowfleet_notification_deliveries_total",
        "Delivery attempts by channel and outcome (delivered, retried, failed for good)"
    );
    metrics::describe_histogram!(
        "flowfleet_notification_delivery_seconds",
        metrics::Unit::Seconds,
        "How long sending one delivery attempt took, by channel"
    );
    for channel in Channel::ALL {
        // Registered without a sample: rendered with empty buckets until the first send.
        let _ = metrics::histogram!(
            "flowfleet_notification_delivery_seconds",
            "channel" => channel.as_str()
        );
        for outcome in OUTCOMES {
            metrics::counter!(
                "flowfleet_notification_deliveries_total",
                "channel" => channel.as_str(),
                "outcome" => outcome
            )
            .increment(0);
        }
    }
}

fn delivered(channel: Channel, next: &Next) {
    metrics::counter!(
        "flowfleet_notification_deliveries_total",
        "channel" => channel.as_str(),
        "outcome" => outcome_label(next)
    )
    .increment(1);
}
