//! Differential test: the same operations through our gateway and through Apollo's
//! `@apollo/gateway` (the reference implementation of Federation), on the same running
//! subgraphs and the same supergraph. `data` must be identical; errors must agree on whether
//! there are any, on their paths and on their codes (messages are each gateway's own words).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::start_gateway;
use flowfleet_gateway::{Gateway, GatewayConfig};
use serde_json::{json, Value};

/// Apollo's gateway as a child process, killed when dropped.
struct Apollo {
    _child: tokio::process::Child,
    url: String,
}

impl Apollo {
    async fn start(supergraph_file: &std::path::Path) -> Self {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apollo");
        assert!(
            dir.join("node_modules/@apollo/gateway").exists(),
            "@apollo/gateway is not installed: run `npm ci --prefix gateway/tests/apollo` first"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = tokio::process::Command::new("node")
            .arg(dir.join("serve.mjs"))
            .env("SUPERGRAPH_FILE_PATH", supergraph_file)
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .kill_on_drop(true)
            .spawn()
            .expect("starting node serve.mjs (is Node.js installed?)");
        let url = format!("http://127.0.0.1:{port}/graphql");
        let client = reqwest::Client::new();
        for _ in 0..300 {
            let ready = client
                .post(&url)
                .json(&json!({"query": "{ __typename }"}))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Self { _child: child, url };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Apollo's gateway did not start on {url}");
    }
}

async fn ask(url: &str, body: &Value) -> Value {
    reqwest::Client::new()
        .post(url)
        .header("accept", "application/json")
        .json(body)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON response")
}

/// What both gateways must agree on: `data`, and per error its path and code.
fn comparable(response: &Value) -> Value {
    let errors: Vec<Value> = response["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| json!({"path": e["path"], "code": e["extensions"]["code"]}))
                .collect()
        })
        .unwrap_or_default();
    json!({"data": response.get("data").cloned().unwrap_or(Value::Null), "errors": errors})
}

fn operations() -> Vec<(&'static str, Value)> {
    vec![
        (
            "the benchmark query",
            json!({"query": flowfleet_bench::QUERY, "operationName": "TestQuery"}),
        ),
        (
            "entities across three subgraphs from one root",
            json!({"query": "{ me { id username reviews { body product { name inStock shippingEstimate } } } }"}),
        ),
        (
            "aliases of the same field with different arguments",
            json!({"query": "{ a: topProducts(first: 1) { upc } b: topProducts(first: 3) { n: name shippingEstimate } }"}),
        ),
        (
            "variable default",
            json!({"query": "query($first: Int = 2) { topProducts(first: $first) { upc weight } }"}),
        ),
        (
            "variable given",
            json!({"query": "query($first: Int = 2) { topProducts(first: $first) { upc weight } }", "variables": {"first": 4}}),
        ),
        (
            "@include true, @skip true",
            json!({"query": "query($r: Boolean!) { topProducts { upc reviews @include(if: $r) { body } name @skip(if: $r) } }", "variables": {"r": true}}),
        ),
        (
            "@include false, @skip false",
            json!({"query": "query($r: Boolean!) { topProducts { upc reviews @include(if: $r) { body } name @skip(if: $r) } }", "variables": {"r": false}}),
        ),
        (
            "__typename at every level",
            json!({"query": "{ __typename topProducts(first: 2) { __typename upc reviews { __typename author { __typename username } } } }"}),
        ),
        (
            "named and inline fragments",
            json!({"query": "fragment P on Product { name } { topProducts(first: 2) { ...P ... on Product { price } } }"}),
        ),
        (
            "argument lookups, found and not found",
            json!({"query": "{ found: user(id: \"2\") { name reviews { id } } missing: user(id: \"999\") { name } }"}),
        ),
        (
            "@provides: the author's username from reviews",
            json!({"query": "{ topProducts(first: 3) { reviews { author { username } } } }"}),
        ),
        (
            "introspection of an entity type",
            json!({"query": "{ __type(name: \"Product\") { name kind fields { name type { kind name ofType { name } } } } }"}),
        ),
        (
            "operation selected by name",
            json!({"query": "query A { me { id } } query B { users { id } }", "operationName": "B"}),
        ),
        (
            "validation error",
            json!({"query": "{ topProducts { nope } }"}),
        ),
        ("parse error", json!({"query": "{ topProducts { upc "})),
    ]
}

#[tokio::test]
async fn our_gateway_and_apollo_gateway_agree() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(flowfleet_bench::serve(listener));
    let supergraph = flowfleet_bench::supergraph_at(addr);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("supergraph.graphql");
    std::fs::write(&file, &supergraph).expect("write supergraph");

    let ours =
        Gateway::new(&supergraph, GatewayConfig::default(), HashMap::new()).expect("gateway");
    let ours = format!("{}/graphql", start_gateway(&ours).await);
    let apollo = Apollo::start(&file).await;

    let mut disagreements = Vec::new();
    for (name, operation) in operations() {
        let (a, b) = tokio::join!(ask(&ours, &operation), ask(&apollo.url, &operation));
        if comparable(&a) != comparable(&b) {
            disagreements.push(format!("{name}:\n  ours:   {a}\n  apollo: {b}"));
        }
        // Every case must say something: data, or errors.
        assert!(
            !a["data"].is_null() || a["errors"].is_array(),
            "{name}: empty response {a}"
        );
    }
    assert!(
        disagreements.is_empty(),
        "gateways disagree on {} of {} operations:\n{}",
        disagreements.len(),
        operations().len(),
        disagreements.join("\n")
    );
}
