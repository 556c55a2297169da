//! End-to-end tests of the gateway against the real benchmark subgraphs (async-graphql,
//! served on ephemeral ports or called in-process), plus Apollo gateway compatibility checks.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{fixture, in_process_transports, post, start_gateway, subgraph_sdl, Subgraphs};
use flowfleet_gateway::value::Value as ResponseValue;
use flowfleet_gateway::{
    compose, Gateway, GatewayConfig, GraphQLRequest, SubgraphRequest, SubgraphSource,
    SubgraphTransport, TransportError,
};
use serde_json::{json, Value};

async fn composed_supergraph(subgraphs: &Subgraphs) -> String {
    let mut sources = Vec::new();
    for name in common::SUBGRAPHS {
        let url = subgraphs.urls[name].clone();
        sources.push(SubgraphSource {
            name: name.to_string(),
            sdl: subgraph_sdl(&url).await,
            url,
        });
    }
    compose(&sources).expect("composition")
}

fn bench_request() -> GraphQLRequest {
    GraphQLRequest::new(fixture("query.graphql"))
}

#[tokio::test]
async fn bench_query_over_http_matches_reference() {
    let subgraphs = Subgraphs::start().await;
    let gateway = subgraphs.gateway(&fixture("supergraph.graphql"));
    let base = start_gateway(&gateway).await;
    let (status, body) = post(&base, json!({"query": fixture("query.graphql")})).await;
    assert_eq!(status, 200);
    // String comparison: field order must follow the client's selection order too.
    assert_eq!(
        body.to_string(),
        flowfleet_bench::expected_response().to_string()
    );
}

#[tokio::test]
async fn bench_query_with_in_process_transports() {
    let gateway = Gateway::new(
        &fixture("supergraph.graphql"),
        GatewayConfig::default(),
        in_process_transports(),
    )
    .expect("gateway");
    let body = gateway
        .execute(bench_request(), &http::HeaderMap::new())
        .await;
    assert_eq!(
        body.to_string(),
        flowfleet_bench::expected_response().to_string()
    );
}

#[tokio::test]
async fn composed_supergraph_serves_bench_query_and_is_deterministic() {
    let subgraphs = Subgraphs::start().await;
    let supergraph = composed_supergraph(&subgraphs).await;

    let mut reversed = Vec::new();
    for name in common::SUBGRAPHS.iter().rev() {
        let url = subgraphs.urls[*name].clone();
        reversed.push(SubgraphSource {
            name: name.to_string(),
            sdl: subgraph_sdl(&url).await,
            url,
        });
    }
    assert_eq!(
        compose(&reversed).expect("composition"),
        supergraph,
        "composition must not depend on input order"
    );

    let gateway = Gateway::new(&supergraph, GatewayConfig::default(), HashMap::new())
        .expect("gateway from composed supergraph");
    let body = gateway
        .execute(bench_request(), &http::HeaderMap::new())
        .await;
    assert_eq!(
        body.to_string(),
        flowfleet_bench::expected_response().to_string()
    );
}

/// A gateway over the benchmark subgraphs, except `inventory`, which is reached at `url`.
async fn with_inventory_at(subgraphs: &Subgraphs, url: String, config: GatewayConfig) -> String {
    let mut urls = subgraphs.urls.clone();
    urls.insert("inventory".into(), url);
    let config = GatewayConfig {
        url_overrides: urls,
        ..config
    };
    let gateway =
        Gateway::new(&fixture("supergraph.graphql"), config, HashMap::new()).expect("gateway");
    start_gateway(&gateway).await
}

