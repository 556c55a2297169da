//! Refresh-token sessions: in memory in embedded mode, in Redis in distributed mode so
//! that every replica of the auth service sees the same sessions.
//!
//! Why a store of its own rather than the [`flowfleet_runtime::cache`]: a cache may evict, and an
//! evicted session is a user logged out for no reason; and rotation must be atomic.
//!
//! Model: a *family* is one sign-in (one device). Every refresh rotates the family to a new
//! token; the store keeps every token it issued for a family while the family lives, so a
//! token that is no longer current is recognized as *reuse* (a stolen copy raced its owner),
//! which ends the whole family. Tokens are stored by their hash only (the caller hashes).
//!
//! Invariant: a family has exactly one current token, and rotating it succeeds for exactly
//! one caller; a concurrent second rotation of the same token counts as reuse.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flowfleet_host::Infra;

use flowfleet_runtime::cache::redis_millis;

#[derive(Debug, thiserror::Error)]
#[error("session store unavailable: {0}")]
pub struct SessionError(String);

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// It was current; the new token is current now.
    Rotated { user: String, family: String },
    /// It was an earlier token of a live family: the family has been ended.
    Reused { user: String, family: String },
    /// Never issued, expired, or its family ended.
    Unknown,
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Starts family `family` of `user` with `token_hash` current, for `ttl`.
    async fn start(
        &self,
        user: &str,
        family: &str,
        token_hash: &str,
        ttl: Duration,
    ) -> Result<(), SessionError>;

    /// Makes `new_hash` current when `old_hash` is, and extends the family to `ttl`.
    async fn rotate(
        &self,
        old_hash: &str,
        new_hash: &str,
        ttl: Duration,
    ) -> Result<Rotation, SessionError>;

    /// The user and family of a live family's current or earlier token.
    async fn family_of(&self, token_hash: &str) -> Result<Option<(String, String)>, SessionError>;

    /// Ends one family (log out); its tokens are unknown afterwards.
    async fn end(&self, family: &str) -> Result<(), SessionError>;

    /// Ends every family of `user` but `keep`; returns how many ended.
    async fn end_all(&self, user: &str, keep: Option<&str>) -> Result<usize, SessionError>;
}

/// The sessions the configuration chose: in Redis when the fleet shares a connection
/// ([`Infra::redis`]), so every replica sees the same state; otherwise in this process.
pub fn for_infra(infra: &Infra) -> Arc<dyn SessionStore> {
    match &infra.redis {
        Some(conn) => Arc::new(RedisSessions::new(
            conn.clone(),
            &infra.config.redis.key_prefix,
        )),
        None => Arc::new(MemorySessions::default()),
    }
}

struct Family {
    user: String,
    current: String,
    expires: Instant,
}

#[derive(Default)]
struct Sessions {
    families: HashMap<String, Family>,
    /// Token hash -> family; entries of ended families are purged lazily.
    tokens: HashMap<String, String>,
    by_user: HashMap<String, HashSet<String>>,
    operations: u64,
}

impl Sessions {
    fn live(&self, family: &str, now: Instant) -> Option<&Family> {
        self.families.get(family).filter(|f| f.expires > now)
    }

    fn end(&mut self, family: &str) -> bool {
        let Some(ended) = self.families.remove(family) else {
            return false;
        };
        if let Some(set) = self.by_user.get_mut(&ended.user) {
            set.remove(family);
            if set.is_empty() {
                self.by_user.remove(&ended.user);
            }
        }
        ended.expires > Instant::now()
    }

