//! Persisted operations: a request may name its operation by the SHA-256 of its text
//! instead of sending the text.
//!
//! - **Automatic persisted queries (APQ)**, Apollo's protocol: a client sends
//!   `extensions.persistedQuery = {version: 1, sha256Hash}` without `query`; if the gateway
//!   knows the hash it runs that text, otherwise it answers `PERSISTED_QUERY_NOT_FOUND`
//!   (status 200, as Apollo clients expect) and the client sends text and hash together,
//!   which the gateway checks (`PERSISTED_QUERY_HASH_MISMATCH` when they differ) and
//!   remembers: in this process (bounded) and in a shared [`DocumentStore`] (Redis, so
//!   every replica knows what one was told).
//! - **Trusted documents** ([`TrustedDocuments`]): a manifest of the operations an
//!   organisation's own clients send, loaded from a file and reloaded when it changes. In
//!   [`TrustedMode::Allow`] its operations can be named by hash like APQ ones, and anything
//!   else still runs; in [`TrustedMode::Enforce`] (production) only its operations run: a
//!   text whose hash is not listed, or an unknown hash, is refused with
//!   `PERSISTED_QUERY_NOT_IN_LIST`, and APQ cannot register new ones.
//!
//! This stage runs after rate limits and before anything is parsed: what follows sees a
//! request with its full text.

mod manifest;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use manifest::{watch_manifest, ManifestError, TrustedDocuments};

use crate::error::{GraphQLError, RequestError};
use crate::request::GraphQLRequest;

/// Codes of this stage's errors.
pub mod codes {
    pub const NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
    pub const NOT_SUPPORTED: &str = "PERSISTED_QUERY_NOT_SUPPORTED";
    pub const HASH_MISMATCH: &str = "PERSISTED_QUERY_HASH_MISMATCH";
    pub const NOT_IN_LIST: &str = "PERSISTED_QUERY_NOT_IN_LIST";
}

/// A shared store's failure; the stage then goes on with what this process knows.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DocumentStoreError(pub String);

/// Where APQ texts are shared between replicas (Redis, in the `flowfleet` binary).
#[async_trait]
pub trait DocumentStore: Send + Sync {
    async fn get(&self, hash: &str) -> Result<Option<String>, DocumentStoreError>;
    async fn put(&self, hash: &str, query: &str) -> Result<(), DocumentStoreError>;
}

/// How trusted documents apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrustedMode {
    /// Listed operations may be named by hash; other operations run too.
    #[default]
    Allow,
    /// Only listed operations run.
    Enforce,
}

/// The stage's configuration.
#[derive(Clone)]
pub struct PersistedConfig {
    /// Whether APQ is accepted.
    pub apq: bool,
    /// APQ texts kept in this process.
    pub apq_cache_size: u64,
    /// APQ texts shared by replicas; `None`: this process only.
    pub store: Option<Arc<dyn DocumentStore>>,
    /// How long a shared store may take before this process's answer is used.
    pub store_timeout: Duration,
    /// The trusted documents' manifest, if any.
    pub trusted: Option<TrustedDocuments>,
    pub mode: TrustedMode,
}

impl Default for PersistedConfig {
    fn default() -> Self {
        PersistedConfig {
            apq: true,
            apq_cache_size: 10_000,
            store: None,
            store_timeout: Duration::from_millis(50),
            trusted: None,
            mode: TrustedMode::Allow,
        }
    }
}

impl std::fmt::Debug for PersistedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistedConfig")
            .field("apq", &self.apq)
            .field("apq_cache_size", &self.apq_cache_size)
            .field("store", &self.store.is_some())
            .field("trusted", &self.trusted.as_ref().map(TrustedDocuments::len))
            .field("mode", &self.mode)
            .finish()
    }
}

/// The stage, with its in-process APQ cache. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Persisted {
    config: PersistedConfig,
    local: moka::sync::Cache<String, Arc<str>>,
}

/// Hex SHA-256 of a text.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn error(status: http::StatusCode, code: &str, message: &str) -> RequestError {
    RequestError::Refused(status, GraphQLError::new(message).with_code(code))
}

fn not_in_list() -> RequestError {
    error(
        http::StatusCode::BAD_REQUEST,
        codes::NOT_IN_LIST,
        "This endpoint runs only the operations of its trusted documents; this one is not \
         among them.",
    )
}

impl Persisted {
    pub fn new(config: PersistedConfig) -> Self {
        Persisted {
            local: moka::sync::Cache::new(config.apq_cache_size.max(1)),
            config,
        }
    }

