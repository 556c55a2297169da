//! Subgraph traffic: replicas served over real HTTP on loopback, killed and restarted
//! while the gateway sends them work. Each replica answers which one it is, so the tests
//! see balancing, failover, ejection, breakers and bulkheads from the client's side.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, EmptySubscription, Object, Schema};
use axum::Router;
use flowfleet_gateway::traffic::{
    Balance, BreakerConfig, BulkheadConfig, HealthChecks, OutlierConfig, ReplicaConfig,
    RetryPolicy, SubgraphTraffic, TrafficConfig,
};
use flowfleet_gateway::{compose, Gateway, GatewayConfig, SubgraphSource};
use futures::future::join_all;
use serde_json::{json, Value};

use common::{post, post_with, start_gateway};

/// What one replica is and has done.
#[derive(Clone, Default)]
struct Echo {
    name: String,
    delay: Duration,
    /// `whoami` answers given.
    served: Arc<AtomicUsize>,
    /// `apply` mutations started.
    applied: Arc<AtomicUsize>,
}

struct Query;

#[Object]
impl Query {
    /// The replica's name; `n` only makes requests distinct (so none are shared).
    async fn whoami(&self, ctx: &Context<'_>, n: Option<i32>) -> String {
        let _ = n;
        let echo = ctx.data_unchecked::<Echo>();
        echo.served.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(echo.delay).await;
        echo.name.clone()
    }
}

struct Mutation;

#[Object]
impl Mutation {
    /// Applies (counted at once), then holds the request for `hold_ms`.
    async fn apply(&self, ctx: &Context<'_>, hold_ms: i32) -> i32 {
        let echo = ctx.data_unchecked::<Echo>();
        let n = echo.applied.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(hold_ms as u64)).await;
        n as i32
    }
}

fn schema(echo: Echo) -> Schema<Query, Mutation, EmptySubscription> {
    Schema::build(Query, Mutation, EmptySubscription)
        .data(echo)
        .enable_federation()
        .finish()
}

/// A replica on a fixed loopback port that can be killed (listener and every connection
/// closed at once, as when its process dies) and started again on the same port.
struct Replica {
    echo: Echo,
    router: Router,
    addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Replica {
    async fn start(name: &str, delay: Duration) -> Self {
        let echo = Echo {
            name: name.into(),
            delay,
            ..Default::default()
        };
        let router =
            Router::new().route("/graphql", flowfleet_bench::endpoint(schema(echo.clone())));
        Self::serve(echo, router).await
    }

    /// A replica whose every request fails with 503 (counted in `served`).
    async fn failing(name: &str) -> Self {
        let echo = Echo {
            name: name.into(),
            ..Default::default()
        };
        let served = echo.served.clone();
        let router = Router::new().route(
            "/graphql",
            axum::routing::post(move || {
                served.fetch_add(1, Ordering::SeqCst);
                async { axum::http::StatusCode::SERVICE_UNAVAILABLE }
            }),
        );
        Self::serve(echo, router).await
    }

    async fn serve(echo: Echo, router: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut replica = Self {
            echo,
            router,
            addr,
            task: None,
        };
        replica.task = Some(tokio::spawn(accept(listener, replica.router.clone())));
        replica
    }

    fn url(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    async fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind the same port again");
        self.task = Some(tokio::spawn(accept(listener, self.router.clone())));
    }
}

/// Serves connections until aborted; aborting drops every connection with it.
async fn accept(listener: tokio::net::TcpListener, router: Router) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        connections.spawn(async move {
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
        while connections.try_join_next().is_some() {}
    }
}

fn supergraph() -> String {
    let sdl = schema(Echo::default())
        .sdl_with_options(async_graphql::SDLExportOptions::new().federation());
    compose(&[SubgraphSource {
        name: "echo".into(),
        url: "http://echo.invalid/graphql".into(),
        sdl,
    }])
    .expect("composition")
}

/// Settings with nothing in the way: no health checks, ejection or breaker unless a test
/// turns them on.
fn traffic(replicas: &[&Replica], balance: Balance) -> TrafficConfig {
    let subgraph = SubgraphTraffic {
        replicas: replicas
            .iter()
            .map(|r| ReplicaConfig::new(r.url()))
            .collect(),
        balance: Some(balance),
        ..Default::default()
    };
    TrafficConfig {
        breaker: BreakerConfig {
            failures: 0,
            ..Default::default()
        },
        outliers: OutlierConfig {
            consecutive_failures: 0,
            ..Default::default()
        },
        subgraphs: HashMap::from([("echo".to_string(), subgraph)]),
        ..Default::default()
    }
}

async fn gateway(traffic: TrafficConfig) -> String {
    let config = GatewayConfig {
        traffic,
        ..Default::default()
    };
    let gateway = Gateway::new(&supergraph(), config, HashMap::new()).expect("gateway");
    start_gateway(&gateway).await
}

async fn whoami(base: &str, n: i32) -> Value {
    let query = json!({"query": "query($n: Int) { whoami(n: $n) }", "variables": {"n": n}});
    post(base, query).await.1
}

async fn whoami_with(base: &str, header: (&str, &str)) -> Value {
    post_with(base, json!({"query": "{ whoami }"}), &[header])
        .await
        .1
}

fn name(response: &Value) -> &str {
    response["data"]["whoami"]
        .as_str()
        .unwrap_or_else(|| panic!("no answer: {response}"))
}

fn code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code: {response}"))
}

