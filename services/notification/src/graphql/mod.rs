//! The notification subgraph: a user's inbox (`User.notifications`,
//! `User.unreadNotificationCount`, `markNotificationRead`, each notification's
//! deliveries) and preferences, here; a workspace's channels, rules, templates and
//! delivery log in [`workspace`]; new notifications live in [`live`]. A user's inbox is
//! theirs alone.

mod channels;
pub mod live;
mod preferences;
mod workspace;

use std::sync::Arc;

use async_graphql::{ComplexObject, Context, MergedObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::clock::{to_datetime, Clock};
use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_security::identity::Identity;
use uuid::Uuid;

use crate::domain::{self, Channel, Status};
use crate::settings::Manage;
use crate::store::Store;
pub use workspace::DeliveryNode;

pub type NotificationSchema = async_graphql::Schema<Query, Mutation, live::Subscription>;

/// What resolvers need, placed in the schema's data.
pub struct Ctx {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub manage: Manage,
}

#[derive(MergedObject, Default)]
pub struct Query(InboxQuery, workspace::WorkspaceQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(
    InboxMutation,
    workspace::WorkspaceMutation,
    preferences::PreferencesMutation,
);

/// The schema; `live` feeds `notificationReceived` ([`live`]).
pub fn schema(ctx: Ctx, live: flowfleet_runtime::events::live::LiveEvents) -> NotificationSchema {
    async_graphql::Schema::build(Query::default(), Mutation::default(), live::Subscription)
        .enable_federation()
        .enable_subscription_in_federation()
        .data(ctx)
        .data(live)
        .finish()
}

/// Page sizes of notifications.
const DEFAULT_PAGE: i32 = 20;
const MAX_PAGE: i32 = 100;

/// The auth service's entity, known here by its key only.
#[derive(SimpleObject)]
#[graphql(name = "User", complex)]
pub struct UserRef {
    pub id: ID,
}

impl UserRef {
    /// The signed-in caller, who must be this user in a session of their own: an inbox
    /// spans every workspace of its owner, so an API key (held to one workspace) may not
    /// read it.
    fn owner<'a>(&self, ctx: &'a Context<'_>) -> Result<&'a Identity, ApiError> {
        let me = caller(ctx).require_session()?;
        if me.user_id.to_string() != self.id.as_str() {
            return Err(ApiError::forbidden(
                "only the user themself can read their notifications",
            ));
        }
        Ok(me)
    }
}

#[ComplexObject]
impl UserRef {
    /// The user's notifications, newest first. Visible to the user themself only.
    async fn notifications(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(DEFAULT_PAGE)")] first: Option<i32>,
        after: Option<String>,
        #[graphql(default_with = "Some(false)")] unread_only: Option<bool>,
    ) -> Result<Option<NotificationConnection>> {
        // Nullable on purpose: a failure here (or this subgraph being down)
        // nulls only this field, not the parent object.
        let result: Result<NotificationConnection> = async {
            let me = self.owner(ctx)?;
            // An explicit null (e.g. an unset variable) means the default.
            let first = first.unwrap_or(DEFAULT_PAGE);
            let unread_only = unread_only.unwrap_or(false);
            let c = ctx.data::<Ctx>()?;
            if !(0..=MAX_PAGE).contains(&first) {
                return Err(ApiError::bad_input(format!("`first` must be 0 to {MAX_PAGE}")).into());
            }
            let after = after.map(|a| parse_id("after", &a)).transpose()?;
            let page = c
                .store
                .page(me.user_id, unread_only, after, first.into())
                .await?;
            let total_count = c.store.count(me.user_id, unread_only).await?;
            let end_cursor = page.nodes.last().map(|n| n.id.to_string());
            Ok(NotificationConnection {
                nodes: page.nodes.into_iter().map(Into::into).collect(),
                page_info: PageInfo {
                    has_next_page: page.has_next_page,
                    end_cursor,
                },
                total_count,
            })
        }
        .await;
        result.map(Some)
    }

    /// How many of the user's notifications are unread. The user themself only.
    async fn unread_notification_count(&self, ctx: &Context<'_>) -> Result<i64> {
        let me = self.owner(ctx)?;
        let c = ctx.data::<Ctx>()?;
        Ok(c.store.count(me.user_id, true).await?)
    }

    /// What the user muted and when they want quiet. The user themself only.
    async fn notification_preferences(
        &self,
        ctx: &Context<'_>,
    ) -> Result<preferences::PreferencesNode> {
        let me = self.owner(ctx)?;
        let c = ctx.data::<Ctx>()?;
        Ok(c.manage.preferences(me.user_id).await?.into())
    }
}

/// A message to a user about something in one of their workspaces.
#[derive(SimpleObject)]
#[graphql(name = "Notification", complex)]
pub struct NotificationNode {
    pub id: ID,
    pub workspace_id: ID,
    pub channel: Channel,
    pub subject: String,
    pub body: String,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    /// When the recipient marked it read; null while unread.
    pub read_at: Option<DateTime<Utc>>,
}

impl From<domain::Notification> for NotificationNode {
    fn from(n: domain::Notification) -> Self {
        NotificationNode {
            id: ID(n.id.to_string()),
            workspace_id: ID(n.workspace_id.to_string()),
            channel: n.channel,
            subject: n.subject,
            body: n.body,
            status: n.status,
            created_at: to_datetime(n.created_at),
            read_at: n.read_at.map(to_datetime),
        }
    }
}

#[ComplexObject]
impl NotificationNode {
    /// How it also went out: e-mails to the recipient, each with its log of attempts.
    #[graphql(requires_scopes = "session")]
    async fn deliveries(&self, ctx: &Context<'_>) -> Result<Vec<DeliveryNode>> {
        let me = caller(ctx).require_session()?;
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &self.id)?;
        Ok(c.manage
            .deliveries_of(me.user_id, id)
            .await?
            .into_iter()
            .map(DeliveryNode::from)
            .collect())
    }
}

#[derive(SimpleObject)]
pub struct NotificationConnection {
    pub nodes: Vec<NotificationNode>,
    pub page_info: PageInfo,
    /// All notifications matching the filter, across pages.
    pub total_count: i64,
}

/// Shared with the other subgraphs' connections.
#[derive(SimpleObject)]
#[graphql(shareable)]
pub struct PageInfo {
    pub has_next_page: bool,
    /// Pass as `after` to read the next page; null on an empty page.
    pub end_cursor: Option<String>,
}

#[derive(Default)]
pub struct InboxQuery;

#[Object]
impl InboxQuery {
    /// Resolves a `User` reference without I/O: each field checks that the
    /// caller is that user.
    #[graphql(entity)]
    async fn find_user_by_id(&self, id: ID) -> UserRef {
        UserRef { id }
    }
}

#[derive(Default)]
pub struct InboxMutation;

#[Object]
impl InboxMutation {
    /// Marks one of the caller's notifications read (a signed-in user, not an API
    /// key). Another user's notification is `NOT_FOUND`, exactly like a missing one.
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn mark_notification_read(&self, ctx: &Context<'_>, id: ID) -> Result<NotificationNode> {
        let me = caller(ctx).require_session()?;
        let c = ctx.data::<Ctx>()?;
        let id: Uuid = parse_id("id", &id)?;
        let n = c
            .store
            .mark_read(id, me.user_id, c.clock.now_ms())
            .await?
            .ok_or_else(|| ApiError::not_found("no such notification"))?;
        Ok(n.into())
    }
}
