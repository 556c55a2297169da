//! The notification service's gRPC server: other services send notifications through it.
//!
//! Only the in-app channel delivers in this version: e-mail, webhook and SMS
//! need per-workspace channel configuration that does not exist yet, so they
//! are refused with `FAILED_PRECONDITION` rather than pretending to deliver.

use std::sync::Arc;

use flowfleet_runtime::clock::Clock;
use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_runtime::events::outbox::Relay;
use flowfleet_runtime::proto::notification::v1::notification_service_server::NotificationService;
use flowfleet_runtime::proto::notification::v1::{
    SendNotificationRequest, SendNotificationResponse,
};
use flowfleet_security::access::{Access, Target};
use flowfleet_security::identity::Role;
use flowfleet_security::service_auth::GrpcGuard;
use tonic::{Request, Response, Status};

use crate::domain::{Channel, Message, Notification};
use crate::store::Store;

pub struct NotificationGrpc {
    pub store: Store,
    pub relay: Relay,
    pub access: Access,
    pub clock: Arc<dyn Clock>,
    pub guard: GrpcGuard,
}

#[tonic::async_trait]
impl NotificationService for NotificationGrpc {
    #[tracing::instrument(skip_all)]
    async fn send_notification(
        &self,
        request: Request<SendNotificationRequest>,
    ) -> Result<Response<SendNotificationResponse>, Status> {
        let caller = self.guard.caller(&request).await?;
        let r = request.into_inner();
        let workspace = parse_id("workspace_id", &r.workspace_id)?;
        // Services send for their workflows; a user needs EDITOR.
        self.access
            .authorize(&caller, workspace, Role::Editor, Target::Workspace)
            .await?;
        let recipient = parse_id("recipient_id", &r.recipient_id)?;
        let channel = Channel::parse(&r.channel).ok_or_else(|| {
            ApiError::bad_input(format!(
                "unknown channel `{}`; use IN_APP, EMAIL, WEBHOOK or SMS",
                r.channel.chars().take(40).collect::<String>()
            ))
        })?;
        let message = Message::parse(&r.subject, &r.body)?;
        if channel != Channel::InApp {
            return Err(Status::failed_precondition(format!(
                "the {} channel is not configured: only IN_APP notifications can be delivered in this version",
                channel.as_str()
            )));
        }
        // A workflow may only notify people of its own workspace.
        if self
            .access
            .third_party_role(recipient, workspace)
            .await?
            .is_none()
        {
            return Err(
                ApiError::forbidden("the recipient is not a member of this workspace").into(),
            );
        }
        let n = Notification::in_app(workspace, recipient, message, self.clock.now_ms());
        self.store.insert(&n, None).await?;
        self.relay.wake();
        Ok(Response::new(SendNotificationResponse {
            notification_id: n.id.to_string(),
            status: n.status.as_str().to_string(),
        }))
    }
}
