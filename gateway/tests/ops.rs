//! A gateway operators can watch: `/ready` reflects whether every subgraph answers, and
//! the `metrics` facade receives RED per operation and per subgraph, plan cache lookups,
//! rate-limit refusals and requests in flight (rendered here by the same Prometheus
//! exporter the `flowfleet` binary uses).

mod common;

use common::{fixture, in_process_transports, start_gateway};
use flowfleet_gateway::rate_limit::{Rate, RateLimitConfig, RateLimiter};
use flowfleet_gateway::{Gateway, GatewayConfig};
use serde_json::{json, Value};

#[tokio::test]
async fn ready_when_every_subgraph_answers_and_503_naming_the_one_that_does_not() {
    let gateway = Gateway::new(
        &fixture("supergraph.graphql"),
        GatewayConfig::default(),
        in_process_transports(),
    )
    .unwrap();
    let base = start_gateway(&gateway).await;
    let response = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "ready", "subgraphs": {
            "accounts": "up", "inventory": "up", "products": "up", "reviews": "up"
        }})
    );

    // `reviews` at an address where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/graphql", closed.local_addr().unwrap());
    drop(closed);
    let mut transports = in_process_transports();
    transports.remove("reviews");
    let config = GatewayConfig {
        url_overrides: [("reviews".to_string(), url)].into(),
        ..GatewayConfig::default()
    };
    let gateway = Gateway::new(&fixture("supergraph.graphql"), config, transports).unwrap();
    let base = start_gateway(&gateway).await;
    let response = reqwest::get(format!("{base}/ready")).await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["subgraphs"]["reviews"], "down");
    assert_eq!(body["subgraphs"]["products"], "up");
    // `/health` still says the process is up.
    assert_eq!(
        reqwest::get(format!("{base}/health"))
            .await
            .unwrap()
            .status(),
        200
    );
}

/// The value of the sample `name{labels}` in a Prometheus text rendering.
fn sample(rendered: &str, series: &str) -> Option<f64> {
    rendered
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_count_operations_subgraph_requests_plan_cache_and_refusals() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this test process");
    let gateway = Gateway::new(
        &fixture("supergraph.graphql"),
        GatewayConfig {
            rate_limiter: RateLimiter::local(RateLimitConfig {
                per_address: Some(Rate::per_minute(6)),
                burst: 1.0,
                ..RateLimitConfig::off()
            }),
            ..GatewayConfig::default()
        },
        in_process_transports(),
    )
    .unwrap();
    let base = start_gateway(&gateway).await;
    let named = json!({
        "query": "query Top { topProducts { upc name } }",
        "operationName": "Top",
    });
    // Registered once, run by hash once (before the rate limit is met).
    let text = "{ topProducts { name } }";
    let persisted = json!({"persistedQuery": {
        "version": 1,
        "sha256Hash": flowfleet_gateway::persisted::sha256_hex(text),
    }});
    common::post(&base, json!({"query": text, "extensions": persisted})).await;
    common::post(&base, json!({"extensions": persisted})).await;
    for body in [
        named.clone(),
        named,
        json!({"query": "{ topProducts { "}),
        json!({"query": "{ topProducts { upc } }"}),
        json!({"query": "{ __typename }"}),
    ] {
        common::post(&base, body).await;
    }
    let rendered = handle.render();
    let expect = |series: &str, value: f64| {
        assert_eq!(
            sample(&rendered, series),
            Some(value),
            "{series} in\n{rendered}"
        );
    };
    expect(
        r#"flowfleet_gateway_operations_total{operation="Top",outcome="ok"}"#,
        2.0,
    );
    expect(
        r#"flowfleet_gateway_operations_total{operation="(refused)",outcome="refused"}"#,
        1.0,
    );
    expect(
        r#"flowfleet_gateway_operations_total{operation="(anonymous)",outcome="ok"}"#,
        3.0,
    );
    expect(r#"flowfleet_gateway_apq_total{result="registered"}"#, 1.0);
    expect(r#"flowfleet_gateway_apq_total{result="hit"}"#, 1.0);
    // Identical operations: planned once, found after (the persisted one twice, `Top`
    // once); the third shape planned too.
    expect(
        r#"flowfleet_gateway_plan_cache_lookups_total{result="miss"}"#,
        3.0,
    );
    expect(
        r#"flowfleet_gateway_plan_cache_lookups_total{result="hit"}"#,
        2.0,
    );
    // Five operations fetched from `products` (none shared: they ran one after another).
    expect(
        r#"flowfleet_gateway_subgraph_requests_total{subgraph="products",outcome="ok"}"#,
        5.0,
    );
    expect(
        r#"flowfleet_gateway_subgraph_request_duration_seconds_count{subgraph="products"}"#,
        5.0,
    );
    // The seventh request met the limit of six a minute.
    expect(
        r#"flowfleet_gateway_rate_limited_total{limit="address"}"#,
        1.0,
    );
    expect("flowfleet_gateway_requests_in_flight", 0.0);
}