#[tokio::test]
async fn subgraph_down_gives_partial_data_and_error_with_path() {
    let subgraphs = Subgraphs::start().await;
    // A port that was just free: connection refused.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/graphql", listener.local_addr().expect("addr"))
    };
    let base = with_inventory_at(&subgraphs, closed, GatewayConfig::default()).await;

    let (status, body) = post(
        &base,
        json!({"query": "{ topProducts(first: 2) { upc name inStock } }"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"],
        json!({"topProducts": [
            {"upc": "1", "name": "Table", "inStock": null},
            {"upc": "2", "name": "Couch", "inStock": null}
        ]})
    );
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["extensions"]["code"], "SUBGRAPH_REQUEST_FAILED");
    assert_eq!(errors[0]["path"], json!(["topProducts", 0, "inStock"]));
    let text = body.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("http://"),
        "internal address leaked: {text}"
    );
}

#[tokio::test]
async fn slow_subgraph_times_out_with_partial_data_and_a_timeout_code() {
    let subgraphs = Subgraphs::start().await;
    // A server that accepts connections and never answers.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let stalled_url = format!("http://{}/graphql", stalled.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = stalled.accept().await {
            held.push(socket);
        }
    });
    let config = GatewayConfig {
        subgraph_timeout: std::time::Duration::from_millis(300),
        ..GatewayConfig::default()
    };
    let base = with_inventory_at(&subgraphs, stalled_url, config).await;

    let (status, body) = post(
        &base,
        json!({"query": "{ topProducts(first: 1) { upc inStock } }"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"],
        json!({"topProducts": [{"upc": "1", "inStock": null}]})
    );
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "SUBGRAPH_TIMEOUT",
        "{body}"
    );
    assert_eq!(
        body["errors"][0]["path"],
        json!(["topProducts", 0, "inStock"])
    );
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
}

#[tokio::test]
async fn variables_aliases_fragments_directives_and_typename() {
    let gateway = Gateway::new(
        &fixture("supergraph.graphql"),
        GatewayConfig::default(),
        in_process_transports(),
    )
    .expect("gateway");
    let query = r#"
        query Q($id: ID!, $withReviews: Boolean!, $skipName: Boolean = true) {
          __typename
          who: user(id: $id) {
            __typename
            handle: username
            name @skip(if: $skipName)
            ... on User { id }
            ...Reviews @include(if: $withReviews)
          }
          top: topProducts(first: 1) { upc price: shippingEstimate cost: price }
        }
        fragment Reviews on User { reviews { body product { name } } }
    "#;
    let run = |with_reviews: bool| {
        let gateway = gateway.clone();
        let mut vars = serde_json::Map::new();
        vars.insert("id".into(), json!("2"));
        vars.insert("withReviews".into(), json!(with_reviews));
        async move {
            gateway
                .execute(
                    GraphQLRequest::new(query)
                        .with_operation_name("Q")
                        .with_variables(vars),
                    &http::HeaderMap::new(),
                )
                .await
        }
    };
    let body = run(true).await;
    assert_eq!(
        body.to_string(),
        json!({"data": {
            "__typename": "Query",
            "who": {
                "__typename": "User", "handle": "alan", "id": "2",
                "reviews": [
                    {"body": "Could be better.", "product": {"name": "Glass"}},
                    {"body": "Prefer something else.", "product": {"name": "Table"}}
                ]
            },
            "top": [{"upc": "1", "price": 50, "cost": 899}]
        }})
        .to_string()
    );
    let body = run(false).await;
    assert_eq!(
        body["data"]["who"],
        json!({"__typename": "User", "handle": "alan", "id": "2"})
    );
}

