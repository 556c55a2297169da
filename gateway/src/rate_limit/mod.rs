//! Rate limits at the edge: global, per client address, per user and per API key, each a
//! token bucket with a burst, checked once per HTTP request (and once per WebSocket
//! connection and per operation sent on it) before anything is planned.
//!
//! Who the client is comes from [`RateKeys`] in the request's extensions, set by whatever
//! verified the credential in front of the gateway (the `flowfleet` binary's edge layer);
//! without it, the peer's address is the only key. An operation's weight is 1 unless
//! [`RateLimitConfig::operation_weights`] names it; a batch weighs the sum of its
//! operations, so batching does not get around the limits.
//!
//! The buckets live in a [`BucketStore`]: this process's ([`LocalBuckets`]) or one shared
//! by every replica. A shared store that fails or is slow does not become an outage: the
//! request is checked against local buckets instead (each replica then limits on its own),
//! and the fallback is counted in `/metrics`.

mod bucket;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub use bucket::{BucketStore, Decision, Limit, LocalBuckets, StoreError, Take};

use crate::error::{codes, GraphQLError, RequestError};

/// A number of requests per period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub requests: u64,
    pub per: Duration,
}

impl Rate {
    pub fn per_second(requests: u64) -> Self {
        Rate {
            requests,
            per: Duration::from_secs(1),
        }
    }

    pub fn per_minute(requests: u64) -> Self {
        Rate {
            requests,
            per: Duration::from_secs(60),
        }
    }

    fn limit(self, burst: f64) -> Limit {
        let rate = self.requests as f64 / self.per.as_secs_f64().max(1e-9);
        Limit {
            rate,
            capacity: (self.requests as f64 * burst).max(1.0),
        }
    }
}

/// Which limits apply; `None` switches one off.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub global: Option<Rate>,
    pub per_address: Option<Rate>,
    pub per_user: Option<Rate>,
    pub per_api_key: Option<Rate>,
    /// Each bucket holds this many periods' worth of requests (2: a quiet client may send
    /// twice its rate at once).
    pub burst: f64,
    /// Operation name -> weight (default 1), for operations that cost the fleet more. The
    /// name is the request's `operationName` (the limit is checked before the document is
    /// parsed), which clients such as Apollo's always send.
    pub operation_weights: HashMap<String, u32>,
    /// How long the shared store may take before a request is checked locally instead.
    pub store_timeout: Duration,
}

impl RateLimitConfig {
    /// No limits at all.
    pub fn off() -> Self {
        RateLimitConfig {
            global: None,
            per_address: None,
            per_user: None,
            per_api_key: None,
            burst: 2.0,
            operation_weights: HashMap::new(),
            store_timeout: Duration::from_millis(50),
        }
    }

    fn is_off(&self) -> bool {
        self.global.is_none()
            && self.per_address.is_none()
            && self.per_user.is_none()
            && self.per_api_key.is_none()
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self::off()
    }
}

/// Who sent a request, as far as rate limits care. Put in the request's extensions by
/// the layer that verified its credential.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateKeys {
    /// The client's address (behind trusted proxies, the one they report).
    pub address: Option<IpAddr>,
    pub principal: Option<Principal>,
}

/// The verified caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A person signed in (an access token): keyed by user id.
    User(String),
    /// An API key: keyed by the key's id, not its creator's, so one busy key does not
    /// use up the person's own limit.
    ApiKey(String),
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    Global,
    Address,
    User,
    ApiKey,
}

impl LimitKind {
    pub const ALL: [LimitKind; 4] = [
        LimitKind::Global,
        LimitKind::Address,
        LimitKind::User,
        LimitKind::ApiKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Global => "global",
            LimitKind::Address => "address",
            LimitKind::User => "user",
            LimitKind::ApiKey => "api_key",
        }
    }
}

/// The gateway's rate limiter. Cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    config: Arc<RateLimitConfig>,
    /// The store shared with other replicas, if any.
    shared: Option<Arc<dyn BucketStore>>,
    /// This process's buckets: the only ones without a shared store, the fallback when it
    /// fails.
    local: Arc<LocalBuckets>,
}

impl RateLimiter {
    /// Limits kept in this process only.
    pub fn local(config: RateLimitConfig) -> Self {
        RateLimiter {
            config: Arc::new(config),
            shared: None,
            local: Arc::new(LocalBuckets::default()),
        }
    }

    /// Limits kept in `store`, shared with other replicas, with local buckets as fallback.
    pub fn shared(config: RateLimitConfig, store: Arc<dyn BucketStore>) -> Self {
        RateLimiter {
            shared: Some(store),
            ..Self::local(config)
        }
    }

    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// The weight of one operation.
    pub fn weight(&self, operation_name: Option<&str>) -> u32 {
        operation_name
            .and_then(|name| self.config.operation_weights.get(name).copied())
            .unwrap_or(1)
    }

