//! The auth subgraph: `User` and `Workspace` entities and `me` here; sign-up, sign-in and
//! sessions in [`sessions`]; members and invitations in [`members`]; the audit log in
//! [`audit`].

mod api_keys;
mod audit;
mod members;
mod mfa;
mod privacy;
mod sessions;

use std::sync::Arc;

use crate::counters::Counters;
use crate::sessions::SessionStore;
use async_graphql::{ComplexObject, Context, MergedObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::cache::Cache;
use flowfleet_runtime::clock::{to_datetime, Clock};
use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_security::access::{Access, Target};
use flowfleet_security::identity::Role;

use crate::domain;
use crate::keys::KeyRing;
use crate::store::Store;

pub use privacy::ExportPeers;
pub use sessions::{AuthPayload, LogInInput, SignUpInput};

pub type AuthSchema = async_graphql::Schema<Query, Mutation, async_graphql::EmptySubscription>;

/// What resolvers need, placed in the schema's data.
pub struct Ctx {
    pub store: Store,
    pub keys: Arc<KeyRing>,
    pub clock: Arc<dyn Clock>,
    pub token_ttl_secs: u64,
    pub sessions: Arc<dyn SessionStore>,
    /// How long a session lives without a refresh.
    pub refresh_ttl_secs: u64,
    pub counters: Arc<dyn Counters>,
    pub login_throttle: LoginThrottle,
    /// The fleet's shared cache, where other services keep membership answers: a role
    /// change or removal deletes the member's entry so it takes effect at once.
    pub cache: Arc<dyn Cache>,
    /// Seals TOTP seeds.
    pub secrets: Arc<flowfleet_security::secrets::SecretKeyRing>,
    /// Every service's data export, for `exportMyData`.
    pub export_peers: ExportPeers,
    /// Authorization, from this service's own memberships.
    pub access: Access,
}

/// Every mutation of the subgraph.
#[derive(MergedObject, Default)]
pub struct Mutation(
    sessions::SessionMutation,
    members::MemberMutation,
    api_keys::ApiKeyMutation,
    mfa::MfaMutation,
    privacy::PrivacyMutation,
);

/// Sign-in attempts allowed per account and window.
#[derive(Debug, Clone, Copy)]
pub struct LoginThrottle {
    pub max_failures: u64,
    /// Failures allowed from one client address, across accounts.
    pub max_failures_per_ip: u64,
    pub window: std::time::Duration,
}

pub fn schema(ctx: Ctx) -> AuthSchema {
    async_graphql::Schema::build(Query, Mutation::default(), async_graphql::EmptySubscription)
        .enable_federation()
        .data(ctx)
        .finish()
}

/// A user account. Other subgraphs extend it (e.g. with notifications).
#[derive(SimpleObject)]
#[graphql(name = "User", complex)]
pub struct UserNode {
    pub id: ID,
    pub name: String,
    #[graphql(skip)]
    email: String,
    #[graphql(skip)]
    time_zone: String,
    pub created_at: DateTime<Utc>,
}

#[ComplexObject]
impl UserNode {
    /// Visible to the user themself only.
    #[graphql(requires_scopes = "session")]
    async fn email(&self, ctx: &Context<'_>) -> Result<String> {
        let me = caller(ctx).require_session()?;
        if me.user_id.to_string() != self.id.as_str() {
            return Err(ApiError::forbidden("only the user themself can see their e-mail").into());
        }
        Ok(self.email.clone())
    }

    /// The user's IANA time zone, such as `Europe/Paris` (default `UTC`). Visible to the
    /// user themself only.
    #[graphql(requires_scopes = "session")]
    async fn time_zone(&self, ctx: &Context<'_>) -> Result<String> {
        let me = caller(ctx).require_session()?;
        if me.user_id.to_string() != self.id.as_str() {
            return Err(
                ApiError::forbidden("only the user themself can see their time zone").into(),
            );
        }
        Ok(self.time_zone.clone())
    }

    /// The workspaces the user belongs to, with their role in each. Visible to the
    /// user themself only.
    #[graphql(requires_scopes = "session")]
    async fn memberships(&self, ctx: &Context<'_>) -> Result<Vec<MembershipNode>> {
        let me = caller(ctx).require_session()?;
        if me.user_id.to_string() != self.id.as_str() {
            return Err(
                ApiError::forbidden("only the user themself can list their memberships").into(),
            );
        }
        let c = ctx.data::<Ctx>()?;
        Ok(c.store
            .memberships(me.user_id)
            .await?
            .into_iter()
            .map(|m| MembershipNode {
                role: m.role,
                workspace: m.workspace.into(),
            })
            .collect())
    }

    /// Whether sign-in needs a second factor. Visible to the user themself only.
    #[graphql(requires_scopes = "session")]
    async fn mfa_enabled(&self, ctx: &Context<'_>) -> Result<bool> {
        let me = caller(ctx).require_session()?;
        if me.user_id.to_string() != self.id.as_str() {
            return Err(ApiError::forbidden("only the user themself can see this").into());
        }
        let c = ctx.data::<Ctx>()?;
        Ok(c.store.mfa(me.user_id).await?.enabled())
    }

    /// The account's own security audit entries, newest first. Visible to the user
    /// themself only.
    #[graphql(requires_scopes = "session")]
    async fn security_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50, validator(minimum = 1, maximum = 200))] first: i32,
        after: Option<String>,
    ) -> Result<audit::SecurityEventConnection> {
        let me = caller(ctx).require_session()?;
        if me.user_id.to_string() != self.id.as_str() {
            return Err(
                ApiError::forbidden("only the user themself can read their audit log").into(),
            );
        }
        let c = ctx.data::<Ctx>()?;
        Ok(audit::security_events(c, me.user_id, false, first, after).await?)
    }
}

