//! GraphQL over HTTP: media types, status codes, batching, GraphiQL, and the public
//! `graphql-http` conformance audits, against a gateway served on an ephemeral port.

mod common;

use common::{fixture, in_process_transports, start_configured, start_gateway};
use flowfleet_gateway::{Gateway, GatewayConfig};
use serde_json::{json, Value};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

async fn gateway_with(config: GatewayConfig) -> String {
    start_configured(&fixture("supergraph.graphql"), config).await
}

/// POSTs `body` (already encoded) with the given headers; returns status, content type, body.
async fn send(
    base: &str,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: &str,
) -> (u16, String, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .body(body.to_string());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.expect("gateway request");
    let status = response.status().as_u16();
    let media = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, media, body)
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn request_errors_are_400_for_graphql_response_json_and_200_for_json() {
    let base = gateway_with(GatewayConfig::default()).await;
    let cases = [
        (json!({"query": "{ users { id "}), "GRAPHQL_PARSE_FAILED"),
        (
            json!({"query": "{ users { id nope } }"}),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (json!({"query": "{ nothing }"}), "GRAPHQL_VALIDATION_FAILED"),
        (
            json!({"query": "query A { me { id } }", "operationName": "B"}),
            "BAD_USER_INPUT",
        ),
        (
            json!({"query": "query($id: ID!) { user(id: $id) { id } }"}),
            "BAD_USER_INPUT",
        ),
    ];
    for (request, expected_code) in cases {
        let body = request.to_string();
        let (status, media, response) = send(
            &base,
            Some("application/json"),
            Some(GRAPHQL_RESPONSE_JSON),
            &body,
        )
        .await;
        assert_eq!(status, 400, "{request} -> {response}");
        assert!(media.starts_with(GRAPHQL_RESPONSE_JSON), "{media}");
        assert_eq!(code(&response), expected_code, "{response}");
        assert!(response.get("data").is_none(), "{response}");

        let (status, media, response) = send(
            &base,
            Some("application/json"),
            Some("application/json"),
            &body,
        )
        .await;
        assert_eq!(status, 200, "{request} -> {response}");
        assert!(media.starts_with("application/json"), "{media}");
        assert_eq!(code(&response), expected_code, "{response}");
    }
    // The validation message names what is wrong.
    let (_, _, response) = send(
        &base,
        Some("application/json"),
        None,
        r#"{"query": "{ users { id nope } }"}"#,
    )
    .await;
    assert!(response["errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .contains("nope"));
}

#[tokio::test]
async fn malformed_requests_get_4xx_whatever_the_media_type() {
    let base = gateway_with(GatewayConfig::default()).await;
    for accept in ["application/json", GRAPHQL_RESPONSE_JSON] {
        let (status, _, body) = send(&base, Some("application/json"), Some(accept), "{").await;
        assert_eq!((status, code(&body)), (400, "BAD_REQUEST"), "{body}");
        let (status, _, body) = send(&base, Some("application/json"), Some(accept), "").await;
        assert_eq!((status, code(&body)), (400, "BAD_REQUEST"), "{body}");
        let (status, _, body) = send(
            &base,
            Some("application/json"),
            Some(accept),
            r#"{"query": 7}"#,
        )
        .await;
        assert_eq!(status, 400);
        assert!(body["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("`query`"));
        let (status, _, body) = send(
            &base,
            Some("application/json"),
            Some(accept),
            r#"{"query": "{ me { id } }", "variables": [1]}"#,
        )
        .await;
        assert_eq!(status, 400);
        assert!(body["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("`variables`"));
        let (status, _, body) =
            send(&base, None, Some(accept), r#"{"query": "{ me { id } }"}"#).await;
        assert_eq!(
            (status, code(&body)),
            (415, "UNSUPPORTED_MEDIA_TYPE"),
            "{body}"
        );
        let (status, _, _) = send(
            &base,
            Some("application/json; charset=latin1"),
            Some(accept),
            r#"{"query": "{ me { id } }"}"#,
        )
        .await;
        assert_eq!(status, 415);
    }
    let (status, media, body) = send(
        &base,
        Some("application/json"),
        Some("image/png"),
        r#"{"query": "{ me { id } }"}"#,
    )
    .await;
    assert_eq!((status, code(&body)), (406, "NOT_ACCEPTABLE"), "{body}");
    assert!(media.starts_with("application/json"));
}

#[tokio::test]
async fn get_runs_queries_with_url_encoded_variables_and_health_answers() {
    let base = gateway_with(GatewayConfig::default()).await;
    let client = reqwest::Client::new();
    let health: Value = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health, json!({"status": "ok"}));

    let response = client
        .get(format!("{base}/graphql"))
        .query(&[
            ("query", "query($id: ID!) { user(id: $id) { name } }"),
            ("variables", r#"{"id":"3"}"#),
        ])
        .header("accept", GRAPHQL_RESPONSE_JSON)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 200);
    let media = response.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .to_string();
    assert!(media.starts_with(GRAPHQL_RESPONSE_JSON), "{media}");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body, json!({"data": {"user": {"name": "Grace Hopper"}}}));
}

#[tokio::test]
async fn batched_requests_are_answered_in_order_each_with_its_own_errors() {
    let base = gateway_with(GatewayConfig::default()).await;
    let batch = json!([
        {"query": "{ me { username } }"},
        {"query": "{ me { nope } }"},
        {"query": "query($id: ID!) { user(id: $id) { name } }", "variables": {"id": "3"}},
        {"query": 1}
    ]);
    let (status, _, body) = send(&base, Some("application/json"), None, &batch.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let items = body.as_array().expect("an array of responses");
    assert_eq!(items.len(), 4);
    assert_eq!(items[0], json!({"data": {"me": {"username": "ada"}}}));
    assert_eq!(code(&items[1]), "GRAPHQL_VALIDATION_FAILED");
    assert_eq!(
        items[2],
        json!({"data": {"user": {"name": "Grace Hopper"}}})
    );
    assert_eq!(code(&items[3]), "BAD_REQUEST");

    let (status, _, body) = send(&base, Some("application/json"), None, "[]").await;
    assert_eq!((status, code(&body)), (400, "BAD_REQUEST"));

    let small = gateway_with(GatewayConfig {
        max_batch_size: 2,
        ..GatewayConfig::default()
    })
    .await;
    let (status, _, body) = send(&small, Some("application/json"), None, &batch.to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .contains("at most 2"));
}

/// `GET /graphql` as a browser sends it: status, content type, body.
async fn browse(base: &str) -> (u16, String, String) {
    let response = reqwest::Client::new()
        .get(format!("{base}/graphql"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .expect("get");
    let status = response.status().as_u16();
    let media = response.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .to_string();
    (status, media, response.text().await.expect("body"))
}

#[tokio::test]
async fn browsers_get_graphiql_unless_disabled() {
    let base = gateway_with(GatewayConfig::default()).await;
    let (status, media, page) = browse(&base).await;
    assert_eq!(status, 200);
    assert!(media.starts_with("text/html"), "{media}");
    assert!(page.contains("GraphiQL.createFetcher"), "{page}");

    let base = gateway_with(GatewayConfig {
        graphiql: false,
        ..GatewayConfig::default()
    })
    .await;
    // No page, and no query either: a JSON error, never HTML.
    let (status, media, _) = browse(&base).await;
    assert_eq!(status, 400);
    assert!(media.starts_with("application/json"), "{media}");
}

#[tokio::test]
async fn graphql_http_conformance_audits_all_pass() {
    let base = gateway_with(GatewayConfig::default()).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apollo/http-audit.mjs");
    assert!(
        script.with_file_name("node_modules/graphql-http").exists(),
        "graphql-http is not installed: run `npm ci --prefix gateway/tests/apollo` first"
    );
    let url = format!("{base}/graphql");
    // The audit must not block this runtime: the gateway is served from it.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .arg(url)
            .output()
            .expect("running node")
    })
    .await
    .expect("join");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert!(results.len() > 50, "only {} audits ran", results.len());
    let failed: Vec<&Value> = results.iter().filter(|r| r["status"] != "ok").collect();
    assert!(failed.is_empty(), "audits not passed: {failed:#?}");
}

/// Answers like `inner`, `delay` later.
struct Delayed(
    std::sync::Arc<dyn flowfleet_gateway::SubgraphTransport>,
    std::time::Duration,
);

#[async_trait::async_trait]
impl flowfleet_gateway::SubgraphTransport for Delayed {
    async fn execute(
        &self,
        request: flowfleet_gateway::SubgraphRequest,
    ) -> Result<flowfleet_gateway::value::Value, flowfleet_gateway::TransportError> {
        tokio::time::sleep(self.1).await;
        self.0.execute(request).await
    }
}

/// The `name;dur=<ms>` entries of a `Server-Timing` header.
fn timings(header: &str) -> Vec<(String, f64)> {
    header
        .split(',')
        .filter_map(|metric| {
            let (name, params) = metric.trim().split_once(';')?;
            let dur = params.trim().strip_prefix("dur=")?.parse().ok()?;
            Some((name.to_string(), dur))
        })
        .collect()
}

#[tokio::test]
async fn server_timing_reports_own_time_and_the_critical_path_subgraph_wait_when_enabled() {
    let delay = std::time::Duration::from_millis(120);
    let mut transports = in_process_transports();
    for name in ["products", "inventory"] {
        let inner = transports.remove(name).expect("transport");
        transports.insert(name.into(), std::sync::Arc::new(Delayed(inner, delay)));
    }
    let query = json!({"query": "{ topProducts(first: 2) { upc inStock } }"}).to_string();
    let post = |base: String, query: String| async move {
        let started = std::time::Instant::now();
        let response = reqwest::Client::new()
            .post(format!("{base}/graphql"))
            .header("content-type", "application/json")
            .body(query)
            .send()
            .await
            .expect("gateway request");
        let header = response
            .headers()
            .get("server-timing")
            .map(|v| v.to_str().expect("ascii").to_string());
        let body: Value = response.json().await.expect("json");
        (header, body, started.elapsed())
    };

    let quiet = Gateway::new(
        &fixture("supergraph.graphql"),
        GatewayConfig::default(),
        transports.clone(),
    )
    .expect("gateway");
    let (header, body, _) = post(start_gateway(&quiet).await, query.clone()).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(header, None, "off by default");

    let config = GatewayConfig {
        server_timing: true,
        ..GatewayConfig::default()
    };
    let gateway =
        Gateway::new(&fixture("supergraph.graphql"), config, transports).expect("gateway");
    let (header, body, client_total) = post(start_gateway(&gateway).await, query).await;
    assert!(body.get("errors").is_none(), "{body}");
    let header = header.expect("a Server-Timing header");
    let entries = timings(&header);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["gateway", "subgraphs"], "{header}");
    let (own, subgraphs) = (entries[0].1, entries[1].1);
    // products, then inventory for `inStock`: two delayed calls in sequence.
    assert!(
        subgraphs >= 2.0 * delay.as_secs_f64() * 1000.0,
        "the subgraph wait covers both calls of the sequence: {header}"
    );
    assert!(own >= 0.0);
    assert!(
        own + subgraphs <= client_total.as_secs_f64() * 1000.0 + 0.01,
        "the gateway's time fits in what the client waited: {header}, {client_total:?}"
    );
}
