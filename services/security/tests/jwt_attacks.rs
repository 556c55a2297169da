//! The JWT attack catalogue against the verifier that the gateway's edge and every
//! subgraph use: only an EdDSA token signed by a published key, for our issuer and
//! audience, inside its validity window, and untouched, verifies. Each forgery is refused
//! with `UNAUTHENTICATED` and a reason that names the problem.

use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use flowfleet_runtime::error::ErrorCode;
use flowfleet_security::identity::{Claims, JwksSource, TokenVerifier};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::json;

struct Key {
    kid: String,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

fn new_key(kid: &str) -> Key {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    Key {
        kid: kid.to_string(),
        pkcs8: pkcs8.as_ref().to_vec(),
        public: pair.public_key().as_ref().to_vec(),
    }
}

/// The published keys: only `published`.
struct Published(serde_json::Value);

#[async_trait]
impl JwksSource for Published {
    async fn jwks(&self) -> anyhow::Result<JwkSet> {
        Ok(serde_json::from_value(self.0.clone())?)
    }
}

fn jwks(key: &Key) -> serde_json::Value {
    json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
        "kid": key.kid, "x": URL_SAFE_NO_PAD.encode(&key.public),
    }]})
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Claims {
    let now = now();
    Claims {
        sub: uuid::Uuid::now_v7().to_string(),
        iss: "flowfleet".into(),
        aud: "flowfleet".into(),
        exp: now + 900,
        iat: now,
        nbf: now,
        email: "ada@example.com".into(),
    }
}

fn sign(key: &Key, claims: &Claims) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&key.pkcs8)).unwrap()
}

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Flips one character of a base64url segment to another valid one.
fn flip(segment: &str, at: usize) -> String {
    let mut chars: Vec<char> = segment.chars().collect();
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn every_forgery_in_the_catalogue_is_refused_and_a_good_token_verifies() {
    let key = new_key("k1");
    let verifier = TokenVerifier::new(Arc::new(Published(jwks(&key))), "flowfleet", "flowfleet");

    let good = sign(&key, &claims());
    let identity = verifier.verify(&good).await.expect("a good token verifies");
    assert_eq!(identity.email, "ada@example.com");
    let [header, payload, signature]: [&str; 3] =
        good.split('.').collect::<Vec<_>>().try_into().unwrap();

    let payload_json: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let mut elevated = payload_json.clone();
    elevated["sub"] = json!(uuid::Uuid::now_v7().to_string());

    let hs256_with_public_key = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&key.public)).unwrap()
    };
    let hs256_with_the_jwk_text = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(
            &header,
            &claims(),
            &EncodingKey::from_secret(jwks(&key)["keys"][0].to_string().as_bytes()),
        )
        .unwrap()
    };
    let other = new_key("k1");
    let stranger = new_key("k-unknown");
    let catalogue: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT", "kid": "k1"})),
                payload
            ),
            "malformed",
        ),
        (
            "alg none, with the original signature",
            format!(
                "{}.{}.{}",
                b64(&json!({"alg": "none", "typ": "JWT", "kid": "k1"})),
                payload,
                signature
            ),
            "malformed",
        ),
        (
            "HS256 signed with the public key",
            hs256_with_public_key,
            "unsupported algorithm",
        ),
        (
            "HS256 signed with the JWK's text",
            hs256_with_the_jwk_text,
            "unsupported algorithm",
        ),
        (
            "expired",
            sign(
                &key,
                &Claims {
                    exp: now() - 60,
                    iat: now() - 960,
                    nbf: now() - 960,
                    ..claims()
                },
            ),
            "expired",
        ),
        (
            "not valid yet",
            sign(
                &key,
                &Claims {
                    nbf: now() + 600,
                    ..claims()
                },
            ),
            "not valid yet",
        ),
        (
            "wrong issuer",
            sign(
                &key,
                &Claims {
                    iss: "someone-else".into(),
                    ..claims()
                },
            ),
            "wrong issuer",
        ),
        (
            "wrong audience",
            sign(
                &key,
                &Claims {
                    aud: "another-app".into(),
                    ..claims()
                },
            ),
            "wrong audience",
        ),
        ("unknown kid", sign(&stranger, &claims()), "unknown key id"),
        (
            "no kid",
            jsonwebtoken::encode(
                &Header::new(Algorithm::EdDSA),
                &claims(),
                &EncodingKey::from_ed_der(&key.pkcs8),
            )
            .unwrap(),
            "no key id",
        ),
        (
            "the published kid, signed by another key",
            sign(&other, &claims()),
            "bad signature",
        ),
        (
            "tampered payload (another subject), original signature",
            format!("{header}.{}.{signature}", b64(&elevated)),
            "bad signature",
        ),
        (
            "tampered signature",
            format!("{header}.{payload}.{}", flip(signature, 10)),
            "bad signature",
        ),
        (
            "signature stripped",
            format!("{header}.{payload}."),
            "bad signature",
        ),
        ("garbage", "not.a.jwt".into(), "malformed"),
        ("empty", String::new(), "malformed"),
    ];
    for (attack, token, reason) in catalogue {
        let error = verifier
            .verify(&token)
            .await
            .expect_err(&format!("{attack}: accepted"));
        assert_eq!(error.code, ErrorCode::Unauthenticated, "{attack}");
        assert!(
            error.message.contains(reason),
            "{attack}: expected `{reason}` in `{}`",
            error.message
        );
        // The same through the header path every subgraph and the edge use.
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .unwrap_or_else(|_| "Bearer x".parse().unwrap()),
        );
        assert!(
            matches!(
                verifier.caller(&headers).await,
                flowfleet_security::identity::Caller::Rejected(_)
            ),
            "{attack}: not rejected from the header"
        );
    }
    // An API key where none are accepted is refused too.
    assert!(verifier.verify_bearer("ffk_x").await.is_err());
}
