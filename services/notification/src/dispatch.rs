//! Turning "tell these people and channels about this" into inbox rows and deliveries,
//! then handing the deliveries to the queue. Used by the event handler (for the default
//! outcome notice and for every matching rule) and by the `Notify` gRPC method (the
//! `notify` node).
//!
//! Order of work, and why: rows first (each keyed, so a repeated event or step writes
//! nothing new), then tasks. A crash between the two leaves a pending delivery without a
//! task; the repeat of the event (it was not acknowledged) finds the row still pending
//! and enqueues it again, and the claim in the store keeps a duplicate task from sending
//! twice.

use std::collections::HashMap;
use std::sync::Arc;

use flowfleet_runtime::clock::Clock;
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::events::outbox::Relay;
use flowfleet_runtime::queue::{Task, TaskQueue};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::domain::channels::{ChannelConfig, Settings};
use crate::domain::delivery::{delivery_key, Delivery, DeliveryStatus};
use crate::domain::rules::{Member, Suppression};
use crate::domain::templates::{default_template, Rendered, Template};
use crate::domain::{Channel, Message, Notification};
use crate::store::Store;

/// The queue deliveries and digests wait on.
pub const QUEUE: &str = "notification.deliveries";
pub const DELIVER: &str = "deliver";
pub const CLOSE_DIGEST: &str = "digest";

/// What a message is made of: templates by channel, or inline text.
pub enum Content {
    /// The workspace's template of this kind for each channel (or the built-in one).
    Templates { kind: &'static str, data: Value },
    /// A `notify` step's subject and body (themselves templates over `data`).
    Inline { template: Template, data: Value },
}

/// Who hears it.
pub struct Audience {
    pub members: Vec<Member>,
    /// Whether members get an inbox notification.
    pub in_app: bool,
    pub channels: Vec<ChannelConfig>,
    /// Batch over a window instead of sending each: `(rule id, window in ms)`.
    pub digest: Option<(Uuid, i64)>,
}

/// What was done, for the `notify` step's output and the logs.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub notification_id: Option<Uuid>,
    pub delivery_id: Option<Uuid>,
    pub channel: Channel,
    pub destination: String,
    pub status: String,
}

#[derive(Clone)]
pub struct Dispatcher {
    pub store: Store,
    pub relay: Relay,
    pub queue: Arc<dyn TaskQueue>,
    pub clock: Arc<dyn Clock>,
}

/// Renders per channel once, whoever it is for.
struct Renderer<'a> {
    store: &'a Store,
    workspace: Uuid,
    content: &'a Content,
    done: HashMap<Channel, Rendered>,
}

impl Renderer<'_> {
    async fn render(&mut self, channel: Channel) -> Result<Rendered, ApiError> {
        if let Some(r) = self.done.get(&channel) {
            return Ok(r.clone());
        }
        let rendered = match self.content {
            Content::Templates { kind, data } => {
                let template = match self.store.template(self.workspace, kind, channel).await? {
                    Some((t, _)) => t,
                    None => default_template(kind, channel),
                };
                // A stored template was checked on save; one failing on this event's data
                // still sends, with the built-in template, rather than losing the news.
                match template.render(data, "template") {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(kind, channel = channel.as_str(), error = %e.message, "a workspace template failed; using the built-in one");
                        default_template(kind, channel).render(data, "template")?
                    }
                }
            }
            Content::Inline { template, data } => template.render(data, "message")?,
        };
        self.done.insert(channel, rendered.clone());
        Ok(rendered)
    }
}

/// A member's preferences and clock, read once per dispatch.
async fn suppression(
    store: &Store,
    member: &Member,
    kind: &str,
    channel: Channel,
    now: i64,
) -> Result<Option<Suppression>, ApiError> {
    let prefs = store.preferences(member.user_id).await?;
    Ok(prefs.suppresses(kind, channel, now, member.time_zone))
}

