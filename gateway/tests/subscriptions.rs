//! Subscriptions end to end: the benchmark's `reviewAdded` (reviews subgraph) with its
//! author and product resolved from accounts, products and inventory on every event,
//! through each client protocol (WebSocket `graphql-transport-ws`, SSE, multipart), with
//! the subgraphs over HTTP (SSE upstream) and in process.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use flowfleet_bench::data;
use flowfleet_gateway::{
    compose, Gateway, GatewayConfig, SubgraphSource, SubgraphTransport, SubscriptionConfig,
    SubscriptionLimits,
};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const SELECTION: &str = "id body emittedAt author { id username name } \
                         product { upc name price inStock }";

fn subscription(every_ms: u64, count: Option<u32>) -> String {
    let count = count.map(|c| format!(", count: {c}")).unwrap_or_default();
    format!("subscription {{ reviewAdded(everyMs: {every_ms}{count}) {{ {SELECTION} }} }}")
}

/// What the `n`-th event must say, computed from the benchmark's data.
fn expected_review(n: usize) -> Value {
    let row = &data::REVIEWS[n % data::REVIEWS.len()];
    let user = data::user(row.author).expect("author");
    let product = data::product(row.product).expect("product");
    json!({
        "id": row.id, "body": row.body,
        "author": {"id": user.id, "username": user.username, "name": user.name},
        "product": {"upc": product.upc, "name": product.name, "price": product.price,
                    "inStock": data::in_stock(product.upc)},
    })
}

/// Checks one event's response against the `n`-th review (its stamp aside).
fn assert_review(response: &Value, n: usize) {
    assert!(response.get("errors").is_none(), "{response}");
    let mut review = response["data"]["reviewAdded"].clone();
    let stamp = review
        .as_object_mut()
        .and_then(|r| r.remove("emittedAt"))
        .expect("emittedAt");
    assert!(stamp.as_f64().is_some_and(|us| us > 1.6e15), "{stamp}");
    assert_eq!(review, expected_review(n), "event {n}");
}

/// The supergraph of the benchmark subgraphs as they are now (with `Subscription`).
async fn supergraph(urls: &HashMap<String, String>) -> String {
    let mut sources = Vec::new();
    for name in common::SUBGRAPHS {
        let url = &urls[name];
        sources.push(SubgraphSource {
            name: name.to_string(),
            url: url.clone(),
            sdl: common::subgraph_sdl(url).await,
        });
    }
    compose(&sources).expect("compose")
}

/// The two runtimes of the gateway: subgraphs over HTTP, or in process.
#[derive(Debug, Clone, Copy)]
enum Runtime {
    Http,
    InProcess,
}

struct Fixture {
    gateway: Gateway,
    base: String,
    /// Subscription streams the reviews subgraph has open (its SSE responses over HTTP,
    /// its streams in process).
    reviews_streams: Option<Arc<std::sync::atomic::AtomicUsize>>,
}

async fn fixture(runtime: Runtime, config: GatewayConfig) -> Fixture {
    let subgraphs = common::Subgraphs::start().await;
    let sdl = supergraph(&subgraphs.urls).await;
    let (gateway, reviews_streams) = match runtime {
        Runtime::Http => {
            let config = GatewayConfig {
                url_overrides: subgraphs.urls.clone(),
                ..config
            };
            (
                Gateway::new(&sdl, config, HashMap::new()).expect("gateway"),
                Some(subgraphs.reviews_streams.clone()),
            )
        }
        Runtime::InProcess => {
            let mut transports = common::in_process_transports();
            let reviews = Arc::new(common::InProcess::new(common::subgraphs::reviews()));
            let streams = reviews.1.clone();
            transports.insert("reviews".into(), reviews as Arc<dyn SubgraphTransport>);
            (
                Gateway::new(&sdl, config, transports).expect("gateway"),
                Some(streams),
            )
        }
    };
    let base = common::start_gateway(&gateway).await;
    Fixture {
        gateway,
        base,
        reviews_streams,
    }
}

/// Sends `query` to be answered over SSE, with `authorization` if given.
async fn open_sse(base: &str, query: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .header("accept", "text/event-stream")
        .json(&json!({ "query": query }));
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.send().await.expect("request")
}

/// Reads an SSE body into `(event, data)` pairs until the stream ends.
async fn sse_events(response: reqwest::Response) -> Vec<(String, String)> {
    let text = tokio::time::timeout(Duration::from_secs(20), response.text())
        .await
        .expect("the stream ends within 20 s")
        .expect("sse body");
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = Some(e.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
                }
            }
            event.map(|e| (e, data.join("\n")))
        })
        .collect()
}

