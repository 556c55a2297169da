//! How the gateway treats subgraphs over the network: replicas, balancing, health checks,
//! outlier ejection, retries, timeouts, circuit breakers and bulkheads.

use std::collections::HashMap;
use std::time::Duration;

/// Settings for every HTTP subgraph, with per-subgraph replicas and overrides.
#[derive(Debug, Clone)]
pub struct TrafficConfig {
    /// How a request picks one of a subgraph's replicas.
    pub balance: Balance,
    pub retries: RetryPolicy,
    pub breaker: BreakerConfig,
    pub bulkhead: BulkheadConfig,
    pub health_checks: HealthChecks,
    pub outliers: OutlierConfig,
    /// Subgraph name -> its replicas and what differs from the settings above.
    pub subgraphs: HashMap<String, SubgraphTraffic>,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self {
            balance: Balance::RoundRobin,
            retries: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            bulkhead: BulkheadConfig::default(),
            health_checks: HealthChecks::default(),
            outliers: OutlierConfig::default(),
            subgraphs: HashMap::new(),
        }
    }
}

/// One subgraph's replicas and overrides.
#[derive(Debug, Clone, Default)]
pub struct SubgraphTraffic {
    /// Empty: the one URL of `GatewayConfig::url_overrides` or of the supergraph.
    pub replicas: Vec<ReplicaConfig>,
    pub balance: Option<Balance>,
    /// Bound of one fetch from this subgraph, retries included
    /// (default `GatewayConfig::subgraph_timeout`).
    pub timeout: Option<Duration>,
    pub bulkhead: Option<BulkheadConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplicaConfig {
    pub url: String,
    /// Share of traffic relative to the other replicas (`Weighted`, `ConsistentHash`).
    pub weight: u32,
}

impl ReplicaConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            weight: 1,
        }
    }
}

/// Load-balancing strategies. Every strategy skips replicas that are ejected or failing
/// their health checks while another one is available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// Each replica in turn.
    RoundRobin,
    /// The replica with the fewest requests in flight from this gateway.
    LeastOutstanding,
    /// Two replicas at random, the one with fewer requests in flight (Mitzenmacher's
    /// "power of two choices": nearly as even as least-outstanding, without every
    /// gateway replica herding onto the same idle one).
    PowerOfTwoChoices,
    /// In proportion to the replicas' weights, smoothly interleaved.
    Weighted,
    /// The same value of this client header always reaches the same replica (while it is
    /// available), so per-key caches in the subgraph stay warm; requests without the header
    /// go round robin. The header is forwarded to the subgraph.
    ConsistentHash { header: http::HeaderName },
}

impl Balance {
    /// `round_robin`, `least_outstanding`, `power_of_two_choices`, `weighted`, or
    /// `consistent_hash:<header>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "round_robin" => Ok(Balance::RoundRobin),
            "least_outstanding" => Ok(Balance::LeastOutstanding),
            "power_of_two_choices" => Ok(Balance::PowerOfTwoChoices),
            "weighted" => Ok(Balance::Weighted),
            other => match other.strip_prefix("consistent_hash:") {
                Some(header) => http::HeaderName::try_from(header)
                    .map(|header| Balance::ConsistentHash { header })
                    .map_err(|_| format!("`{header}` is not a header name")),
                None => Err(format!(
                    "`{other}` is not a balancing strategy; use round_robin, least_outstanding, \
                     power_of_two_choices, weighted or consistent_hash:<header>"
                )),
            },
        }
    }
}

/// Retries of failed subgraph fetches, on another replica when there is one.
///
/// A fetch is retried when it surely did not run (the connection could not be made), or
/// when it is idempotent (every query and entity fetch; not a mutation's root fetch, not a
/// request carrying files) and failed in transit or with 502, 503 or 504. A mutation whose
/// replica died mid-request is never sent again: it may have applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Tries of one fetch in all, the first included (1 switches retries off).
    pub attempts: u32,
    /// Retries may add this share of the subgraph's requests (0.2: one retry per five
    /// requests)...
    pub budget_ratio: f64,
    /// ...plus this many per second, so a quiet subgraph can still be retried.
    pub budget_min_per_second: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            budget_ratio: 0.2,
            budget_min_per_second: 10,
        }
    }
}

/// A circuit breaker per subgraph: after `failures` failed fetches in a row it opens and
/// fetches fail at once (`SUBGRAPH_CIRCUIT_OPEN`) for `open_for`; then `probes` fetches
/// are let through, and it closes when they all succeed or opens again when one fails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// 0 switches the breaker off.
    pub failures: u32,
    pub open_for: Duration,
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            open_for: Duration::from_secs(60),
            probes: 3,
        }
    }
}

/// At most `max_concurrent` fetches at once to one subgraph, and at most `max_queued`
/// waiting for a turn; a fetch beyond both fails at once (`SUBGRAPH_OVERLOADED`), so a
/// slow subgraph cannot take every connection and task of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkheadConfig {
    /// 0: no bound (and no queue).
    pub max_concurrent: usize,
    pub max_queued: usize,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 1024,
            max_queued: 4096,
        }
    }
}

/// Active health checks: every `interval`, each replica is asked `{ __typename }`; after
/// `unhealthy_after` failed checks in a row it gets no traffic (while another replica is
/// available) until `healthy_after` checks in a row succeed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthChecks {
    /// Zero switches active checks off.
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
}

impl Default for HealthChecks {
    fn default() -> Self {
        Self {
            interval: Duration::ZERO,
            timeout: Duration::from_secs(1),
            unhealthy_after: 2,
            healthy_after: 1,
        }
    }
}

/// Passive outlier ejection: a replica whose requests failed `consecutive_failures` times
/// in a row is left out for `base_ejection`, twice as long each time it is ejected again
/// without a success in between (up to `max_ejection`). The last available replica of a
/// subgraph is never ejected. A replica that passes an active health check comes back at
/// once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierConfig {
    /// 0 switches ejection off.
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_parse_from_their_names() {
        assert_eq!(
            Balance::parse("power_of_two_choices"),
            Ok(Balance::PowerOfTwoChoices)
        );
        assert_eq!(
            Balance::parse("consistent_hash:x-tenant"),
            Ok(Balance::ConsistentHash {
                header: http::HeaderName::from_static("x-tenant")
            })
        );
        let error = Balance::parse("random").unwrap_err();
        assert!(error.contains("round_robin"), "{error}");
        assert!(Balance::parse("consistent_hash:bad header").is_err());
    }
}