    /// The request with its full text, or why it cannot have one.
    pub async fn resolve(
        &self,
        mut request: GraphQLRequest,
    ) -> Result<GraphQLRequest, RequestError> {
        let hash = match persisted_hash(&request)? {
            Some(hash) => hash,
            None if request.query.is_empty() => return Ok(request),
            None => {
                // Free text: in enforce mode, only if it is a listed operation's.
                if self.config.mode == TrustedMode::Enforce {
                    let listed = self
                        .config
                        .trusted
                        .as_ref()
                        .is_some_and(|t| t.get(&sha256_hex(&request.query)).is_some());
                    if !listed {
                        return Err(not_in_list());
                    }
                }
                return Ok(request);
            }
        };
        let trusted = self.config.trusted.as_ref().and_then(|t| t.get(&hash));
        if !request.query.is_empty() {
            if sha256_hex(&request.query) != hash {
                return Err(error(
                    http::StatusCode::BAD_REQUEST,
                    codes::HASH_MISMATCH,
                    "The persistedQuery sha256Hash is not the SHA-256 of the query sent with it.",
                ));
            }
            if self.config.mode == TrustedMode::Enforce {
                return match trusted {
                    Some(_) => Ok(request),
                    None => Err(not_in_list()),
                };
            }
            if trusted.is_none() && self.config.apq {
                self.remember(&hash, &request.query).await;
            }
            return Ok(request);
        }
        if let Some(text) = trusted {
            request.query = text.to_string();
            return Ok(request);
        }
        if self.config.mode == TrustedMode::Enforce {
            return Err(not_in_list());
        }
        if !self.config.apq {
            return Err(error(
                http::StatusCode::BAD_REQUEST,
                codes::NOT_SUPPORTED,
                "Persisted queries are not accepted here; send the query text.",
            ));
        }
        match self.recall(&hash).await {
            Some(text) => {
                request.query = text.to_string();
                Ok(request)
            }
            None => Err(error(
                http::StatusCode::OK,
                codes::NOT_FOUND,
                "PersistedQueryNotFound",
            )),
        }
    }

    async fn remember(&self, hash: &str, query: &str) {
        self.local.insert(hash.to_string(), Arc::from(query));
        metrics::counter!("flowfleet_gateway_apq_total", "result" => "registered").increment(1);
        if let Some(store) = &self.config.store {
            match tokio::time::timeout(self.config.store_timeout, store.put(hash, query)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "APQ store: could not share a query"),
                Err(_) => tracing::warn!("APQ store: timed out sharing a query"),
            }
        }
    }

    async fn recall(&self, hash: &str) -> Option<Arc<str>> {
        if let Some(text) = self.local.get(hash) {
            metrics::counter!("flowfleet_gateway_apq_total", "result" => "hit").increment(1);
            return Some(text);
        }
        let shared = match &self.config.store {
            Some(store) => {
                match tokio::time::timeout(self.config.store_timeout, store.get(hash)).await {
                    Ok(Ok(found)) => found,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "APQ store unavailable");
                        None
                    }
                    Err(_) => {
                        tracing::warn!("APQ store timed out");
                        None
                    }
                }
            }
            None => None,
        };
        // What the store holds was checked against its hash when it was put, but the
        // store is outside this process: check again.
        let text = shared.filter(|text| sha256_hex(text) == hash)?;
        let text: Arc<str> = Arc::from(text);
        self.local.insert(hash.to_string(), text.clone());
        metrics::counter!("flowfleet_gateway_apq_total", "result" => "hit").increment(1);
        Some(text)
    }
}

/// `extensions.persistedQuery.sha256Hash`, lowercased, when the request has one.
fn persisted_hash(request: &GraphQLRequest) -> Result<Option<String>, RequestError> {
    let Some(persisted) = request
        .extensions
        .as_ref()
        .and_then(|e| e.get("persistedQuery"))
    else {
        return Ok(None);
    };
    let bad = |message: &str| {
        error(
            http::StatusCode::BAD_REQUEST,
            crate::error::codes::BAD_REQUEST,
            message,
        )
    };
    let Value::Object(persisted) = persisted else {
        return Err(bad("`extensions.persistedQuery` must be an object."));
    };
    if persisted.get("version").and_then(Value::as_i64) != Some(1) {
        return Err(bad("`extensions.persistedQuery.version` must be 1."));
    }
    let Some(hash) = persisted.get("sha256Hash").and_then(Value::as_str) else {
        return Err(bad(
            "`extensions.persistedQuery.sha256Hash` must be a string.",
        ));
    };
    let hash = hash.to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(
            "`extensions.persistedQuery.sha256Hash` must be 64 hexadecimal digits.",
        ));
    }
    Ok(Some(hash))
}
