//! The use cases of a workspace's notification settings (channels, rules, templates,
//! the delivery log) and of a person's preferences: one function per operation, each
//! authorizing through the shared access check, then loading, deciding and writing.
//!
//! Workspace settings are the ADMINs': they name addresses and hold secrets. A channel's
//! secrets are sealed here and never leave the service again except to its sender.

use std::sync::Arc;

use flowfleet_runtime::clock::Clock;
use flowfleet_runtime::error::ApiError;
use flowfleet_security::access::{Access, Principal, Target};
use flowfleet_security::identity::Role;
use flowfleet_security::secrets::SecretKeyRing;
use uuid::Uuid;

use crate::domain::channels::{bad, parse_name, ChannelConfig, Secrets, Settings};
use crate::domain::delivery::{Attempt, Delivery, DeliveryStatus};
use crate::domain::rules::{parse_event_kind, Preferences, Rule};
use crate::domain::templates::{default_template, event_data, sample_event, Rendered, Template};
use crate::domain::Channel;
use crate::store::{DeliveryPage, Store};

pub const NO_CHANNEL: &str = "no such notification channel";
pub const NO_RULE: &str = "no such notification rule";

#[derive(Clone)]
pub struct Manage {
    pub store: Store,
    pub access: Access,
    pub secrets: Arc<SecretKeyRing>,
    pub clock: Arc<dyn Clock>,
    pub app_url: String,
}

/// A template kind: a platform event, or `digest`.
pub fn parse_template_kind(path: &str, kind: &str) -> Result<&'static str, ApiError> {
    if kind == "digest" {
        return Ok("digest");
    }
    parse_event_kind(path, kind).map_err(|_| {
        bad(
            path,
            format!(
                "unknown template `{}`; use an event kind or `digest`",
                kind.chars().take(60).collect::<String>()
            ),
        )
    })
}

/// A template as the workspace uses it.
pub struct EffectiveTemplate {
    pub kind: &'static str,
    pub channel: Channel,
    pub template: Template,
    /// `None` for a built-in template.
    pub updated_at: Option<i64>,
}

