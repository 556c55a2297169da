//! The notification service's gRPC server: other services (the `notify` node, the auth
//! service's invitations) send notifications through it. Every method authorizes its
//! caller on the workspace through the shared access check (services pass; a user needs
//! EDITOR), and reaches only that workspace's members and channels.

use std::sync::Arc;

use flowfleet_runtime::clock::Clock;
use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_runtime::proto::notification::v1::notification_service_server::NotificationService;
use flowfleet_runtime::proto::notification::v1::{
    NotifyRequest, NotifyResponse, Queued, SendInvitationRequest, SendInvitationResponse,
    SendNotificationRequest, SendNotificationResponse,
};
use flowfleet_security::access::{Access, Target};
use flowfleet_security::identity::Role;
use flowfleet_security::secrets::SecretKeyRing;
use flowfleet_security::service_auth::GrpcGuard;
use serde_json::json;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::directory::Directory;
use crate::dispatch::{Audience, Content, Dispatcher};
use crate::domain::channels::bad;
use crate::domain::delivery::{delivery_key, Delivery, DeliveryStatus};
use crate::domain::rules::audience;
use crate::domain::templates::Template;
use crate::domain::{Channel, Message};

pub struct NotificationGrpc {
    pub dispatcher: Dispatcher,
    pub directory: Directory,
    pub access: Access,
    pub clock: Arc<dyn Clock>,
    pub guard: GrpcGuard,
    pub secrets: Arc<SecretKeyRing>,
    pub app_url: String,
}

/// The context an invitation's sealed body opens under.
pub fn invitation_context(delivery: Uuid) -> String {
    format!("invitation-delivery:{delivery}")
}

impl NotificationGrpc {
    async fn authorize<T>(&self, request: &Request<T>, workspace: Uuid) -> Result<(), Status> {
        let caller = self.guard.caller(request).await?;
        // Services send for their workflows; a user needs EDITOR.
        self.access
            .authorize(&caller, workspace, Role::Editor, Target::Workspace)
            .await?;
        Ok(())
    }
}

