//! Runtime behaviour against real subgraph servers that record what reaches them:
//! in-flight deduplication, supergraph hot reload (file and re-composition), HTTP/2 to
//! subgraphs and keep-alive connection reuse.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::{EmptyMutation, EmptySubscription, Executor, Object, Schema};
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use common::{post as post_json, start_gateway, subgraph_sdl, subgraphs, SUBGRAPHS};
use flowfleet_gateway::{
    compose, watch, Gateway, GatewayConfig, SubgraphEndpoint, SubgraphSource, SupergraphSource,
};
use futures::future::join_all;
use serde_json::{json, Value};

/// What a subgraph server saw.
#[derive(Default)]
struct Observed {
    requests: AtomicUsize,
    versions: Mutex<Vec<http::Version>>,
    peers: Mutex<HashSet<SocketAddr>>,
}

/// `executor` at `/graphql`, recording every request and delaying each answer by `delay`.
/// Returns the app and the observations.
fn observed_app<E: Executor>(executor: E, delay: Duration) -> (Router, Arc<Observed>) {
    let observed = Arc::new(Observed::default());
    async fn record(
        State((observed, delay)): State<(Arc<Observed>, Duration)>,
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        request: Request,
        next: Next,
    ) -> Response {
        observed.requests.fetch_add(1, Ordering::SeqCst);
        observed
            .versions
            .lock()
            .expect("lock")
            .push(request.version());
        observed.peers.lock().expect("lock").insert(peer);
        tokio::time::sleep(delay).await;
        next.run(request).await
    }
    let app = Router::new()
        .route(
            "/graphql",
            axum::routing::post_service(async_graphql_axum::GraphQL::new(executor)),
        )
        .layer(axum::middleware::from_fn_with_state(
            (observed.clone(), delay),
            record,
        ));
    (app, observed)
}

/// Serves `executor` at `/graphql` (HTTP/1.1 and h2c), recording every request and delaying
/// each answer by `delay`. Returns the URL and the observations.
async fn serve_observed<E: Executor>(executor: E, delay: Duration) -> (String, Arc<Observed>) {
    let (app, observed) = observed_app(executor, delay);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("subgraph server");
    });
    (format!("http://{addr}/graphql"), observed)
}

/// Serves `executor` over HTTPS with a certificate for `localhost` issued by a new
/// certificate authority, offering `h2` and `http/1.1` by ALPN. Returns the URL, the
/// authority's certificate (PEM) and the observations.
async fn serve_observed_tls<E: Executor>(executor: E) -> (String, String, Arc<Observed>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("server params")
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .expect("TLS config");
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

    let (app, observed) = observed_app(executor, Duration::ZERO);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let app = app.clone().layer(axum::Extension(ConnectInfo(peer)));
            tokio::spawn(async move {
                // A client that does not trust the certificate ends the handshake.
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            });
        }
    });
    (
        format!("https://localhost:{port}/graphql"),
        ca.pem(),
        observed,
    )
}

/// The four benchmark subgraphs, observed, with `delay` on `products`.
async fn bench_subgraphs(
    delay: Duration,
) -> (HashMap<String, String>, HashMap<String, Arc<Observed>>) {
    bench_subgraphs_delaying(delay, &["products"]).await
}

/// The four benchmark subgraphs, observed, with `delay` on those `delayed`.
async fn bench_subgraphs_delaying(
    delay: Duration,
    delayed: &[&str],
) -> (HashMap<String, String>, HashMap<String, Arc<Observed>>) {
    let mut urls = HashMap::new();
    let mut observed = HashMap::new();
    for name in SUBGRAPHS {
        let wait = if delayed.contains(&name) {
            delay
        } else {
            Duration::ZERO
        };
        let (url, seen) = match name {
            "accounts" => serve_observed(subgraphs::accounts(), wait).await,
            "inventory" => serve_observed(subgraphs::inventory(), wait).await,
            "products" => serve_observed(subgraphs::products(), wait).await,
            _ => serve_observed(subgraphs::reviews(), wait).await,
        };
        urls.insert(name.to_string(), url);
        observed.insert(name.to_string(), seen);
    }
    (urls, observed)
}

