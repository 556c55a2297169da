//! The auth subgraph: `User` and `Workspace` entities, sign-up, log-in, refresh-token
//! sessions, `me`.

use std::sync::Arc;

use async_graphql::{ComplexObject, Context, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_shared::clock::{to_datetime, Clock};
use flowfleet_shared::counters::Counters;
use flowfleet_shared::error::ErrorCode;
use flowfleet_shared::error::{parse_id, ApiError};
use flowfleet_shared::sessions::{Rotation, SessionStore};
use flowfleet_shared::subgraph::caller;

use crate::domain::{self, Email, Name, Password, RefreshToken};
use crate::keys::KeyRing;
use crate::password;
use crate::store::Store;

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
}

/// Sign-in attempts allowed per account and window.
#[derive(Debug, Clone, Copy)]
pub struct LoginThrottle {
    pub max_failures: u64,
    pub window: std::time::Duration,
}

pub fn schema(ctx: Ctx) -> AuthSchema {
    async_graphql::Schema::build(Query, Mutation, async_graphql::EmptySubscription)
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
    pub created_at: DateTime<Utc>,
}

#[ComplexObject]
impl UserNode {
    /// Visible to the user themself only.
    async fn email(&self, ctx: &Context<'_>) -> Result<String> {
        let me = caller(ctx).require()?;
        if me.user_id.to_string() != self.id.as_str() {
            return Err(ApiError::forbidden("only the user themself can see their e-mail").into());
        }
        Ok(self.email.clone())
    }

    /// The workspaces the user belongs to, with their role in each. Visible to the
    /// user themself only.
    async fn memberships(&self, ctx: &Context<'_>) -> Result<Vec<MembershipNode>> {
        let me = caller(ctx).require()?;
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
                role: m.role.as_str().to_string(),
                workspace: m.workspace.into(),
            })
            .collect())
    }
}

impl From<domain::User> for UserNode {
    fn from(u: domain::User) -> Self {
        UserNode {
            id: ID(u.id.to_string()),
            name: u.name,
            email: u.email,
            created_at: to_datetime(u.created_at),
        }
    }
}

/// A tenant: every resource of the fleet belongs to one workspace.
#[derive(SimpleObject)]
#[graphql(name = "Workspace")]
pub struct WorkspaceNode {
    pub id: ID,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl From<domain::Workspace> for WorkspaceNode {
    fn from(w: domain::Workspace) -> Self {
        WorkspaceNode {
            id: ID(w.id.to_string()),
            name: w.name,
            created_at: to_datetime(w.created_at),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Membership")]
pub struct MembershipNode {
    /// OWNER, ADMIN, EDITOR or VIEWER.
    pub role: String,
    pub workspace: WorkspaceNode,
}

#[derive(SimpleObject)]
pub struct AuthPayload {
    pub access_token: String,
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Exchange it with `refreshSession` for new tokens before the session expires. Each
    /// refresh token works once: presenting a used one ends the session.
    pub refresh_token: String,
    /// Seconds until the session expires unless refreshed.
    pub refresh_expires_in: u64,
    pub user: UserNode,
}

#[derive(InputObject)]
pub struct SignUpInput {
    pub email: String,
    pub password: String,
    pub name: String,
}

#[derive(InputObject)]
pub struct LogInInput {
    pub email: String,
    pub password: String,
}

pub struct Query;

#[Object]
impl Query {
    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> Result<UserNode> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let user = c
            .store
            .user(me.user_id)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("this account no longer exists"))?;
        Ok(user.into())
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
        if c.store.role(me.user_id, id).await?.is_none() {
            return Err(ApiError::forbidden("you are not a member of this workspace").into());
        }
        Ok(c.store.workspace(id).await?.map(Into::into))
    }
}

pub struct Mutation;

impl Ctx {
    fn refresh_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.refresh_ttl_secs)
    }

    /// Tokens for a new sign-in: a new session family.
    async fn sign_in(&self, user: domain::User) -> Result<AuthPayload, ApiError> {
        let refresh = new_refresh_token()?;
        let family = uuid::Uuid::new_v4().to_string();
        self.sessions
            .start(
                &user.id.to_string(),
                &family,
                &refresh.hash(),
                self.refresh_ttl(),
            )
            .await
            .map_err(ApiError::internal)?;
        self.payload(user, refresh).await
    }

    async fn payload(
        &self,
        user: domain::User,
        refresh: RefreshToken,
    ) -> Result<AuthPayload, ApiError> {
        let token = self
            .keys
            .issue(user.id, &user.email)
            .await
            .map_err(ApiError::internal)?;
        Ok(AuthPayload {
            access_token: token,
            token_type: "Bearer".into(),
            expires_in: self.token_ttl_secs,
            refresh_token: refresh.expose().to_string(),
            refresh_expires_in: self.refresh_ttl_secs,
            user: user.into(),
        })
    }
}

fn new_refresh_token() -> Result<RefreshToken, ApiError> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut random = [0u8; 32];
    SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| ApiError::internal("the system random number generator failed"))?;
    Ok(RefreshToken::from_random(random))
}

#[Object]
impl Mutation {
    /// Creates an account with a personal workspace and signs it in.
    #[tracing::instrument(skip_all)]
    async fn sign_up(&self, ctx: &Context<'_>, input: SignUpInput) -> Result<AuthPayload> {
        let c = ctx.data::<Ctx>()?;
        let email = Email::parse(&input.email)?;
        let name = Name::parse("name", &input.name)?;
        let password = Password::parse(&input.password)?;
        let hash = password::hash(password).await?;
        let (user, _) = c
            .store
            .create_user(&email, &name, &hash, c.clock.now_ms())
            .await?;
        Ok(c.sign_in(user).await?)
    }