#[tokio::test]
async fn round_robin_weighted_and_consistent_hash_place_requests_as_configured() {
    let a = Replica::start("a", Duration::ZERO).await;
    let b = Replica::start("b", Duration::ZERO).await;
    let c = Replica::start("c", Duration::ZERO).await;

    let base = gateway(traffic(&[&a, &b, &c], Balance::RoundRobin)).await;
    let mut names = Vec::new();
    for n in 0..6 {
        names.push(name(&whoami(&base, n).await).to_string());
    }
    assert_eq!(names[..3], names[3..], "each replica in turn: {names:?}");
    let mut distinct = names[..3].to_vec();
    distinct.sort();
    assert_eq!(distinct, ["a", "b", "c"]);

    let mut weighted = traffic(&[&a, &b], Balance::Weighted);
    weighted.subgraphs.get_mut("echo").unwrap().replicas[0].weight = 3;
    let base = gateway(weighted).await;
    let mut counts = HashMap::<String, usize>::new();
    for n in 0..40 {
        *counts
            .entry(name(&whoami(&base, n).await).to_string())
            .or_default() += 1;
    }
    assert_eq!(counts["a"], 30, "{counts:?}");
    assert_eq!(counts["b"], 10, "{counts:?}");

    let header = http::HeaderName::from_static("x-tenant");
    let base = gateway(traffic(&[&a, &b, &c], Balance::ConsistentHash { header })).await;
    let mut homes = HashMap::new();
    for tenant in 0..12 {
        let tenant = format!("tenant-{tenant}");
        let home = name(&whoami_with(&base, ("x-tenant", &tenant)).await).to_string();
        for _ in 0..3 {
            let again = whoami_with(&base, ("x-tenant", &tenant)).await;
            assert_eq!(name(&again), home, "{tenant} stays on its replica");
        }
        homes.insert(tenant, home);
    }
    let used: std::collections::HashSet<_> = homes.values().collect();
    assert!(used.len() >= 2, "tenants spread over replicas: {homes:?}");
}

#[tokio::test]
async fn least_outstanding_and_two_choices_send_most_work_to_the_fast_replica() {
    for balance in [Balance::LeastOutstanding, Balance::PowerOfTwoChoices] {
        let slow = Replica::start("slow", Duration::from_millis(150)).await;
        let fast = Replica::start("fast", Duration::from_millis(5)).await;
        let base = gateway(traffic(&[&slow, &fast], balance.clone())).await;
        let clients = (0..4).map(|client| {
            let base = base.clone();
            async move {
                for i in 0..15 {
                    let response = whoami(&base, client * 100 + i).await;
                    name(&response);
                }
            }
        });
        join_all(clients).await;
        let (slow, fast) = (
            slow.echo.served.load(Ordering::SeqCst),
            fast.echo.served.load(Ordering::SeqCst),
        );
        assert_eq!(slow + fast, 60);
        assert!(fast >= 3 * slow, "{balance:?}: slow {slow}, fast {fast}");
    }
}