    /// Drops expired families and the tokens of ended ones, now and then.
    fn tidy(&mut self) {
        self.operations += 1;
        if !self.operations.is_multiple_of(1024) {
            return;
        }
        let now = Instant::now();
        let expired: Vec<String> = self
            .families
            .iter()
            .filter(|(_, f)| f.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for family in expired {
            self.end(&family);
        }
        let families = &self.families;
        self.tokens
            .retain(|_, family| families.contains_key(family));
    }
}

/// Sessions in this process (embedded mode). Nothing is evicted before it expires.
#[derive(Default)]
pub struct MemorySessions {
    state: Mutex<Sessions>,
}

impl MemorySessions {
    fn with<T>(&self, f: impl FnOnce(&mut Sessions) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.tidy();
        f(&mut state)
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn start(
        &self,
        user: &str,
        family: &str,
        token_hash: &str,
        ttl: Duration,
    ) -> Result<(), SessionError> {
        self.with(|s| {
            s.families.insert(
                family.to_string(),
                Family {
                    user: user.to_string(),
                    current: token_hash.to_string(),
                    expires: Instant::now() + ttl,
                },
            );
            s.tokens.insert(token_hash.to_string(), family.to_string());
            s.by_user
                .entry(user.to_string())
                .or_default()
                .insert(family.to_string());
        });
        Ok(())
    }

    async fn rotate(
        &self,
        old_hash: &str,
        new_hash: &str,
        ttl: Duration,
    ) -> Result<Rotation, SessionError> {
        Ok(self.with(|s| {
            let now = Instant::now();
            let Some(family) = s.tokens.get(old_hash).cloned() else {
                return Rotation::Unknown;
            };
            let Some(live) = s.live(&family, now) else {
                return Rotation::Unknown;
            };
            let user = live.user.clone();
            if live.current != old_hash {
                s.end(&family);
                return Rotation::Reused { user, family };
            }
            if let Some(f) = s.families.get_mut(&family) {
                f.current = new_hash.to_string();
                f.expires = now + ttl;
            }
            s.tokens.insert(new_hash.to_string(), family.clone());
            Rotation::Rotated { user, family }
        }))
    }

    async fn family_of(&self, token_hash: &str) -> Result<Option<(String, String)>, SessionError> {
        Ok(self.with(|s| {
            let family = s.tokens.get(token_hash)?;
            let live = s.live(family, Instant::now())?;
            Some((live.user.clone(), family.clone()))
        }))
    }

    async fn end(&self, family: &str) -> Result<(), SessionError> {
        self.with(|s| s.end(family));
        Ok(())
    }

    async fn end_all(&self, user: &str, keep: Option<&str>) -> Result<usize, SessionError> {
        Ok(self.with(|s| {
            let families: Vec<String> = s
                .by_user
                .get(user)
                .map(|set| set.iter().cloned().collect())
                .unwrap_or_default();
            families
                .iter()
                .filter(|f| Some(f.as_str()) != keep)
                .filter(|f| s.end(f))
                .count()
        }))
    }
}

/// Sessions in Redis, shared by every replica. Keys (under the configured prefix):
/// `sess:tok:<hash>` -> family, `sess:fam:<family>` -> hash {user, current},
/// `sess:user:<user>` -> set of families; all expire with the family. Scripts keep each
/// operation atomic.
#[derive(Clone)]
pub struct RedisSessions {
    conn: redis::aio::ConnectionManager,
    prefix: String,
}

const ROTATE: &str = r#"
local p = ARGV[1]
local family = redis.call('GET', p .. 'sess:tok:' .. ARGV[2])
if not family then return {'unknown'} end
local fkey = p .. 'sess:fam:' .. family
local current = redis.call('HGET', fkey, 'current')
local user = redis.call('HGET', fkey, 'user')
if not current then return {'unknown'} end
if current ~= ARGV[2] then
  redis.call('DEL', fkey)
  redis.call('SREM', p .. 'sess:user:' .. user, family)
  return {'reused', user, family}
end
redis.call('HSET', fkey, 'current', ARGV[3])
redis.call('PEXPIRE', fkey, ARGV[4])
redis.call('SET', p .. 'sess:tok:' .. ARGV[3], family, 'PX', ARGV[4])
redis.call('PEXPIRE', p .. 'sess:tok:' .. ARGV[2], ARGV[4])
redis.call('SADD', p .. 'sess:user:' .. user, family)
redis.call('PEXPIRE', p .. 'sess:user:' .. user, ARGV[4])
return {'rotated', user, family}
"#;

const FAMILY_OF: &str = r#"
local p = ARGV[1]
local family = redis.call('GET', p .. 'sess:tok:' .. ARGV[2])
if not family then return {} end
local user = redis.call('HGET', p .. 'sess:fam:' .. family, 'user')
if not user then return {} end
return {user, family}
"#;

const END: &str = r#"
local p = ARGV[1]
local fkey = p .. 'sess:fam:' .. ARGV[2]
local user = redis.call('HGET', fkey, 'user')
if user then redis.call('SREM', p .. 'sess:user:' .. user, ARGV[2]) end
return redis.call('DEL', fkey)
"#;

const END_ALL: &str = r#"
local p = ARGV[1]
local ukey = p .. 'sess:user:' .. ARGV[2]
local ended = 0
for _, family in ipairs(redis.call('SMEMBERS', ukey)) do
  if family ~= ARGV[3] then
    ended = ended + redis.call('DEL', p .. 'sess:fam:' .. family)
    redis.call('SREM', ukey, family)
  end
end
return ended
"#;

fn redis_error(e: redis::RedisError) -> SessionError {
    SessionError(e.to_string())
}

impl RedisSessions {
    /// Sessions over `conn` (see [`flowfleet_runtime::cache::redis_connection`]), keys under `prefix`.
    pub fn new(conn: redis::aio::ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_string(),
        }
    }

