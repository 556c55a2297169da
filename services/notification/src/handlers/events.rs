//! Platform events become notifications.
//!
//! Bound to `notification.platform-events` with the kinds rules may name. For each event:
//! - an execution outcome always reaches, in their inbox, whoever started the run, or,
//!   for a run no user started (a schedule, a webhook, an event), the workflow's owner;
//! - every enabled rule of the event's workspace that matches it reaches its members
//!   and channels, at once or through its digest.
//!
//! Idempotent: every row is keyed on the event (`execution:<id>` for the default notice,
//! the event id for rules), so a redelivered event adds nothing and sends nothing twice.

use std::sync::Arc;

use async_trait::async_trait;
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::events::consumer::{Consumer, EventHandler};
use flowfleet_runtime::events::{BusError, Event, EventBus};

use crate::directory::Directory;
use crate::dispatch::{Audience, Content, Dispatcher};
use crate::domain::rules::{audience, Member, PlatformEvent, EVENT_KINDS};
use crate::domain::templates::event_data;
use crate::domain::ExecutionOutcome;

pub const QUEUE: &str = "notification.platform-events";

/// Declares and binds the queue (so events published from now on are kept).
pub async fn bind(bus: &Arc<dyn EventBus>) -> Result<Consumer, BusError> {
    Consumer::bind(bus, QUEUE, &EVENT_KINDS).await
}

pub struct PlatformEvents {
    pub dispatcher: Dispatcher,
    pub directory: Directory,
    pub app_url: String,
}

#[async_trait]
impl EventHandler for PlatformEvents {
    #[tracing::instrument(skip_all, fields(kind = %event.kind, event_id = %event.id))]
    async fn handle(&self, event: &Event) -> anyhow::Result<()> {
        let Some(platform) =
            PlatformEvent::read(event.id, &event.kind, event.occurred_at_ms, &event.payload)
        else {
            // A malformed payload never becomes well-formed: requeueing it would loop
            // forever, so it is logged and acknowledged.
            tracing::error!("dropping an event without a readable workspace");
            return Ok(());
        };
        self.notify(&platform).await.map_err(anyhow::Error::from)
    }
}

impl PlatformEvents {
    async fn notify(&self, event: &PlatformEvent) -> Result<(), ApiError> {
        let data = event_data(event, &self.app_url);
        let content = Content::Templates {
            kind: event.kind,
            data,
        };
        let store = &self.dispatcher.store;
        let mut members: Option<Vec<Member>> = None;
        // The default notice of an outcome.
        if let Ok(outcome) = serde_json::from_value::<ExecutionOutcome>(event.payload.clone()) {
            if let Some(recipient) = outcome.recipient() {
                let all = self.directory.members(event.workspace_id).await?;
                let told = audience(&all, &[recipient], &[]);
                members = Some(all);
                self.dispatcher
                    .dispatch(
                        event.workspace_id,
                        &outcome.source_key(),
                        event.kind,
                        &content,
                        &Audience {
                            members: told,
                            in_app: true,
                            channels: Vec::new(),
                            digest: None,
                        },
                    )
                    .await?;
            }
        }
        let rules: Vec<_> = store
            .rules(event.workspace_id)
            .await?
            .into_iter()
            .filter(|r| r.matches(event))
            .collect();
        if rules.is_empty() {
            return Ok(());
        }
        let channels = store.channels(event.workspace_id).await?;
        let members = match members {
            Some(m) => m,
            None => self.directory.members(event.workspace_id).await?,
        };
        for rule in rules {
            let told = audience(&members, &rule.member_ids, &rule.roles);
            let used = channels
                .iter()
                .filter(|c| rule.channel_ids.contains(&c.id))
                .cloned()
                .collect();
            self.dispatcher
                .dispatch(
                    event.workspace_id,
                    &format!("{}:{}", event.id, rule.id),
                    event.kind,
                    &content,
                    &Audience {
                        members: told,
                        in_app: rule.in_app,
                        channels: used,
                        digest: rule.digest_window_secs.map(|s| (rule.id, s * 1_000)),
                    },
                )
                .await?;
        }
        Ok(())
    }
}
