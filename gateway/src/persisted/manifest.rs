//! The trusted documents' manifest: loaded from a file, swapped in whole when the file
//! changes, kept as it was when a new version does not load.
//!
//! Two formats are read:
//! - Apollo's persisted query manifest:
//!   `{"format": "apollo-persisted-query-manifest", "version": 1, "operations":
//!   [{"id": "...", "name": "...", "type": "query", "body": "..."}]}`;
//! - a map of hash to text, as GraphQL Code Generator's client preset and Relay write it:
//!   `{"<sha256>": "query ..."}`.
//!
//! Every operation is found by the SHA-256 of its text; an Apollo manifest's `id` finds it
//! too. An entry whose key claims to be a SHA-256 (64 hex digits) but is not its text's is
//! an error: the manifest is refused rather than trusted half-way.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::Value;

use super::sha256_hex;

/// Why a manifest was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read the trusted documents manifest {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the trusted documents manifest {path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// The operations of the manifest in force. Cheap to clone; clones see reloads.
#[derive(Clone)]
pub struct TrustedDocuments {
    path: PathBuf,
    documents: Arc<ArcSwap<HashMap<String, Arc<str>>>>,
}

impl TrustedDocuments {
    /// Loads the manifest at `path` (an error stops start-up: a production gateway should
    /// not start without its list).
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, ManifestError> {
        let path = path.into();
        let documents = read(&path)?;
        Ok(TrustedDocuments {
            path,
            documents: Arc::new(ArcSwap::from_pointee(documents)),
        })
    }

    /// The text of the operation with this hash or id.
    pub fn get(&self, key: &str) -> Option<Arc<str>> {
        self.documents.load().get(key).cloned()
    }

    /// Keys known (hashes and ids).
    pub fn len(&self) -> usize {
        self.documents.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the file again; on error the current list stays.
    pub fn reload(&self) -> Result<bool, ManifestError> {
        let documents = read(&self.path)?;
        if *self.documents.load_full() == documents {
            return Ok(false);
        }
        self.documents.store(Arc::new(documents));
        Ok(true)
    }
}

fn read(path: &Path) -> Result<HashMap<String, Arc<str>>, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|error| ManifestError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    parse(&text).map_err(|reason| ManifestError::Invalid {
        path: path.to_path_buf(),
        reason,
    })
}

fn parse(text: &str) -> Result<HashMap<String, Arc<str>>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(object) = value else {
        return Err("the manifest must be a JSON object".into());
    };
    let mut entries: Vec<(Option<String>, String)> = Vec::new();
    if object.get("format").and_then(Value::as_str) == Some("apollo-persisted-query-manifest") {
        let Some(Value::Array(operations)) = object.get("operations") else {
            return Err("`operations` must be an array".into());
        };
        for (i, operation) in operations.iter().enumerate() {
            let body = operation
                .get("body")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("operations[{i}] has no `body` string"))?;
            let id = operation
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string);
            entries.push((id, body.to_string()));
        }
    } else {
        for (key, body) in object {
            let body = body
                .as_str()
                .ok_or_else(|| format!("the entry `{key}` is not a string"))?;
            entries.push((Some(key), body.to_string()));
        }
    }
    let mut documents = HashMap::with_capacity(entries.len() * 2);
    for (id, body) in entries {
        let hash = sha256_hex(&body);
        let body: Arc<str> = Arc::from(body);
        if let Some(id) = id {
            let claims_hash = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
            if claims_hash && id.to_ascii_lowercase() != hash {
                return Err(format!(
                    "the entry `{id}` is not the SHA-256 of its text ({hash})"
                ));
            }
            documents.insert(id.to_ascii_lowercase(), body.clone());
        }
        documents.insert(hash, body);
    }
    Ok(documents)
}

/// Reloads `documents` from its file every `every` until `shutdown` resolves.
pub async fn watch_manifest(
    documents: TrustedDocuments,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        let reloading = documents.clone();
        match tokio::task::spawn_blocking(move || reloading.reload()).await {
            Ok(Ok(true)) => {
                tracing::info!(entries = documents.len(), "trusted documents reloaded")
            }
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "trusted documents not reloaded; the current list stays")
            }
            Err(error) => tracing::warn!(%error, "trusted documents reload panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_are_found_by_hash_and_apollo_ids_by_id() {
        let apollo = serde_json::json!({
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [{"id": "top", "name": "Top", "type": "query", "body": "{ a }"}]
        });
        let documents = parse(&apollo.to_string()).unwrap();
        assert_eq!(documents.get("top").map(|d| &**d), Some("{ a }"));
        assert_eq!(
            documents.get(&sha256_hex("{ a }")).map(|d| &**d),
            Some("{ a }")
        );

        let map = serde_json::json!({ sha256_hex("{ b }"): "{ b }" });
        let documents = parse(&map.to_string()).unwrap();
        assert_eq!(
            documents.get(&sha256_hex("{ b }")).map(|d| &**d),
            Some("{ b }")
        );
    }

    #[test]
    fn a_hash_that_is_not_its_texts_refuses_the_manifest() {
        let lying = serde_json::json!({ sha256_hex("{ b }"): "{ c }" });
        assert!(parse(&lying.to_string())
            .unwrap_err()
            .contains("not the SHA-256"));
        assert!(parse("[]").is_err());
        assert!(parse("{\"format\": \"apollo-persisted-query-manifest\"}").is_err());
    }
}
