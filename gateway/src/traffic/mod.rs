//! Subgraph traffic over HTTP: which replica a fetch goes to, and what the gateway does
//! when replicas fail, stall or drown.
//!
//! One [`Upstream`] per HTTP subgraph holds its replicas and their state. A fetch goes:
//! breaker (fail at once while the subgraph is known to be down) → bulkhead (a seat, or
//! a short queue, or fail at once) → balancer (an available replica not yet tried) → the
//! request → outlier bookkeeping → a retry on another replica when the failure allows it
//! and the retry budget pays for it → the breaker's verdict on the whole fetch.
//!
//! Upstreams outlive supergraph reloads ([`Upstreams`] hands the same one back while a
//! subgraph's replicas stay the same), so a reload does not forget that a replica is down
//! or reset an open breaker. Each upstream has a background task (while a Tokio runtime
//! runs) that performs the active health checks and refreshes its gauges; it ends when
//! the upstream is dropped.
//!
//! In-process subgraphs (embedded mode) have no network between them and the gateway,
//! and so none of this.

mod balance;
mod breaker;
pub mod config;
mod limits;
mod replica;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

pub use config::{
    Balance, BreakerConfig, BulkheadConfig, HealthChecks, OutlierConfig, ReplicaConfig,
    RetryPolicy, SubgraphTraffic, TrafficConfig,
};
pub(crate) use replica::SubgraphUrl;

use balance::Balancer;
use breaker::{Breaker, Ticket};
use limits::{Bulkhead, RetryBudget, Seat};
use replica::{InFlight, Replica};

use crate::transport::TransportError;

pub(crate) struct Upstream {
    pub subgraph: String,
    pub replicas: Vec<Replica>,
    /// Bound of one fetch, retries included.
    pub timeout: Duration,
    pub h2c: bool,
    balancer: Balancer,
    breaker: Breaker,
    bulkhead: Bulkhead,
    budget: RetryBudget,
    retries: RetryPolicy,
    outliers: OutlierConfig,
    configured: Vec<ReplicaConfig>,
    watch: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(watch) = self.watch.get_mut().ok().and_then(Option::take) {
            watch.abort();
        }
    }
}

/// A fetch let through the breaker and the bulkhead. Dropped without [`Admitted::settle`],
/// it counts as failed when its time was up (the fetch's timeout cancelled it), and as
/// nothing otherwise (the client went away: not the subgraph's doing).
pub(crate) struct Admitted<'a> {
    upstream: &'a Upstream,
    ticket: Ticket,
    _seat: Seat,
    settled: bool,
    started: Instant,
}

impl Admitted<'_> {
    /// The breaker's verdict on the whole fetch: `failed` when the subgraph could not
    /// answer it.
    pub fn settle(mut self, failed: bool) {
        self.settled = true;
        if failed {
            self.upstream.breaker.failed(self.ticket);
        } else {
            self.upstream.breaker.succeeded(self.ticket);
        }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if self.upstream.timed_out(self.started) {
            self.upstream.breaker.failed(self.ticket);
        } else {
            self.upstream.breaker.release(self.ticket);
        }
    }
}

/// One try of a fetch on one replica. Dropped without [`Attempt::settle`] it counts as a
/// failure of that replica when the fetch's time was up (it did not answer in time), and
/// as nothing when the fetch was cancelled sooner.
pub(crate) struct Attempt<'a> {
    upstream: &'a Upstream,
    pub index: usize,
    _in_flight: InFlight<'a>,
    settled: bool,
    started: Instant,
}

impl<'a> Attempt<'a> {
    pub fn url(&self) -> &'a SubgraphUrl {
        &self.upstream.replicas[self.index].url
    }

    pub fn settle(mut self, failed: bool) {
        self.settled = true;
        self.upstream.record(self.index, failed);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled && self.upstream.timed_out(self.started) {
            self.upstream.record(self.index, true);
        }
    }
}

impl Upstream {
    fn new(
        subgraph: &str,
        replicas: &[ReplicaConfig],
        config: &TrafficConfig,
        timeout: Duration,
        h2c: bool,
    ) -> Self {
        let own = config.subgraphs.get(subgraph);
        register(subgraph);
        let built: Vec<Replica> = replicas.iter().map(Replica::new).collect();
        let balance = own
            .and_then(|s| s.balance.clone())
            .unwrap_or_else(|| config.balance.clone());
        Self {
            subgraph: subgraph.to_string(),
            balancer: Balancer::new(balance, &built),
            replicas: built,
            timeout,
            h2c,
            breaker: Breaker::new(subgraph, config.breaker),
            bulkhead: Bulkhead::new(own.and_then(|s| s.bulkhead).unwrap_or(config.bulkhead)),
            budget: RetryBudget::new(config.retries),
            retries: config.retries,
            outliers: config.outliers,
            configured: replicas.to_vec(),
            watch: Mutex::new(None),
        }
    }

