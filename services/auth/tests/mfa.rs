//! The TOTP second factor on every backend: enrolment with an otpauth URI, confirmation with
//! a first code (which returns recovery codes), sign-in that then needs a code
//! (`MFA_REQUIRED` without one), codes that work once, recovery codes that work once, the
//! seed sealed at rest, and turning it off.

mod common;

use common::{account, bearer, code, run, run_with, verifying_auth};
use flowfleet_auth::MIGRATIONS;
use flowfleet_host::testing::Backend;
use flowfleet_runtime::clock::{Clock, ManualClock};
use flowfleet_runtime::config::ServiceName;
use serde_json::{json, Value};
use sqlx::Row;
use std::sync::Arc;
use totp_rs::{Algorithm, Secret, TOTP};

/// The authenticator app: codes for `secret` (base32) at a 30-second step.
fn app(secret: &str) -> impl Fn(u64) -> String {
    let bytes = Secret::Encoded(secret.to_string())
        .to_bytes()
        .expect("base32");
    let totp = TOTP::new(Algorithm::SHA1, 6, 0, 30, bytes, None, "x".into()).expect("a seed");
    move |step| totp.generate(step * 30)
}

fn real_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

const LOG_IN: &str = "mutation($i: LogInInput!) { logIn(input: $i) { accessToken } }";

#[tokio::test]
async fn totp_enrolment_sign_in_with_codes_and_recovery_codes_each_once() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        // The service's clock stands still, so no code below can cross a 30-second step
        // boundary between being computed and being checked (that made this test flaky).
        let clock = Arc::new(ManualClock::new(real_now_ms()));
        let infra = flowfleet_host::Infra {
            clock: clock.clone(),
            ..env.infra.clone()
        };
        let auth = verifying_auth(&env, infra).await;
        let step = (clock.now_ms() / 1000 / 30) as u64;
        let (_, ada) = account(&auth, "ada@example.com", "Ada").await;
        let log_in = |extra: Value| {
            let mut input = json!({"email": "ada@example.com", "password": "long enough password"});
            input
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let auth = &auth;
            async move { run(auth, LOG_IN, json!({"i": input})).await }
        };
        let call = |query: &'static str, variables: Value| {
            let (auth, headers) = (&auth, bearer(&ada));
            async move { run_with(auth, query, variables, &headers).await }
        };

        let enrolled = call("mutation { enrollTotp { secret otpauthUri } }", json!({})).await;
        let secret = enrolled["data"]["enrollTotp"]["secret"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {enrolled}"))
            .to_string();
        let uri = enrolled["data"]["enrollTotp"]["otpauthUri"]
            .as_str()
            .unwrap();
        assert!(
            uri.starts_with("otpauth://totp/Flowfleet:ada%40example.com?"),
            "{uri}"
        );
        assert!(uri.contains(&format!("secret={secret}")), "{uri}");
        let code_at = app(&secret);
        // Not on until confirmed.
        assert!(
            log_in(json!({})).await["data"]["logIn"].is_object(),
            "{name}"
        );

        // The seed is sealed at rest.
        let db = env.db(ServiceName::Auth, &MIGRATIONS).await;
        let row = sqlx::query("SELECT pending_seed FROM mfa")
            .fetch_one(db.pool())
            .await
            .unwrap();
        let stored: String = row.try_get("pending_seed").unwrap();
        assert!(stored.starts_with("v1."), "{name}: {stored}");
        assert!(!stored.contains(&secret), "{name}");

        let wrong = call(
            "mutation($c: String!) { confirmTotp(code: $c) }",
            json!({"c": "000000"}),
        )
        .await;
        assert_eq!(code(&wrong), "BAD_USER_INPUT", "{name}: {wrong}");
        // Codes used below are for strictly later steps each time (one step of skew is
        // allowed either way), so every one is fresh.
        let first = step - 1;
        let confirmed = call(
            "mutation($c: String!) { confirmTotp(code: $c) }",
            json!({"c": code_at(first)}),
        )
        .await;
        let recovery: Vec<String> = confirmed["data"]["confirmTotp"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {confirmed}"))
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        assert_eq!(recovery.len(), 10, "{name}");
        let me = call("{ me { mfaEnabled } }", json!({})).await;
        assert_eq!(me["data"]["me"]["mfaEnabled"], json!(true), "{name}: {me}");
        let again = call("mutation { enrollTotp { secret } }", json!({})).await;
        assert_eq!(code(&again), "CONFLICT", "{name}: {again}");

        // Sign-in now needs the second factor.
        let bare = log_in(json!({})).await;
        assert_eq!(code(&bare), "MFA_REQUIRED", "{name}: {bare}");
        assert!(bare["data"].is_null(), "{name}");
        let guessed = log_in(json!({"totpCode": "123456"})).await;
        assert_eq!(code(&guessed), "UNAUTHENTICATED", "{name}: {guessed}");
        let replayed = log_in(json!({"totpCode": code_at(first)})).await;
        assert_eq!(
            code(&replayed),
            "UNAUTHENTICATED",
            "{name}: a code works once"
        );
        let second = step;
        let signed_in = log_in(json!({"totpCode": code_at(second)})).await;
        assert!(
            signed_in["data"]["logIn"]["accessToken"].is_string(),
            "{name}: {signed_in}"
        );
        // A wrong password with a right code is still a wrong password.
        let password = run(
            &auth,
            LOG_IN,
            json!({"i": {"email": "ada@example.com", "password": "not the password", "totpCode": code_at(second + 1)}}),
        )
        .await;
        assert_eq!(code(&password), "UNAUTHENTICATED", "{name}: {password}");

        // A recovery code signs in once, typed any way.
        let typed = recovery[0].to_uppercase().replace('-', " ");
        let recovered = log_in(json!({"recoveryCode": typed})).await;
        assert!(
            recovered["data"]["logIn"].is_object(),
            "{name}: {recovered}"
        );
        let reused = log_in(json!({"recoveryCode": recovery[0]})).await;
        assert_eq!(code(&reused), "UNAUTHENTICATED", "{name}: {reused}");

        // Turning it off needs the password and a fresh code.
        let third = step + 1;
        let no_password = call(
            "mutation($c: String!) { disableTotp(password: \"nope nope\", code: $c) }",
            json!({"c": code_at(third)}),
        )
        .await;
        assert_eq!(
            code(&no_password),
            "UNAUTHENTICATED",
            "{name}: {no_password}"
        );
        let off = call(
            "mutation($c: String!) { disableTotp(password: \"long enough password\", code: $c) }",
            json!({"c": code_at(third)}),
        )
        .await;
        assert_eq!(off["data"]["disableTotp"], json!(true), "{name}: {off}");
        assert!(
            log_in(json!({})).await["data"]["logIn"].is_object(),
            "{name}"
        );

        // The audit log has it all.
        let log = call(
            "{ me { securityEvents(first: 50) { nodes { kind } } } }",
            json!({}),
        )
        .await;
        let kinds = log["data"]["me"]["securityEvents"]["nodes"].to_string();
        for kind in [
            "MFA_ENABLED",
            "RECOVERY_CODE_USED",
            "MFA_DISABLED",
            "SIGN_IN_FAILED",
        ] {
            assert!(kinds.contains(kind), "{name}: {kind} missing from {kinds}");
        }
    }
}
