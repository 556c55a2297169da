//! The response cache: answers of subgraph fetches that [`policy`] allows, kept in this
//! process (L1) and, when configured, in a store shared by every gateway replica (L2,
//! Redis in the `flowfleet` binary).
//!
//! Why per fetch rather than per client response: one client operation mixes fields of
//! several subgraphs with different lifetimes; a fetch is the unit one subgraph answers,
//! and an entity fetch's answer depends only on its representations. Only answers
//! without errors are kept.
//!
//! Keys are SHA-256 of the subgraph, the request body (operation and variables, so the
//! representations of an entity fetch) and, for private answers, the caller's
//! `Authorization` header: a private answer is never served to another credential.
//!
//! Eviction: by age, by L1 capacity, and by tags. An entity fetch is tagged `Type:id` for
//! each representation with an `id`; every answer is tagged with the object types it
//! selects (`Type`); every private answer is tagged [`PRIVATE_TAG`] and with its
//! credential, which that credential's mutations evict (read your own writes).
//! [`ResponseCache::invalidate`] evicts tags from both levels: the services' events
//! (`workflow.published` and the like) call it through [`crate::Gateway::invalidate`] and
//! [`crate::Gateway::invalidate_private`].

mod policy;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

pub use policy::{CachePolicy, Scope};

use crate::schema::SchemaModel;
use crate::transport::SubgraphRequest;
use crate::value::Value;
use policy::Verdict;

/// The store shared by gateway replicas (L2).
#[async_trait]
pub trait CacheStore: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheStoreError>;
    /// Keeps `value` under `key` for `ttl`, findable by each of `tags`.
    async fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        tags: &[String],
    ) -> Result<(), CacheStoreError>;
    /// Removes every entry carrying one of `tags`.
    async fn invalidate(&self, tags: &[String]) -> Result<(), CacheStoreError>;
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CacheStoreError(pub String);

/// What may be cached (off by default: no policies) and where.
#[derive(Clone, Default)]
pub struct CacheConfig {
    /// `Type` or `Type.field` -> how long and for whom.
    pub policies: HashMap<String, CachePolicy>,
    /// Answers kept in this process (0: no L1).
    pub max_entries: u64,
    /// The shared level, if any.
    pub store: Option<Arc<dyn CacheStore>>,
    /// How long the shared store may take before the fetch goes to the subgraph.
    pub store_timeout: Duration,
}

impl std::fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheConfig")
            .field("policies", &self.policies)
            .field("max_entries", &self.max_entries)
            .field("store", &self.store.is_some())
            .finish()
    }
}

impl CacheConfig {
    pub fn is_on(&self) -> bool {
        !self.policies.is_empty() && (self.max_entries > 0 || self.store.is_some())
    }
}

struct Entry {
    value: Arc<Value>,
    expires: Instant,
    tags: Vec<String>,
}

/// A fetch the cache may answer: its key and what to keep it with.
pub(crate) struct Cacheable {
    key: String,
    verdict: Arc<Verdict>,
    tags: Vec<String>,
    /// The invalidation epoch when the lookup began (see [`ResponseCache::outdated`]).
    since: u64,
}

pub(crate) struct ResponseCache {
    config: CacheConfig,
    l1: moka::sync::Cache<String, Arc<Entry>>,
    /// Tag -> L1 keys carrying it (kept in step with `l1` by its eviction listener).
    tagged: Arc<Mutex<HashMap<String, HashSet<String>>>>,
    /// Operation text -> its verdict, per supergraph (cleared on reload).
    verdicts: moka::sync::Cache<String, Option<Arc<Verdict>>>,
    /// Whether the events that evict answers are arriving ([`ResponseCache::set_fed`]):
    /// without them nothing is served from or kept in the cache.
    fed: std::sync::atomic::AtomicBool,
    /// Counts invalidations; `evicted` holds, per tag, the epoch of its last one (for
    /// longer than any fetch lasts), so an answer fetched or read from the shared store
    /// while one of its tags was evicted is not kept: it may predate the change.
    epoch: std::sync::atomic::AtomicU64,
    evicted: moka::sync::Cache<String, u64>,
}