    /// Through the breaker and the bulkhead, or the reason the fetch fails at once.
    pub async fn admit(&self) -> Result<Admitted<'_>, TransportError> {
        let ticket = self.breaker.admit().map_err(|retry_after| {
            self.rejected("circuit_open");
            TransportError::CircuitOpen { retry_after }
        })?;
        let Some(seat) = self.bulkhead.enter().await else {
            // Not the subgraph's failure: a probe's slot is handed back untried.
            self.breaker.release(ticket);
            self.rejected("bulkhead");
            return Err(TransportError::Overloaded);
        };
        self.budget.deposit();
        Ok(Admitted {
            upstream: self,
            ticket,
            _seat: seat,
            settled: false,
            started: Instant::now(),
        })
    }

    /// Whether something begun at `started` ran into the fetch timeout (a little early
    /// counts: the executor's timer and this one do not start at the same instant).
    fn timed_out(&self, started: Instant) -> bool {
        started.elapsed() >= self.timeout.mul_f64(0.9)
    }

    /// A replica for the next try: an available one not `tried` yet, else any not tried,
    /// else any (a subgraph with every replica down is still tried rather than given up).
    pub fn attempt(&self, headers: &http::HeaderMap, tried: &[usize]) -> Attempt<'_> {
        let all = 0..self.replicas.len();
        let mut candidates: Vec<usize> = all
            .clone()
            .filter(|r| !tried.contains(r) && self.replicas[*r].available())
            .collect();
        if candidates.is_empty() {
            candidates = all.clone().filter(|r| !tried.contains(r)).collect();
        }
        if candidates.is_empty() {
            candidates = all.collect();
        }
        let index = self.balancer.pick(&self.replicas, &candidates, headers);
        Attempt {
            upstream: self,
            index,
            _in_flight: self.replicas[index].start(),
            settled: false,
            started: Instant::now(),
        }
    }

    /// Whether a fetch that failed with `error` on its `tries`-th try goes again.
    pub fn retry(&self, error: &TransportError, idempotent: bool, tries: u32) -> bool {
        if tries >= self.retries.attempts || !error.retryable(idempotent) {
            return false;
        }
        if !self.budget.withdraw() {
            metrics::counter!("flowfleet_gateway_subgraph_retry_budget_exhausted_total", "subgraph" => self.subgraph.clone())
                .increment(1);
            tracing::warn!(subgraph = %self.subgraph, "retry budget exhausted: the failure goes to the client");
            return false;
        }
        metrics::counter!("flowfleet_gateway_subgraph_retries_total", "subgraph" => self.subgraph.clone())
            .increment(1);
        true
    }

    fn record(&self, index: usize, failed: bool) {
        let replica = &self.replicas[index];
        if !failed {
            replica.succeeded();
            return;
        }
        if !replica.failed(&self.outliers) {
            return;
        }
        let others = self
            .replicas
            .iter()
            .enumerate()
            .any(|(i, r)| i != index && r.available());
        if !others {
            return;
        }
        let length = replica.eject(&self.outliers);
        metrics::counter!("flowfleet_gateway_subgraph_ejections_total", "subgraph" => self.subgraph.clone())
            .increment(1);
        tracing::warn!(
            subgraph = %self.subgraph,
            replica = %replica.url.text,
            ?length,
            "replica ejected after failing requests in a row"
        );
        self.report();
    }

    fn rejected(&self, reason: &'static str) {
        debug_assert!(REJECTIONS.contains(&reason));
        metrics::counter!(
            "flowfleet_gateway_subgraph_rejected_total",
            "subgraph" => self.subgraph.clone(),
            "reason" => reason
        )
        .increment(1);
    }

    /// Replicas available now, out of all, in `/metrics`.
    fn report(&self) {
        let available = self.replicas.iter().filter(|r| r.available()).count();
        metrics::gauge!("flowfleet_gateway_subgraph_replicas_available", "subgraph" => self.subgraph.clone())
            .set(available as f64);
        metrics::gauge!("flowfleet_gateway_subgraph_replicas", "subgraph" => self.subgraph.clone())
            .set(self.replicas.len() as f64);
    }

    /// Asks every replica `{ __typename }` and takes in the answers.
    async fn check(&self, client: &reqwest::Client, checks: &HealthChecks) {
        let probes = self.replicas.iter().map(|replica| async move {
            let answer = client
                .post(replica.url.text.as_str())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::ACCEPT, "application/json")
                .body(r#"{"query":"{ __typename }"}"#)
                .timeout(checks.timeout)
                .send()
                .await;
            let healthy = match answer {
                Ok(response) if response.status().is_success() => response
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|body| body.get("data").is_some_and(|d| !d.is_null())),
                _ => false,
            };
            if let Some(down) =
                replica.checked(healthy, checks.unhealthy_after, checks.healthy_after)
            {
                if down {
                    tracing::warn!(subgraph = %self.subgraph, replica = %replica.url.text, "replica failed its health checks");
                } else {
                    tracing::info!(subgraph = %self.subgraph, replica = %replica.url.text, "replica passed its health check");
                }
            }
        });
        futures::future::join_all(probes).await;
    }
}

