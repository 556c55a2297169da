//! Signing in, on every backend of `Backend::all()`: sessions and counters in memory
//! (embedded) and in Redis (distributed). Refresh tokens rotate on use, a reused one ends its
//! session, log-out ends one session, every access token they give verifies as the right
//! user; changing the password ends every session; repeated failures lock sign-in.

use std::sync::Arc;

use flowfleet_auth::{build, MIGRATIONS};
use flowfleet_host::testing::Backend;
use flowfleet_runtime::config::ServiceName;
use flowfleet_security::identity::{JwksSource, TokenVerifier};
use serde_json::{json, Value};

mod common;

use common::{code, log_in, run, run_with, sign_up, PAYLOAD};

async fn refresh(auth: &flowfleet_auth::Auth, token: &Value) -> Value {
    run(
        auth,
        &format!("mutation($t: String!) {{ refreshSession(refreshToken: $t) {{ {PAYLOAD} }} }}"),
        json!({"t": token}),
    )
    .await
}

#[tokio::test]
async fn refresh_tokens_rotate_reuse_ends_the_session_and_log_out_ends_one() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let db = env.db(ServiceName::Auth, &MIGRATIONS).await;
        let auth = build(&env.infra, db).await.expect("auth service");
        let verifier = TokenVerifier::new(
            auth.keys.clone() as Arc<dyn JwksSource>,
            "flowfleet",
            "flowfleet",
        );

        let signed_up = sign_up(&auth, "ada@example.com", "correct horse", "Ada").await;
        let first = &signed_up["data"]["signUp"];
        let user = first["user"]["id"].as_str().expect("user id").to_string();
        assert!(
            first["refreshToken"]
                .as_str()
                .is_some_and(|t| t.starts_with("rt_")),
            "{name}: {signed_up}"
        );
        assert_eq!(first["refreshExpiresIn"], json!(30 * 24 * 3600), "{name}");

        // A refresh gives new tokens for the same user, and a new refresh token.
        let second = refresh(&auth, &first["refreshToken"]).await;
        let second = &second["data"]["refreshSession"];
        assert_ne!(second["refreshToken"], first["refreshToken"], "{name}");
        let identity = verifier
            .verify(second["accessToken"].as_str().expect("access token"))
            .await
            .expect("the refreshed access token verifies");
        assert_eq!(identity.user_id.to_string(), user, "{name}");
        let third = refresh(&auth, &second["refreshToken"]).await;
        let third = third["data"]["refreshSession"]["refreshToken"].clone();
        assert!(third.is_string(), "{name}");

        // The first token again: reuse. The session ends, so even the newest token is dead.
        let reused = refresh(&auth, &first["refreshToken"]).await;
        assert_eq!(code(&reused), "UNAUTHENTICATED", "{name}: {reused}");
        assert!(
            reused["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("already used")),
            "{name}: {reused}"
        );
        let after = refresh(&auth, &third).await;
        assert_eq!(code(&after), "UNAUTHENTICATED", "{name}: {after}");
        assert_eq!(after["data"], Value::Null, "{name}");

        // Two sign-ins are two sessions: logging out of one leaves the other.
        let phone = log_in(&auth, "ada@example.com", "correct horse").await["data"]["logIn"]
            ["refreshToken"]
            .clone();
        let laptop = log_in(&auth, "ada@example.com", "correct horse").await["data"]["logIn"]
            ["refreshToken"]
            .clone();
        let out = run(
            &auth,
            "mutation($t: String!) { logOut(refreshToken: $t) }",
            json!({"t": phone}),
        )
        .await;
        assert_eq!(out["data"]["logOut"], json!(true), "{name}: {out}");
        assert_eq!(
            code(&refresh(&auth, &phone).await),
            "UNAUTHENTICATED",
            "{name}"
        );
        let still = refresh(&auth, &laptop).await;
        assert!(
            still["data"]["refreshSession"]["accessToken"].is_string(),
            "{name}: {still}"
        );
        let again = run(
            &auth,
            "mutation($t: String!) { logOut(refreshToken: $t) }",
            json!({"t": phone}),
        )
        .await;
        assert_eq!(
            again["data"]["logOut"],
            json!(false),
            "{name}: nothing left to end"
        );

        // Garbage is refused without a lookup, with the same code and no internals.
        for garbage in ["", "rt_short", "not a token", "Bearer rt_x"] {
            let response = refresh(&auth, &json!(garbage)).await;
            assert_eq!(code(&response), "UNAUTHENTICATED", "{name}: {garbage:?}");
        }
    }
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_every_session() {
    use flowfleet_security::identity::DeferredJwks;
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let db = env.db(ServiceName::Auth, &MIGRATIONS).await;
        // The subgraph verifies callers' access tokens with the service's own keys.
        let jwks = Arc::new(DeferredJwks::default());
        let infra = flowfleet_host::Infra {
            verifier: Arc::new(TokenVerifier::new(jwks.clone(), "flowfleet", "flowfleet")),
            ..env.infra.clone()
        };
        let auth = build(&infra, db).await.expect("auth service");
        jwks.set(auth.keys.clone());

        let here = sign_up(&auth, "bo@example.com", "first password", "Bo").await["data"]["signUp"]
            .clone();
        let elsewhere = log_in(&auth, "bo@example.com", "first password").await["data"]["logIn"]
            ["refreshToken"]
            .clone();
        let change = |current: &str, new: &str| {
            format!(
                "mutation {{ changePassword(currentPassword: \"{current}\", newPassword: \"{new}\") {{ {PAYLOAD} }} }}"
            )
        };
        let as_user = |token: &Value| {
            let mut headers = http::HeaderMap::new();
            let bearer = format!("Bearer {}", token.as_str().expect("access token"));
            headers.insert("authorization", bearer.parse().expect("header"));
            headers
        };
        let with_headers = |query: String, headers: http::HeaderMap| {
            let auth = &auth;
            async move { run_with(auth, &query, json!({}), &headers).await }
        };

        // Anonymous, or with the wrong current password: refused, nothing changes.
        let anonymous = with_headers(
            change("first password", "second password"),
            http::HeaderMap::new(),
        )
        .await;
        assert_eq!(code(&anonymous), "UNAUTHENTICATED", "{name}: {anonymous}");
        let wrong = with_headers(
            change("not my password", "second password"),
            as_user(&here["accessToken"]),
        )
        .await;
        assert_eq!(code(&wrong), "UNAUTHENTICATED", "{name}: {wrong}");
        let weak = with_headers(
            change("first password", "short"),
            as_user(&here["accessToken"]),
        )
        .await;
        assert_eq!(code(&weak), "BAD_USER_INPUT", "{name}: {weak}");
        assert!(
            refresh(&auth, &elsewhere).await["data"]["refreshSession"].is_object(),
            "{name}"
        );
        let elsewhere = log_in(&auth, "bo@example.com", "first password").await["data"]["logIn"]
            ["refreshToken"]
            .clone();

        let changed = with_headers(
            change("first password", "second password"),
            as_user(&here["accessToken"]),
        )
        .await;
        let fresh = &changed["data"]["changePassword"];
        assert!(fresh["refreshToken"].is_string(), "{name}: {changed}");
        // Every earlier session ended, this device's included; the new one works.
        for old in [&here["refreshToken"], &elsewhere] {
            assert_eq!(
                code(&refresh(&auth, old).await),
                "UNAUTHENTICATED",
                "{name}"
            );
        }
        assert!(
            refresh(&auth, &fresh["refreshToken"]).await["data"]["refreshSession"].is_object(),
            "{name}"
        );
        // Only the new password signs in.
        let old = log_in(&auth, "bo@example.com", "first password").await;
        assert_eq!(code(&old), "UNAUTHENTICATED", "{name}: {old}");
        let new = log_in(&auth, "bo@example.com", "second password").await;
        assert!(
            new["data"]["logIn"]["accessToken"].is_string(),
            "{name}: {new}"
        );
    }
}

