//! Signing up and in, refresh-token sessions, signing out and password changes. Each
//! outcome that matters for security (sign-in, failure, lockout, refresh reuse, password
//! change) goes to the audit log.

use crate::sessions::Rotation;
use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::error::{ApiError, ErrorCode};
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
        let wrong = || ApiError::unauthenticated("wrong e-mail or password");
        let now = c.clock.now_ms();
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
        // Per address, only failures count (an office behind one address signs in often),
        // so the check is a peek and the count comes after a failure.
        let address = ctx.data_opt::<ClientAddress>().map(|a| a.0);
        let ip = address.map(|a| a.to_string());
        let ip_key = address.map(|a| format!("login:ip:{a}"));
        if let Some(ip_key) = &ip_key {
            let from_here = c.counters.peek(ip_key).await.map_err(ApiError::internal)?;
            if let Some(from_here) = from_here.filter(|n| n.hits >= throttle.max_failures_per_ip) {
                return Err(ApiError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "too many failed sign-ins from your network; try again in {} seconds",
                        from_here.resets_in.as_secs().max(1)
                    ),
                )
                .into());
            }
        }
        let count_failure_here = || async {
            if let Some(ip_key) = &ip_key {
                c.counters
                    .hit(ip_key, throttle.window)
                    .await
                    .map_err(ApiError::internal)?;
            }
            Ok::<_, ApiError>(())
        };
        let found = c.store.credentials(&email).await?;
        // Verify against a real hash even for unknown accounts, so timing does
        // not reveal which e-mails have accounts.
        let (user, hash) = match found {
            Some((u, h)) => (Some(u), h),
            None => (None, password::DUMMY_HASH.to_string()),
        };
        let ok = password::verify(input.password, hash).await?;
        let user_id = user.as_ref().map(|u| u.id);
        let failed = |kind| SecurityEvent {
            kind,
            user: user_id,
            actor: user_id,
            workspace: None,
            ip: ip.clone(),
            detail: serde_json::json!({"email": email.as_str(), "failures": attempt.hits}),
        };
        match (user, ok) {
            (Some(user), true) => {
                // The password was right; a second factor, when enrolled, must be too.
                if let Err(e) = c
                    .second_factor(&user, input.totp_code, input.recovery_code)
                    .await
                {
                    if e.code != ErrorCode::MfaRequired {
                        count_failure_here().await?;
                        c.store
                            .record_security_event(
                                &failed(SecurityEventKind::SignInFailed).with_detail(
                                    serde_json::json!({"failures": attempt.hits, "factor": "second"}),
                                ),
                                now,
                            )
                            .await?;
                    }
                    return Err(e.into());
                }
                c.counters.reset(&key).await.map_err(ApiError::internal)?;
                c.store
                    .record_security_event(
                        &SecurityEvent::account(SecurityEventKind::SignedIn, user.id)
                            .with_ip(ip.clone()),
                        now,
                    )
                    .await?;
                Ok(c.sign_in(user).await?)
            }
            _ if attempt.hits >= throttle.max_failures => {
                count_failure_here().await?;
                tracing::warn!(failures = attempt.hits, "sign-in locked for an account");
                c.store
                    .record_security_event(&failed(SecurityEventKind::SignInLocked), now)
                    .await?;
                Err(locked().into())
            }
            _ => {
                count_failure_here().await?;
                c.store
                    .record_security_event(&failed(SecurityEventKind::SignInFailed), now)
                    .await?;
                Err(wrong().into())
            }
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
