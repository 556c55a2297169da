//! What gateway replicas share through Redis: rate-limit buckets ([`RedisBuckets`]) and
//! automatic persisted queries ([`RedisDocuments`]), over one connection that is made in
//! the background ([`SharedRedis`]), so a gateway starts and serves while Redis is away.
//!
//! Rate limits: one request is one round trip. A Lua script checks every bucket the
//! request draws from (global, address, user or API key) and takes from all of them or
//! from none, on Redis's clock, so replicas with skewed clocks still agree. Redis runs
//! scripts one at a time, so two replicas never both take the last token.
//!
//! If Redis cannot be reached (at start-up or later), [`RedisBuckets::take`] fails fast and
//! the gateway limits each replica locally until it is back: a Redis outage loosens the
//! limits to "per replica" for a while; it never refuses or stalls traffic.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use flowfleet_gateway::cache::{CacheStore, CacheStoreError};
use flowfleet_gateway::persisted::{DocumentStore, DocumentStoreError};
use flowfleet_gateway::rate_limit::{BucketStore, Decision, StoreError, Take};
use redis::aio::ConnectionManager;

/// Every bucket's rule, for all of a request's buckets at once. KEYS are the buckets;
/// ARGV holds, per bucket, its rate (tokens per second), capacity and the cost to take.
/// Returns {0, 0} when admitted, {i, ms} when bucket i (1-based) lacks tokens for ms more.
const TAKE: &str = r#"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local levels = {}
for i = 1, #KEYS do
  local rate = tonumber(ARGV[3 * i - 2])
  local capacity = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local bucket = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local level = capacity
  if bucket[1] then
    level = math.min(capacity, tonumber(bucket[1]) + math.max(0, now - tonumber(bucket[2])) * rate)
  end
  if level < cost then
    local wait = capacity / rate
    if cost <= capacity then wait = (cost - level) / rate end
    return {i, math.ceil(wait * 1000)}
  end
  levels[i] = level
end
for i = 1, #KEYS do
  local rate = tonumber(ARGV[3 * i - 2])
  local capacity = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  redis.call('HSET', KEYS[i], 'tokens', string.format('%.6f', levels[i] - cost),
    'at', string.format('%.6f', now))
  -- A bucket left alone refills completely in capacity / rate: then it can go.
  redis.call('PEXPIRE', KEYS[i], math.ceil(capacity / rate * 1000) + 1000)
end
return {0, 0}
"#;

/// A Redis connection made in the background: until it is made, and whenever Redis
/// fails, its users get an error at once and fall back to what this process knows.
#[derive(Clone)]
pub struct SharedRedis {
    connection: Arc<ArcSwapOption<ConnectionManager>>,
    prefix: String,
}

impl SharedRedis {
    /// Connects to the Redis at `url` in the background, retrying until it succeeds; keys
    /// go under `prefix`.
    pub fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("redis.url is not a Redis URL: {e}"))?;
        let connection = Arc::new(ArcSwapOption::empty());
        let slot = connection.clone();
        tokio::spawn(async move {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Duration::from_secs(1))
                .set_response_timeout(Duration::from_secs(1));
            let mut backoff = Duration::from_millis(200);
            loop {
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(manager) => {
                        slot.store(Some(Arc::new(manager)));
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "gateway: Redis unreachable; rate limits and persisted queries stay local meanwhile");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        });
        Ok(SharedRedis {
            connection,
            prefix: prefix.to_string(),
        })
    }

    /// The connection, if it has been made.
    fn connection(&self) -> Result<ConnectionManager, String> {
        match self.connection.load_full() {
            Some(connection) => Ok((*connection).clone()),
            None => Err("not connected to Redis yet".into()),
        }
    }
}

/// Token buckets in Redis, shared by every gateway replica.
pub struct RedisBuckets {
    redis: SharedRedis,
    script: redis::Script,
}

impl RedisBuckets {
    pub fn new(redis: SharedRedis) -> Self {
        RedisBuckets {
            redis,
            script: redis::Script::new(TAKE),
        }
    }
}

