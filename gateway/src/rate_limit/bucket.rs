//! Token buckets: the arithmetic, and the in-process store.
//!
//! A bucket holds at most `capacity` tokens and gains `rate` tokens per second; a request
//! takes its weight in tokens. A request is checked against several buckets at once (the
//! global one, its address's, its user's or key's) and takes from all of them or from none:
//! a request refused by its address's bucket must not drain the global bucket as well.
//! The Redis store runs the same rule in one Lua script, so both stores answer alike.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

/// How fast a bucket refills and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Tokens gained per second.
    pub rate: f64,
    /// Most tokens held: the burst a quiet client may spend at once.
    pub capacity: f64,
}

/// One bucket to take from.
#[derive(Debug, Clone, PartialEq)]
pub struct Take {
    pub key: String,
    pub limit: Limit,
    pub cost: f64,
}

/// The answer for a set of [`Take`]s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Allowed,
    /// The bucket at `index` did not hold enough; nothing was taken from any bucket.
    Refused {
        index: usize,
        retry_after: Duration,
    },
}

/// The store's own failure (Redis unreachable, say): the limiter falls back to local
/// buckets rather than refusing or admitting everything.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Where buckets live: this process ([`LocalBuckets`]) or a store shared by every gateway
/// replica (Redis, in the `flowfleet` binary).
#[async_trait]
pub trait BucketStore: Send + Sync {
    /// Takes each `cost` from its bucket if every bucket holds enough, and nothing otherwise.
    async fn take(&self, takes: &[Take]) -> Result<Decision, StoreError>;
}

/// A bucket's level at a moment.
#[derive(Debug, Clone, Copy)]
struct Level {
    tokens: f64,
    at: Instant,
    limit: Limit,
}

impl Level {
    /// The level at `now`, refilled since it was last written.
    fn at(self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * self.limit.rate).min(self.limit.capacity)
    }
}

/// How long until a bucket at `level` holds `cost` tokens.
pub(crate) fn wait_for(level: f64, cost: f64, limit: Limit) -> Duration {
    if limit.rate <= 0.0 || cost > limit.capacity {
        // It never will: a weight above the burst is refused for a full refill period.
        return Duration::from_secs_f64((limit.capacity / limit.rate.max(1e-9)).min(3600.0));
    }
    Duration::from_secs_f64(((cost - level) / limit.rate).max(0.0))
}

/// Buckets in this process: the store of embedded mode, and the fallback of a shared
/// store that cannot be reached.
pub struct LocalBuckets {
    buckets: Mutex<Buckets>,
    /// Above this many buckets, full ones (clients gone quiet) are dropped: a full bucket
    /// and an absent one mean the same thing. At most one sweep a second, so a flood of
    /// new keys cannot make every request walk the whole map.
    max_idle: usize,
}

struct Buckets {
    levels: HashMap<String, Level>,
    swept: Instant,
}

impl Default for LocalBuckets {
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl LocalBuckets {
    pub fn new(max_idle: usize) -> Self {
        Self {
            buckets: Mutex::new(Buckets {
                levels: HashMap::new(),
                swept: Instant::now(),
            }),
            max_idle,
        }
    }

    /// [`BucketStore::take`] without the `async`: it never waits.
    pub fn take_now(&self, takes: &[Take]) -> Decision {
        let now = Instant::now();
        let mut guard = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Buckets {
            levels: buckets,
            swept,
        } = &mut *guard;
        let mut levels = Vec::with_capacity(takes.len());
        for (index, take) in takes.iter().enumerate() {
            let level = buckets
                .get(&take.key)
                .map_or(take.limit.capacity, |l| l.at(now));
            if level < take.cost {
                return Decision::Refused {
                    index,
                    retry_after: wait_for(level, take.cost, take.limit),
                };
            }
            levels.push(level);
        }
        if buckets.len() >= self.max_idle
            && now.saturating_duration_since(*swept) >= Duration::from_secs(1)
        {
            buckets.retain(|_, level| level.at(now) < level.limit.capacity);
            *swept = now;
        }
        for (take, level) in takes.iter().zip(levels) {
            let level = Level {
                tokens: level - take.cost,
                at: now,
                limit: take.limit,
            };
            // Known keys are updated in place: no key allocated per request.
            match buckets.get_mut(&take.key) {
                Some(known) => *known = level,
                None => {
                    buckets.insert(take.key.clone(), level);
                }
            }
        }
        Decision::Allowed
    }
}

#[async_trait]
impl BucketStore for LocalBuckets {
    async fn take(&self, takes: &[Take]) -> Result<Decision, StoreError> {
        Ok(self.take_now(takes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(key: &str, rate: f64, capacity: f64, cost: f64) -> Take {
        Take {
            key: key.into(),
            limit: Limit { rate, capacity },
            cost,
        }
    }

    #[test]
    fn a_burst_is_allowed_then_refused_with_the_time_to_wait() {
        let buckets = LocalBuckets::default();
        for _ in 0..4 {
            assert_eq!(
                buckets.take_now(&[take("a", 2.0, 4.0, 1.0)]),
                Decision::Allowed
            );
        }
        match buckets.take_now(&[take("a", 2.0, 4.0, 1.0)]) {
            Decision::Refused { index, retry_after } => {
                assert_eq!(index, 0);
                // One token at two per second: about half a second.
                assert!(retry_after <= Duration::from_millis(500), "{retry_after:?}");
                assert!(retry_after >= Duration::from_millis(400), "{retry_after:?}");
            }
            Decision::Allowed => panic!("the fifth request fits no bucket of four"),
        }
    }

    #[test]
    fn a_refusal_takes_from_no_bucket() {
        let buckets = LocalBuckets::default();
        // "narrow" holds one token, "wide" ten.
        let both = [take("wide", 1.0, 10.0, 1.0), take("narrow", 1.0, 1.0, 1.0)];
        assert_eq!(buckets.take_now(&both), Decision::Allowed);
        assert!(matches!(
            buckets.take_now(&both),
            Decision::Refused { index: 1, .. }
        ));
        // "wide" lost one token, not two: nine remain.
        for _ in 0..9 {
            assert_eq!(
                buckets.take_now(&[take("wide", 1.0, 10.0, 1.0)]),
                Decision::Allowed
            );
        }
        assert!(matches!(
            buckets.take_now(&[take("wide", 1.0, 10.0, 1.0)]),
            Decision::Refused { .. }
        ));
    }

    #[test]
    fn buckets_refill_at_their_rate() {
        let buckets = LocalBuckets::default();
        let t = take("a", 1000.0, 1.0, 1.0);
        assert_eq!(
            buckets.take_now(std::slice::from_ref(&t)),
            Decision::Allowed
        );
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(buckets.take_now(&[t]), Decision::Allowed);
    }

    #[test]
    fn idle_buckets_are_dropped_once_there_are_too_many() {
        let buckets = LocalBuckets::new(8);
        for i in 0..100 {
            buckets.take_now(&[take(&format!("k{i}"), 1e9, 1.0, 1.0)]);
        }
        // No sweep within the first second.
        assert_eq!(buckets.buckets.lock().unwrap().levels.len(), 100);
        std::thread::sleep(Duration::from_millis(1100));
        buckets.take_now(&[take("last", 1e9, 1.0, 1.0)]);
        // The sweep dropped every full bucket (all refilled at once); "last" is new.
        assert_eq!(buckets.buckets.lock().unwrap().levels.len(), 1);
    }
}