    async fn script<T: redis::FromRedisValue>(
        &self,
        source: &str,
        args: &[&str],
    ) -> Result<T, SessionError> {
        let mut conn = self.conn.clone();
        let script = redis::Script::new(source);
        let mut invocation = script.prepare_invoke();
        invocation.arg(&self.prefix);
        for arg in args {
            invocation.arg(*arg);
        }
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(redis_error)
    }
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn start(
        &self,
        user: &str,
        family: &str,
        token_hash: &str,
        ttl: Duration,
    ) -> Result<(), SessionError> {
        let p = &self.prefix;
        let ms = redis_millis(ttl);
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .hset_multiple(
                format!("{p}sess:fam:{family}"),
                &[("user", user), ("current", token_hash)],
            )
            .pexpire(format!("{p}sess:fam:{family}"), ms as i64)
            .set_options(
                format!("{p}sess:tok:{token_hash}"),
                family,
                redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ms)),
            )
            .sadd(format!("{p}sess:user:{user}"), family)
            .pexpire(format!("{p}sess:user:{user}"), ms as i64)
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_error)
    }

    async fn rotate(
        &self,
        old_hash: &str,
        new_hash: &str,
        ttl: Duration,
    ) -> Result<Rotation, SessionError> {
        let reply: Vec<String> = self
            .script(
                ROTATE,
                &[old_hash, new_hash, &redis_millis(ttl).to_string()],
            )
            .await?;
        Ok(match reply.as_slice() {
            [kind, user, family] if kind == "rotated" => Rotation::Rotated {
                user: user.clone(),
                family: family.clone(),
            },
            [kind, user, family] if kind == "reused" => Rotation::Reused {
                user: user.clone(),
                family: family.clone(),
            },
            _ => Rotation::Unknown,
        })
    }

    async fn family_of(&self, token_hash: &str) -> Result<Option<(String, String)>, SessionError> {
        let reply: Vec<String> = self.script(FAMILY_OF, &[token_hash]).await?;
        Ok(match reply.as_slice() {
            [user, family] => Some((user.clone(), family.clone())),
            _ => None,
        })
    }

    async fn end(&self, family: &str) -> Result<(), SessionError> {
        self.script::<i64>(END, &[family]).await.map(|_| ())
    }

    async fn end_all(&self, user: &str, keep: Option<&str>) -> Result<usize, SessionError> {
        let ended: i64 = self.script(END_ALL, &[user, keep.unwrap_or("")]).await?;
        Ok(ended.max(0) as usize)
    }
}
