//! `@defer` with incremental delivery (`multipart/mixed`) through the gateway, on the
//! benchmark subgraphs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{in_process_transports, start_gateway};
use flowfleet_gateway::value::Value as ResponseValue;
use flowfleet_gateway::{
    Gateway, GatewayConfig, SubgraphRequest, SubgraphTransport, TransportError,
};
use serde_json::{json, Value};

const MULTIPART: &str = "multipart/mixed;deferSpec=20220824, application/json";

/// Delays one subgraph, so that deferred work is visibly later than the primary part.
struct Slow(Arc<dyn SubgraphTransport>, Duration);

#[async_trait::async_trait]
impl SubgraphTransport for Slow {
    async fn execute(&self, request: SubgraphRequest) -> Result<ResponseValue, TransportError> {
        tokio::time::sleep(self.1).await;
        self.0.execute(request).await
    }
}

async fn gateway(slow_inventory: Option<Duration>) -> String {
    let mut transports = in_process_transports();
    if let Some(delay) = slow_inventory {
        let inventory = transports.remove("inventory").expect("inventory");
        transports.insert("inventory".into(), Arc::new(Slow(inventory, delay)));
    }
    let gateway = Gateway::new(
        flowfleet_bench::SUPERGRAPH,
        GatewayConfig::default(),
        transports,
    )
    .expect("gateway");
    start_gateway(&gateway).await
}

/// Splits a `multipart/mixed; boundary="graphql"` body into its JSON parts.
fn parts(body: &str) -> Vec<Value> {
    assert!(
        body.ends_with("\r\n--graphql--\r\n"),
        "unterminated: {body:?}"
    );
    body.split("\r\n--graphql")
        .filter_map(|part| part.split_once("\r\n\r\n").map(|(_, json)| json))
        .map(|json| serde_json::from_str(json).expect("a JSON part"))
        .collect()
}

async fn send(base: &str, accept: &str, body: Value) -> (String, String) {
    let response = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .header("accept", accept)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let media = response.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .to_string();
    (media, response.text().await.expect("body"))
}

/// Applies incremental payloads to the primary data, as a client does.
fn assemble(parts: &[Value]) -> Value {
    let mut data = parts[0]["data"].clone();
    for part in &parts[1..] {
        for item in part["incremental"].as_array().expect("incremental") {
            let mut target = &mut data;
            for segment in item["path"].as_array().expect("path") {
                target = match segment {
                    Value::String(k) => &mut target[k.as_str()],
                    Value::Number(n) => &mut target[n.as_u64().expect("index") as usize],
                    _ => panic!("bad path segment"),
                };
            }
            for (k, v) in item["data"].as_object().expect("object") {
                target[k.as_str()] = v.clone();
            }
        }
    }
    data
}

#[tokio::test]
async fn deferred_fragments_arrive_in_later_parts_and_assemble_to_the_full_result() {
    let base = gateway(None).await;
    let query = "query($first: Int) { topProducts(first: $first) { upc \
                 ... @defer(label: \"stock\") { inStock shippingEstimate } \
                 ...Reviewed @defer } } \
                 fragment Reviewed on Product { reviews { body author { username } } }";
    let body = json!({"query": query, "variables": {"first": 2}});
    let (media, text) = send(&base, MULTIPART, body.clone()).await;
    assert!(media.starts_with("multipart/mixed"), "{media}");
    let parts = parts(&text);
    assert_eq!(parts.len(), 2, "{text}");
    assert_eq!(
        parts[0],
        json!({"data": {"topProducts": [{"upc": "1"}, {"upc": "2"}]}, "hasNext": true})
    );
    assert_eq!(parts[1]["hasNext"], false);
    let items = parts[1]["incremental"].as_array().expect("items");
    assert_eq!(items.len(), 4, "two fragments on two products: {text}");
    let stock: Vec<&Value> = items.iter().filter(|i| i["label"] == "stock").collect();
    assert_eq!(stock.len(), 2);
    assert_eq!(stock[0]["path"], json!(["topProducts", 0]));
    assert_eq!(stock[1]["path"], json!(["topProducts", 1]));
    assert_eq!(
        stock[0]["data"].as_object().map(|o| o.len()),
        Some(2),
        "only the fragment's fields: {}",
        stock[0]
    );

    // Without multipart in Accept, the same operation is answered whole.
    let (media, text) = send(&base, "application/json", body).await;
    assert!(media.starts_with("application/json"), "{media}");
    let whole: Value = serde_json::from_str(&text).expect("json");
    assert!(whole.get("errors").is_none(), "{whole}");
    assert_eq!(assemble(&parts), whole["data"]);
}

