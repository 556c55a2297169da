//! Verifying who is calling, in every service (zero trust inside the cluster).
//!
//! The auth service signs access tokens (EdDSA/Ed25519 JWTs with a `kid`) and
//! publishes its public keys as a JWKS. Every subgraph verifies the bearer token
//! itself, from a cached copy of the JWKS, and never trusts an identity header it
//! did not verify. Only `EdDSA` is accepted, which rules out `alg: none` and the
//! HS256-with-the-public-key confusion.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;
use uuid::Uuid;

use flowfleet_runtime::error::ApiError;

/// The claims of a Flowfleet access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    #[serde(default)]
    pub email: String,
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: Uuid,
    pub email: String,
    /// Set when the caller presented an API key rather than a user's access token: the key
    /// acts as `user_id` (its creator), but only in its workspace and within its role.
    pub api_key: Option<ApiKeyScope>,
}

/// What an API key may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiKeyScope {
    pub key_id: Uuid,
    pub workspace: Uuid,
    pub role: Role,
}

/// API keys start with this, which is how a bearer credential is told apart from a JWT.
pub const API_KEY_PREFIX: &str = "ffk_";

/// The one answer for any API key that does not work, so callers cannot tell an unknown
/// key from a revoked or expired one.
pub fn invalid_api_key() -> ApiError {
    ApiError::unauthenticated(
        "this API key is not valid (unknown, revoked or expired); create a new one",
    )
}

/// The form in which API keys are stored and cached: SHA-256, hex.
pub fn api_key_hash(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// Where verifiers ask who an API key acts for (the auth service, over gRPC).
#[async_trait]
pub trait ApiKeySource: Send + Sync + 'static {
    async fn verify(&self, key: &str) -> Result<Identity, ApiError>;
}

/// What the request said about its caller, as placed in the GraphQL context.
#[derive(Debug, Clone)]
pub enum Caller {
    Anonymous,
    User(Identity),
    /// A token was presented but did not verify; carries a client-safe reason.
    Rejected(String),
}

impl Caller {
    /// The identity, or `UNAUTHENTICATED` with a message that says what to do.
    pub fn require(&self) -> Result<&Identity, ApiError> {
        match self {
            Caller::User(id) => Ok(id),
            Caller::Anonymous => Err(ApiError::unauthenticated(
                "sign in first: send `Authorization: Bearer <access token>`",
            )),
            Caller::Rejected(reason) => Err(ApiError::unauthenticated(reason.clone())),
        }
    }

    /// A signed-in user, not an API key: for what concerns the account itself (its
    /// password, its other workspaces, creating keys or workspaces, managing members).
    pub fn require_session(&self) -> Result<&Identity, ApiError> {
        let identity = self.require()?;
        if identity.api_key.is_some() {
            return Err(ApiError::forbidden(
                "API keys cannot do this; sign in as a user and use your access token",
            ));
        }
        Ok(identity)
    }
}

/// Where verifiers get the current public keys.
#[async_trait]
pub trait JwksSource: Send + Sync + 'static {
    async fn jwks(&self) -> anyhow::Result<JwkSet>;
}

/// Fetches the JWKS from the auth service over HTTP.
pub struct HttpJwks {
    url: String,
    client: reqwest::Client,
}

