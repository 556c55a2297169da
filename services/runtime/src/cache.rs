//! A small key-value cache with TTLs: in memory (moka) in embedded mode, Redis
//! in distributed mode so that replicas share it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
#[error("cache unavailable: {0}")]
pub struct CacheError(String);

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError>;
    async fn delete(&self, key: &str) -> Result<(), CacheError>;
}

/// In-process cache. Each entry expires after its own TTL.
pub struct MemoryCache {
    inner: moka::future::Cache<String, (Arc<Vec<u8>>, std::time::Instant)>,
}

impl MemoryCache {
    pub fn new(max_entries: u64) -> Self {
        MemoryCache {
            inner: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build(),
        }
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new(100_000)
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        match self.inner.get(key).await {
            Some((v, expires)) if expires > std::time::Instant::now() => Ok(Some(v.to_vec())),
            Some(_) => {
                self.inner.invalidate(key).await;
                Ok(None)
            }
            None => Ok(None),
        }
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        self.inner
            .insert(
                key.to_string(),
                (Arc::new(value.to_vec()), std::time::Instant::now() + ttl),
            )
            .await;
        Ok(())
    }
    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.inner.invalidate(key).await;
        Ok(())
    }
}

/// Redis-backed cache, shared by all replicas.
#[derive(Clone)]
pub struct RedisCache {
    conn: redis::aio::ConnectionManager,
    prefix: String,
}

/// A TTL in whole milliseconds for Redis, at least one (Redis refuses zero).
pub fn redis_millis(ttl: Duration) -> u64 {
    ttl.as_millis().max(1) as u64
}

/// One connection to Redis (reconnecting by itself), shared by the cache, the sessions and
/// the counters of a process.
pub async fn redis_connection(url: &str) -> redis::RedisResult<redis::aio::ConnectionManager> {
    redis::aio::ConnectionManager::new(redis::Client::open(url)?).await
}

impl RedisCache {
    /// A cache over `conn` (see [`redis_connection`]), its keys under `prefix`.
    pub fn new(conn: redis::aio::ConnectionManager, prefix: &str) -> Self {
        RedisCache {
            conn,
            prefix: prefix.to_string(),
        }
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(format!("{}{key}", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(|e| CacheError(e.to_string()))
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(format!("{}{key}", self.prefix))
            .arg(value)
            .arg("PX")
            .arg(redis_millis(ttl))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| CacheError(e.to_string()))
    }
    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(format!("{}{key}", self.prefix))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| CacheError(e.to_string()))
    }
}