#[tokio::test]
async fn nested_defers_and_defer_if_false() {
    let base = gateway(None).await;
    let query = "query($d: Boolean!) { me { id ... @defer(label: \"outer\") { username \
                 reviews { id ... @defer(label: \"inner\") { body } } } \
                 ... @defer(if: $d, label: \"maybe\") { name } } }";
    let (_, text) = send(
        &base,
        MULTIPART,
        json!({"query": query, "variables": {"d": true}}),
    )
    .await;
    let parts = parts(&text);
    assert_eq!(parts[0]["data"], json!({"me": {"id": "1"}}));
    let items = parts[1]["incremental"].as_array().expect("items");
    let outer = items.iter().find(|i| i["label"] == "outer").expect("outer");
    // The outer payload leaves out what the inner fragment defers.
    assert_eq!(
        outer["data"]["reviews"][0].as_object().map(|o| o.len()),
        Some(1)
    );
    let inner: Vec<&Value> = items.iter().filter(|i| i["label"] == "inner").collect();
    assert!(!inner.is_empty());
    assert_eq!(inner[0]["path"], json!(["me", "reviews", 0]));
    assert!(items.iter().any(|i| i["label"] == "maybe"));

    // `if: false` for the only other fragment: `maybe` is not deferred, `outer` still is.
    let (_, text) = send(
        &base,
        MULTIPART,
        json!({"query": query, "variables": {"d": false}}),
    )
    .await;
    let parts = self::parts(&text);
    assert_eq!(parts[0]["data"]["me"]["name"], "Ada Lovelace");
    assert!(!parts[1]["incremental"]
        .as_array()
        .expect("items")
        .iter()
        .any(|i| i["label"] == "maybe"));

    // Nothing deferred at all: a single JSON response even though multipart is accepted.
    let (media, text) = send(
        &base,
        MULTIPART,
        json!({"query": "{ me { ... @defer(if: false) { name } } }"}),
    )
    .await;
    assert!(media.starts_with("application/json"), "{media}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json"),
        json!({"data": {"me": {"name": "Ada Lovelace"}}})
    );
}

#[tokio::test]
async fn the_primary_part_is_sent_before_deferred_work_finishes() {
    let base = gateway(Some(Duration::from_millis(500))).await;
    let mut response = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .header("accept", MULTIPART)
        .json(&json!({"query": "{ topProducts(first: 1) { name ... @defer { inStock } } }"}))
        .send()
        .await
        .expect("request");
    let first = response
        .chunk()
        .await
        .expect("chunk")
        .expect("a first chunk");
    let first = String::from_utf8_lossy(&first).to_string();
    assert!(first.contains("\"hasNext\":true"), "{first}");
    assert!(
        !first.contains("inStock"),
        "deferred data came with the primary part: {first}"
    );
    let mut rest = String::new();
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(rest.contains("\"inStock\""), "{rest}");
    assert!(rest.contains("\"hasNext\":false"), "{rest}");
}

#[tokio::test]
async fn defer_is_declared_and_checked_like_any_directive() {
    let base = gateway(None).await;
    let (_, text) = send(
        &base,
        "application/json",
        json!({"query": "{ __schema { directives { name locations } } }"}),
    )
    .await;
    let body: Value = serde_json::from_str(&text).expect("json");
    let defer = body["data"]["__schema"]["directives"]
        .as_array()
        .expect("directives")
        .iter()
        .find(|d| d["name"] == "defer")
        .cloned()
        .expect("@defer is listed");
    assert_eq!(
        defer["locations"],
        json!(["FRAGMENT_SPREAD", "INLINE_FRAGMENT"])
    );

    for bad in [
        "{ me @defer { id } }",
        "{ me { ... @defer(if: \"yes\") { id } } }",
    ] {
        let (_, text) = send(&base, MULTIPART, json!({"query": bad})).await;
        let body: Value = serde_json::from_str(&text).expect("a JSON error, not multipart");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
            "{bad}: {body}"
        );
    }
}

/// Counts the requests each subgraph receives.
struct Counting(
    Arc<dyn SubgraphTransport>,
    Arc<std::sync::atomic::AtomicUsize>,
);

#[async_trait::async_trait]
impl SubgraphTransport for Counting {
    async fn execute(&self, request: SubgraphRequest) -> Result<ResponseValue, TransportError> {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.0.execute(request).await
    }
}

#[tokio::test]
async fn a_deferred_operation_fetches_from_each_subgraph_once() {
    let counts: std::collections::HashMap<String, Arc<std::sync::atomic::AtomicUsize>> =
        common::SUBGRAPHS
            .iter()
            .map(|name| (name.to_string(), Arc::default()))
            .collect();
    let transports = in_process_transports()
        .into_iter()
        .map(|(name, transport)| {
            let counting: Arc<dyn SubgraphTransport> =
                Arc::new(Counting(transport, counts[&name].clone()));
            (name, counting)
        })
        .collect();
    let config = GatewayConfig {
        // Each request's own fetches, never shared with another's.
        dedupe_subgraph_requests: false,
        ..GatewayConfig::default()
    };
    let gateway = Gateway::new(flowfleet_bench::SUPERGRAPH, config, transports).expect("gateway");
    let base = start_gateway(&gateway).await;
    let taken = || -> Vec<(String, usize)> {
        let mut all: Vec<(String, usize)> = counts
            .iter()
            .map(|(name, n)| (name.clone(), n.swap(0, std::sync::atomic::Ordering::SeqCst)))
            .collect();
        all.sort();
        all
    };
    let deferred = "{ topProducts(first: 3) { upc name \
                    ... @defer { inStock shippingEstimate } \
                    ... @defer { reviews { body author { username name } } } } }";
    let plain = deferred.replace("... @defer", "...");
    let (_, text) = send(&base, "application/json", json!({"query": plain})).await;
    let whole: Value = serde_json::from_str(&text).expect("json");
    let undeferred = taken();
    let (_, text) = send(&base, MULTIPART, json!({"query": deferred})).await;
    let parts = parts(&text);
    assert_eq!(parts.len(), 2, "{text}");
    assert_eq!(
        taken(),
        undeferred,
        "the deferred operation makes the same subgraph requests as without @defer"
    );
    assert!(undeferred.iter().all(|(_, n)| *n <= 1), "{undeferred:?}");
    assert_eq!(assemble(&parts), whole["data"]);
}
