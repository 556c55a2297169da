//! The signing key ring: Ed25519 keys kept in the auth database, the newest one
//! signing access tokens, all of them published as a JWKS so that tokens signed
//! before a rotation stay verifiable until they expire.

use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use flowfleet_shared::auth::{Claims, JwksSource};
use flowfleet_shared::clock::Clock;
use flowfleet_shared::db::Db;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use sqlx::Row;
use tokio::sync::RwLock;
use uuid::Uuid;

#[derive(Clone)]
struct SigningKey {
    kid: String,
    pkcs8: Vec<u8>,
}

pub struct KeyRing {
    db: Db,
    clock: Arc<dyn Clock>,
    current: RwLock<Option<SigningKey>>,
    issuer: String,
    audience: String,
    ttl_secs: i64,
}

impl KeyRing {
    pub fn new(db: Db, clock: Arc<dyn Clock>, issuer: &str, audience: &str, ttl_secs: u64) -> Self {
        KeyRing {
            db,
            clock,
            current: RwLock::new(None),
            issuer: issuer.into(),
            audience: audience.into(),
            ttl_secs: ttl_secs as i64,
        }
    }

    /// The active key, created on first use. Two replicas racing here both insert
    /// a key; both keys are valid and published, and each signs with the newest.
    async fn active(&self) -> anyhow::Result<SigningKey> {
        if let Some(k) = &*self.current.read().await {
            return Ok(k.clone());
        }
        let row = sqlx::query(
            "SELECT kid, private_pkcs8 FROM signing_keys WHERE retired_at IS NULL \
             ORDER BY created_at DESC, kid DESC LIMIT 1",
        )
        .fetch_optional(self.db.pool())
        .await?;
        let key = match row {
            Some(row) => SigningKey {
                kid: row.try_get("kid")?,
                pkcs8: STANDARD.decode(row.try_get::<String, _>("private_pkcs8")?)?,
            },
            None => self.generate().await?,
        };
        *self.current.write().await = Some(key.clone());
        Ok(key)
    }

    /// Creates a new key and makes it the signing key (rotation); returns its
    /// `kid`. Older keys stay published.
    pub async fn rotate(&self) -> anyhow::Result<String> {
        Ok(self.generate().await?.kid)
    }

    async fn generate(&self) -> anyhow::Result<SigningKey> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("Ed25519 key generation failed"))?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("generated key rejected"))?;
        let kid = Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO signing_keys (kid, private_pkcs8, public_x, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&kid)
        .bind(STANDARD.encode(pkcs8.as_ref()))
        .bind(URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()))
        .bind(self.clock.now_ms())
        .execute(self.db.pool())
        .await?;
        let key = SigningKey {
            kid,
            pkcs8: pkcs8.as_ref().to_vec(),
        };
        *self.current.write().await = Some(key.clone());
        Ok(key)
    }

    /// Signs an access token for `user`.
    pub async fn issue(&self, user: Uuid, email: &str) -> anyhow::Result<String> {
        let key = self.active().await?;
        let now = self.clock.now_ms() / 1000;
        let claims = Claims {
            sub: user.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + self.ttl_secs,
            email: email.to_string(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        Ok(jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_ed_der(&key.pkcs8),
        )?)
    }

    /// The public keys as a JWKS document.
    pub async fn jwks_json(&self) -> anyhow::Result<serde_json::Value> {
        // Make sure a key exists before the first token is asked for.
        self.active().await?;
        let rows = sqlx::query("SELECT kid, public_x FROM signing_keys ORDER BY created_at")
            .fetch_all(self.db.pool())
            .await?;
        let keys: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                Ok(serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
                    "kid": r.try_get::<String, _>("kid")?,
                    "x": r.try_get::<String, _>("public_x")?,
                }))
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(serde_json::json!({ "keys": keys }))
    }
}

#[async_trait]
impl JwksSource for KeyRing {
    async fn jwks(&self) -> anyhow::Result<JwkSet> {
        Ok(serde_json::from_value(self.jwks_json().await?)?)
    }
}