#[tokio::test]
async fn introspection_answers_from_api_schema_and_can_be_disabled() {
    let gateway = Gateway::new(
        &fixture("supergraph.graphql"),
        GatewayConfig::default(),
        in_process_transports(),
    )
    .expect("gateway");
    let body = gateway
        .execute(
            GraphQLRequest::new(
                r#"{ __schema { queryType { name } types { name } }
                     product: __type(name: "Product") { kind fields { name type { kind name ofType { name } } } }
                     users { id } }"#,
            ),
            &http::HeaderMap::new(),
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
    let types: Vec<&str> = body["data"]["__schema"]["types"]
        .as_array()
        .expect("types")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        types.contains(&"Product") && types.contains(&"__Schema"),
        "{types:?}"
    );
    assert!(
        !types
            .iter()
            .any(|t| t.starts_with("join__") || t.starts_with("link__")),
        "{types:?}"
    );
    let fields = &body["data"]["product"]["fields"];
    assert_eq!(body["data"]["product"]["kind"], "OBJECT");
    assert_eq!(
        fields[0],
        json!({"name": "upc", "type": {"kind": "NON_NULL", "name": null, "ofType": {"name": "String"}}})
    );
    assert_eq!(body["data"]["users"][0], json!({"id": "1"}));

    let config = GatewayConfig {
        introspection: false,
        ..GatewayConfig::default()
    };
    let closed = Gateway::new(
        &fixture("supergraph.graphql"),
        config,
        in_process_transports(),
    )
    .expect("gateway");
    let body = closed
        .execute(
            GraphQLRequest::new("{ __schema { types { name } } }"),
            &http::HeaderMap::new(),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "INTROSPECTION_DISABLED"
    );
}

/// Wraps the real products subgraph and nulls `upc` of the second product, to exercise
/// null propagation for a non-null field.
struct NullingSecondUpc(common::InProcess<common::subgraphs::ProductsSchema>);

#[async_trait::async_trait]
impl SubgraphTransport for NullingSecondUpc {
    async fn execute(&self, request: SubgraphRequest) -> Result<ResponseValue, TransportError> {
        let mut body = Value::from(self.0.execute(request).await?);
        if let Some(item) = body.pointer_mut("/data/topProducts/1/upc") {
            *item = Value::Null;
        }
        Ok(body.into())
    }
}

#[tokio::test]
async fn null_in_non_null_field_nulls_nearest_nullable_parent() {
    let mut transports = in_process_transports();
    transports.insert(
        "products".into(),
        Arc::new(NullingSecondUpc(common::InProcess::new(
            common::subgraphs::products(),
        ))),
    );
    let gateway = Gateway::new(
        &fixture("supergraph.graphql"),
        GatewayConfig::default(),
        transports,
    )
    .expect("gateway");
    let body = gateway
        .execute(
            GraphQLRequest::new("{ topProducts(first: 3) { upc name } }"),
            &http::HeaderMap::new(),
        )
        .await;
    assert_eq!(
        body["data"],
        json!({"topProducts": [{"upc": "1", "name": "Table"}, null, {"upc": "3", "name": "Glass"}]})
    );
    assert_eq!(body["errors"][0]["path"], json!(["topProducts", 1, "upc"]));
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "NON_NULL_VIOLATION"
    );
}

#[tokio::test]
async fn headers_are_forwarded_and_hook_runs() {
    use std::sync::Mutex;
    struct Recording(
        Arc<Mutex<Vec<http::HeaderMap>>>,
        common::InProcess<common::subgraphs::AccountsSchema>,
    );
    #[async_trait::async_trait]
    impl SubgraphTransport for Recording {
        async fn execute(&self, request: SubgraphRequest) -> Result<ResponseValue, TransportError> {
            self.0.lock().expect("lock").push(request.headers.clone());
            self.1.execute(request).await
        }
    }
    let seen_headers = Arc::new(Mutex::new(Vec::new()));
    let recording = Recording(
        seen_headers.clone(),
        common::InProcess::new(common::subgraphs::accounts()),
    );
    let mut transports = in_process_transports();
    transports.insert("accounts".into(), Arc::new(recording));
    let config = GatewayConfig {
        request_hook: Some(Arc::new(|headers: &mut http::HeaderMap| {
            headers.insert(
                "traceparent",
                http::HeaderValue::from_static(
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
            );
        })),
        ..GatewayConfig::default()
    };
    let gateway =
        Gateway::new(&fixture("supergraph.graphql"), config, transports).expect("gateway");
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", http::HeaderValue::from_static("Bearer t"));
    headers.insert("cookie", http::HeaderValue::from_static("secret=1"));
    let body = gateway
        .execute(GraphQLRequest::new("{ me { id } }"), &headers)
        .await;
    assert_eq!(body, json!({"data": {"me": {"id": "1"}}}));
    let seen = seen_headers.lock().expect("lock");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["authorization"], "Bearer t");
    assert!(seen[0].get("cookie").is_none());
    assert!(seen[0]["traceparent"]
        .to_str()
        .unwrap_or("")
        .starts_with("00-0af7"));
}