impl HttpJwks {
    pub fn new(url: impl Into<String>) -> Self {
        HttpJwks {
            url: url.into(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }
}

#[async_trait]
impl JwksSource for HttpJwks {
    async fn jwks(&self) -> anyhow::Result<JwkSet> {
        Ok(self
            .client
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

/// A source that is filled later: embedded mode builds the verifier before the
/// auth service exists, then plugs the auth service's key ring in.
#[derive(Default)]
pub struct DeferredJwks {
    inner: std::sync::OnceLock<Arc<dyn JwksSource>>,
}

impl DeferredJwks {
    pub fn set(&self, source: Arc<dyn JwksSource>) {
        let _ = self.inner.set(source);
    }
}

#[async_trait]
impl JwksSource for DeferredJwks {
    async fn jwks(&self) -> anyhow::Result<JwkSet> {
        match self.inner.get() {
            Some(s) => s.jwks().await,
            None => anyhow::bail!("the auth service is not started yet"),
        }
    }
}

struct CachedKeys {
    keys: JwkSet,
    fetched: Instant,
}

/// Verifies access tokens against a cached JWKS.
pub struct TokenVerifier {
    source: Arc<dyn JwksSource>,
    issuer: String,
    audience: String,
    cache: RwLock<Option<CachedKeys>>,
    /// Set once the process has a channel to the auth service; until then API keys are
    /// refused.
    api_keys: std::sync::OnceLock<Arc<dyn ApiKeySource>>,
}

const KEYS_TTL: Duration = Duration::from_secs(300);
/// An unknown `kid` triggers a refetch (a rotation may just have happened), but
/// not more often than this, so garbage tokens cannot hammer the auth service.
const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(5);

impl TokenVerifier {
    pub fn new(source: Arc<dyn JwksSource>, issuer: &str, audience: &str) -> Self {
        TokenVerifier {
            source,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            cache: RwLock::new(None),
            api_keys: std::sync::OnceLock::new(),
        }
    }

    /// Accept API keys, verified by `source`. Only the first call takes effect.
    pub fn set_api_keys(&self, source: Arc<dyn ApiKeySource>) {
        let _ = self.api_keys.set(source);
    }

    /// Verifies a bearer credential: an API key (`ffk_...`) or an access token.
    pub async fn verify_bearer(&self, credential: &str) -> Result<Identity, ApiError> {
        if credential.starts_with(API_KEY_PREFIX) {
            return match self.api_keys.get() {
                Some(source) => source.verify(credential).await,
                None => Err(ApiError::unauthenticated(
                    "API keys are not accepted here; use an access token",
                )),
            };
        }
        self.verify(credential).await
    }

    async fn keys(&self, force: bool) -> Result<JwkSet, ApiError> {
        {
            let cache = self.cache.read().await;
            if let Some(c) = &*cache {
                let age = c.fetched.elapsed();
                if (!force && age < KEYS_TTL) || (force && age < REFETCH_MIN_INTERVAL) {
                    return Ok(c.keys.clone());
                }
            }
        }
        match self.source.jwks().await {
            Ok(keys) => {
                *self.cache.write().await = Some(CachedKeys {
                    keys: keys.clone(),
                    fetched: Instant::now(),
                });
                Ok(keys)
            }
            Err(e) => {
                // Serve the stale keys rather than refuse everyone while the
                // auth service restarts.
                if let Some(c) = &*self.cache.read().await {
                    tracing::warn!(error = %e, "JWKS refresh failed; using cached keys");
                    return Ok(c.keys.clone());
                }
                tracing::error!(error = %e, "JWKS unavailable");
                Err(ApiError::unauthenticated(
                    "token keys are unavailable right now; retry in a moment",
                ))
            }
        }
    }

    /// Verifies a compact JWT and returns the caller's identity.
    pub async fn verify(&self, token: &str) -> Result<Identity, ApiError> {
        let invalid = |why: &str| {
            ApiError::unauthenticated(format!(
                "invalid access token ({why}); sign in again to get a new one"
            ))
        };
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(invalid("unsupported algorithm"));
        }
        let kid = header.kid.ok_or_else(|| invalid("no key id"))?;
        let mut keys = self.keys(false).await?;
        if keys.find(&kid).is_none() {
            keys = self.keys(true).await?;
        }
        let jwk = keys.find(&kid).ok_or_else(|| invalid("unknown key id"))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| invalid("unusable key"))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => invalid("expired"),
                ErrorKind::ImmatureSignature => invalid("not valid yet"),
                ErrorKind::InvalidIssuer => invalid("wrong issuer"),
                ErrorKind::InvalidAudience => invalid("wrong audience"),
                _ => invalid("bad signature or claims"),
            }
        })?;
        let user_id = data
            .claims
            .sub
            .parse()
            .map_err(|_| invalid("bad subject"))?;
        Ok(Identity {
            user_id,
            email: data.claims.email,
            api_key: None,
        })
    }

    /// Reads the `Authorization` header and verifies the bearer token or API key in it.
    pub async fn caller(&self, headers: &http::HeaderMap) -> Caller {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Caller::Anonymous;
        };
        let Some(token) = value.to_str().ok().and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        }) else {
            return Caller::Rejected(
                "the Authorization header must be `Bearer <access token or API key>`".into(),
            );
        };
        match self.verify_bearer(token.trim()).await {
            Ok(id) => Caller::User(id),
            Err(e) => Caller::Rejected(e.message),
        }
    }
}

/// When the bearer access token in `headers` expires (its `exp`, Unix seconds), read
/// without verifying it: only for a token [`TokenVerifier::caller`] has just verified.
/// `None` for API keys (they end by revocation, which re-verifying notices) and for
/// requests without a token.
pub fn access_token_expiry(headers: &http::HeaderMap) -> Option<i64> {
    use base64::Engine as _;
    let token = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .get(7..)?
        .trim();
    if token.starts_with(API_KEY_PREFIX) {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}

/// Roles in a workspace, ordered from least to most powerful.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, async_graphql::Enum,
)]
#[graphql(name = "WorkspaceRole")]
pub enum Role {
    Viewer,
    Editor,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "OWNER",
            Role::Admin => "ADMIN",
            Role::Editor => "EDITOR",
            Role::Viewer => "VIEWER",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "OWNER" => Some(Role::Owner),
            "ADMIN" => Some(Role::Admin),
            "EDITOR" => Some(Role::Editor),
            "VIEWER" => Some(Role::Viewer),
            _ => None,
        }
    }
}
