//! Signing up and in (the sign-in policy is [`crate::sign_in`]), refresh-token sessions,
//! signing out and password changes. Each outcome that matters for security (sign-in,
//! failure, lockout, refresh reuse, password change) goes to the audit log.

use crate::sessions::Rotation;
use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::error::ApiError;
use flowfleet_security::service_auth::ClientAddress;

use super::{Ctx, UserNode};
use crate::domain::{self, Email, Name, Password, RefreshToken, SecurityEvent, SecurityEventKind};
use crate::password;

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
    /// The current code of the authenticator app, for accounts with a second factor.
    pub totp_code: Option<String>,
    /// One of the account's recovery codes, instead of `totpCode` (each works once).
    pub recovery_code: Option<String>,
}

impl Ctx {
    fn refresh_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.refresh_ttl_secs)
    }

    /// Tokens for a new sign-in: a new session family.
    pub(crate) async fn sign_in(&self, user: domain::User) -> Result<AuthPayload, ApiError> {
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
    Ok(RefreshToken::from_random(super::random_bytes()?))
}

/// Signing up, in and out, and the session that follows.
#[derive(Default)]
pub struct SessionMutation;

#[Object]
impl SessionMutation {
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
        let attempt = crate::sign_in::Attempt {
            email: input.email,
            password: input.password,
            totp_code: input.totp_code,
            recovery_code: input.recovery_code,
            address: ctx.data_opt::<ClientAddress>().map(|a| a.0),
        };
        Ok(crate::sign_in::log_in(c, attempt).await?)
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
                if let Ok(id) = uuid::Uuid::parse_str(&user) {
                    c.store
                        .record_security_event(
                            &SecurityEvent::account(SecurityEventKind::RefreshTokenReused, id),
                            c.clock.now_ms(),
                        )
                        .await?;
                }
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

    /// Changes the caller's own name or time zone (an IANA name such as `Europe/Paris`).
    /// In a session only.
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn update_profile(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
        time_zone: Option<String>,
    ) -> Result<UserNode> {
        let me = caller(ctx).require_session()?;
        let c = ctx.data::<Ctx>()?;
        let name = name.map(|n| Name::parse("name", &n)).transpose()?;
        let time_zone = time_zone
            .map(|t| domain::TimeZone::parse("timeZone", &t))
            .transpose()?;
        let user = c
            .store
            .update_user(me.user_id, name.as_ref(), time_zone.as_ref())
            .await?
            .ok_or_else(|| ApiError::unauthenticated("this account no longer exists"))?;
        Ok(user.into())
    }

    /// Changes the caller's password after checking the current one. Every session of the
    /// account ends (other devices must sign in again with the new password); the answer
    /// is a new session for this device.
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        current_password: String,
        new_password: String,
    ) -> Result<AuthPayload> {
        let me = caller(ctx).require_session()?;
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
        c.store
            .record_security_event(
                &SecurityEvent::account(SecurityEventKind::PasswordChanged, user.id)
                    .with_detail(serde_json::json!({"sessionsEnded": ended})),
                c.clock.now_ms(),
            )
            .await?;
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
}