// ---------- Apollo gateway compatibility ----------

fn apollo_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apollo")
}

fn run_apollo_check(args: &[&std::path::Path]) -> std::process::Output {
    let dir = apollo_dir();
    assert!(
        dir.join("node_modules/@apollo/gateway").exists(),
        "@apollo/gateway is not installed: run `npm ci --prefix gateway/tests/apollo` first"
    );
    let mut command = std::process::Command::new("node");
    command.arg(dir.join("check-supergraph.mjs")).args(args);
    command
        .output()
        .expect("running node (is Node.js installed?)")
}

#[tokio::test]
async fn apollo_gateway_accepts_our_composed_supergraph_and_agrees_on_bench_query() {
    let subgraphs = Subgraphs::start().await;
    let supergraph = composed_supergraph(&subgraphs).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let supergraph_file = dir.path().join("supergraph.graphql");
    std::fs::write(&supergraph_file, &supergraph).expect("write supergraph");

    // The node process must not block this runtime: the subgraphs are served from it.
    let file = supergraph_file.clone();
    let output = tokio::task::spawn_blocking(move || run_apollo_check(&[&file]))
        .await
        .expect("join");
    assert!(
        output.status.success(),
        "Apollo rejected the composed supergraph:\n{}\n{}\n--- supergraph ---\n{supergraph}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // Differential: Apollo's gateway and ours, same supergraph, same subgraphs, same query.
    let query_file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/query.graphql");
    let file = supergraph_file.clone();
    let output = tokio::task::spawn_blocking(move || run_apollo_check(&[&file, &query_file]))
        .await
        .expect("join");
    assert!(
        output.status.success(),
        "Apollo failed to execute:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let apollo: Value = serde_json::from_slice(&output.stdout).expect("Apollo printed JSON");
    let gateway =
        Gateway::new(&supergraph, GatewayConfig::default(), HashMap::new()).expect("gateway");
    let ours = gateway
        .execute(bench_request(), &http::HeaderMap::new())
        .await;
    assert_eq!(ours.to_string(), apollo.to_string());
    assert_eq!(
        ours.to_string(),
        flowfleet_bench::expected_response().to_string()
    );
}

#[tokio::test]
async fn mutations_run_in_order_and_are_refused_over_get() {
    let schema = common::subgraphs::counter();
    let sdl = schema.sdl_with_options(async_graphql::SDLExportOptions::new().federation());
    let supergraph = compose(&[SubgraphSource {
        name: "counter".into(),
        url: "http://counter.invalid/graphql".into(),
        sdl,
    }])
    .expect("composition");
    let mut transports: HashMap<String, Arc<dyn SubgraphTransport>> = HashMap::new();
    transports.insert("counter".into(), Arc::new(common::InProcess::new(schema)));
    let gateway = Gateway::new(&supergraph, GatewayConfig::default(), transports).expect("gateway");
    let base = start_gateway(&gateway).await;

    let (status, body) = post(
        &base,
        json!({"query": "mutation { a: increment(by: 2) b: increment(by: 3) }"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"data": {"a": 2, "b": 5}}));

    let response = reqwest::Client::new()
        .get(format!("{base}/graphql"))
        .query(&[("query", "mutation { increment(by: 1) }")])
        .send()
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "METHOD_NOT_ALLOWED"
    );
    let value = gateway
        .execute(GraphQLRequest::new("{ value }"), &http::HeaderMap::new())
        .await;
    assert_eq!(
        value,
        json!({"data": {"value": 5}}),
        "the GET mutation must not have run"
    );
}