async fn sse_subscription_resolves_every_event_across_subgraphs(runtime: Runtime) {
    let fx = fixture(runtime, GatewayConfig::default()).await;
    let response = open_sse(&fx.base, &subscription(10, Some(3)), None).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = sse_events(response).await;
    assert_eq!(events.len(), 4, "{events:?}");
    for (n, (event, data)) in events[..3].iter().enumerate() {
        assert_eq!(event, "next");
        assert_review(&serde_json::from_str(data).expect("json"), n);
    }
    assert_eq!(events[3].0, "complete");
    settle(&fx).await;
}

/// Once every client left, no upstream stream is left open, on either side, within 2 s:
/// less than the 5 s between events of the tests' slow subscriptions, so only leaving can
/// have closed them (not the upstream noticing at its next event that nobody listens).
async fn settle(fx: &Fixture) {
    upstreams(fx, 0, Duration::from_secs(2)).await;
}

/// Waits until the gateway has `n` upstreams open and the reviews subgraph as many streams.
async fn opened(fx: &Fixture, n: usize) {
    upstreams(fx, n, Duration::from_secs(5)).await;
}

/// Waits up to `within` until the gateway has `n` upstreams open and the reviews subgraph
/// (where it counts its streams) as many.
async fn upstreams(fx: &Fixture, n: usize, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let subgraph_open = fx
            .reviews_streams
            .as_ref()
            .map_or(n, |open| open.load(Ordering::SeqCst));
        if fx.gateway.open_upstream_subscriptions() == n && subgraph_open == n {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "expected {n} upstreams open: gateway {}, subgraph {:?}",
        fx.gateway.open_upstream_subscriptions(),
        fx.reviews_streams
            .as_ref()
            .map(|n| n.load(Ordering::SeqCst))
    );
}

#[tokio::test]
async fn sse_over_http_subgraphs() {
    sse_subscription_resolves_every_event_across_subgraphs(Runtime::Http).await;
}

#[tokio::test]
async fn sse_in_process() {
    sse_subscription_resolves_every_event_across_subgraphs(Runtime::InProcess).await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(base: &str) -> Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = format!("{}/graphql", base.replace("http://", "ws://"))
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket");
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "graphql-transport-ws"
    );
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("send");
}

/// The next protocol message (pings answered and skipped), or the close frame's code.
async fn receive(socket: &mut Socket) -> Result<Value, u16> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s");
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).expect("json message");
                if value["type"] == "ping" {
                    send(socket, json!({"type": "pong"})).await;
                    continue;
                }
                return Ok(value);
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(frame.map_or(1005, |f| u16::from(f.code)))
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(1006),
        }
    }
}

/// Starts operation `id` on the socket.
async fn subscribe_on(socket: &mut Socket, id: &str, query: &str) {
    send(
        socket,
        json!({"id": id, "type": "subscribe", "payload": {"query": query}}),
    )
    .await;
}

async fn init(socket: &mut Socket, payload: Value) {
    send(
        socket,
        json!({"type": "connection_init", "payload": payload}),
    )
    .await;
    assert_eq!(
        receive(socket).await.expect("ack"),
        json!({"type": "connection_ack"})
    );
}