/// `N` bytes from the system's CSPRNG, for tokens, seeds and codes.
fn random_bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut random = [0u8; N];
    SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| ApiError::internal("the system random number generator failed"))?;
    Ok(random)
}

impl From<domain::User> for UserNode {
    fn from(u: domain::User) -> Self {
        UserNode {
            id: ID(u.id.to_string()),
            name: u.name,
            email: u.email,
            time_zone: u.time_zone.as_str().to_string(),
            created_at: to_datetime(u.created_at),
        }
    }
}

/// A tenant: every resource of the fleet belongs to one workspace.
#[derive(SimpleObject)]
#[graphql(name = "Workspace", complex)]
pub struct WorkspaceNode {
    pub id: ID,
    pub name: String,
    /// The workspace's IANA time zone, such as `Europe/Paris` (default `UTC`).
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
}

impl From<domain::Workspace> for WorkspaceNode {
    fn from(w: domain::Workspace) -> Self {
        WorkspaceNode {
            id: ID(w.id.to_string()),
            name: w.name,
            time_zone: w.time_zone.as_str().to_string(),
            created_at: to_datetime(w.created_at),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Membership")]
pub struct MembershipNode {
    pub role: flowfleet_security::identity::Role,
    pub workspace: WorkspaceNode,
}

pub struct Query;

#[Object]
impl Query {
    /// The signed-in user (not available to API keys).
    #[graphql(requires_scopes = "session")]
    async fn me(&self, ctx: &Context<'_>) -> Result<UserNode> {
        let me = caller(ctx).require_session()?;
        let c = ctx.data::<Ctx>()?;
        let user = c
            .store
            .user(me.user_id)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("this account no longer exists"))?;
        Ok(user.into())
    }

    /// Everything the fleet holds about the signed-in user, from every service, as one JSON
    /// document (`services.<name>`). Not available to API keys.
    #[graphql(requires_scopes = "session")]
    async fn export_my_data(
        &self,
        ctx: &Context<'_>,
    ) -> Result<async_graphql::Json<serde_json::Value>> {
        Ok(privacy::export(ctx).await?)
    }

    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<UserNode>> {
        caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &id)?;
        Ok(c.store.user(id).await?.map(Into::into))
    }

    #[graphql(entity)]
    async fn find_workspace_by_id(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<Option<WorkspaceNode>> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &id)?;
        c.access
            .authorize(me, id, Role::Viewer, Target::Workspace)
            .await?;
        Ok(c.store.workspace(id).await?.map(Into::into))
    }
}
