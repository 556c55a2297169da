//! Signing in with a password: the throttling policy (per account, counted before the
//! password is checked; per client address, failures only) and what each outcome
//! writes to the audit log. The GraphQL resolver parses and calls [`log_in`].

use std::net::IpAddr;

use flowfleet_runtime::error::{ApiError, ErrorCode};

use crate::domain::{Email, SecurityEvent, SecurityEventKind};
use crate::graphql::{AuthPayload, Ctx};
use crate::password;

/// A sign-in as the caller made it.
pub struct Attempt {
    pub email: String,
    pub password: String,
    pub totp_code: Option<String>,
    pub recovery_code: Option<String>,
    /// Where it came from, when the gateway says (see `ClientAddress`).
    pub address: Option<IpAddr>,
}

/// Exchanges an e-mail and password (and a second factor, when enrolled) for tokens.
/// After `security.login_max_failures` failures within `security.login_lockout_secs`
/// the account's sign-in is locked until that window closes (`RATE_LIMITED`); after
/// `security.login_max_failures_per_ip` failures from one address, that address is.
pub async fn log_in(c: &Ctx, attempt: Attempt) -> Result<AuthPayload, ApiError> {
    let wrong = || ApiError::unauthenticated("wrong e-mail or password");
    let now = c.clock.now_ms();
    let email = Email::parse(&attempt.email).map_err(|_| wrong())?;
    // Counted before the check, so concurrent guesses cannot slip past the limit;
    // unknown e-mails count too, so a lockout does not reveal which accounts exist.
    let throttle = c.login_throttle;
    let key = format!("login:account:{}", email.as_str());
    let tries = c
        .counters
        .hit(&key, throttle.window)
        .await
        .map_err(ApiError::internal)?;
    let locked = || {
        ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "too many failed sign-ins for this account; try again in {} seconds",
                tries.resets_in.as_secs().max(1)
            ),
        )
    };
    if tries.hits > throttle.max_failures {
        return Err(locked());
    }
    // Per address, only failures count (an office behind one address signs in often),
    // so the check is a peek and the count comes after a failure.
    let address = attempt.address;
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
            ));
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
    let ok = password::verify(attempt.password, hash).await?;
    let user_id = user.as_ref().map(|u| u.id);
    let failed = |kind| SecurityEvent {
        kind,
        user: user_id,
        actor: user_id,
        workspace: None,
        ip: ip.clone(),
        detail: serde_json::json!({"email": email.as_str(), "failures": tries.hits}),
    };
    match (user, ok) {
        (Some(user), true) => {
            // The password was right; a second factor, when enrolled, must be too.
            if let Err(e) = c
                .second_factor(&user, attempt.totp_code, attempt.recovery_code)
                .await
            {
                if e.code != ErrorCode::MfaRequired {
                    count_failure_here().await?;
                    c.store
                        .record_security_event(
                            &failed(SecurityEventKind::SignInFailed).with_detail(
                                serde_json::json!({"failures": tries.hits, "factor": "second"}),
                            ),
                            now,
                        )
                        .await?;
                }
                return Err(e);
            }
            c.counters.reset(&key).await.map_err(ApiError::internal)?;
            c.store
                .record_security_event(
                    &SecurityEvent::account(SecurityEventKind::SignedIn, user.id)
                        .with_ip(ip.clone()),
                    now,
                )
                .await?;
            c.sign_in(user).await
        }
        _ if tries.hits >= throttle.max_failures => {
            count_failure_here().await?;
            tracing::warn!(failures = tries.hits, "sign-in locked for an account");
            c.store
                .record_security_event(&failed(SecurityEventKind::SignInLocked), now)
                .await?;
            Err(locked())
        }
        _ => {
            count_failure_here().await?;
            c.store
                .record_security_event(&failed(SecurityEventKind::SignInFailed), now)
                .await?;
            Err(wrong())
        }
    }
}
