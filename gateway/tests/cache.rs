//! The response cache over the benchmark subgraphs (in process), counting what reaches
//! each subgraph: kept answers are served without a fetch, private ones only to the same
//! credential, and ages, events and errors end them.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flowfleet_gateway::cache::{CacheConfig, CachePolicy, Scope};
use flowfleet_gateway::value::Value as ResponseValue;
use flowfleet_gateway::{
    Gateway, GatewayConfig, SubgraphRequest, SubgraphTransport, TransportError,
};
use serde_json::{json, Value};

use common::{fixture, in_process_transports, post_with, start_gateway};

/// Counts the requests a subgraph gets, and can be made to answer with an error.
struct Counted {
    inner: Arc<dyn SubgraphTransport>,
    calls: Arc<AtomicUsize>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait::async_trait]
impl SubgraphTransport for Counted {
    async fn execute(&self, request: SubgraphRequest) -> Result<ResponseValue, TransportError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Ok(serde_json::from_value::<ResponseValue>(
                json!({"data": null, "errors": [{"message": "down for a moment"}]}),
            )
            .unwrap());
        }
        self.inner.execute(request).await
    }
}

struct Fleet {
    base: String,
    gateway: Gateway,
    calls: HashMap<String, Arc<AtomicUsize>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Fleet {
    async fn start(policies: &[(&str, u64, Scope)]) -> Self {
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut calls = HashMap::new();
        let transports = in_process_transports()
            .into_iter()
            .map(|(name, inner)| {
                let counter = Arc::new(AtomicUsize::new(0));
                calls.insert(name.clone(), counter.clone());
                let counted: Arc<dyn SubgraphTransport> = Arc::new(Counted {
                    inner,
                    calls: counter,
                    failing: failing.clone(),
                });
                (name, counted)
            })
            .collect();
        let config = GatewayConfig {
            response_cache: CacheConfig {
                policies: policies
                    .iter()
                    .map(|(name, ms, scope)| {
                        let policy = CachePolicy {
                            max_age: Duration::from_millis(*ms),
                            scope: *scope,
                        };
                        (name.to_string(), policy)
                    })
                    .collect(),
                max_entries: 1000,
                store: None,
                store_timeout: Duration::from_millis(50),
            },
            ..Default::default()
        };
        let gateway = Gateway::new(&fixture("supergraph.graphql"), config, transports).unwrap();
        Self {
            base: start_gateway(&gateway).await,
            gateway,
            calls,
            failing,
        }
    }

    fn calls(&self, subgraph: &str) -> usize {
        self.calls[subgraph].load(Ordering::SeqCst)
    }

    async fn query(&self, query: &str, token: Option<&str>) -> Value {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("authorization", b.as_str()))
            .collect();
        post_with(&self.base, json!({"query": query}), &headers)
            .await
            .1
    }
}

const TOP: &str = "{ topProducts { upc name price } }";
const WITH_REVIEWS: &str = "{ topProducts { upc name reviews { body } } }";

#[tokio::test]
async fn a_covered_fetch_is_answered_from_the_cache_and_an_uncovered_one_is_not() {
    // This test's runtime has one thread, so everything the gateway records lands here.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let fleet = Fleet::start(&[
        ("Query.topProducts", 60_000, Scope::Public),
        ("Product", 60_000, Scope::Public),
    ])
    .await;
    let first = fleet.query(TOP, None).await;
    assert!(
        first["data"]["topProducts"][0]["name"].is_string(),
        "{first}"
    );
    assert_eq!(fleet.query(TOP, None).await, first, "the same answer");
    assert_eq!(fleet.calls("products"), 1, "the second came from the cache");
    let rendered = metrics.render();
    for (result, count) in [("hit_local", 1), ("miss", 1)] {
        let series = format!(
            "flowfleet_gateway_response_cache_lookups_total{{result=\"{result}\"}} {count}"
        );
        assert!(rendered.contains(&series), "{series} in\n{rendered}");
    }

    // `Review.body` has no policy: the reviews fetch goes every time; this operation's
    // products fetch (other fields than before) once.
    let reviews = fleet.query(WITH_REVIEWS, None).await;
    assert!(
        reviews["data"]["topProducts"][0]["reviews"].is_array(),
        "{reviews}"
    );
    fleet.query(WITH_REVIEWS, None).await;
    assert_eq!(
        fleet.calls("reviews"),
        2,
        "not cacheable: no policy for Review"
    );
    assert_eq!(fleet.calls("products"), 2, "its own products fetch, once");
}

#[tokio::test]
async fn private_answers_are_kept_per_credential() {
    let fleet = Fleet::start(&[
        ("Query.me", 60_000, Scope::Private),
        ("User", 60_000, Scope::Private),
    ])
    .await;
    let query = "{ me { id name } }";
    fleet.query(query, Some("alice")).await;
    fleet.query(query, Some("alice")).await;
    assert_eq!(fleet.calls("accounts"), 1);
    fleet.query(query, Some("bob")).await;
    fleet.query(query, None).await;
    assert_eq!(
        fleet.calls("accounts"),
        3,
        "another credential is another answer"
    );
    // Who may see what changed: every private answer goes.
    fleet.gateway.invalidate_private().await;
    fleet.query(query, Some("alice")).await;
    assert_eq!(fleet.calls("accounts"), 4);
}

#[tokio::test]
async fn age_events_and_errors_end_kept_answers() {
    let fleet = Fleet::start(&[
        ("Query.topProducts", 200, Scope::Public),
        ("Product", 200, Scope::Public),
    ])
    .await;
    fleet.query(TOP, None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    fleet.query(TOP, None).await;
    assert_eq!(fleet.calls("products"), 2, "too old to serve");

    // An event about a product evicts answers selecting products.
    fleet.query(TOP, None).await;
    assert_eq!(fleet.calls("products"), 2);
    fleet.gateway.invalidate("Product", "1").await;
    fleet.query(TOP, None).await;
    assert_eq!(fleet.calls("products"), 3, "evicted by the event");

    // An answer with errors is not kept.
    tokio::time::sleep(Duration::from_millis(300)).await;
    fleet.failing.store(true, Ordering::SeqCst);
    let failed = fleet.query(TOP, None).await;
    assert!(failed["errors"].is_array(), "{failed}");
    fleet.failing.store(false, Ordering::SeqCst);
    let answered = fleet.query(TOP, None).await;
    assert!(answered["data"]["topProducts"].is_array(), "{answered}");
    assert_eq!(fleet.calls("products"), 5);
}

#[tokio::test]
async fn entity_answers_are_evicted_by_their_own_entity_only() {
    // Users are entities keyed by `id`: an event about one evicts its answers only.
    let fleet = Fleet::start(&[
        ("Query.topProducts", 60_000, Scope::Public),
        ("Product", 60_000, Scope::Public),
        ("Review", 60_000, Scope::Public),
        ("User", 60_000, Scope::Public),
    ])
    .await;
    let query = "{ topProducts { reviews { author { name } } } }";
    let first = fleet.query(query, None).await;
    let author = first["data"]["topProducts"][0]["reviews"][0]["author"]["name"].clone();
    assert!(author.is_string(), "{first}");
    fleet.query(query, None).await;
    assert_eq!(fleet.calls("accounts"), 1);
    fleet.gateway.invalidate("User", "no-such-user").await;
    fleet.query(query, None).await;
    assert_eq!(
        fleet.calls("accounts"),
        1,
        "another user's event evicts nothing"
    );
    fleet.gateway.invalidate("User", "1").await;
    fleet.query(query, None).await;
    assert_eq!(fleet.calls("accounts"), 2, "its own event evicts it");
}