async fn supergraph_of(urls: &HashMap<String, String>, names: &[&str]) -> String {
    let mut sources = Vec::new();
    for name in names {
        let url = urls[*name].clone();
        sources.push(SubgraphSource {
            name: name.to_string(),
            sdl: subgraph_sdl(&url).await,
            url,
        });
    }
    compose(&sources).expect("composition")
}

#[tokio::test]
async fn identical_concurrent_queries_share_one_subgraph_request() {
    for dedupe in [true, false] {
        let (urls, observed) = bench_subgraphs(Duration::from_millis(400)).await;
        let supergraph = supergraph_of(&urls, &SUBGRAPHS).await;
        let config = GatewayConfig {
            dedupe_subgraph_requests: dedupe,
            ..GatewayConfig::default()
        };
        let gateway = Gateway::new(&supergraph, config, HashMap::new()).expect("gateway");
        let base = start_gateway(&gateway).await;
        // Composition already asked each subgraph for its SDL.
        let before = observed["products"].requests.load(Ordering::SeqCst);
        let query = json!({"query": "{ topProducts(first: 2) { upc name } }"});
        let responses = join_all((0..8).map(|_| post_json(&base, query.clone()))).await;
        for (status, body) in &responses {
            assert_eq!(*status, 200);
            assert_eq!(
                body["data"]["topProducts"],
                json!([{"upc": "1", "name": "Table"}, {"upc": "2", "name": "Couch"}])
            );
        }
        let sent = observed["products"].requests.load(Ordering::SeqCst) - before;
        if dedupe {
            assert_eq!(
                sent, 1,
                "8 identical concurrent queries, one subgraph request"
            );
        } else {
            assert_eq!(
                sent, 8,
                "without deduplication every query reaches the subgraph"
            );
        }
    }
}