impl ResponseCache {
    pub fn new(config: CacheConfig) -> Self {
        let tagged: Arc<Mutex<HashMap<String, HashSet<String>>>> = Arc::default();
        let index = tagged.clone();
        let l1 = moka::sync::Cache::builder()
            .max_capacity(config.max_entries)
            .eviction_listener(move |key: Arc<String>, entry: Arc<Entry>, _cause| {
                let mut index = index.lock().unwrap_or_else(|p| p.into_inner());
                for tag in &entry.tags {
                    if let Some(keys) = index.get_mut(tag) {
                        keys.remove(key.as_str());
                        if keys.is_empty() {
                            index.remove(tag);
                        }
                    }
                }
            })
            .build();
        Self {
            config,
            l1,
            tagged,
            verdicts: moka::sync::Cache::new(10_000),
            fed: std::sync::atomic::AtomicBool::new(true),
            epoch: std::sync::atomic::AtomicU64::new(0),
            evicted: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(300))
                .build(),
        }
    }

    /// Whether one of `cacheable`'s tags was evicted since its lookup began.
    fn outdated(&self, cacheable: &Cacheable) -> bool {
        cacheable
            .tags
            .iter()
            .any(|tag| self.evicted.get(tag).is_some_and(|at| at > cacheable.since))
    }

    fn mark_evicted(&self, tags: &[String]) {
        let at = self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        for tag in tags {
            self.evicted.insert(tag.clone(), at);
        }
    }

    pub fn is_on(&self) -> bool {
        self.config.is_on() && self.fed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Says whether eviction events arrive. While they do not, the cache is bypassed; when
    /// they come back, what this process kept is dropped (events may have been missed).
    pub fn set_fed(&self, fed: bool) {
        let was = self.fed.swap(fed, std::sync::atomic::Ordering::AcqRel);
        if fed && !was {
            self.l1.invalidate_all();
            self.tagged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
    }

    /// Forgets the verdicts of the previous supergraph.
    pub fn reloaded(&self) {
        self.verdicts.invalidate_all();
    }

    /// Whether `request` may be answered from the cache, and under which key.
    pub fn cacheable(
        &self,
        request: &SubgraphRequest,
        schema: &SchemaModel,
        caller: Option<&http::HeaderValue>,
    ) -> Option<Cacheable> {
        if !self.is_on() || request.uploads.is_some() || !request.idempotent {
            return None;
        }
        let verdict = self.verdicts.get_with_by_ref(&request.query, || {
            policy::verdict(&request.query, &self.config.policies, schema).map(Arc::new)
        })?;
        let mut hasher = Sha256::new();
        hasher.update(request.subgraph.as_bytes());
        hasher.update([0]);
        hasher.update(request.encoded());
        if verdict.scope == Scope::Private {
            match caller {
                Some(credential) => {
                    hasher.update([1]);
                    hasher.update(credential.as_bytes());
                }
                None => hasher.update([2]),
            }
        }
        let key = hex::encode(hasher.finalize());
        let mut tags = tags(request, &verdict.types);
        if verdict.scope == Scope::Private {
            tags.push(PRIVATE_TAG.to_string());
            tags.push(caller_tag(caller));
        }
        let since = self.epoch.load(std::sync::atomic::Ordering::Acquire);
        Some(Cacheable {
            key,
            tags,
            verdict,
            since,
        })
    }

    /// The kept answer, from this process or the shared store.
    pub async fn get(&self, cacheable: &Cacheable) -> Option<Arc<Value>> {
        if let Some(entry) = self.l1.get(&cacheable.key) {
            if entry.expires > Instant::now() {
                lookup("hit_local");
                return Some(entry.value.clone());
            }
            self.l1.invalidate(&cacheable.key);
        }
        if let Some(store) = &self.config.store {
            let found =
                tokio::time::timeout(self.config.store_timeout, store.get(&cacheable.key)).await;
            match found {
                Ok(Ok(Some(bytes))) => {
                    if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
                        if self.outdated(cacheable) {
                            lookup("miss");
                            return None;
                        }
                        lookup("hit_shared");
                        let value = Arc::new(value);
                        // The shared store keeps the remaining age; locally it lives for
                        // at most the policy's.
                        self.keep_local(cacheable, value.clone());
                        return Some(value);
                    }
                }
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "response cache store unavailable")
                }
                Err(_) => tracing::warn!("response cache store timed out"),
            }
        }
        lookup("miss");
        None
    }

    /// Keeps a subgraph's answer (not when it has errors).
    pub async fn put(&self, cacheable: Cacheable, value: &Arc<Value>) {
        if value.get("errors").is_some() {
            return;
        }
        // Locally, `keep_local` drops what an eviction since the lookup made outdated.
        self.keep_local(&cacheable, value.clone());
        if let Some(store) = &self.config.store {
            // Shared: checked before the write; an eviction racing the write itself (one
            // Redis round trip) can still leave an outdated answer there until its age.
            if self.outdated(&cacheable) {
                return;
            }
            let Ok(bytes) = serde_json::to_vec(&**value) else {
                return;
            };
            let put = store.put(
                &cacheable.key,
                &bytes,
                cacheable.verdict.max_age,
                &cacheable.tags,
            );
            match tokio::time::timeout(self.config.store_timeout, put).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "response cache store unavailable"),
                Err(_) => tracing::warn!("response cache store timed out"),
            }
        }
    }

    fn keep_local(&self, cacheable: &Cacheable, value: Arc<Value>) {
        if self.config.max_entries == 0 {
            return;
        }
        let entry = Arc::new(Entry {
            value,
            expires: Instant::now() + cacheable.verdict.max_age,
            tags: cacheable.tags.clone(),
        });
        {
            let mut index = self.tagged.lock().unwrap_or_else(|p| p.into_inner());
            for tag in &entry.tags {
                index
                    .entry(tag.clone())
                    .or_default()
                    .insert(cacheable.key.clone());
            }
        }
        self.l1.insert(cacheable.key.clone(), entry);
        // Checked after the insert: an eviction either ran before this check (and the
        // answer goes now) or evicts it itself afterwards.
        if self.outdated(cacheable) {
            self.l1.invalidate(&cacheable.key);
        }
    }

    /// Evicts what carries `tags`, here and in the shared store.
    pub async fn invalidate(&self, tags: &[String]) {
        // Marked before and after the shared store's eviction: a lookup that began before
        // either mark keeps nothing it found or fetched.
        self.mark_evicted(tags);
        if let Some(store) = &self.config.store {
            match tokio::time::timeout(self.config.store_timeout, store.invalidate(tags)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "response cache store unavailable"),
                Err(_) => tracing::warn!("response cache store timed out"),
            }
        }
        self.mark_evicted(tags);
        let keys: Vec<String> = {
            let mut index = self.tagged.lock().unwrap_or_else(|p| p.into_inner());
            tags.iter()
                .filter_map(|tag| index.remove(tag))
                .flatten()
                .collect()
        };
        for key in &keys {
            self.l1.invalidate(key);
        }
        metrics::counter!("flowfleet_gateway_response_cache_invalidations_total").increment(1);
    }
}