#[async_trait]
impl BucketStore for RedisBuckets {
    async fn take(&self, takes: &[Take]) -> Result<Decision, StoreError> {
        let mut connection = self.redis.connection().map_err(StoreError)?;
        let mut invocation = self.script.prepare_invoke();
        for take in takes {
            invocation
                .key(format!("{}{}", self.redis.prefix, take.key))
                .arg(take.limit.rate)
                .arg(take.limit.capacity)
                .arg(take.cost);
        }
        let (index, wait_ms): (usize, u64) = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        Ok(match index {
            0 => Decision::Allowed,
            i => Decision::Refused {
                index: i - 1,
                retry_after: Duration::from_millis(wait_ms),
            },
        })
    }
}

/// Automatic persisted queries in Redis, so every replica runs a hash one was told about.
/// Each text expires `ttl` after it was last registered.
pub struct RedisDocuments {
    redis: SharedRedis,
    ttl: Duration,
}

impl RedisDocuments {
    pub fn new(redis: SharedRedis, ttl: Duration) -> Self {
        RedisDocuments { redis, ttl }
    }

    fn key(&self, hash: &str) -> String {
        format!("{}apq:{hash}", self.redis.prefix)
    }
}

#[async_trait]
impl DocumentStore for RedisDocuments {
    async fn get(&self, hash: &str) -> Result<Option<String>, DocumentStoreError> {
        let mut connection = self.redis.connection().map_err(DocumentStoreError)?;
        redis::cmd("GET")
            .arg(self.key(hash))
            .query_async(&mut connection)
            .await
            .map_err(|e| DocumentStoreError(e.to_string()))
    }

    async fn put(&self, hash: &str, query: &str) -> Result<(), DocumentStoreError> {
        let mut connection = self.redis.connection().map_err(DocumentStoreError)?;
        redis::cmd("SET")
            .arg(self.key(hash))
            .arg(query)
            .arg("PX")
            .arg(self.ttl.as_millis() as u64)
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| DocumentStoreError(e.to_string()))
    }
}

/// The response cache's shared level: each answer under `rc:<key>` with its age as TTL,
/// and per tag a set `rc:tag:<tag>` of the keys carrying it (living as long as the longest
/// answer added to it). Evicting a tag deletes its keys and the set in one script, so an
/// answer stored while a tag is evicted is either gone or was stored after the eviction.
pub struct RedisResponses {
    redis: SharedRedis,
    put: redis::Script,
    evict: redis::Script,
}

/// KEYS: the answer's key, then its tag sets; ARGV: the value, the TTL in ms.
const PUT_RESPONSE: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
return 1
"#;

/// KEYS: tag sets. Deletes every key they list, then the sets.
const EVICT_TAGS: &str = r#"
for i = 1, #KEYS do
  local keys = redis.call('SMEMBERS', KEYS[i])
  for _, key in ipairs(keys) do
    redis.call('DEL', key)
  end
  redis.call('DEL', KEYS[i])
end
return 1
"#;

impl RedisResponses {
    pub fn new(redis: SharedRedis) -> Self {
        RedisResponses {
            redis,
            put: redis::Script::new(PUT_RESPONSE),
            evict: redis::Script::new(EVICT_TAGS),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}rc:{key}", self.redis.prefix)
    }

    fn tag(&self, tag: &str) -> String {
        format!("{}rc:tag:{tag}", self.redis.prefix)
    }
}

#[async_trait]
impl CacheStore for RedisResponses {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheStoreError> {
        let mut connection = self.redis.connection().map_err(CacheStoreError)?;
        redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut connection)
            .await
            .map_err(|e| CacheStoreError(e.to_string()))
    }

    async fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        tags: &[String],
    ) -> Result<(), CacheStoreError> {
        let mut connection = self.redis.connection().map_err(CacheStoreError)?;
        let mut invocation = self.put.prepare_invoke();
        invocation.key(self.key(key));
        for tag in tags {
            invocation.key(self.tag(tag));
        }
        invocation
            .arg(value)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async::<i64>(&mut connection)
            .await
            .map(drop)
            .map_err(|e| CacheStoreError(e.to_string()))
    }

    async fn invalidate(&self, tags: &[String]) -> Result<(), CacheStoreError> {
        let mut connection = self.redis.connection().map_err(CacheStoreError)?;
        let mut invocation = self.evict.prepare_invoke();
        for tag in tags {
            invocation.key(self.tag(tag));
        }
        invocation
            .invoke_async::<i64>(&mut connection)
            .await
            .map(drop)
            .map_err(|e| CacheStoreError(e.to_string()))
    }
}