impl Dispatcher {
    /// Writes the inbox rows and deliveries `audience` gets for `source` (an event id,
    /// or a step's identity), enqueues what is to be sent, and says what it did.
    pub async fn dispatch(
        &self,
        workspace: Uuid,
        source: &str,
        kind: &str,
        content: &Content,
        audience: &Audience,
    ) -> Result<Vec<Queued>, ApiError> {
        let now = self.clock.now_ms();
        let data = match content {
            Content::Templates { data, .. } | Content::Inline { data, .. } => data.clone(),
        };
        let mut renderer = Renderer {
            store: &self.store,
            workspace,
            content,
            done: HashMap::new(),
        };
        let mut queued = Vec::new();
        let mut to_send = Vec::new();
        let emails: Vec<&ChannelConfig> = audience
            .channels
            .iter()
            .filter(|c| matches!(c.settings, Settings::Email(_)))
            .collect();
        for member in &audience.members {
            let mut notification_id = None;
            if audience.in_app {
                match suppression(&self.store, member, kind, Channel::InApp, now).await? {
                    Some(why) => queued.push(Queued {
                        notification_id: None,
                        delivery_id: None,
                        channel: Channel::InApp,
                        destination: member.user_id.to_string(),
                        status: format!("SUPPRESSED: {}", why.reason()),
                    }),
                    None => {
                        let r = renderer.render(Channel::InApp).await?;
                        let message = Message::parse(&r.subject, &r.body).unwrap_or(Message {
                            subject: r.subject.chars().take(200).collect(),
                            body: r.body.chars().take(10_000).collect(),
                        });
                        let n = Notification::in_app(workspace, member.user_id, message, now);
                        let key = format!("{source}:{}", member.user_id);
                        let id = self.store.insert_keyed(&n, &key).await?;
                        notification_id = Some(id);
                        queued.push(Queued {
                            notification_id,
                            delivery_id: None,
                            channel: Channel::InApp,
                            destination: member.user_id.to_string(),
                            status: "SENT".into(),
                        });
                    }
                }
            }
            for channel in &emails {
                let r = renderer.render(Channel::Email).await?;
                let status =
                    match suppression(&self.store, member, kind, Channel::Email, now).await? {
                        Some(why) => (DeliveryStatus::Suppressed, Some(why.reason().to_string())),
                        None => (DeliveryStatus::Pending, None),
                    };
                let d = self.delivery(
                    workspace,
                    notification_id,
                    channel,
                    Some(member.user_id),
                    member.email.clone(),
                    kind,
                    &r,
                    &data,
                    status,
                    delivery_key(source, Some(member.user_id), channel.id),
                    now,
                );
                to_send.push(d);
            }
        }
        // The channels' own receivers.
        for channel in &audience.channels {
            let kind_channel = channel.settings.channel();
            let destinations: Vec<String> = match &channel.settings {
                Settings::Email(e) if e.to.is_empty() => continue,
                Settings::Email(e) => vec![e.to.join(", ")],
                Settings::Webhook(w) => vec![url::Url::parse(&w.url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .unwrap_or_default()],
                Settings::Sms(s) => s.to.clone(),
            };
            let r = renderer.render(kind_channel).await?;
            for (n, destination) in destinations.into_iter().enumerate() {
                let key = delivery_key(&format!("{source}#{n}"), None, channel.id);
                to_send.push(self.delivery(
                    workspace,
                    None,
                    channel,
                    None,
                    destination,
                    kind,
                    &r,
                    &data,
                    (DeliveryStatus::Pending, None),
                    key,
                    now,
                ));
            }
        }
        for d in to_send {
            queued.push(self.store_and_enqueue(d, audience.digest, now).await?);
        }
        self.relay.wake();
        Ok(queued)
    }

    #[allow(clippy::too_many_arguments)]
    fn delivery(
        &self,
        workspace: Uuid,
        notification_id: Option<Uuid>,
        channel: &ChannelConfig,
        recipient: Option<Uuid>,
        destination: String,
        kind: &str,
        r: &Rendered,
        data: &Value,
        (status, reason): (DeliveryStatus, Option<String>),
        key: String,
        now: i64,
    ) -> Delivery {
        Delivery {
            id: Uuid::now_v7(),
            workspace_id: workspace,
            notification_id,
            channel: channel.settings.channel(),
            channel_id: channel.id,
            recipient_id: recipient,
            destination,
            event_kind: kind.to_string(),
            subject: r.subject.clone(),
            body: r.body.clone(),
            html: r.html.clone(),
            data: data.clone(),
            finished_at: (status == DeliveryStatus::Suppressed).then_some(now),
            status,
            attempts: 0,
            last_error: reason,
            key,
            created_at: now,
        }
    }

    /// Stores a delivery (or finds it stored), then sends it on its way: a pending one to
    /// the queue, a digest's to its open digest.
    async fn store_and_enqueue(
        &self,
        mut d: Delivery,
        digest: Option<(Uuid, i64)>,
        now: i64,
    ) -> Result<Queued, ApiError> {
        let mut digest_id = None;
        if let (Some((rule, window_ms)), DeliveryStatus::Pending) = (digest, d.status) {
            let destination = format!(
                "{}:{}:{}",
                d.channel_id,
                d.recipient_id.map(|r| r.to_string()).unwrap_or_default(),
                d.destination
            );
            let (id, closes_at, opened) = self
                .store
                .open_digest(d.workspace_id, rule, &destination, now + window_ms)
                .await?;
            if opened {
                self.enqueue(CLOSE_DIGEST, json!({"digestId": id}), Some(closes_at))
                    .await?;
            }
            d.status = DeliveryStatus::Batched;
            digest_id = Some(id);
        }
        let (stored, new) = self.store.insert_delivery(&d, digest_id).await?;
        // A repeat finds its delivery pending (a crash came between row and task):
        // enqueue again; the claim makes the spare harmless.
        if stored.status == DeliveryStatus::Pending && (new || stored.attempts == 0) {
            self.enqueue_delivery(stored.id, stored.attempts + 1)
                .await?;
        }
        Ok(Queued {
            notification_id: stored.notification_id,
            delivery_id: Some(stored.id),
            channel: stored.channel,
            destination: stored.destination,
            status: stored.status.as_str().to_string(),
        })
    }

    pub async fn enqueue_delivery(&self, delivery: Uuid, attempt: i64) -> Result<(), ApiError> {
        let mut task = Task::new(DELIVER, json!({"deliveryId": delivery}), 5);
        task.attempt = attempt.max(1) as u32;
        self.queue
            .enqueue(QUEUE, &task)
            .await
            .map_err(|e| ApiError::internal(format!("enqueueing a delivery: {e}")))
    }

    pub async fn enqueue(
        &self,
        kind: &str,
        payload: Value,
        not_before: Option<i64>,
    ) -> Result<(), ApiError> {
        let mut task = Task::new(kind, payload, 5);
        task.not_before_ms = not_before;
        self.queue
            .enqueue(QUEUE, &task)
            .await
            .map_err(|e| ApiError::internal(format!("enqueueing a notification task: {e}")))
    }

    /// Re-enqueues what a queue held only in memory: pending deliveries and open
    /// digests (at start-up of a process whose queue does not survive restarts).
    pub async fn recover(&self) -> Result<usize, ApiError> {
        let pending = self.store.pending_deliveries().await?;
        for (id, attempts) in &pending {
            self.enqueue_delivery(*id, attempts + 1).await?;
        }
        let digests = self.store.open_digests().await?;
        for (id, closes_at) in &digests {
            self.enqueue(CLOSE_DIGEST, json!({"digestId": id}), Some(*closes_at))
                .await?;
        }
        Ok(pending.len() + digests.len())
    }
}
