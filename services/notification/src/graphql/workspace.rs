//! A workspace's notification settings, for its ADMINs: channels (secrets go in, never
//! out), rules, templates with `previewNotification`, and the delivery log. Resolvers
//! parse and call [`Manage`](crate::settings::Manage); the rules live there.

use async_graphql::{ComplexObject, Context, InputObject, Json, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::clock::to_datetime;
use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_security::access::Principal;
use flowfleet_security::identity::Role;
use uuid::Uuid;

use super::channels::{ChannelNode, NotificationChannelInput};
use super::{Ctx, PageInfo};
use crate::domain::channels::bad;
use crate::domain::delivery::{Attempt, Delivery, DeliveryStatus};
use crate::domain::rules::Rule;
use crate::domain::templates::{Rendered, Template};
use crate::domain::Channel;
use crate::settings::EffectiveTemplate;

fn who<'a>(ctx: &'a Context<'_>) -> Result<Principal<'a>, ApiError> {
    Ok(Principal::User(caller(ctx).require()?))
}

fn ids(path: &str, values: &[ID]) -> Result<Vec<Uuid>, ApiError> {
    values
        .iter()
        .enumerate()
        .map(|(n, v)| {
            v.parse::<Uuid>()
                .map_err(|_| bad(&format!("{path}.{n}"), "not an id"))
        })
        .collect()
}

// ---- rules ----

#[derive(InputObject)]
pub struct NotificationRuleInput {
    pub name: String,
    #[graphql(default = true)]
    pub enabled: bool,
    /// Event kinds: `execution.succeeded`, `execution.failed`, `workflow.published`,
    /// `file.created`, `member.joined`.
    pub events: Vec<String>,
    /// Only events about these workflows; empty for all.
    #[graphql(default)]
    pub workflow_ids: Vec<ID>,
    #[graphql(default)]
    pub member_ids: Vec<ID>,
    #[graphql(default)]
    pub roles: Vec<Role>,
    #[graphql(default)]
    pub channel_ids: Vec<ID>,
    /// Whether the members also get an inbox notification.
    #[graphql(default = true)]
    pub in_app: bool,
    /// Batch events per recipient over this window (1 to 86400 seconds) into one message.
    pub digest_window_seconds: Option<i32>,
}

impl NotificationRuleInput {
    fn into_rule(self, workspace: Uuid, now: i64) -> Result<Rule, ApiError> {
        Ok(Rule {
            id: Uuid::now_v7(),
            workspace_id: workspace,
            name: self.name.trim().to_string(),
            enabled: self.enabled,
            events: self.events,
            workflow_ids: ids("input.workflowIds", &self.workflow_ids)?,
            member_ids: ids("input.memberIds", &self.member_ids)?,
            roles: self.roles,
            channel_ids: ids("input.channelIds", &self.channel_ids)?,
            in_app: self.in_app,
            digest_window_secs: self.digest_window_seconds.map(i64::from),
            created_at: now,
        })
    }
}

#[derive(SimpleObject)]
#[graphql(name = "NotificationRule")]
pub struct RuleNode {
    pub id: ID,
    pub name: String,
    pub enabled: bool,
    pub events: Vec<String>,
    pub workflow_ids: Vec<ID>,
    pub member_ids: Vec<ID>,
    pub roles: Vec<Role>,
    pub channel_ids: Vec<ID>,
    pub in_app: bool,
    pub digest_window_seconds: Option<i64>,
    pub created_at: DateTime<Utc>,
}

impl From<Rule> for RuleNode {
    fn from(r: Rule) -> Self {
        let ids = |v: Vec<Uuid>| v.into_iter().map(|i| ID(i.to_string())).collect();
        RuleNode {
            id: ID(r.id.to_string()),
            name: r.name,
            enabled: r.enabled,
            events: r.events,
            workflow_ids: ids(r.workflow_ids),
            member_ids: ids(r.member_ids),
            roles: r.roles,
            channel_ids: ids(r.channel_ids),
            in_app: r.in_app,
            digest_window_seconds: r.digest_window_secs,
            created_at: to_datetime(r.created_at),
        }
    }
}

// ---- templates ----

#[derive(InputObject)]
pub struct NotificationTemplateInput {
    /// minijinja; one line once rendered.
    pub subject: String,
    pub body: String,
    /// E-mail's HTML part (auto-escaped).
    pub html: Option<String>,
}

impl From<NotificationTemplateInput> for Template {
    fn from(t: NotificationTemplateInput) -> Self {
        Template {
            subject: t.subject,
            body: t.body,
            html: t.html,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "NotificationTemplate")]
pub struct TemplateNode {
    /// An event kind, or `digest`.
    pub event: String,
    pub channel: Channel,
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
    /// True while the workspace uses the built-in template.
    pub is_default: bool,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<EffectiveTemplate> for TemplateNode {
    fn from(t: EffectiveTemplate) -> Self {
        TemplateNode {
            event: t.kind.to_string(),
            channel: t.channel,
            subject: t.template.subject,
            body: t.template.body,
            html: t.template.html,
            is_default: t.updated_at.is_none(),
            updated_at: t.updated_at.map(to_datetime),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "RenderedNotification")]
pub struct RenderedNode {
    pub subject: String,
    pub body: String,
    pub html: Option<String>,
}

impl From<Rendered> for RenderedNode {
    fn from(r: Rendered) -> Self {
        RenderedNode {
            subject: r.subject,
            body: r.body,
            html: r.html,
        }
    }
}

// ---- deliveries ----

#[derive(SimpleObject)]
#[graphql(name = "DeliveryAttempt")]
pub struct AttemptNode {
    pub attempt: i64,
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// What the provider answered (`HTTP 200`, the SMTP reply) or why it failed.
    pub detail: String,
}

impl From<Attempt> for AttemptNode {
    fn from(a: Attempt) -> Self {
        AttemptNode {
            attempt: a.attempt,
            at: to_datetime(a.at),
            ok: a.ok,
            detail: a.detail,
        }
    }
}

/// One message through one channel to one destination, and its attempts.
#[derive(SimpleObject)]
#[graphql(name = "NotificationDelivery", complex)]
pub struct DeliveryNode {
    pub id: ID,
    pub channel: Channel,
    pub channel_id: ID,
    pub recipient_id: Option<ID>,
    /// Addresses, a phone number, or the receiver's host.
    pub destination: String,
    /// The event kind, `notify`, or `digest`.
    pub event: String,
    pub subject: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<Delivery> for DeliveryNode {
    fn from(d: Delivery) -> Self {
        DeliveryNode {
            id: ID(d.id.to_string()),
            channel: d.channel,
            channel_id: ID(d.channel_id.to_string()),
            recipient_id: d.recipient_id.map(|r| ID(r.to_string())),
            destination: d.destination,
            event: d.event_kind,
            subject: d.subject,
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error,
            created_at: to_datetime(d.created_at),
            finished_at: d.finished_at.map(to_datetime),
        }
    }
}

#[ComplexObject]
impl DeliveryNode {
    /// Every attempt, oldest first. (Reaching a delivery already took its access check.)
    async fn log(&self, ctx: &Context<'_>) -> Result<Vec<AttemptNode>> {
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &self.id)?;
        Ok(c.manage
            .attempts(id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}

#[derive(SimpleObject)]
pub struct DeliveryConnection {
    pub nodes: Vec<DeliveryNode>,
    pub page_info: PageInfo,
}

// ---- the workspace entity, queries and mutations ----

/// The auth service's entity; this subgraph adds notification settings.
#[derive(SimpleObject)]
#[graphql(name = "Workspace", complex)]
pub struct WorkspaceRef {
    pub id: ID,
}

#[ComplexObject]
impl WorkspaceRef {
    /// Where the workspace's notifications go. ADMIN or above.
    async fn notification_channels(&self, ctx: &Context<'_>) -> Result<Vec<ChannelNode>> {
        let c = ctx.data::<Ctx>()?;
        let ws = parse_id("id", &self.id)?;
        Ok(c.manage
            .channels(who(ctx)?, ws)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Who hears of which events. ADMIN or above.
    async fn notification_rules(&self, ctx: &Context<'_>) -> Result<Vec<RuleNode>> {
        let c = ctx.data::<Ctx>()?;
        let ws = parse_id("id", &self.id)?;
        Ok(c.manage
            .rules(who(ctx)?, ws)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The template of every event kind and channel, the workspace's or the built-in
    /// one. ADMIN or above.
    async fn notification_templates(&self, ctx: &Context<'_>) -> Result<Vec<TemplateNode>> {
        let c = ctx.data::<Ctx>()?;
        let ws = parse_id("id", &self.id)?;
        Ok(c.manage
            .templates(who(ctx)?, ws)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The delivery log, newest first. ADMIN or above.
    async fn notification_deliveries(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
        status: Option<DeliveryStatus>,
    ) -> Result<DeliveryConnection> {
        let c = ctx.data::<Ctx>()?;
        let ws = parse_id("id", &self.id)?;
        if !(1..=100).contains(&first) {
            return Err(bad("first", "`first` must be 1 to 100").into());
        }
        let after = after.map(|a| parse_id("after", &a)).transpose()?;
        let page = c
            .manage
            .deliveries(who(ctx)?, ws, status, after, first.into())
            .await?;
        Ok(DeliveryConnection {
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor: page.nodes.last().map(|d| d.id.to_string()),
            },
            nodes: page.nodes.into_iter().map(Into::into).collect(),
        })
    }
}

#[derive(Default)]
pub struct WorkspaceQuery;

#[Object]
impl WorkspaceQuery {
    /// Resolves a `Workspace` reference without I/O: each field checks access.
    #[graphql(entity)]
    async fn find_workspace_by_id(&self, id: ID) -> WorkspaceRef {
        WorkspaceRef { id }
    }

    /// Renders a template without sending anything: the one given (else the
    /// workspace's) on the payload given (else a sample event). ADMIN or above.
    async fn preview_notification(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        event: String,
        channel: Channel,
        template: Option<NotificationTemplateInput>,
        payload: Option<Json<serde_json::Value>>,
    ) -> Result<RenderedNode> {
        let c = ctx.data::<Ctx>()?;
        let ws = parse_id("workspaceId", &workspace_id)?;
        Ok(c.manage
            .preview(
                who(ctx)?,
                ws,
                &event,
                channel,
                template.map(Into::into),
                payload.map(|p| p.0),
            )
            .await?
            .into())
    }
}

#[derive(Default)]
pub struct WorkspaceMutation;

#[Object]
impl WorkspaceMutation {
    /// Adds a channel. ADMIN or above.
    #[tracing::instrument(skip_all)]
    async fn create_notification_channel(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        input: NotificationChannelInput,
    ) -> Result<ChannelNode> {
        let c = ctx.data::<Ctx>()?;
        let ws = parse_id("workspaceId", &workspace_id)?;
        let (name, settings, secrets) = input.parse()?;
        Ok(c.manage
            .create_channel(who(ctx)?, ws, &name, settings, secrets, "input")
            .await?
            .into())
    }

    /// Replaces a channel's settings; secrets left out are kept. ADMIN or above.
    #[tracing::instrument(skip_all)]
    async fn update_notification_channel(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: NotificationChannelInput,
    ) -> Result<ChannelNode> {
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &id)?;
        let (name, settings, secrets) = input.parse()?;
        Ok(c.manage
            .update_channel(who(ctx)?, id, &name, settings, secrets, "input")
            .await?
            .into())
    }

    /// Deletes a channel; its pending deliveries then fail. ADMIN or above.
    #[tracing::instrument(skip_all)]
    async fn delete_notification_channel(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &id)?;
        Ok(c.manage.delete_channel(who(ctx)?, id).await?)
    }

    /// Adds a rule. ADMIN or above.
    #[tracing::instrument(skip_all)]
    async fn create_notification_rule(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        input: NotificationRuleInput,
    ) -> Result<RuleNode> {
        let c = ctx.data::<Ctx>()?;
        let ws = parse_id("workspaceId", &workspace_id)?;
        let rule = input.into_rule(ws, c.clock.now_ms())?;
        Ok(c.manage
            .save_rule(who(ctx)?, rule, None, "input")
            .await?
            .into())
    }

    /// Replaces a rule. ADMIN or above.
    #[tracing::instrument(skip_all)]
    async fn update_notification_rule(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: NotificationRuleInput,
    ) -> Result<RuleNode> {
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &id)?;
        // The workspace and creation time are the stored rule's.
        let rule = input.into_rule(Uuid::nil(), 0)?;
        Ok(c.manage
            .save_rule(who(ctx)?, rule, Some(id), "input")
            .await?
            .into())
    }

    #[tracing::instrument(skip_all)]
    async fn delete_notification_rule(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &id)?;
        Ok(c.manage.delete_rule(who(ctx)?, id).await?)
    }

    /// Overrides the template of an event kind (or `digest`) on a channel; a template
    /// that does not parse is refused with its line and column. ADMIN or above.
    #[tracing::instrument(skip_all)]
    async fn set_notification_template(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        event: String,
        channel: Channel,
        template: NotificationTemplateInput,
    ) -> Result<TemplateNode> {
        let c = ctx.data::<Ctx>()?;
        let ws = parse_id("workspaceId", &workspace_id)?;
        Ok(c.manage
            .set_template(who(ctx)?, ws, &event, channel, template.into())
            .await?
            .into())
    }

    /// Goes back to the built-in template. ADMIN or above.
    #[tracing::instrument(skip_all)]
    async fn reset_notification_template(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        event: String,
        channel: Channel,
    ) -> Result<TemplateNode> {
        let c = ctx.data::<Ctx>()?;
        let ws = parse_id("workspaceId", &workspace_id)?;
        Ok(c.manage
            .reset_template(who(ctx)?, ws, &event, channel)
            .await?
            .into())
    }
}
