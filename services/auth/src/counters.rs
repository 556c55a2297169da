//! Counters that expire: how often something happened within a window (failed sign-ins
//! per account, say). In memory in embedded mode, in Redis in distributed mode so that
//! every replica counts together.
//!
//! A window opens with the first hit of a key and lasts its given length (a fixed window):
//! when it closes the count starts again from zero. Throttling built on this is exact per
//! window and needs one round trip per hit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flowfleet_host::Infra;

#[derive(Debug, thiserror::Error)]
#[error("counter store unavailable: {0}")]
pub struct CounterError(String);

/// A key's count and how long its window still lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub hits: u64,
    pub resets_in: Duration,
}

#[async_trait]
pub trait Counters: Send + Sync + 'static {
    /// Adds one to `key` (opening a window of `window` if none is open) and returns the count.
    async fn hit(&self, key: &str, window: Duration) -> Result<Count, CounterError>;
    /// The count of an open window, without adding to it.
    async fn peek(&self, key: &str) -> Result<Option<Count>, CounterError>;
    /// Closes `key`'s window.
    async fn reset(&self, key: &str) -> Result<(), CounterError>;
}

/// The counters the configuration chose: in Redis when the fleet shares a connection
/// ([`Infra::redis`]), so every replica sees the same state; otherwise in this process.
pub fn for_infra(infra: &Infra) -> Arc<dyn Counters> {
    match &infra.redis {
        Some(conn) => Arc::new(RedisCounters::new(
            conn.clone(),
            &infra.config.redis.key_prefix,
        )),
        None => Arc::new(MemoryCounters::default()),
    }
}

/// Counters in this process (embedded mode).
#[derive(Default)]
pub struct MemoryCounters {
    state: Mutex<Windows>,
}

/// Per key: the hits so far and when the window closes.
#[derive(Default)]
struct Windows {
    open: HashMap<String, (u64, Instant)>,
    operations: u64,
}

#[async_trait]
impl Counters for MemoryCounters {
    async fn hit(&self, key: &str, window: Duration) -> Result<Count, CounterError> {
        let mut windows = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        // Expired windows are dropped now and then, so unused keys do not pile up.
        windows.operations += 1;
        if windows.operations.is_multiple_of(1024) {
            windows.open.retain(|_, (_, closes)| *closes > now);
        }
        let entry = windows
            .open
            .entry(key.to_string())
            .or_insert((0, now + window));
        if entry.1 <= now {
            *entry = (0, now + window);
        }
        entry.0 += 1;
        Ok(Count {
            hits: entry.0,
            resets_in: entry.1 - now,
        })
    }

    async fn peek(&self, key: &str) -> Result<Option<Count>, CounterError> {
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        Ok(guard
            .open
            .get(key)
            .filter(|(_, closes)| *closes > now)
            .map(|(hits, closes)| Count {
                hits: *hits,
                resets_in: *closes - now,
            }))
    }

    async fn reset(&self, key: &str) -> Result<(), CounterError> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .open
            .remove(key);
        Ok(())
    }
}

/// Counters in Redis (`<prefix>count:<key>`), shared by every replica.
#[derive(Clone)]
pub struct RedisCounters {
    conn: redis::aio::ConnectionManager,
    prefix: String,
}

const HIT: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
"#;

const PEEK: &str = r#"
local n = redis.call('GET', KEYS[1])
if not n then return {} end
return {tonumber(n), redis.call('PTTL', KEYS[1])}
"#;

fn redis_error(e: redis::RedisError) -> CounterError {
    CounterError(e.to_string())
}

fn count(reply: &[i64]) -> Option<Count> {
    match reply {
        [hits, ttl] if *ttl > 0 => Some(Count {
            hits: (*hits).max(0) as u64,
            resets_in: Duration::from_millis(*ttl as u64),
        }),
        _ => None,
    }
}

impl RedisCounters {
    /// Counters over `conn` (see [`flowfleet_runtime::cache::redis_connection`]), keys under `prefix`.
    pub fn new(conn: redis::aio::ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_string(),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}count:{key}", self.prefix)
    }
}

#[async_trait]
impl Counters for RedisCounters {
    async fn hit(&self, key: &str, window: Duration) -> Result<Count, CounterError> {
        let mut conn = self.conn.clone();
        let reply: Vec<i64> = redis::Script::new(HIT)
            .key(self.key(key))
            .arg(flowfleet_runtime::cache::redis_millis(window))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        count(&reply).ok_or_else(|| CounterError("unexpected reply from Redis".into()))
    }

    async fn peek(&self, key: &str) -> Result<Option<Count>, CounterError> {
        let mut conn = self.conn.clone();
        let reply: Vec<i64> = redis::Script::new(PEEK)
            .key(self.key(key))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(count(&reply))
    }

    async fn reset(&self, key: &str) -> Result<(), CounterError> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(self.key(key))
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_error)
    }
}
