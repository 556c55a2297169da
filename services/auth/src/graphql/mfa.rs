//! The TOTP second factor: enrol (a seed shown once, as base32 and as an `otpauth://` URI),
//! confirm with a first code (which turns it on and returns recovery codes), use at sign-in,
//! replace recovery codes, turn off. Seeds are sealed with the fleet's secret key ring, bound
//! to the account, so a seed copied to another row does not open.

use async_graphql::{Context, Object, Result, SimpleObject};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::error::{ApiError, ErrorCode};
use uuid::Uuid;

use super::Ctx;
use crate::domain::User;
use crate::mfa::{RecoveryCode, TotpSeed, RECOVERY_CODES, SEED_BYTES};
use crate::password;

#[derive(SimpleObject)]
pub struct TotpEnrollment {
    /// The seed in base32, for typing into an authenticator app.
    pub secret: String,
    /// The same seed as an `otpauth://totp/...` URI (show it as a QR code).
    pub otpauth_uri: String,
}

fn seal_context(user: Uuid) -> String {
    format!("totp-seed:{user}")
}

impl Ctx {
    fn open_seed(&self, user: &User, sealed: &str) -> Result<TotpSeed, ApiError> {
        let seed = self
            .secrets
            .open(sealed, &seal_context(user.id))
            .map_err(ApiError::internal)?;
        TotpSeed::new(seed, &user.email)
    }

    fn now_secs(&self) -> u64 {
        (self.clock.now_ms() / 1000).max(0) as u64
    }

    /// Checks a TOTP code against the enabled seed, once per step.
    async fn check_totp(&self, user: &User, code: &str) -> Result<bool, ApiError> {
        let state = self.store.mfa(user.id).await?;
        let Some(sealed) = state.seed.as_deref() else {
            return Ok(false);
        };
        let seed = self.open_seed(user, sealed)?;
        match seed.accepts(code, self.now_secs(), state.last_step) {
            Some(step) => self.store.accept_step(user.id, step).await,
            None => Ok(false),
        }
    }

    /// The second factor at sign-in: nothing for accounts without one; otherwise a TOTP
    /// code or a recovery code, or `MFA_REQUIRED` when neither was sent.
    pub(crate) async fn second_factor(
        &self,
        user: &User,
        totp_code: Option<String>,
        recovery_code: Option<String>,
    ) -> Result<(), ApiError> {
        if !self.store.mfa(user.id).await?.enabled() {
            return Ok(());
        }
        let wrong = || ApiError::unauthenticated("wrong authentication code");
        match (totp_code, recovery_code) {
            (Some(code), _) => {
                if self.check_totp(user, &code).await? {
                    Ok(())
                } else {
                    Err(wrong())
                }
            }
            (None, Some(code)) => {
                let used = self
                    .store
                    .use_recovery_code(user.id, &RecoveryCode::hash_of(&code), self.clock.now_ms())
                    .await?;
                if used {
                    Ok(())
                } else {
                    Err(wrong())
                }
            }
            (None, None) => Err(ApiError::new(
                ErrorCode::MfaRequired,
                "this account has a second factor: send `totpCode` from your authenticator \
                 app (or a `recoveryCode`)",
            )),
        }
    }

    /// New recovery codes: the codes to show once, and their hashes to store.
    fn new_recovery_codes() -> Result<(Vec<String>, Vec<String>), ApiError> {
        let mut shown = Vec::with_capacity(RECOVERY_CODES);
        let mut hashes = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            let code = RecoveryCode::from_random(&super::random_bytes::<10>()?);
            hashes.push(code.hash());
            shown.push(code.expose().to_string());
        }
        Ok((shown, hashes))
    }

    async fn session_user(&self, ctx: &Context<'_>) -> Result<User, ApiError> {
        let me = caller(ctx).require_session()?;
        self.store
            .user(me.user_id)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("this account no longer exists"))
    }
}

#[derive(Default)]
pub struct MfaMutation;

#[Object]
impl MfaMutation {
    /// Starts enrolling an authenticator app. Nothing changes at sign-in until
    /// `confirmTotp` checks a first code; enrolling again replaces an unconfirmed seed.
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn enroll_totp(&self, ctx: &Context<'_>) -> Result<TotpEnrollment> {
        let c = ctx.data::<Ctx>()?;
        let user = c.session_user(ctx).await?;
        if c.store.mfa(user.id).await?.enabled() {
            return Err(ApiError::conflict(
                "a second factor is already on; turn it off with disableTotp first",
            )
            .into());
        }
        let seed = super::random_bytes::<SEED_BYTES>()?.to_vec();
        let sealed = c
            .secrets
            .seal(&seed, &seal_context(user.id))
            .map_err(ApiError::internal)?;
        let totp = TotpSeed::new(seed, &user.email)?;
        c.store.set_pending_seed(user.id, &sealed).await?;
        Ok(TotpEnrollment {
            secret: totp.base32(),
            otpauth_uri: totp.otpauth_uri(),
        })
    }

    /// Turns the second factor on with a first code from the app, and returns ten recovery
    /// codes, shown once: each signs in once when the device is lost.
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn confirm_totp(&self, ctx: &Context<'_>, code: String) -> Result<Vec<String>> {
        let c = ctx.data::<Ctx>()?;
        let user = c.session_user(ctx).await?;
        let state = c.store.mfa(user.id).await?;
        let Some(pending) = state.pending_seed else {
            return Err(ApiError::not_found("nothing to confirm: start with enrollTotp").into());
        };
        let seed = c.open_seed(&user, &pending)?;
        let Some(step) = seed.accepts(&code, c.now_secs(), state.last_step) else {
            return Err(ApiError::bad_input(
                "the code does not match: check that the app and this device agree on the time",
            )
            .into());
        };
        let (shown, hashes) = Ctx::new_recovery_codes()?;
        if !c
            .store
            .enable_mfa(user.id, &pending, step, &hashes, c.clock.now_ms())
            .await?
        {
            return Err(ApiError::conflict("the enrolment changed meanwhile: start again").into());
        }
        Ok(shown)
    }

    /// Replaces the recovery codes (the old ones stop working). Needs a current code.
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn regenerate_recovery_codes(
        &self,
        ctx: &Context<'_>,
        code: String,
    ) -> Result<Vec<String>> {
        let c = ctx.data::<Ctx>()?;
        let user = c.session_user(ctx).await?;
        if !c.check_totp(&user, &code).await? {
            return Err(ApiError::unauthenticated("wrong authentication code").into());
        }
        let (shown, hashes) = Ctx::new_recovery_codes()?;
        c.store
            .replace_recovery_codes(user.id, &hashes, c.clock.now_ms())
            .await?;
        Ok(shown)
    }

    /// Turns the second factor off. Needs the password and a current code.
    #[tracing::instrument(skip_all)]
    #[graphql(requires_scopes = "session")]
    async fn disable_totp(
        &self,
        ctx: &Context<'_>,
        password: String,
        code: String,
    ) -> Result<bool> {
        let c = ctx.data::<Ctx>()?;
        let user = c.session_user(ctx).await?;
        let Some((_, hash)) = c.store.credentials_of(user.id).await? else {
            return Err(ApiError::unauthenticated("this account no longer exists").into());
        };
        if !password::verify(password, hash).await? {
            return Err(ApiError::unauthenticated("the password is wrong").into());
        }
        if !c.check_totp(&user, &code).await? {
            return Err(ApiError::unauthenticated("wrong authentication code").into());
        }
        c.store.disable_mfa(user.id, c.clock.now_ms()).await?;
        Ok(true)
    }
}