    /// Admits a request of `weight` from `keys`, or refuses it with `RATE_LIMITED`
    /// (HTTP 429, `Retry-After`).
    pub async fn admit(&self, keys: &RateKeys, weight: u32) -> Result<(), RequestError> {
        if self.config.is_off() || weight == 0 {
            return Ok(());
        }
        let (takes, kinds) = self.takes(keys, weight);
        if takes.is_empty() {
            return Ok(());
        }
        let decision = if let Some(store) = &self.shared {
            match tokio::time::timeout(self.config.store_timeout, store.take(&takes)).await {
                Ok(Ok(decision)) => decision,
                failed => {
                    let reason = match failed {
                        Ok(Err(error)) => error.to_string(),
                        _ => "timed out".into(),
                    };
                    tracing::warn!(%reason, "rate-limit store unavailable; limiting locally");
                    metrics::counter!("flowfleet_gateway_rate_limit_fallbacks_total").increment(1);
                    self.local.take_now(&takes)
                }
            }
        } else {
            self.local.take_now(&takes)
        };
        match decision {
            Decision::Allowed => Ok(()),
            Decision::Refused { index, retry_after } => {
                let kind = kinds[index];
                metrics::counter!("flowfleet_gateway_rate_limited_total", "limit" => kind.as_str())
                    .increment(1);
                Err(refusal(kind, retry_after))
            }
        }
    }

    fn takes(&self, keys: &RateKeys, weight: u32) -> (Vec<Take>, Vec<LimitKind>) {
        let config = &self.config;
        let cost = weight as f64;
        let mut takes = Vec::with_capacity(3);
        let mut kinds = Vec::with_capacity(3);
        let mut push = |rate: Option<Rate>, key: String, kind: LimitKind| {
            if let Some(rate) = rate {
                takes.push(Take {
                    key,
                    limit: rate.limit(config.burst),
                    cost,
                });
                kinds.push(kind);
            }
        };
        push(config.global, "rl:global".into(), LimitKind::Global);
        if let Some(address) = keys.address {
            push(
                config.per_address,
                format!("rl:addr:{address}"),
                LimitKind::Address,
            );
        }
        match &keys.principal {
            Some(Principal::User(id)) => {
                push(config.per_user, format!("rl:user:{id}"), LimitKind::User)
            }
            Some(Principal::ApiKey(id)) => push(
                config.per_api_key,
                format!("rl:key:{id}"),
                LimitKind::ApiKey,
            ),
            None => {}
        }
        (takes, kinds)
    }
}

/// The error of a refused request: 429, `RATE_LIMITED`, which limit, and when to retry.
fn refusal(kind: LimitKind, retry_after: Duration) -> RequestError {
    // Whole seconds for `Retry-After`, never 0 (a client would retry at once).
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let who = match kind {
        LimitKind::Global => "the gateway's overall",
        LimitKind::Address => "your address's",
        LimitKind::User => "your account's",
        LimitKind::ApiKey => "this API key's",
    };
    RequestError::Refused(
        http::StatusCode::TOO_MANY_REQUESTS,
        GraphQLError::new(format!(
            "Too many requests: {who} rate limit is used up; retry in {seconds} s."
        ))
        .with_code(codes::RATE_LIMITED)
        .with_extension("limit", kind.as_str().into())
        .with_extension("retryAfter", seconds.into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RateLimitConfig {
        RateLimitConfig {
            per_address: Some(Rate::per_second(2)),
            per_user: Some(Rate::per_minute(3)),
            burst: 1.0,
            ..RateLimitConfig::off()
        }
    }

    fn keys(address: &str, user: Option<&str>) -> RateKeys {
        RateKeys {
            address: Some(address.parse().unwrap()),
            principal: user.map(|u| Principal::User(u.into())),
        }
    }

    #[tokio::test]
    async fn each_address_has_its_own_bucket() {
        let limiter = RateLimiter::local(config());
        let a = keys("10.0.0.1", None);
        limiter.admit(&a, 1).await.unwrap();
        limiter.admit(&a, 1).await.unwrap();
        let refused = limiter.admit(&a, 1).await.unwrap_err();
        let RequestError::Refused(status, error) = refused else {
            panic!("not a rate-limit refusal: {refused:?}");
        };
        assert_eq!(status, 429);
        assert_eq!(error.extensions["retryAfter"], 1);
        assert_eq!(error.code(), Some(codes::RATE_LIMITED));
        assert_eq!(error.extensions["limit"], "address");
        limiter.admit(&keys("10.0.0.2", None), 1).await.unwrap();
    }

    #[tokio::test]
    async fn a_user_is_limited_across_addresses() {
        let limiter = RateLimiter::local(config());
        for address in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            limiter.admit(&keys(address, Some("u1")), 1).await.unwrap();
        }
        let refused = limiter
            .admit(&keys("10.0.0.4", Some("u1")), 1)
            .await
            .unwrap_err();
        let RequestError::Refused(_, error) = refused else {
            panic!("not a rate-limit refusal: {refused:?}");
        };
        assert_eq!(error.extensions["limit"], "user");
        // Three a minute: the next one in twenty seconds.
        assert_eq!(error.extensions["retryAfter"], 20);
    }

    #[tokio::test]
    async fn weights_take_more_tokens() {
        let mut config = config();
        config.operation_weights.insert("Heavy".into(), 2);
        let limiter = RateLimiter::local(config);
        let a = keys("10.0.0.1", None);
        let weight = limiter.weight(Some("Heavy"));
        assert_eq!(weight, 2);
        limiter.admit(&a, weight).await.unwrap();
        assert!(limiter.admit(&a, 1).await.is_err());
    }
}