#[tokio::test]
async fn killing_a_replica_under_load_loses_no_query_and_a_restarted_one_gets_traffic_again() {
    let mut a = Replica::start("a", Duration::from_millis(20)).await;
    let b = Replica::start("b", Duration::from_millis(20)).await;
    let mut config = traffic(&[&a, &b], Balance::RoundRobin);
    config.health_checks = HealthChecks {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
        ..Default::default()
    };
    config.outliers = OutlierConfig::default();
    config.breaker = BreakerConfig::default();
    let base = gateway(config).await;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..6)
        .map(|client| {
            let (base, stop, answered) = (base.clone(), stop.clone(), answered.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let response = whoami(&base, client * 100_000 + i).await;
                    if response["data"]["whoami"].is_string() && response["errors"].is_null() {
                        answered.fetch_add(1, Ordering::SeqCst);
                    } else {
                        failures.push(response);
                    }
                    i += 1;
                }
                failures
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.echo.served.load(Ordering::SeqCst) > 0, "a served before");
    a.kill().await;
    let killed_at = answered.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        answered.load(Ordering::SeqCst) > killed_at + 20,
        "queries kept being answered by b"
    );
    let a_before_restart = a.echo.served.load(Ordering::SeqCst);
    a.restart().await;
    let back = async {
        while a.echo.served.load(Ordering::SeqCst) < a_before_restart + 10 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), back)
        .await
        .expect("the restarted replica gets traffic again");
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        let failures = client.await.expect("client");
        assert!(failures.is_empty(), "errors reached a client: {failures:?}");
    }
}

