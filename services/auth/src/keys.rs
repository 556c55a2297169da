//! The signing key ring: Ed25519 keys kept in the auth database, the newest one signing
//! access tokens, all of them published as a JWKS so that tokens signed before a rotation
//! stay verifiable until they expire.
//!
//! Rotation: a key signs for `security.signing_key_rotation_days`; the first token asked for
//! after that makes a new key, which takes over, and retires the old one. A retired key
//! stays in the JWKS for the access-token lifetime (plus a minute for clock skew), then
//! leaves it: by then every token it signed has expired. Two replicas rotating at once both
//! make a key; both are published, and each signs with the newest.
//!
//! Private keys are sealed with the fleet's secret key ring, bound to their `kid`; a current
//! key stored in the clear by an earlier version is sealed in place when read, and keys that
//! left the JWKS are deleted at the next rotation.

use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use flowfleet_runtime::clock::Clock;
use flowfleet_security::identity::{Claims, JwksSource};
use flowfleet_security::secrets::SecretKeyRing;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::store::{Store, StoredKey};

#[derive(Clone)]
struct SigningKey {
    kid: String,
    pkcs8: Vec<u8>,
    created_at: i64,
    /// When this process last confirmed it is the newest unretired key.
    checked_at: i64,
}

/// How often a process re-reads which key is current: another replica may have rotated.
/// Less than the minute of skew a retired key stays published beyond its tokens' lifetime,
/// so a token signed with a key retired meanwhile still verifies until it expires.
const RECHECK_MS: i64 = 30_000;

/// How tokens are signed and keys rotated.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    pub issuer: String,
    pub audience: String,
    pub token_ttl_secs: u64,
    pub rotate_after_days: u64,
}

pub struct KeyRing {
    store: Store,
    clock: Arc<dyn Clock>,
    secrets: Arc<SecretKeyRing>,
    current: RwLock<Option<SigningKey>>,
    policy: KeyPolicy,
}

fn seal_context(kid: &str) -> String {
    format!("signing-key:{kid}")
}

impl KeyRing {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        secrets: Arc<SecretKeyRing>,
        policy: KeyPolicy,
    ) -> Self {
        KeyRing {
            store,
            clock,
            secrets,
            current: RwLock::new(None),
            policy,
        }
    }

    fn rotate_after_ms(&self) -> i64 {
        (self.policy.rotate_after_days.max(1) * 24 * 3600 * 1000) as i64
    }

    /// How long a retired key stays published: the longest a token it signed can live,
    /// plus a minute of clock skew.
    fn publish_after_retirement_ms(&self) -> i64 {
        (self.policy.token_ttl_secs as i64 + 60) * 1000
    }

    fn private_key(&self, kid: &str, stored: &str) -> anyhow::Result<Vec<u8>> {
        if stored.starts_with("v1.") {
            Ok(self.secrets.open(stored, &seal_context(kid))?)
        } else {
            // Written in the clear before keys were sealed.
            Ok(STANDARD.decode(stored)?)
        }
    }

    /// The signing key: the newest unretired one while it is young enough, else a new one.
    async fn active(&self) -> anyhow::Result<SigningKey> {
        let now = self.clock.now_ms();
        if let Some(k) = &*self.current.read().await {
            if now - k.created_at < self.rotate_after_ms() && now - k.checked_at < RECHECK_MS {
                return Ok(k.clone());
            }
        }
        let newest = self.store.newest_signing_key().await?;
        let key = match newest {
            Some(k) if now - k.created_at < self.rotate_after_ms() => {
                let pkcs8 = self.private_key(&k.kid, &k.private)?;
                if !k.private.starts_with("v1.") {
                    // A key from before sealing: seal it in place.
                    let sealed = self.secrets.seal(&pkcs8, &seal_context(&k.kid))?;
                    self.store.reseal_signing_key(&k.kid, &sealed).await?;
                }
                SigningKey {
                    pkcs8,
                    created_at: k.created_at,
                    checked_at: now,
                    kid: k.kid,
                }
            }
            _ => self.generate().await?,
        };
        *self.current.write().await = Some(key.clone());
        Ok(key)
    }

    /// Creates a new key and makes it the signing key, retiring every older one; returns
    /// its `kid`. Retired keys stay published until their tokens have expired.
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
        let now = self.clock.now_ms();
        let sealed = self.secrets.seal(pkcs8.as_ref(), &seal_context(&kid))?;
        let stored_key = StoredKey {
            kid: kid.clone(),
            private: sealed,
            created_at: now,
        };
        // Keys out of the JWKS can verify nothing any more: their private halves go.
        self.store
            .add_signing_key(
                &stored_key,
                &URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                now - self.publish_after_retirement_ms(),
            )
            .await?;
        tracing::info!(%kid, "new signing key");
        let key = SigningKey {
            kid,
            pkcs8: pkcs8.as_ref().to_vec(),
            created_at: now,
            checked_at: now,
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
            iss: self.policy.issuer.clone(),
            aud: self.policy.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + self.policy.token_ttl_secs as i64,
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

    /// The public keys that can still have valid tokens, as a JWKS document.
    pub async fn jwks_json(&self) -> anyhow::Result<serde_json::Value> {
        // Make sure a current key exists before the first token is asked for.
        self.active().await?;
        let published = self
            .store
            .published_signing_keys(self.clock.now_ms() - self.publish_after_retirement_ms())
            .await?;
        let keys: Vec<serde_json::Value> = published
            .into_iter()
            .map(|(kid, x)| {
                serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid, "x": x,
                })
            })
            .collect();
        Ok(serde_json::json!({ "keys": keys }))
    }
}

#[async_trait]
impl JwksSource for KeyRing {
    async fn jwks(&self) -> anyhow::Result<JwkSet> {
        Ok(serde_json::from_value(self.jwks_json().await?)?)
    }
}