/// The throttling window of the lockout test.
const WINDOW_SECS: u64 = 6;

#[tokio::test]
async fn repeated_failed_sign_ins_lock_the_account_for_a_while() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let db = env.db(ServiceName::Auth, &MIGRATIONS).await;
        let mut config = (*env.infra.config).clone();
        config.security.login_max_failures = 3;
        // Long enough for four argon2 hashes of a debug build on a loaded machine: the
        // window opens with the first failure and must still be open at the third.
        config.security.login_lockout_secs = WINDOW_SECS;
        let infra = flowfleet_host::Infra {
            config: Arc::new(config),
            ..env.infra.clone()
        };
        let auth = build(&infra, db).await.expect("auth service");
        for (email, who) in [("cy@example.com", "Cy"), ("di@example.com", "Di")] {
            let signed_up = sign_up(&auth, email, "right password", who).await;
            assert!(
                signed_up["data"]["signUp"]["accessToken"].is_string(),
                "{name}: {signed_up}"
            );
        }

        // A success resets the count: two failures, a success, two more failures are fine.
        for _ in 0..2 {
            assert_eq!(
                code(&log_in(&auth, "cy@example.com", "guess").await),
                "UNAUTHENTICATED",
                "{name}"
            );
        }
        assert!(
            log_in(&auth, "cy@example.com", "right password").await["data"]["logIn"].is_object(),
            "{name}"
        );
        let mut window_opened_by = None;
        for _ in 0..2 {
            assert_eq!(
                code(&log_in(&auth, "cy@example.com", "guess").await),
                "UNAUTHENTICATED",
                "{name}"
            );
            window_opened_by.get_or_insert_with(std::time::Instant::now);
        }
        // The third failure in the window locks; then even the right password is refused.
        let third = log_in(&auth, "cy@example.com", "guess").await;
        assert_eq!(code(&third), "RATE_LIMITED", "{name}: {third}");
        let locked = log_in(&auth, "cy@example.com", "right password").await;
        assert_eq!(code(&locked), "RATE_LIMITED", "{name}: {locked}");
        assert_eq!(locked["data"], Value::Null, "{name}");
        assert!(
            locked["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("try again in")),
            "{name}: {locked}"
        );
        // Other accounts are not affected, and unknown e-mails lock the same way.
        assert!(
            log_in(&auth, "di@example.com", "right password").await["data"]["logIn"].is_object(),
            "{name}"
        );
        for _ in 0..3 {
            log_in(&auth, "nobody@example.com", "guess").await;
        }
        assert_eq!(
            code(&log_in(&auth, "nobody@example.com", "guess").await),
            "RATE_LIMITED",
            "{name}"
        );

        // The lock lifts when the window closes.
        let closed =
            window_opened_by.unwrap() + std::time::Duration::from_millis(WINDOW_SECS * 1000 + 200);
        tokio::time::sleep_until(closed.into()).await;
        let later = log_in(&auth, "cy@example.com", "right password").await;
        assert!(
            later["data"]["logIn"]["accessToken"].is_string(),
            "{name}: {later}"
        );
    }
}

