//! The gateway's rate limits from configuration, and their buckets in Redis so that every
//! replica of a distributed gateway draws from the same ones.
//!
//! One request is one round trip: a Lua script checks every bucket the request draws from
//! (global, address, user or API key) and takes from all of them or from none, on Redis's
//! clock, so replicas with skewed clocks still agree. Redis runs scripts one at a time, so
//! two replicas never both take the last token.
//!
//! If Redis cannot be reached (at start-up or later), [`RedisBuckets::take`] fails fast and
//! the gateway limits each replica locally until it is back: a Redis outage loosens the
//! limits to "per replica" for a while; it never refuses or stalls traffic.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use flowfleet_gateway::rate_limit::{
    BucketStore, Decision, RateLimitConfig, RateLimiter, StoreError, Take,
};
use flowfleet_runtime::config::{Config, Mode};
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

/// Token buckets in Redis, shared by every gateway replica.
pub struct RedisBuckets {
    connection: Arc<ArcSwapOption<ConnectionManager>>,
    prefix: String,
    script: redis::Script,
}

impl RedisBuckets {
    /// Buckets under `prefix` in the Redis at `url`. Connects in the background (retrying
    /// until it succeeds), so a gateway starts while Redis is away; until then, and
    /// whenever Redis fails, [`BucketStore::take`] fails and the limiter checks locally.
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
                        tracing::warn!(%error, "rate limits: Redis unreachable; limiting locally meanwhile");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        });
        Ok(RedisBuckets {
            connection,
            prefix: prefix.to_string(),
            script: redis::Script::new(TAKE),
        })
    }
}

#[async_trait]
impl BucketStore for RedisBuckets {
    async fn take(&self, takes: &[Take]) -> Result<Decision, StoreError> {
        let Some(connection) = self.connection.load_full() else {
            return Err(StoreError("not connected to Redis yet".into()));
        };
        let mut connection = (*connection).clone();
        let mut invocation = self.script.prepare_invoke();
        for take in takes {
            invocation
                .key(format!("{}{}", self.prefix, take.key))
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

/// The gateway's rate limiter as `config` asks: its limits for the mode, its buckets in
/// Redis or in this process.
pub fn limiter(config: &Config) -> anyhow::Result<RateLimiter> {
    use flowfleet_gateway::rate_limit::Rate;
    let settings = &config.gateway.rate_limits;
    let limits = settings.effective(config.mode);
    let limit_config = RateLimitConfig {
        global: limits.global_per_second.map(Rate::per_second),
        per_address: limits.per_address_per_second.map(Rate::per_second),
        per_user: limits.per_user_per_minute.map(Rate::per_minute),
        per_api_key: limits.per_api_key_per_minute.map(Rate::per_minute),
        burst: settings.burst.max(1.0),
        operation_weights: settings
            .operation_weights
            .iter()
            .map(|(name, weight)| (name.clone(), *weight))
            .collect(),
        store_timeout: Duration::from_millis(settings.store_timeout_ms.max(1)),
    };
    let redis = match settings.store.as_str() {
        "local" => false,
        "redis" => true,
        "auto" => config.mode == Mode::Distributed && !config.redis.url.is_empty(),
        other => {
            anyhow::bail!("gateway.rate_limits.store is `{other}`; use `auto`, `local` or `redis`")
        }
    };
    if !redis {
        return Ok(RateLimiter::local(limit_config));
    }
    if config.redis.url.is_empty() {
        anyhow::bail!("gateway.rate_limits.store is `redis` but redis.url is empty");
    }
    let store = RedisBuckets::connect(&config.redis.url, &config.redis.key_prefix)?;
    Ok(RateLimiter::shared(limit_config, Arc::new(store)))
}