/// The gateway's upstreams by subgraph name, kept across supergraph reloads.
#[derive(Default)]
pub(crate) struct Upstreams {
    known: Mutex<HashMap<String, Arc<Upstream>>>,
}

/// What an upstream is built from, besides the gateway's [`TrafficConfig`].
pub(crate) struct UpstreamSpec<'a> {
    pub subgraph: &'a str,
    pub replicas: Vec<ReplicaConfig>,
    pub timeout: Duration,
    pub h2c: bool,
    /// The client active health checks use.
    pub client: &'a reqwest::Client,
}

impl Upstreams {
    /// The upstream for `spec`: the one already known when its replicas are the same,
    /// else a new one (whose health checks start now).
    pub fn get(&self, spec: UpstreamSpec<'_>, config: &TrafficConfig) -> Arc<Upstream> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(upstream) = known.get(spec.subgraph) {
            if upstream.configured == spec.replicas
                && upstream.h2c == spec.h2c
                && upstream.timeout == spec.timeout
            {
                return upstream.clone();
            }
        }
        let upstream = Arc::new(Upstream::new(
            spec.subgraph,
            &spec.replicas,
            config,
            spec.timeout,
            spec.h2c,
        ));
        upstream.report();
        let watch = watch(
            Arc::downgrade(&upstream),
            spec.client.clone(),
            config.health_checks,
        );
        *upstream.watch.lock().unwrap_or_else(|p| p.into_inner()) = watch;
        known.insert(spec.subgraph.to_string(), upstream.clone());
        upstream
    }

    /// Forgets the upstreams of subgraphs no longer served (their tasks end with them).
    pub fn retain(&self, subgraphs: &HashSet<String>) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.retain(|name, _| subgraphs.contains(name));
    }
}

/// The upstream's background task: active health checks when configured, and its gauges
/// (an ejection ends with time, not with an event). `None` outside a Tokio runtime.
fn watch(
    upstream: Weak<Upstream>,
    client: reqwest::Client,
    checks: HealthChecks,
) -> Option<tokio::task::AbortHandle> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let tick = if checks.interval.is_zero() {
        Duration::from_secs(1)
    } else {
        checks.interval.min(Duration::from_secs(1))
    };
    let task = runtime.spawn(async move {
        let mut last_check: Option<tokio::time::Instant> = None;
        loop {
            let Some(upstream) = upstream.upgrade() else {
                return;
            };
            let due = !checks.interval.is_zero()
                && last_check.is_none_or(|at| at.elapsed() >= checks.interval);
            if due {
                last_check = Some(tokio::time::Instant::now());
                upstream.check(&client, &checks).await;
            }
            upstream.report();
            drop(upstream);
            tokio::time::sleep(tick).await;
        }
    });
    Some(task.abort_handle())
}

/// Why an upstream refuses a fetch before sending it (`..._subgraph_rejected_total{reason}`).
const REJECTIONS: [&str; 2] = ["circuit_open", "bulkhead"];

/// Registers an upstream's counters at zero (see `measure::register`).
fn register(subgraph: &str) {
    for name in [
        "flowfleet_gateway_subgraph_retries_total",
        "flowfleet_gateway_subgraph_retry_budget_exhausted_total",
        "flowfleet_gateway_subgraph_ejections_total",
    ] {
        metrics::counter!(name, "subgraph" => subgraph.to_string()).increment(0);
    }
    for reason in REJECTIONS {
        metrics::counter!(
            "flowfleet_gateway_subgraph_rejected_total",
            "subgraph" => subgraph.to_string(),
            "reason" => reason
        )
        .increment(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(timeout: Duration) -> Upstream {
        let config = TrafficConfig {
            outliers: OutlierConfig {
                consecutive_failures: 1,
                ..Default::default()
            },
            breaker: BreakerConfig {
                failures: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        let replicas = [
            ReplicaConfig::new("http://a/graphql"),
            ReplicaConfig::new("http://b/graphql"),
        ];
        Upstream::new("test", &replicas, &config, timeout, false)
    }

    #[tokio::test]
    async fn a_cancelled_fetch_counts_against_no_one_and_a_timed_out_one_does() {
        let patient = upstream(Duration::from_secs(10));
        let admitted = patient.admit().await.expect("closed");
        drop(patient.attempt(&http::HeaderMap::new(), &[]));
        drop(admitted);
        assert!(
            patient.replicas.iter().all(Replica::available),
            "no ejection"
        );
        assert!(patient.breaker.admit().is_ok(), "the breaker stays closed");

        let hasty = upstream(Duration::ZERO);
        let admitted = hasty.admit().await.expect("closed");
        let index = hasty.attempt(&http::HeaderMap::new(), &[]).index;
        drop(admitted);
        assert!(
            !hasty.replicas[index].available(),
            "ejected: it did not answer in time"
        );
        assert!(
            hasty.breaker.admit().is_err(),
            "the timed-out fetch opened the breaker"
        );
    }
}
