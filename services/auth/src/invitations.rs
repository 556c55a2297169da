//! Invitations by e-mail: once an invitation is stored, the notification service is asked
//! to e-mail its link through the workspace's e-mail channel.
//!
//! The token travels only in that gRPC call (never in an event or a log line); the
//! notification service seals it at rest. A workspace without an e-mail channel is told
//! so (`FAILED_PRECONDITION`), and the inviter shares the token themself, as before. The
//! invitation stands either way: e-mail is a convenience, not a condition.

use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::proto::notification::v1::notification_service_client::NotificationServiceClient;
use flowfleet_runtime::proto::notification::v1::SendInvitationRequest;

use crate::domain::Invitation;
use crate::graphql::ExportPeers;

/// Whether an invitation went out by e-mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emailed {
    Queued,
    /// The workspace has no e-mail channel.
    NoChannel,
    /// The notification service could not be asked (logged).
    Unavailable,
}

/// Asks the notification service to e-mail `invitation` with `token`.
pub async fn email(
    peers: &ExportPeers,
    invitation: &Invitation,
    token: &str,
    workspace_name: &str,
    inviter_name: &str,
) -> Emailed {
    let Some(channel) = peers.get().and_then(|all| {
        all.iter()
            .find(|(s, _)| *s == ServiceName::Notification)
            .map(|(_, c)| c.clone())
    }) else {
        return Emailed::Unavailable;
    };
    let request = SendInvitationRequest {
        workspace_id: invitation.workspace.to_string(),
        email: invitation.email.clone(),
        workspace_name: workspace_name.to_string(),
        inviter_name: inviter_name.to_string(),
        role: invitation.role.as_str().to_string(),
        token: token.to_string(),
        expires_at_ms: invitation.expires_at,
        invitation_id: invitation.id.to_string(),
    };
    // As the auth service, not as the inviter: sending an invitation (with its token)
    // is for the fleet's services only.
    let sent = flowfleet_runtime::grpc::as_service(
        NotificationServiceClient::new(channel).send_invitation(request),
    )
    .await;
    match sent {
        Ok(_) => Emailed::Queued,
        Err(s) if s.code() == tonic::Code::FailedPrecondition => Emailed::NoChannel,
        Err(s) => {
            tracing::warn!(code = ?s.code(), message = s.message(), "the invitation could not be e-mailed");
            Emailed::Unavailable
        }
    }
}