    /// Exchanges an e-mail and password for an access token. After
    /// `security.login_max_failures` failures within `security.login_lockout_secs`, the
    /// account's sign-in is locked until that window closes (`RATE_LIMITED`).
    #[tracing::instrument(skip_all)]
    async fn log_in(&self, ctx: &Context<'_>, input: LogInInput) -> Result<AuthPayload> {
        let c = ctx.data::<Ctx>()?;
        let wrong = || ApiError::unauthenticated("wrong e-mail or password");
        let email = Email::parse(&input.email).map_err(|_| wrong())?;
        // Counted before the check, so concurrent guesses cannot slip past the limit;
        // unknown e-mails count too, so a lockout does not reveal which accounts exist.
        let throttle = c.login_throttle;
        let key = format!("login:account:{}", email.as_str());
        let attempt = c
            .counters
            .hit(&key, throttle.window)
            .await
            .map_err(ApiError::internal)?;
        let locked = || {
            ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "too many failed sign-ins for this account; try again in {} seconds",
                    attempt.resets_in.as_secs().max(1)
                ),
            )
        };
        if attempt.hits > throttle.max_failures {
            return Err(locked().into());
        }
        let found = c.store.credentials(&email).await?;
        // Verify against a real hash even for unknown accounts, so timing does
        // not reveal which e-mails have accounts.
        let (user, hash) = match found {
            Some((u, h)) => (Some(u), h),
            None => (None, password::DUMMY_HASH.to_string()),
        };
        let ok = password::verify(input.password, hash).await?;
        match (user, ok) {
            (Some(user), true) => {
                c.counters.reset(&key).await.map_err(ApiError::internal)?;
                Ok(c.sign_in(user).await?)
            }
            _ if attempt.hits >= throttle.max_failures => {
                tracing::warn!(failures = attempt.hits, "sign-in locked for an account");
                Err(locked().into())
            }
            _ => Err(wrong().into()),
        }
    }

    /// Exchanges a refresh token for new tokens. Each refresh token works once; presenting
    /// one that was already exchanged ends its session (it may have been stolen), and the
    /// user must sign in again.
    #[tracing::instrument(skip_all)]
    async fn refresh_session(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> Result<AuthPayload> {
        let c = ctx.data::<Ctx>()?;
        let presented = RefreshToken::parse(&refresh_token)?;
        let next = new_refresh_token()?;
        let rotation = c
            .sessions
            .rotate(&presented.hash(), &next.hash(), c.refresh_ttl())
            .await
            .map_err(ApiError::internal)?;
        let (user, family) = match rotation {
            Rotation::Rotated { user, family } => (user, family),
            Rotation::Reused { user, family } => {
                tracing::warn!(%user, %family, "refresh token reused; session ended");
                return Err(ApiError::unauthenticated(
                    "this refresh token was already used, so the session has been ended \
                     for safety; sign in again",
                )
                .into());
            }
            Rotation::Unknown => {
                return Err(ApiError::unauthenticated(
                    "this session has expired or ended; sign in again",
                )
                .into())
            }
        };
        let account = match uuid::Uuid::parse_str(&user) {
            Ok(id) => c.store.user(id).await?,
            Err(_) => None,
        };
        let Some(account) = account else {
            c.sessions.end(&family).await.map_err(ApiError::internal)?;
            return Err(ApiError::unauthenticated("this account no longer exists").into());
        };
        Ok(c.payload(account, next).await?)
    }

    /// Changes the caller's password after checking the current one. Every session of the
    /// account ends (other devices must sign in again with the new password); the answer
    /// is a new session for this device.
    #[tracing::instrument(skip_all)]
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        current_password: String,
        new_password: String,
    ) -> Result<AuthPayload> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let Some((user, hash)) = c.store.credentials_of(me.user_id).await? else {
            return Err(ApiError::unauthenticated("this account no longer exists").into());
        };
        if !password::verify(current_password, hash).await? {
            return Err(ApiError::unauthenticated("the current password is wrong").into());
        }
        let new_hash = password::hash(Password::parse(&new_password)?).await?;
        c.store.set_password_hash(user.id, &new_hash).await?;
        let ended = c
            .sessions
            .end_all(&user.id.to_string(), None)
            .await
            .map_err(ApiError::internal)?;
        tracing::info!(user = %user.id, sessions_ended = ended, "password changed");
        Ok(c.sign_in(user).await?)
    }

    /// Ends the session of a refresh token (signing out on this device). Returns whether a
    /// session was ended; an unknown or expired token has none.
    #[tracing::instrument(skip_all)]
    async fn log_out(&self, ctx: &Context<'_>, refresh_token: String) -> Result<bool> {
        let c = ctx.data::<Ctx>()?;
        let Ok(presented) = RefreshToken::parse(&refresh_token) else {
            return Ok(false);
        };
        let found = c
            .sessions
            .family_of(&presented.hash())
            .await
            .map_err(ApiError::internal)?;
        match found {
            Some((_, family)) => {
                c.sessions.end(&family).await.map_err(ApiError::internal)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Creates a workspace owned by the caller.
    async fn create_workspace(&self, ctx: &Context<'_>, name: String) -> Result<WorkspaceNode> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let name = Name::parse("name", &name)?;
        Ok(c.store
            .create_workspace(me.user_id, &name, c.clock.now_ms())
            .await?
            .into())
    }
}
