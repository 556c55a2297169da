//! `notificationReceived`: a user's notifications as they are created.
//!
//! Fed by this service's `notification.created` outbox events as this process's live
//! listener hears them from the bus (every replica hears every event), so a user connected
//! to any gateway replica sees notifications created by any replica, in both runtimes.
//! The same rule as `User.notifications`: the signed-in user themself, in a session of
//! their own (an API key is held to one workspace; an inbox spans all of them).

use async_graphql::{Context, Result, Subscription};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::error::{ApiError, ErrorCode};
use flowfleet_runtime::events::live::{LiveEvent, LiveEvents};
use futures::stream::{BoxStream, StreamExt as _};
use uuid::Uuid;

use super::{Ctx, NotificationNode};

/// The events this service's live listener binds.
pub const BINDINGS: &[&str] = &["notification.created"];

/// Notifications buffered in a process before the slowest subscriber counts as behind.
pub const CAPACITY: usize = 1024;

#[derive(Default)]
pub struct Subscription;

#[Subscription]
impl Subscription {
    /// The signed-in user's notifications as they are created, on every channel. The user
    /// themself in a session of their own only (API keys get FORBIDDEN), as for
    /// `User.notifications`.
    async fn notification_received(
        &self,
        ctx: &Context<'_>,
    ) -> Result<BoxStream<'static, Result<NotificationNode>>> {
        let me = caller(ctx).require_session()?.user_id;
        let store = ctx.data::<Ctx>()?.store.clone();
        let live = ctx
            .data::<LiveEvents>()?
            .subscribe()
            .await
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        let notifications = live
            .filter_map(move |item| {
                let id = match &item {
                    LiveEvent::Event(event) => {
                        let recipient = event.payload.get("recipientId").and_then(|r| r.as_str());
                        (recipient == Some(me.to_string().as_str()))
                            .then(|| {
                                event
                                    .payload
                                    .get("notificationId")?
                                    .as_str()?
                                    .parse::<Uuid>()
                                    .ok()
                            })
                            .flatten()
                            .map(Ok)
                    }
                    LiveEvent::Missed(count) => Some(Err(*count)),
                };
                async move { id }
            })
            .then(move |id| {
                let store = store.clone();
                async move {
                    match id {
                        Ok(id) => Ok(store.notification(id, me).await?),
                        Err(count) => Err(ApiError::new(
                            ErrorCode::SubscriptionLagged,
                            format!(
                                "this subscription fell behind and missed {count} notifications; \
                                 query `notifications` to catch up"
                            ),
                        )),
                    }
                }
            })
            // A notification erased in between (account deletion) is skipped.
            .filter_map(
                |read: Result<Option<crate::domain::Notification>, ApiError>| async move {
                    match read {
                        Ok(found) => found.map(|n| Ok(NotificationNode::from(n))),
                        Err(error) => Some(Err(error.into())),
                    }
                },
            );
        Ok(notifications.boxed())
    }
}
