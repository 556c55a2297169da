//! Signing-key rotation on every backend: a key signs for its rotation period, then a new
//! one takes over; the retired key stays in the JWKS (its tokens still verify) until its
//! tokens can have expired, then leaves it, and its private half is deleted at the next
//! rotation. Private keys are stored sealed, and a legacy key stored in the clear is sealed
//! when read.

mod common;

use std::sync::Arc;

use base64::Engine;
use common::{log_in, sign_up};
use flowfleet_auth::{build, MIGRATIONS};
use flowfleet_host::testing::Backend;
use flowfleet_runtime::clock::ManualClock;
use flowfleet_runtime::config::ServiceName;
use flowfleet_security::identity::{JwksSource, TokenVerifier};
use serde_json::Value;
use sqlx::Row;

const DAY_MS: i64 = 24 * 3600 * 1000;

fn kid(token: &Value) -> String {
    let header = token.as_str().unwrap().split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_string()
}

async fn published(keys: &flowfleet_auth::keys::KeyRing) -> Vec<String> {
    keys.jwks_json().await.unwrap()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

fn real_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn keys_rotate_on_schedule_and_retired_keys_leave_the_jwks_after_their_tokens() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let db = env.db(ServiceName::Auth, &MIGRATIONS).await;
        let clock = Arc::new(ManualClock::new(real_now_ms()));
        let mut config = (*env.infra.config).clone();
        config.security.signing_key_rotation_days = 1;
        let infra = flowfleet_host::Infra {
            config: Arc::new(config),
            clock: clock.clone(),
            ..env.infra.clone()
        };
        let auth = build(&infra, db.clone()).await.expect("auth service");
        let verifier = TokenVerifier::new(
            auth.keys.clone() as Arc<dyn JwksSource>,
            "flowfleet",
            "flowfleet",
        );

        let first = sign_up(&auth, "ada@example.com", "long enough password", "Ada").await;
        let token1 = first["data"]["signUp"]["accessToken"].clone();
        let kid1 = kid(&token1);
        assert_eq!(published(&auth.keys).await, vec![kid1.clone()], "{name}");
        // Sealed at rest, bound to the key id.
        let stored: String = sqlx::query("SELECT private_pkcs8 FROM signing_keys")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .try_get("private_pkcs8")
            .unwrap();
        assert!(stored.starts_with("v1."), "{name}: {stored}");

        // Within the period the same key signs.
        clock.advance(DAY_MS / 2);
        let again = log_in(&auth, "ada@example.com", "long enough password").await;
        assert_eq!(kid(&again["data"]["logIn"]["accessToken"]), kid1, "{name}");

        // After it, a new key signs; the old one is still published and its token verifies.
        clock.advance(DAY_MS);
        let rotated = log_in(&auth, "ada@example.com", "long enough password").await;
        let kid2 = kid(&rotated["data"]["logIn"]["accessToken"]);
        assert_ne!(kid2, kid1, "{name}");
        assert_eq!(
            published(&auth.keys).await,
            vec![kid1.clone(), kid2.clone()],
            "{name}"
        );
        verifier
            .verify(token1.as_str().unwrap())
            .await
            .expect("a token of the retired key verifies while it can be valid");

        // Once every token of the retired key has expired (15 minutes, plus a minute of
        // skew), the key leaves the JWKS.
        clock.advance(15 * 60 * 1000 + 61_000);
        assert_eq!(published(&auth.keys).await, vec![kid2.clone()], "{name}");
        let verifier = TokenVerifier::new(
            auth.keys.clone() as Arc<dyn JwksSource>,
            "flowfleet",
            "flowfleet",
        );
        let refused = verifier.verify(token1.as_str().unwrap()).await.unwrap_err();
        assert!(
            refused.message.contains("unknown key id"),
            "{name}: {}",
            refused.message
        );

        // At the next rotation its private half is deleted.
        clock.advance(DAY_MS);
        let third = log_in(&auth, "ada@example.com", "long enough password").await;
        let kid3 = kid(&third["data"]["logIn"]["accessToken"]);
        let kids: Vec<String> = sqlx::query("SELECT kid FROM signing_keys ORDER BY created_at")
            .fetch_all(db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get("kid").unwrap())
            .collect();
        assert_eq!(kids, vec![kid2, kid3], "{name}");
    }
}

#[tokio::test]
async fn a_legacy_key_stored_in_the_clear_is_sealed_when_read() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let db = env.db(ServiceName::Auth, &MIGRATIONS).await;
        let pkcs8 =
            ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                .unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        use ring::signature::KeyPair;
        let b64 = base64::engine::general_purpose::STANDARD;
        sqlx::query("INSERT INTO signing_keys (kid, private_pkcs8, public_x, created_at) VALUES ('legacy', $1, $2, $3)")
            .bind(b64.encode(pkcs8.as_ref()))
            .bind(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()))
            .bind(real_now_ms())
            .execute(db.pool())
            .await
            .unwrap();
        let auth = build(&env.infra, db.clone()).await.expect("auth service");
        let signed = sign_up(&auth, "bo@example.com", "long enough password", "Bo").await;
        assert_eq!(
            kid(&signed["data"]["signUp"]["accessToken"]),
            "legacy",
            "{name}"
        );
        let stored: String =
            sqlx::query("SELECT private_pkcs8 FROM signing_keys WHERE kid = 'legacy'")
                .fetch_one(db.pool())
                .await
                .unwrap()
                .try_get("private_pkcs8")
                .unwrap();
        assert!(stored.starts_with("v1."), "{name}: still in the clear");
        assert!(!stored.contains(&b64.encode(pkcs8.as_ref())), "{name}");
    }
}