/// `Type:id` per representation of an entity fetch, and `Type` per other object type
/// selected: an event about one entity evicts the answers about it and those that select
/// its type below something else, not the answers about its siblings.
fn tags(request: &SubgraphRequest, types: &BTreeSet<String>) -> Vec<String> {
    let mut tags = Vec::new();
    let mut entities = BTreeSet::new();
    if let Some(serde_json::Value::Array(representations)) =
        request.variables.get("representations")
    {
        for representation in representations {
            let typename = representation.get("__typename").and_then(|t| t.as_str());
            let id = representation.get("id").and_then(|i| i.as_str());
            match (typename, id) {
                (Some(typename), Some(id)) => {
                    entities.insert(typename.to_string());
                    tags.push(entity_tag(typename, id));
                }
                // An entity known by another key: only its type can evict it.
                (Some(typename), None) => tags.push(typename.to_string()),
                _ => {}
            }
        }
    }
    tags.extend(types.iter().filter(|t| !entities.contains(*t)).cloned());
    tags.sort();
    tags.dedup();
    tags
}

/// Carried by every private answer: a change of who may see what (a member removed, a
/// user deleted) evicts them all.
pub const PRIVATE_TAG: &str = "(private)";

/// Carried by the private answers of one credential: its own mutations evict them, so a
/// person reads their own writes at once (others, once the services' events arrive).
pub(crate) fn caller_tag(caller: Option<&http::HeaderValue>) -> String {
    match caller {
        Some(credential) => {
            let digest = Sha256::digest(credential.as_bytes());
            format!("(caller:{})", hex::encode(&digest[..16]))
        }
        None => "(caller:anonymous)".to_string(),
    }
}

pub fn entity_tag(typename: &str, id: &str) -> String {
    format!("{typename}:{id}")
}

fn lookup(result: &'static str) {
    metrics::counter!("flowfleet_gateway_response_cache_lookups_total", "result" => result)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> ResponseCache {
        let policy = CachePolicy {
            max_age: Duration::from_secs(60),
            scope: Scope::Public,
        };
        ResponseCache::new(CacheConfig {
            policies: HashMap::from([("Workflow".to_string(), policy)]),
            max_entries: 10,
            store: None,
            store_timeout: Duration::from_millis(50),
        })
    }

    fn lookup_now(cache: &ResponseCache) -> Cacheable {
        Cacheable {
            key: "k".into(),
            verdict: Arc::new(Verdict {
                max_age: Duration::from_secs(60),
                scope: Scope::Public,
                types: BTreeSet::new(),
            }),
            tags: vec!["Workflow:w1".into()],
            since: cache.epoch.load(std::sync::atomic::Ordering::Acquire),
        }
    }

    #[tokio::test]
    async fn an_answer_fetched_while_its_tag_was_evicted_is_not_kept() {
        let cache = cache();
        let answer: Arc<Value> =
            Arc::new(serde_json::from_value(serde_json::json!({"data": {"x": 1}})).unwrap());
        let during = lookup_now(&cache);
        cache.invalidate(&["Workflow:w1".to_string()]).await;
        cache.put(during, &answer).await;
        assert!(
            cache.get(&lookup_now(&cache)).await.is_none(),
            "may predate the change"
        );

        // Another tag's eviction does not matter; a lookup after the eviction is kept.
        let after = lookup_now(&cache);
        cache.invalidate(&["Workflow:w2".to_string()]).await;
        cache.put(after, &answer).await;
        assert!(cache.get(&lookup_now(&cache)).await.is_some());
    }
}