impl Manage {
    async fn admin<'a>(&self, who: Principal<'a>, workspace: Uuid) -> Result<(), ApiError> {
        self.access
            .authorize(who, workspace, Role::Admin, Target::Workspace)
            .await
    }

    /// The channel `id`, for an ADMIN of its workspace; anyone else cannot tell it from
    /// a missing one.
    async fn admin_channel(&self, who: Principal<'_>, id: Uuid) -> Result<ChannelConfig, ApiError> {
        let channel = self
            .store
            .channel(id)
            .await?
            .ok_or_else(|| ApiError::not_found(NO_CHANNEL))?;
        self.access
            .authorize(
                who,
                channel.workspace_id,
                Role::Admin,
                Target::Resource(NO_CHANNEL),
            )
            .await?;
        Ok(channel)
    }

    /// The rule `id`, for an ADMIN of its workspace (as [`Self::admin_channel`]).
    async fn admin_rule(&self, who: Principal<'_>, id: Uuid) -> Result<Rule, ApiError> {
        let rule = self
            .store
            .rule(id)
            .await?
            .ok_or_else(|| ApiError::not_found(NO_RULE))?;
        self.access
            .authorize(
                who,
                rule.workspace_id,
                Role::Admin,
                Target::Resource(NO_RULE),
            )
            .await?;
        Ok(rule)
    }

    fn seal(&self, channel: &ChannelConfig, secrets: &Secrets) -> Result<String, ApiError> {
        let json = serde_json::to_vec(secrets).map_err(ApiError::internal)?;
        self.secrets
            .seal(
                &json,
                &ChannelConfig::secret_context(channel.workspace_id, channel.id),
            )
            .map_err(ApiError::internal)
    }

    fn open(&self, channel: &ChannelConfig, sealed: &str) -> Result<Secrets, ApiError> {
        let json = self
            .secrets
            .open(
                sealed,
                &ChannelConfig::secret_context(channel.workspace_id, channel.id),
            )
            .map_err(ApiError::internal)?;
        serde_json::from_slice(&json).map_err(ApiError::internal)
    }

    pub async fn channels(
        &self,
        who: Principal<'_>,
        workspace: Uuid,
    ) -> Result<Vec<ChannelConfig>, ApiError> {
        self.admin(who, workspace).await?;
        self.store.channels(workspace).await
    }

    pub async fn create_channel(
        &self,
        who: Principal<'_>,
        workspace: Uuid,
        name: &str,
        settings: Settings,
        secrets: Secrets,
        path: &str,
    ) -> Result<ChannelConfig, ApiError> {
        self.admin(who, workspace).await?;
        let name = parse_name(&format!("{path}.name"), name)?;
        let secrets_path = secrets_path(path, &settings);
        secrets.check_complete(&settings, &secrets_path)?;
        let now = self.clock.now_ms();
        let channel = ChannelConfig {
            id: Uuid::now_v7(),
            workspace_id: workspace,
            name,
            settings,
            secrets_set: secrets.names(),
            created_at: now,
            updated_at: now,
        };
        let sealed = self.seal(&channel, &secrets)?;
        self.store.insert_channel(&channel, &sealed).await?;
        Ok(channel)
    }

    /// Replaces a channel's name and settings; secrets left out are kept.
    pub async fn update_channel(
        &self,
        who: Principal<'_>,
        id: Uuid,
        name: &str,
        settings: Settings,
        update: Secrets,
        path: &str,
    ) -> Result<ChannelConfig, ApiError> {
        let existing = self.admin_channel(who, id).await?;
        let (_, sealed) = self
            .store
            .channel_secrets(existing.workspace_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found(NO_CHANNEL))?;
        let secrets = self.open(&existing, &sealed)?.merged(update);
        secrets.check_complete(&settings, &secrets_path(path, &settings))?;
        let channel = ChannelConfig {
            name: parse_name(&format!("{path}.name"), name)?,
            settings,
            secrets_set: secrets.names(),
            updated_at: self.clock.now_ms(),
            ..existing
        };
        let sealed = self.seal(&channel, &secrets)?;
        if !self.store.update_channel(&channel, &sealed).await? {
            return Err(ApiError::not_found(NO_CHANNEL));
        }
        Ok(channel)
    }

    pub async fn delete_channel(&self, who: Principal<'_>, id: Uuid) -> Result<bool, ApiError> {
        let existing = self.admin_channel(who, id).await?;
        self.store.delete_channel(existing.workspace_id, id).await
    }

    pub async fn rules(&self, who: Principal<'_>, workspace: Uuid) -> Result<Vec<Rule>, ApiError> {
        self.admin(who, workspace).await?;
        self.store.rules(workspace).await
    }

    /// Creates a rule (`rule.id` new) or replaces one; channels must be the workspace's.
    pub async fn save_rule(
        &self,
        who: Principal<'_>,
        rule: Rule,
        existing: Option<Uuid>,
        path: &str,
    ) -> Result<Rule, ApiError> {
        let rule = match existing {
            Some(id) => {
                let old = self.admin_rule(who, id).await?;
                Rule {
                    id,
                    workspace_id: old.workspace_id,
                    created_at: old.created_at,
                    ..rule
                }
            }
            None => {
                self.admin(who, rule.workspace_id).await?;
                rule
            }
        };
        rule.check(path)?;
        let channels = self.store.channels(rule.workspace_id).await?;
        for (n, id) in rule.channel_ids.iter().enumerate() {
            if !channels.iter().any(|c| c.id == *id) {
                return Err(bad(
                    &format!("{path}.channelIds.{n}"),
                    "no such channel in this workspace",
                ));
            }
        }
        self.store.upsert_rule(&rule).await?;
        Ok(rule)
    }

    pub async fn delete_rule(&self, who: Principal<'_>, id: Uuid) -> Result<bool, ApiError> {
        let rule = self.admin_rule(who, id).await?;
        self.store.delete_rule(rule.workspace_id, id).await
    }

    /// Every template the workspace uses: its overrides, and the built-in ones where it
    /// has none.
    pub async fn templates(
        &self,
        who: Principal<'_>,
        workspace: Uuid,
    ) -> Result<Vec<EffectiveTemplate>, ApiError> {
        self.admin(who, workspace).await?;
        let mut all = Vec::new();
        let kinds = crate::domain::rules::EVENT_KINDS
            .iter()
            .copied()
            .chain(["digest"]);
        for kind in kinds {
            for channel in [
                Channel::InApp,
                Channel::Email,
                Channel::Webhook,
                Channel::Sms,
            ] {
                let (template, updated_at) =
                    match self.store.template(workspace, kind, channel).await? {
                        Some((t, at)) => (t, Some(at)),
                        None => (default_template(kind, channel), None),
                    };
                all.push(EffectiveTemplate {
                    kind,
                    channel,
                    template,
                    updated_at,
                });
            }
        }
        Ok(all)
    }

    /// Saves a workspace's template, refusing one that does not parse (with its line and
    /// column) or does not render on a sample of its event.
    pub async fn set_template(
        &self,
        who: Principal<'_>,
        workspace: Uuid,
        kind: &str,
        channel: Channel,
        template: Template,
    ) -> Result<EffectiveTemplate, ApiError> {
        self.admin(who, workspace).await?;
        let kind = parse_template_kind("event", kind)?;
        template.check("template")?;
        self.preview_data(workspace, kind, None)
            .and_then(|data| template.render(&data, "template"))?;
        let now = self.clock.now_ms();
        self.store
            .set_template(workspace, kind, channel, &template, now)
            .await?;
        Ok(EffectiveTemplate {
            kind,
            channel,
            template,
            updated_at: Some(now),
        })
    }

    pub async fn reset_template(
        &self,
        who: Principal<'_>,
        workspace: Uuid,
        kind: &str,
        channel: Channel,
    ) -> Result<EffectiveTemplate, ApiError> {
        self.admin(who, workspace).await?;
        let kind = parse_template_kind("event", kind)?;
        self.store.reset_template(workspace, kind, channel).await?;
        Ok(EffectiveTemplate {
            kind,
            channel,
            template: default_template(kind, channel),
            updated_at: None,
        })
    }

    fn preview_data(
        &self,
        workspace: Uuid,
        kind: &'static str,
        payload: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ApiError> {
        if kind == "digest" {
            return Ok(serde_json::json!({
                "count": 2,
                "items": [
                    {"subject": "Workflow \"Nightly sync\" failed", "body": "HTTP 502", "event": "execution.failed"},
                    {"subject": "Workflow \"Billing\" failed", "body": "timeout", "event": "execution.failed"},
                ],
            }));
        }
        let mut event = sample_event(kind, workspace);
        if let Some(p) = payload {
            if !p.is_object() {
                return Err(bad("payload", "a payload is a JSON object"));
            }
            event.payload = p;
        }
        Ok(event_data(&event, &self.app_url))
    }

    /// Renders a template (the one given, else the workspace's) on an event's payload
    /// (the one given, else a sample), sending nothing.
    pub async fn preview(
        &self,
        who: Principal<'_>,
        workspace: Uuid,
        kind: &str,
        channel: Channel,
        template: Option<Template>,
        payload: Option<serde_json::Value>,
    ) -> Result<Rendered, ApiError> {
        self.admin(who, workspace).await?;
        let kind = parse_template_kind("event", kind)?;
        let template = match template {
            Some(t) => {
                t.check("template")?;
                t
            }
            None => match self.store.template(workspace, kind, channel).await? {
                Some((t, _)) => t,
                None => default_template(kind, channel),
            },
        };
        let data = self.preview_data(workspace, kind, payload)?;
        template.render(&data, "template")
    }

    pub async fn deliveries(
        &self,
        who: Principal<'_>,
        workspace: Uuid,
        status: Option<DeliveryStatus>,
        after: Option<Uuid>,
        first: i64,
    ) -> Result<DeliveryPage, ApiError> {
        self.admin(who, workspace).await?;
        self.store
            .workspace_deliveries(workspace, status, after, first)
            .await
    }

    /// The deliveries of one of `user`'s notifications (empty when it is not theirs).
    pub async fn deliveries_of(
        &self,
        user: Uuid,
        notification: Uuid,
    ) -> Result<Vec<Delivery>, ApiError> {
        if self.store.notification(notification, user).await?.is_none() {
            return Ok(Vec::new());
        }
        self.store.deliveries_of(notification).await
    }

    pub async fn attempts(&self, delivery: Uuid) -> Result<Vec<Attempt>, ApiError> {
        self.store.attempts(delivery).await
    }

    pub async fn preferences(&self, user: Uuid) -> Result<Preferences, ApiError> {
        self.store.preferences(user).await
    }

    pub async fn set_preferences(
        &self,
        user: Uuid,
        p: Preferences,
    ) -> Result<Preferences, ApiError> {
        for (n, kind) in p.muted_events.iter().enumerate() {
            parse_event_kind(&format!("input.mutedEvents.{n}"), kind)?;
        }
        self.store
            .set_preferences(user, &p, self.clock.now_ms())
            .await?;
        Ok(p)
    }
}

/// Where a channel input's secrets are, for error paths.
fn secrets_path(path: &str, settings: &Settings) -> String {
    match settings {
        Settings::Email(_) => format!("{path}.email"),
        Settings::Webhook(_) => format!("{path}.webhook"),
        Settings::Sms(_) => format!("{path}.sms"),
    }
}