async fn websocket_runs_subscriptions_queries_and_completes(runtime: Runtime) {
    let fx = fixture(runtime, GatewayConfig::default()).await;
    let mut socket = connect(&fx.base).await;
    init(&mut socket, json!({})).await;

    // A query over the socket: one `next`, then `complete`.
    subscribe_on(&mut socket, "q", "{ topProducts(first: 1) { upc } }").await;
    assert_eq!(
        receive(&mut socket).await.expect("next"),
        json!({"id": "q", "type": "next", "payload": {"data": {"topProducts": [{"upc": "1"}]}}})
    );
    assert_eq!(
        receive(&mut socket).await.expect("complete"),
        json!({"id": "q", "type": "complete"})
    );

    // An invalid operation: `error` with the validation errors.
    subscribe_on(&mut socket, "bad", "subscription { nope }").await;
    let error = receive(&mut socket).await.expect("error");
    assert_eq!(error["type"], "error");
    assert_eq!(error["id"], "bad");
    assert_eq!(
        error["payload"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );

    // A subscription: events resolved across subgraphs, then `complete` at its end.
    subscribe_on(&mut socket, "s", &subscription(10, Some(2))).await;
    for n in 0..2 {
        let next = receive(&mut socket).await.expect("next");
        assert_eq!((&next["type"], &next["id"]), (&json!("next"), &json!("s")));
        assert_review(&next["payload"], n);
    }
    assert_eq!(
        receive(&mut socket).await.expect("complete"),
        json!({"id": "s", "type": "complete"})
    );

    // A slow endless one, completed by the client before its first event: its upstream
    // goes away at once (not at the next event, 5 s away).
    subscribe_on(&mut socket, "e", &subscription(5_000, None)).await;
    opened(&fx, 1).await;
    send(&mut socket, json!({"id": "e", "type": "complete"})).await;
    settle(&fx).await;

    // Ping gets pong.
    send(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(
        receive(&mut socket).await.expect("pong"),
        json!({"type": "pong"})
    );
}

#[tokio::test]
async fn websocket_over_http_subgraphs() {
    websocket_runs_subscriptions_queries_and_completes(Runtime::Http).await;
}

#[tokio::test]
async fn websocket_in_process() {
    websocket_runs_subscriptions_queries_and_completes(Runtime::InProcess).await;
}

#[tokio::test]
async fn websocket_protocol_violations_close_with_the_protocols_codes() {
    let fx = fixture(Runtime::InProcess, GatewayConfig::default()).await;
    let subscribe =
        json!({"id": "1", "type": "subscribe", "payload": {"query": subscription(1000, None)}});

    let mut socket = connect(&fx.base).await;
    send(&mut socket, subscribe.clone()).await;
    assert_eq!(
        receive(&mut socket).await,
        Err(4401),
        "subscribe before init"
    );

    let mut socket = connect(&fx.base).await;
    init(&mut socket, json!({})).await;
    send(&mut socket, json!({"type": "connection_init"})).await;
    assert_eq!(receive(&mut socket).await, Err(4429), "second init");

    let mut socket = connect(&fx.base).await;
    init(&mut socket, json!({})).await;
    send(&mut socket, subscribe.clone()).await;
    send(&mut socket, subscribe.clone()).await;
    assert_eq!(receive(&mut socket).await, Err(4409), "duplicate id");

    let mut socket = connect(&fx.base).await;
    socket
        .send(Message::Text("not json".into()))
        .await
        .expect("send");
    assert_eq!(receive(&mut socket).await, Err(4400), "malformed");
    settle(&fx).await;
}

#[tokio::test]
async fn websocket_without_init_times_out() {
    let config = GatewayConfig {
        subscriptions: SubscriptionConfig {
            init_timeout: Duration::from_millis(200),
            ..SubscriptionConfig::default()
        },
        ..GatewayConfig::default()
    };
    let fx = fixture(Runtime::InProcess, config).await;
    let mut socket = connect(&fx.base).await;
    assert_eq!(receive(&mut socket).await, Err(4408));
}

#[tokio::test]
async fn multipart_subscription_in_apollos_format() {
    let fx = fixture(Runtime::InProcess, GatewayConfig::default()).await;
    let response = reqwest::Client::new()
        .post(format!("{}/graphql", fx.base))
        .header(
            "accept",
            "multipart/mixed;boundary=\"graphql\";subscriptionSpec=\"1.0\", application/json",
        )
        .json(&json!({"query": subscription(10, Some(2))}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "multipart/mixed; boundary=\"graphql\"; subscriptionSpec=\"1.0\""
    );
    let body = tokio::time::timeout(Duration::from_secs(20), response.text())
        .await
        .expect("the stream ends within 20 s")
        .expect("body");
    assert!(body.ends_with("\r\n--graphql--\r\n"), "{body}");
    let parts: Vec<Value> = body
        .split("\r\n--graphql")
        .filter_map(|part| part.split("\r\n\r\n").nth(1))
        .map(|json| serde_json::from_str(json).expect("part json"))
        .filter(|part: &Value| part != &json!({}))
        .collect();
    assert_eq!(parts.len(), 2, "{body}");
    for (n, part) in parts.iter().enumerate() {
        assert_review(&part["payload"], n);
    }
}

#[tokio::test]
async fn a_subscription_over_plain_json_says_which_transports_carry_it() {
    let fx = fixture(Runtime::InProcess, GatewayConfig::default()).await;
    let (status, body) = common::post(&fx.base, json!({"query": subscription(10, Some(1))})).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "OPERATION_NOT_SUPPORTED"
    );
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("graphql-transport-ws"));
}

#[tokio::test]
async fn identical_subscriptions_share_one_upstream_until_the_last_leaves() {
    for runtime in [Runtime::Http, Runtime::InProcess] {
        let fx = fixture(runtime, GatewayConfig::default()).await;
        let mut sockets = Vec::new();
        // Slow events (5 s apart): nothing but leaving can close the upstream in this test.
        for _ in 0..3 {
            let mut socket = connect(&fx.base).await;
            init(&mut socket, json!({})).await;
            subscribe_on(&mut socket, "1", &subscription(5_000, None)).await;
            sockets.push(socket);
        }
        // Three clients, one upstream on each side.
        opened(&fx, 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        opened(&fx, 1).await;
        // Two leave by `complete`: the third still holds the upstream.
        for socket in &mut sockets[..2] {
            send(socket, json!({"id": "1", "type": "complete"})).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        opened(&fx, 1).await;
        // The last leaves by dropping its connection: the upstream closes on both sides.
        drop(sockets);
        settle(&fx).await;
    }
}

#[tokio::test]
async fn a_gateway_without_deduplication_opens_one_upstream_per_subscription() {
    let config = GatewayConfig {
        dedupe_subgraph_requests: false,
        ..GatewayConfig::default()
    };
    let fx = fixture(Runtime::InProcess, config).await;
    let mut socket = connect(&fx.base).await;
    init(&mut socket, json!({})).await;
    for id in ["a", "b"] {
        subscribe_on(&mut socket, id, &subscription(5_000, None)).await;
    }
    opened(&fx, 2).await;
    drop(socket);
    settle(&fx).await;
}

#[tokio::test]
async fn limits_refuse_with_clear_errors() {
    let config = GatewayConfig {
        subscriptions: SubscriptionConfig {
            limits: SubscriptionLimits {
                max_connections: 2,
                max_per_connection: 1,
                max_per_credential: 100,
            },
            ..SubscriptionConfig::default()
        },
        ..GatewayConfig::default()
    };
    let fx = fixture(Runtime::InProcess, config).await;
    let mut socket = connect(&fx.base).await;
    init(&mut socket, json!({})).await;
    subscribe_on(&mut socket, "1", &subscription(50, None)).await;
    subscribe_on(&mut socket, "2", &subscription(50, None)).await;
    loop {
        let message = receive(&mut socket).await.expect("message");
        if message["id"] == "2" {
            assert_eq!(message["type"], "error", "{message}");
            assert_eq!(
                message["payload"][0]["extensions"]["code"],
                "SUBSCRIPTION_LIMIT_REACHED"
            );
            break;
        }
    }
    // A second streaming connection is the last one allowed; a third is refused.
    let _second = connect(&fx.base).await;
    let refused = open_sse(&fx.base, &subscription(50, None), None).await;
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "SUBSCRIPTION_LIMIT_REACHED"
    );
}

/// A credential check for tests: `Bearer good` never expires, `Bearer short` expires
/// 400 ms after the check is built, anything else is refused.
fn credentials() -> flowfleet_gateway::CredentialCheck {
    let expires = std::time::SystemTime::now() + Duration::from_millis(400);
    Arc::new(move |headers: http::HeaderMap| {
        let credential = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Box::pin(async move {
            match credential.as_deref() {
                None | Some("Bearer good") => Ok(None),
                Some("Bearer short") if std::time::SystemTime::now() < expires => Ok(Some(expires)),
                Some("Bearer short") => Err("the access token expired; sign in again".into()),
                Some(_) => Err("invalid access token".into()),
            }
        })
    })
}

fn checked_config() -> GatewayConfig {
    GatewayConfig {
        subscriptions: SubscriptionConfig {
            credentials: Some(credentials()),
            ..SubscriptionConfig::default()
        },
        ..GatewayConfig::default()
    }
}

#[tokio::test]
async fn a_credential_that_does_not_verify_is_refused_at_connection() {
    let fx = fixture(Runtime::InProcess, checked_config()).await;
    let mut socket = connect(&fx.base).await;
    send(
        &mut socket,
        json!({"type": "connection_init", "payload": {"Authorization": "Bearer forged"}}),
    )
    .await;
    assert_eq!(receive(&mut socket).await, Err(4403));

    let refused = open_sse(&fx.base, &subscription(50, None), Some("Bearer forged")).await;
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_subscription_ends_with_a_clear_error_when_its_credential_expires() {
    let fx = fixture(Runtime::InProcess, checked_config()).await;
    // Over a WebSocket (credential in `connection_init`) and over SSE (in the header).
    let mut socket = connect(&fx.base).await;
    init(&mut socket, json!({"Authorization": "Bearer short"})).await;
    subscribe_on(&mut socket, "1", &subscription(50, None)).await;
    let sse = open_sse(&fx.base, &subscription(50, None), Some("Bearer short")).await;
    let mut events = 0;
    let last = loop {
        let message = receive(&mut socket).await.expect("message");
        assert_eq!(message["id"], "1");
        if message["type"] == "complete" {
            break message;
        }
        let payload = &message["payload"];
        if payload.get("data").is_some() {
            events += 1;
            continue;
        }
        assert_eq!(
            payload["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{payload}"
        );
        assert!(payload["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expired"));
    };
    assert_eq!(last["type"], "complete");
    assert!(events > 0, "events flowed until the expiry");
    let sse = sse_events(sse).await;
    let (kind, data) = &sse[sse.len() - 2];
    assert_eq!(kind, "next");
    let last: Value = serde_json::from_str(data).expect("json");
    assert_eq!(last["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    assert_eq!(sse.last().expect("complete").0, "complete");
    settle(&fx).await;
}

#[tokio::test]
async fn a_reload_keeps_subscriptions_whose_fields_remain_and_ends_the_others() {
    let fx = fixture(Runtime::Http, GatewayConfig::default()).await;
    let current = fx.gateway.supergraph();
    let mut socket = connect(&fx.base).await;
    init(&mut socket, json!({})).await;
    subscribe_on(&mut socket, "1", &subscription(30, None)).await;
    let first = receive(&mut socket).await.expect("next");
    assert_review(&first["payload"], 0);

    // A new supergraph that still has `reviewAdded`: the subscription goes on, resolving
    // its events on the new plan, over the same upstream.
    assert!(fx
        .gateway
        .reload(&format!("{current}\n# reloaded\n"))
        .expect("reload"));
    for n in 1..4 {
        let next = receive(&mut socket).await.expect("next");
        assert_eq!(next["type"], "next", "{next}");
        assert_review(&next["payload"], n);
    }
    assert_eq!(fx.gateway.open_upstream_subscriptions(), 1);

    // One without subscriptions (the standard benchmark supergraph): it ends, saying why.
    let standard = flowfleet_bench::SUPERGRAPH.to_string();
    assert!(fx.gateway.reload(&standard).expect("reload"));
    let ended = loop {
        let message = receive(&mut socket).await.expect("message");
        if message["payload"].get("errors").is_some() {
            break message;
        }
    };
    assert_eq!(
        ended["payload"]["errors"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    assert!(ended["payload"]["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("schema changed"));
    assert_eq!(
        receive(&mut socket).await.expect("complete"),
        json!({"id": "1", "type": "complete"})
    );
    settle(&fx).await;
}

#[tokio::test]
async fn shutting_down_completes_every_subscription() {
    let fx = fixture(Runtime::InProcess, GatewayConfig::default()).await;
    let mut socket = connect(&fx.base).await;
    init(&mut socket, json!({})).await;
    subscribe_on(&mut socket, "1", &subscription(5_000, None)).await;
    let sse = open_sse(&fx.base, &subscription(5_000, None), None).await;
    opened(&fx, 1).await;
    fx.gateway.close_subscriptions();
    assert_eq!(
        receive(&mut socket).await.expect("complete"),
        json!({"id": "1", "type": "complete"})
    );
    assert_eq!(receive(&mut socket).await, Err(1001), "going away");
    assert_eq!(
        sse_events(sse).await,
        vec![("complete".to_string(), String::new())]
    );
    settle(&fx).await;
    // New ones are refused while shutting down.
    let refused = open_sse(&fx.base, &subscription(50, None), None).await;
    assert_eq!(refused.status(), 503);
}

/// `bench/supergraph-subscriptions.graphql` (what `scripts/bench subscriptions` serves) is
/// the composition of the benchmark subgraphs as they are. `FLOWFLEET_BLESS=1` rewrites it.
#[tokio::test]
async fn the_subscription_benchmark_supergraph_is_the_subgraphs_composition() {
    let subgraphs = common::Subgraphs::start().await;
    let mut sources = Vec::new();
    for name in common::SUBGRAPHS {
        sources.push(SubgraphSource {
            name: name.to_string(),
            url: format!("http://0.0.0.0:4200/{name}"),
            sdl: common::subgraph_sdl(&subgraphs.urls[name]).await,
        });
    }
    let composed = compose(&sources).expect("compose");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../bench/supergraph-subscriptions.graphql"
    );
    if std::env::var("FLOWFLEET_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(path, &composed).expect("write");
    }
    assert_eq!(
        flowfleet_bench::SUBSCRIPTION_SUPERGRAPH,
        composed,
        "run with FLOWFLEET_BLESS=1 to rewrite {path}"
    );
}