#[tokio::test]
async fn clients_sharing_entity_fetches_each_get_the_whole_response() {
    // Every subgraph answers late, so identical queries meet at every fetch of the plan:
    // the root fetch and each entity fetch after it are all shared, and the followers read
    // the leader's responses instead of owning them.
    let (urls, observed) = bench_subgraphs_delaying(Duration::from_millis(300), &SUBGRAPHS).await;
    let supergraph = supergraph_of(&urls, &SUBGRAPHS).await;
    let gateway =
        Gateway::new(&supergraph, GatewayConfig::default(), HashMap::new()).expect("gateway");
    let base = start_gateway(&gateway).await;
    let counts = || -> Vec<usize> {
        SUBGRAPHS
            .iter()
            .map(|name| observed[*name].requests.load(Ordering::SeqCst))
            .collect()
    };
    let query = json!({"query": flowfleet_bench::QUERY});
    let expected = flowfleet_bench::expected_response();

    let before = counts();
    let (status, alone) = post_json(&base, query.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(alone, expected);
    let after_one = counts();
    let one_query: Vec<usize> = after_one.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert!(
        one_query.iter().all(|n| *n > 0),
        "the query reaches every subgraph: {one_query:?}"
    );

    let responses = join_all((0..8).map(|_| post_json(&base, query.clone()))).await;
    for (status, body) in &responses {
        assert_eq!(*status, 200);
        assert_eq!(body, &expected);
    }
    let eight_queries: Vec<usize> = counts()
        .iter()
        .zip(&after_one)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(
        eight_queries, one_query,
        "8 identical concurrent queries send what one sends, per subgraph"
    );
}

#[tokio::test]
async fn concurrent_identical_mutations_all_run() {
    let (url, observed) = serve_observed(subgraphs::counter(), Duration::from_millis(200)).await;
    let supergraph = compose(&[SubgraphSource {
        name: "counter".into(),
        sdl: subgraph_sdl(&url).await,
        url,
    }])
    .expect("composition");
    let gateway =
        Gateway::new(&supergraph, GatewayConfig::default(), HashMap::new()).expect("gateway");
    let base = start_gateway(&gateway).await;
    let before = observed.requests.load(Ordering::SeqCst);
    let mutation = json!({"query": "mutation { increment(by: 1) }"});
    let responses = join_all((0..5).map(|_| post_json(&base, mutation.clone()))).await;
    let mut seen: Vec<i64> = responses
        .iter()
        .map(|(_, body)| body["data"]["increment"].as_i64().expect("a number"))
        .collect();
    seen.sort();
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    assert_eq!(observed.requests.load(Ordering::SeqCst) - before, 5);
}

#[tokio::test]
async fn supergraph_file_changes_load_without_dropping_in_flight_requests() {
    let (urls, _) = bench_subgraphs(Duration::from_millis(600)).await;
    let without_reviews = supergraph_of(&urls, &["accounts", "inventory", "products"]).await;
    let full = supergraph_of(&urls, &SUBGRAPHS).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("supergraph.graphql");
    std::fs::write(&file, &without_reviews).expect("write");

    let gateway =
        Gateway::new(&without_reviews, GatewayConfig::default(), HashMap::new()).expect("gateway");
    let base = start_gateway(&gateway).await;
    tokio::spawn(watch(
        gateway.clone(),
        SupergraphSource::File(file.clone()),
        Duration::from_millis(50),
        std::future::pending(),
    ));
    let reviews = json!({"query": "{ topProducts(first: 1) { upc reviews { body } } }"});
    let (_, body) = post_json(&base, reviews.clone()).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "reviews are not in the first supergraph: {body}"
    );

    // A request that is still waiting for `products` when the supergraph changes.
    let in_flight = tokio::spawn({
        let base = base.clone();
        async move {
            post_json(
                &base,
                json!({"query": "{ topProducts(first: 1) { name } }"}),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(&file, &full).expect("write");

    let mut reloaded = None;
    for _ in 0..100 {
        let (_, body) = post_json(&base, reviews.clone()).await;
        if body.get("errors").is_none() {
            reloaded = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = reloaded.expect("the new supergraph was loaded");
    assert_eq!(
        body["data"]["topProducts"][0]["reviews"][0]["body"],
        "Love it!"
    );
    let (status, body) = in_flight.await.expect("join");
    assert_eq!(status, 200);
    assert_eq!(body, json!({"data": {"topProducts": [{"name": "Table"}]}}));

    // A broken file is refused; the gateway keeps serving the last good supergraph.
    std::fs::write(&file, "this is not a supergraph").expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, body) = post_json(&base, reviews).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(gateway.supergraph(), full);
}

/// A subgraph whose schema can be swapped at runtime, as when a new version is deployed.
struct V1;
#[Object(name = "Query")]
impl V1 {
    async fn hello(&self) -> &str {
        "hello"
    }
}
struct V2;
#[Object(name = "Query")]
impl V2 {
    async fn hello(&self) -> &str {
        "hello"
    }
    async fn goodbye(&self) -> &str {
        "goodbye"
    }
}

#[tokio::test]
async fn a_changed_subgraph_schema_is_recomposed_and_served() {
    type Versioned = Arc<Mutex<Option<Schema<V2, EmptyMutation, EmptySubscription>>>>;
    let v1 = Schema::build(V1, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish();
    let v2: Versioned = Arc::new(Mutex::new(None));
    async fn handle(
        State((v1, v2)): State<(Schema<V1, EmptyMutation, EmptySubscription>, Versioned)>,
        axum::Json(request): axum::Json<async_graphql::Request>,
    ) -> axum::Json<async_graphql::Response> {
        let next = v2.lock().expect("lock").clone();
        axum::Json(match next {
            Some(schema) => schema.execute(request).await,
            None => v1.execute(request).await,
        })
    }
    let app = Router::new()
        .route("/graphql", post(handle))
        .with_state((v1, v2.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/graphql", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });

    let source = SupergraphSource::Subgraphs(vec![SubgraphEndpoint {
        name: "greeter".into(),
        url,
    }]);
    let supergraph = source.load(&reqwest::Client::new()).await.expect("compose");
    let gateway =
        Gateway::new(&supergraph, GatewayConfig::default(), HashMap::new()).expect("gateway");
    let base = start_gateway(&gateway).await;
    tokio::spawn(watch(
        gateway.clone(),
        source,
        Duration::from_millis(50),
        std::future::pending(),
    ));
    let goodbye = json!({"query": "{ hello goodbye }"});
    let (_, body) = post_json(&base, goodbye.clone()).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );

    *v2.lock().expect("lock") = Some(
        Schema::build(V2, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish(),
    );
    let mut answer = Value::Null;
    for _ in 0..100 {
        let (_, body) = post_json(&base, goodbye.clone()).await;
        answer = body;
        if answer.get("errors").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        answer,
        json!({"data": {"hello": "hello", "goodbye": "goodbye"}})
    );
}

#[tokio::test]
async fn subgraphs_get_http2_when_configured_and_keep_alive_connections() {
    let (urls, observed) = bench_subgraphs(Duration::ZERO).await;
    let supergraph = supergraph_of(&urls, &SUBGRAPHS).await;
    let config = GatewayConfig {
        h2c_subgraphs: HashSet::from(["products".to_string()]),
        ..GatewayConfig::default()
    };
    let gateway = Gateway::new(&supergraph, config, HashMap::new()).expect("gateway");
    let base = start_gateway(&gateway).await;
    for seen in observed.values() {
        // Forget the composition's SDL requests (made by another client).
        seen.versions.lock().expect("lock").clear();
        seen.peers.lock().expect("lock").clear();
    }
    for _ in 0..10 {
        let (status, body) = post_json(
            &base,
            json!({"query": "{ topProducts(first: 1) { upc name inStock } }"}),
        )
        .await;
        assert_eq!(status, 200);
        assert!(body.get("errors").is_none(), "{body}");
    }
    let versions = |name: &str| observed[name].versions.lock().expect("lock").clone();
    assert_eq!(versions("products").len(), 10);
    assert!(versions("products")
        .iter()
        .all(|v| *v == http::Version::HTTP_2));
    assert!(versions("inventory")
        .iter()
        .all(|v| *v == http::Version::HTTP_11));
    // Sequential requests reuse pooled connections instead of connecting each time.
    for name in ["products", "inventory"] {
        let peers = observed[name].peers.lock().expect("lock").len();
        assert_eq!(
            peers, 1,
            "{name}: {peers} connections for 10 sequential requests"
        );
    }
}

#[tokio::test]
async fn https_subgraphs_offering_http2_get_it_by_alpn_with_a_configured_authority() {
    let products = subgraphs::products();
    let sdl = products.execute("{ _service { sdl } }").await.data;
    let sdl = sdl.into_json().expect("json")["_service"]["sdl"]
        .as_str()
        .expect("sdl")
        .to_string();
    let (url, ca_pem, observed) = serve_observed_tls(products).await;
    let supergraph = compose(&[SubgraphSource {
        name: "products".into(),
        url,
        sdl,
    }])
    .expect("composition");
    let query = json!({"query": "{ topProducts(first: 2) { upc name } }"});

    // Without the authority the subgraph's certificate is not trusted: no data, a
    // client-safe error, and nothing reaches the subgraph.
    let untrusting =
        Gateway::new(&supergraph, GatewayConfig::default(), HashMap::new()).expect("gateway");
    let (status, body) = post_json(&start_gateway(&untrusting).await, query.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], json!({"topProducts": null}), "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "SUBGRAPH_REQUEST_FAILED"
    );
    assert_eq!(observed.requests.load(Ordering::SeqCst), 0);

    let config = GatewayConfig {
        subgraph_ca_pem: Some(ca_pem.into_bytes()),
        ..GatewayConfig::default()
    };
    let gateway = Gateway::new(&supergraph, config, HashMap::new()).expect("gateway");
    let base = start_gateway(&gateway).await;
    for _ in 0..5 {
        let (status, body) = post_json(&base, query.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"data": {"topProducts": [
                {"upc": "1", "name": "Table"},
                {"upc": "2", "name": "Couch"}
            ]}})
        );
    }
    let versions = observed.versions.lock().expect("lock").clone();
    assert_eq!(
        versions,
        vec![http::Version::HTTP_2; 5],
        "h2 chosen by ALPN"
    );
    let connections = observed.peers.lock().expect("lock").len();
    assert_eq!(connections, 1, "one multiplexed connection for 5 requests");
}