fn queued(q: crate::dispatch::Queued) -> Queued {
    Queued {
        channel: q.channel.as_str().to_string(),
        destination: q.destination,
        status: q.status,
        notification_id: q.notification_id.map(|n| n.to_string()).unwrap_or_default(),
        delivery_id: q.delivery_id.map(|n| n.to_string()).unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl NotificationService for NotificationGrpc {
    #[tracing::instrument(skip_all)]
    async fn send_notification(
        &self,
        request: Request<SendNotificationRequest>,
    ) -> Result<Response<SendNotificationResponse>, Status> {
        let workspace = parse_id("workspace_id", &request.get_ref().workspace_id)?;
        self.authorize(&request, workspace).await?;
        let r = request.into_inner();
        let recipient = parse_id("recipient_id", &r.recipient_id)?;
        let channel = Channel::parse(&r.channel).ok_or_else(|| {
            ApiError::bad_input(format!(
                "unknown channel `{}`; use IN_APP or EMAIL",
                r.channel.chars().take(40).collect::<String>()
            ))
        })?;
        let message = Message::parse(&r.subject, &r.body)?;
        let members = self.directory.members(workspace).await?;
        // A service may only notify people of the workspace it acts in.
        let told = audience(&members, &[recipient], &[]);
        if told.is_empty() {
            return Err(
                ApiError::forbidden("the recipient is not a member of this workspace").into(),
            );
        }
        let channels = match channel {
            Channel::InApp => Vec::new(),
            Channel::Email => match self.dispatcher.store.first_email_channel(workspace).await? {
                Some(c) => vec![c],
                None => {
                    return Err(Status::failed_precondition(
                        "the workspace has no EMAIL channel; an ADMIN adds one with createNotificationChannel",
                    ))
                }
            },
            Channel::Webhook | Channel::Sms => {
                return Err(Status::failed_precondition(format!(
                    "{} reaches a channel's receivers, not a member: use Notify with the channel's id",
                    channel.as_str()
                )))
            }
        };
        let source = format!("direct:{}", Uuid::now_v7());
        let done = self
            .dispatcher
            .dispatch(
                workspace,
                &source,
                "notify",
                &Content::Inline {
                    // Text as given: `{{` in a direct message is not a template.
                    template: Template {
                        subject: "{{ subject }}".into(),
                        body: "{{ body }}".into(),
                        html: None,
                    },
                    data: json!({"subject": message.subject, "body": message.body}),
                },
                &Audience {
                    members: told,
                    in_app: channel == Channel::InApp,
                    channels,
                    digest: None,
                },
            )
            .await?;
        let first = done
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::internal("a dispatch to one member queued nothing"))?;
        Ok(Response::new(SendNotificationResponse {
            notification_id: first
                .notification_id
                .or(first.delivery_id)
                .map(|i| i.to_string())
                .unwrap_or_default(),
            status: first.status,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn notify(
        &self,
        request: Request<NotifyRequest>,
    ) -> Result<Response<NotifyResponse>, Status> {
        let workspace = parse_id("workspace_id", &request.get_ref().workspace_id)?;
        self.authorize(&request, workspace).await?;
        let r = request.into_inner();
        if r.source.is_empty() || r.source.len() > 300 {
            return Err(bad("source", "a source is 1 to 300 characters").into());
        }
        let ids = |path: &str, v: &[String]| -> Result<Vec<Uuid>, ApiError> {
            v.iter()
                .enumerate()
                .map(|(n, s)| parse_id(&format!("{path}[{n}]"), s))
                .collect()
        };
        let member_ids = ids("member_ids", &r.member_ids)?;
        let channel_ids = ids("channel_ids", &r.channel_ids)?;
        let roles = r
            .roles
            .iter()
            .enumerate()
            .map(|(n, s)| {
                Role::parse(s).ok_or_else(|| {
                    bad(
                        &format!("roles.{n}"),
                        "a role is OWNER, ADMIN, EDITOR or VIEWER",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let data: serde_json::Value = if r.data_json.is_empty() {
            json!({})
        } else {
            serde_json::from_str(&r.data_json)
                .map_err(|e| bad("data_json", format!("not JSON: {e}")))?
        };
        let template = Template {
            subject: r.subject,
            body: r.body,
            html: Some(r.html).filter(|h| !h.is_empty()),
        };
        template.check("message")?;
        let all_channels = self.dispatcher.store.channels(workspace).await?;
        let mut channels = Vec::new();
        for (n, id) in channel_ids.iter().enumerate() {
            match all_channels.iter().find(|c| c.id == *id) {
                Some(c) => channels.push(c.clone()),
                None => {
                    return Err(bad(
                        &format!("channel_ids.{n}"),
                        "no such channel in this workspace",
                    )
                    .into())
                }
            }
        }
        let members = self.directory.members(workspace).await?;
        for (n, id) in member_ids.iter().enumerate() {
            if !members.iter().any(|m| m.user_id == *id) {
                return Err(
                    bad(&format!("member_ids.{n}"), "not a member of this workspace").into(),
                );
            }
        }
        let told = audience(&members, &member_ids, &roles);
        if told.is_empty() && channels.is_empty() {
            return Err(bad("member_ids", "name members, roles or channels to notify").into());
        }
        let done = self
            .dispatcher
            .dispatch(
                workspace,
                &format!("notify:{}", r.source),
                "notify",
                &Content::Inline { template, data },
                &Audience {
                    members: told,
                    in_app: r.in_app,
                    channels,
                    digest: None,
                },
            )
            .await?;
        Ok(Response::new(NotifyResponse {
            queued: done.into_iter().map(queued).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn send_invitation(
        &self,
        request: Request<SendInvitationRequest>,
    ) -> Result<Response<SendInvitationResponse>, Status> {
        // Invitations are the auth service's: only a fleet service sends them.
        self.guard.caller(&request).await?.require_service()?;
        let r = request.into_inner();
        let workspace = parse_id("workspace_id", &r.workspace_id)?;
        let invitation = parse_id("invitation_id", &r.invitation_id)?;
        let email = crate::domain::channels::parse_email("email", &r.email)?;
        let Some(channel) = self.dispatcher.store.first_email_channel(workspace).await? else {
            return Err(Status::failed_precondition(
                "the workspace has no EMAIL channel",
            ));
        };
        let accept = format!(
            "{}/invitations/accept?token={}",
            self.app_url.trim_end_matches('/'),
            r.token
        );
        let expires = flowfleet_runtime::clock::to_datetime(r.expires_at_ms).to_rfc2822();
        let subject: String = format!(
            "{} invited you to {} on Flowfleet",
            r.inviter_name, r.workspace_name
        )
        .chars()
        .take(200)
        .collect();
        let body = format!(
            "{} invited you to join the workspace \"{}\" as {}.\n\nAccept: {accept}\n\nThe invitation expires on {expires}.",
            r.inviter_name, r.workspace_name, r.role
        );
        let now = self.clock.now_ms();
        let id = Uuid::now_v7();
        // The link carries the token: the body is sealed at rest and opened only by the
        // sender; the log shows the subject alone.
        let seal = |text: &str| {
            self.secrets
                .seal(text.as_bytes(), &invitation_context(id))
                .map_err(ApiError::internal)
        };
        let d = Delivery {
            id,
            workspace_id: workspace,
            notification_id: None,
            channel: Channel::Email,
            channel_id: channel.id,
            recipient_id: None,
            destination: email,
            event_kind: "member.invited".into(),
            subject,
            body: seal(&body)?,
            html: None,
            data: json!({"invitationId": invitation}),
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_error: None,
            key: delivery_key(&format!("invitation:{invitation}"), None, channel.id),
            created_at: now,
            finished_at: None,
        };
        let (stored, new) = self.dispatcher.store.insert_delivery(&d, None).await?;
        if new || (stored.status == DeliveryStatus::Pending && stored.attempts == 0) {
            self.dispatcher
                .enqueue_delivery(stored.id, stored.attempts + 1)
                .await?;
        }
        Ok(Response::new(SendInvitationResponse {
            delivery_id: stored.id.to_string(),
        }))
    }
}