#[tokio::test]
async fn a_mutation_in_flight_on_a_killed_replica_fails_clearly_and_is_never_sent_again() {
    let mut a = Replica::start("a", Duration::ZERO).await;
    let mut b = Replica::start("b", Duration::ZERO).await;
    let base = gateway(traffic(&[&a, &b], Balance::RoundRobin)).await;

    let mutation = {
        let base = base.clone();
        tokio::spawn(async move {
            post(&base, json!({"query": "mutation { apply(holdMs: 5000) }"}))
                .await
                .1
        })
    };
    let applied = async {
        loop {
            let (on_a, on_b) = (
                a.echo.applied.load(Ordering::SeqCst),
                b.echo.applied.load(Ordering::SeqCst),
            );
            if on_a + on_b > 0 {
                return on_a > 0;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let on_a = tokio::time::timeout(Duration::from_secs(5), applied)
        .await
        .expect("the mutation reached a replica");
    let (victim, survivor) = if on_a { (&mut a, &b) } else { (&mut b, &a) };
    victim.kill().await;

    let response = tokio::time::timeout(Duration::from_secs(5), mutation)
        .await
        .expect("the client is answered at once, not after the hold")
        .expect("task");
    assert_eq!(code(&response), "SUBGRAPH_REQUEST_FAILED", "{response}");
    assert!(response["data"].is_null(), "{response}");
    assert_eq!(victim.echo.applied.load(Ordering::SeqCst), 1);
    assert_eq!(
        survivor.echo.applied.load(Ordering::SeqCst),
        0,
        "the mutation was not sent to the other replica"
    );

    // The next mutation finds the survivor, once: a refused connection means it was
    // never sent, so trying another replica is safe.
    let response = post(&base, json!({"query": "mutation { apply(holdMs: 0) }"}))
        .await
        .1;
    assert_eq!(response["data"]["apply"], 1, "{response}");
    let response = post(&base, json!({"query": "mutation { apply(holdMs: 0) }"}))
        .await
        .1;
    assert_eq!(response["data"]["apply"], 2, "{response}");
    assert_eq!(survivor.echo.applied.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_replica_failing_in_a_row_is_ejected_and_queries_go_to_the_other() {
    let failing = Replica::failing("failing").await;
    let good = Replica::start("good", Duration::ZERO).await;
    let mut config = traffic(&[&failing, &good], Balance::RoundRobin);
    config.outliers = OutlierConfig {
        consecutive_failures: 3,
        base_ejection: Duration::from_secs(30),
        max_ejection: Duration::from_secs(60),
    };
    let base = gateway(config).await;
    for n in 0..20 {
        assert_eq!(name(&whoami(&base, n).await), "good");
    }
    assert_eq!(
        failing.echo.served.load(Ordering::SeqCst),
        3,
        "ejected after its third failure in a row"
    );
}

#[tokio::test]
async fn retries_stay_within_their_budget() {
    let failing = Replica::failing("failing").await;
    let mut config = traffic(&[&failing], Balance::RoundRobin);
    config.retries = RetryPolicy {
        attempts: 3,
        budget_ratio: 0.0,
        budget_min_per_second: 0,
    };
    let base = gateway(config).await;
    for n in 0..20 {
        assert_eq!(code(&whoami(&base, n).await), "SUBGRAPH_REQUEST_FAILED");
    }
    // The budget holds ten retries and earns none: five queries tried three times,
    // fifteen tried once.
    assert_eq!(failing.echo.served.load(Ordering::SeqCst), 5 * 3 + 15);
}

#[tokio::test]
async fn a_subgraph_down_opens_its_breaker_and_probes_close_it_once_it_answers() {
    // This test's runtime has one thread, so everything the gateway records lands here.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let gauge = |metrics: &metrics_exporter_prometheus::PrometheusHandle| {
        let series = r#"flowfleet_gateway_subgraph_breaker_state{subgraph="echo"} "#;
        metrics
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(series)?.parse::<f64>().ok())
    };
    let mut only = Replica::start("only", Duration::ZERO).await;
    let mut config = traffic(&[&only], Balance::RoundRobin);
    config.breaker = BreakerConfig {
        failures: 5,
        open_for: Duration::from_millis(800),
        probes: 3,
    };
    config.retries.attempts = 1;
    let base = gateway(config).await;
    assert_eq!(name(&whoami(&base, 0).await), "only");
    only.kill().await;
    for n in 0..5 {
        assert_eq!(code(&whoami(&base, n).await), "SUBGRAPH_REQUEST_FAILED");
    }
    let refused = whoami(&base, 5).await;
    assert_eq!(code(&refused), "SUBGRAPH_CIRCUIT_OPEN", "{refused}");
    assert_eq!(refused["errors"][0]["extensions"]["retryAfter"], 1);
    assert_eq!(refused["errors"][0]["extensions"]["serviceName"], "echo");
    assert_eq!(gauge(&metrics), Some(2.0), "open, in /metrics");
    assert!(metrics.render().contains(
        r#"flowfleet_gateway_subgraph_rejected_total{subgraph="echo",reason="circuit_open"} 1"#
    ));

    // Back up, but the breaker is still open: the replica hears nothing.
    only.restart().await;
    let served = only.echo.served.load(Ordering::SeqCst);
    assert_eq!(code(&whoami(&base, 6).await), "SUBGRAPH_CIRCUIT_OPEN");
    assert_eq!(only.echo.served.load(Ordering::SeqCst), served);

    tokio::time::sleep(Duration::from_millis(900)).await;
    for n in 7..12 {
        assert_eq!(name(&whoami(&base, n).await), "only", "probes, then closed");
    }
    assert_eq!(gauge(&metrics), Some(0.0), "closed, in /metrics");
}

#[tokio::test]
async fn a_full_bulkhead_refuses_at_once_and_per_subgraph_timeouts_bound_a_fetch() {
    let slow = Replica::start("slow", Duration::from_millis(400)).await;
    let mut config = traffic(&[&slow], Balance::RoundRobin);
    config.bulkhead = BulkheadConfig {
        max_concurrent: 1,
        max_queued: 1,
    };
    let base = gateway(config).await;
    let responses = join_all((0..3).map(|n| whoami(&base, n))).await;
    let answered = responses.iter().filter(|r| r["data"]["whoami"] == "slow");
    assert_eq!(answered.count(), 2, "one ran, one waited: {responses:?}");
    let refused: Vec<_> = responses
        .iter()
        .filter(|r| r["errors"][0]["extensions"]["code"] == "SUBGRAPH_OVERLOADED")
        .collect();
    assert_eq!(refused.len(), 1, "{responses:?}");

    let mut config = traffic(&[&slow], Balance::RoundRobin);
    config.subgraphs.get_mut("echo").unwrap().timeout = Some(Duration::from_millis(100));
    let base = gateway(config).await;
    assert_eq!(code(&whoami(&base, 0).await), "SUBGRAPH_TIMEOUT");
}
