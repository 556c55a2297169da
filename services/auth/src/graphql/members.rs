//! Workspaces and their members: creating a workspace, invitations, role changes and
//! removal. The rules (who may grant what, the last owner) live in [`crate::domain`]; the
//! store applies them under a lock on the workspace.

use async_graphql::{ComplexObject, Context, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::clock::to_datetime;
use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_security::access::{membership_cache_key, Target};
use flowfleet_security::identity::Role;
use uuid::Uuid;

use super::api_keys::ApiKeyNode;
use super::audit::{security_events, SecurityEventConnection};
use super::{Ctx, MembershipNode, UserNode, WorkspaceNode};
use crate::domain::{self, Email, InvitationToken, Name, TimeZone};

/// How long an invitation can be accepted.
const INVITATION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// A member of a workspace and their role.
#[derive(SimpleObject)]
#[graphql(name = "Member")]
pub struct MemberNode {
    pub user: UserNode,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

impl From<domain::Member> for MemberNode {
    fn from(m: domain::Member) -> Self {
        MemberNode {
            user: m.user.into(),
            role: m.role,
            joined_at: to_datetime(m.joined_at),
        }
    }
}

/// An invitation to join a workspace with a role.
#[derive(SimpleObject)]
#[graphql(name = "Invitation")]
pub struct InvitationNode {
    pub id: ID,
    pub workspace_id: ID,
    /// The address that must accept it.
    pub email: String,
    pub role: Role,
    pub invited_by: ID,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<domain::Invitation> for InvitationNode {
    fn from(i: domain::Invitation) -> Self {
        InvitationNode {
            id: ID(i.id.to_string()),
            workspace_id: ID(i.workspace.to_string()),
            email: i.email,
            role: i.role,
            invited_by: ID(i.invited_by.to_string()),
            created_at: to_datetime(i.created_at),
            expires_at: to_datetime(i.expires_at),
            revoked_at: i.revoked_at.map(to_datetime),
        }
    }
}

#[derive(SimpleObject)]
pub struct InvitationPayload {
    pub invitation: InvitationNode,
    /// Shown once: send it to the invitee, who accepts it with `acceptInvitation` while
    /// signed in with the invited address. Only its hash is stored.
    pub token: String,
    /// Whether the invitation was e-mailed to the invitee through the workspace's
    /// EMAIL notification channel; when false (no such channel), share the token yourself.
    pub emailed: bool,
}

#[ComplexObject]
impl WorkspaceNode {
    /// Everyone in the workspace, in the order they joined. Visible to members.
    async fn members(&self, ctx: &Context<'_>) -> Result<Vec<MemberNode>> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &self.id)?;
        c.access
            .authorize(me, id, Role::Viewer, Target::Workspace)
            .await?;
        Ok(c.store
            .members(id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Invitations that can still be accepted, newest first. ADMIN or above.
    async fn invitations(&self, ctx: &Context<'_>) -> Result<Vec<InvitationNode>> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &self.id)?;
        c.access
            .authorize(me, id, Role::Admin, Target::Workspace)
            .await?;
        Ok(c.store
            .pending_invitations(id, c.clock.now_ms())
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The workspace's API keys, newest first, revoked ones included. ADMIN or above.
    async fn api_keys(&self, ctx: &Context<'_>) -> Result<Vec<ApiKeyNode>> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &self.id)?;
        c.access
            .authorize(me, id, Role::Admin, Target::Workspace)
            .await?;
        Ok(c.store
            .api_keys(id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// The workspace's security audit log, newest first: membership, invitation and key
    /// changes, and the sign-ins, failures and lockouts of its members. ADMIN or above.
    async fn security_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 200))] first: i32,
        after: Option<String>,
    ) -> Result<SecurityEventConnection> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &self.id)?;
        c.access
            .authorize(me, id, Role::Admin, Target::Workspace)
            .await?;
        Ok(security_events(c, id, true, first, after).await?)
    }
}

/// Workspaces and membership changes.
#[derive(Default)]
pub struct MemberMutation;

impl Ctx {
    /// Other services cache membership answers briefly; a change must not wait for that.
    async fn forget_membership(&self, user: Uuid, workspace: Uuid) {
        if let Err(e) = self
            .cache
            .delete(&membership_cache_key(user, workspace))
            .await
        {
            tracing::warn!(error = %e, "could not drop a cached membership; it expires in seconds");
        }
    }
}

#[Object]
impl MemberMutation {
    /// Creates a workspace owned by the caller.
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn create_workspace(&self, ctx: &Context<'_>, name: String) -> Result<WorkspaceNode> {
        let me = caller(ctx).require_session()?;
        let c = ctx.data::<Ctx>()?;
        let name = Name::parse("name", &name)?;
        Ok(c.store
            .create_workspace(me.user_id, &name, c.clock.now_ms())
            .await?
            .into())
    }

    /// Changes a workspace's name or time zone (ADMIN or above). A time zone is an IANA
    /// name such as `Europe/Paris`.
    #[tracing::instrument(skip_all)]
    async fn update_workspace(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        name: Option<String>,
        time_zone: Option<String>,
    ) -> Result<WorkspaceNode> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let workspace = parse_id("workspaceId", &workspace_id)?;
        c.access
            .authorize(me, workspace, Role::Admin, Target::Workspace)
            .await?;
        let name = name.map(|n| Name::parse("name", &n)).transpose()?;
        let time_zone = time_zone
            .map(|t| TimeZone::parse("timeZone", &t))
            .transpose()?;
        let updated = c
            .store
            .update_workspace(workspace, name.as_ref(), time_zone.as_ref())
            .await?
            .ok_or_else(|| ApiError::forbidden("no such workspace"))?;
        Ok(updated.into())
    }

    /// Invites an e-mail address to the workspace with a role (ADMIN or above; only an
    /// OWNER invites owners). The answer holds the token, shown once; it expires in 7 days.
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn invite_member(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        email: String,
        role: Role,
    ) -> Result<InvitationPayload> {
        let me = caller(ctx).require_session()?;
        let c = ctx.data::<Ctx>()?;
        let workspace = parse_id("workspaceId", &workspace_id)?;
        let email = Email::parse(&email)?;
        let token = InvitationToken::from_random(super::random_bytes()?);
        let now = c.clock.now_ms();
        let invitation = c
            .store
            .create_invitation(
                workspace,
                me.user_id,
                &email,
                role,
                &token.hash(),
                now,
                now + INVITATION_TTL_MS,
            )
            .await?;
        let workspace_name = c
            .store
            .workspace(workspace)
            .await?
            .map(|w| w.name)
            .unwrap_or_default();
        let inviter = c
            .store
            .user(me.user_id)
            .await?
            .map(|u| u.name)
            .unwrap_or_default();
        let emailed = crate::invitations::email(
            &c.export_peers,
            &invitation,
            token.expose(),
            &workspace_name,
            &inviter,
        )
        .await;
        Ok(InvitationPayload {
            invitation: invitation.into(),
            token: token.expose().to_string(),
            emailed: emailed == crate::invitations::Emailed::Queued,
        })
    }

    /// Joins a workspace with an invitation's token. The caller must be signed in with
    /// the invited e-mail address; each invitation works once.
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn accept_invitation(&self, ctx: &Context<'_>, token: String) -> Result<MembershipNode> {
        let me = caller(ctx).require_session()?;
        let c = ctx.data::<Ctx>()?;
        let token = InvitationToken::parse(&token)?;
        let user = c
            .store
            .user(me.user_id)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("this account no longer exists"))?;
        let (workspace, role) = c
            .store
            .accept_invitation(&token.hash(), &user, c.clock.now_ms())
            .await?;
        c.forget_membership(user.id, workspace.id).await;
        Ok(MembershipNode {
            role,
            workspace: workspace.into(),
        })
    }

    /// Revokes an invitation that was not accepted yet.
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn revoke_invitation(&self, ctx: &Context<'_>, id: ID) -> Result<InvitationNode> {
        let me = caller(ctx).require_session()?;
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &id)?;
        Ok(c.store
            .revoke_invitation(id, me.user_id, c.clock.now_ms())
            .await?
            .into())
    }

    /// Changes a member's role. ADMIN or above, never above the caller's own role, and
    /// only an OWNER changes an owner's. A workspace always keeps an owner (`CONFLICT`).
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn change_member_role(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        user_id: ID,
        role: Role,
    ) -> Result<MemberNode> {
        let me = caller(ctx).require_session()?;
        let c = ctx.data::<Ctx>()?;
        let workspace = parse_id("workspaceId", &workspace_id)?;
        let target = parse_id("userId", &user_id)?;
        c.store
            .change_role(workspace, me.user_id, target, role, c.clock.now_ms())
            .await?;
        c.forget_membership(target, workspace).await;
        c.store
            .members(workspace)
            .await?
            .into_iter()
            .find(|m| m.user.id == target)
            .map(Into::into)
            .ok_or_else(|| ApiError::not_found("the member left meanwhile").into())
    }

    /// Removes a member (ADMIN or above, not above the caller's own role), or leaves when
    /// `userId` is the caller. The last owner cannot leave (`CONFLICT`).
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn remove_member(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        user_id: ID,
    ) -> Result<bool> {
        let me = caller(ctx).require_session()?;
        let c = ctx.data::<Ctx>()?;
        let workspace = parse_id("workspaceId", &workspace_id)?;
        let target = parse_id("userId", &user_id)?;
        c.store
            .remove_member(workspace, me.user_id, target, c.clock.now_ms())
            .await?;
        c.forget_membership(target, workspace).await;
        Ok(true)
    }
}