#[tokio::test]
async fn failed_sign_ins_from_one_address_lock_that_address_only() {
    use flowfleet_security::service_auth::{seal_client_address, CLIENT_ADDRESS_HEADER};
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let db = env.db(ServiceName::Auth, &MIGRATIONS).await;
        let mut config = (*env.infra.config).clone();
        config.security.login_max_failures = 100;
        config.security.login_max_failures_per_ip = 3;
        let infra = flowfleet_host::Infra {
            config: Arc::new(config),
            ..env.infra.clone()
        };
        let auth = build(&infra, db).await.expect("auth service");
        sign_up(&auth, "eve@example.com", "right password", "Eve").await;
        let from = |ip: &str| {
            let mut headers = http::HeaderMap::new();
            let sealed = seal_client_address(&infra.secrets, ip.parse().unwrap()).unwrap();
            headers.insert(CLIENT_ADDRESS_HEADER, sealed.parse().unwrap());
            headers
        };
        let attempt = |email: &str, password: &str, headers: http::HeaderMap| {
            let vars = json!({"i": {"email": email, "password": password}});
            let auth = &auth;
            async move {
                run_with(
                    auth,
                    "mutation($i: LogInInput!) { logIn(input: $i) { accessToken } }",
                    vars,
                    &headers,
                )
                .await
            }
        };
        // Three failures from one address, each on another account.
        for i in 0..3 {
            let failed = attempt(
                &format!("guess{i}@example.com"),
                "nope",
                from("203.0.113.5"),
            )
            .await;
            assert_eq!(code(&failed), "UNAUTHENTICATED", "{name}: {failed}");
        }
        // Now that address is locked out, even with a right password...
        let locked = attempt("eve@example.com", "right password", from("203.0.113.5")).await;
        assert_eq!(code(&locked), "RATE_LIMITED", "{name}: {locked}");
        assert!(
            locked["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("your network")),
            "{name}: {locked}"
        );
        // ...while another address signs in, and is recorded in the audit log.
        let other = attempt("eve@example.com", "right password", from("198.51.100.20")).await;
        let token = other["data"]["logIn"]["accessToken"].clone();
        assert!(token.is_string(), "{name}: {other}");
        // An address a client wrote itself is not believed: no lockout applies to it, and
        // it is not recorded.
        let mut forged = http::HeaderMap::new();
        forged.insert(CLIENT_ADDRESS_HEADER, "203.0.113.5".parse().unwrap());
        let unvouched = attempt("eve@example.com", "right password", forged).await;
        assert!(
            unvouched["data"]["logIn"].is_object(),
            "{name}: {unvouched}"
        );

        let db = env.db(ServiceName::Auth, &MIGRATIONS).await;
        let ips: Vec<Option<String>> =
            sqlx::query("SELECT ip FROM security_events WHERE kind = 'SIGNED_IN' ORDER BY id")
                .fetch_all(db.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| sqlx::Row::try_get(r, "ip").unwrap())
                .collect();
        assert_eq!(ips, vec![Some("198.51.100.20".to_string()), None], "{name}");
    }
}
