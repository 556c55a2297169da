//! Rate limits through the gateway's HTTP surface: the refusal clients see (429,
//! `Retry-After`, `RATE_LIMITED` naming the limit), batches weighing their operations,
//! per-operation weights, and WebSocket operations counted like requests.

mod common;

use std::time::Duration;

use common::{fixture, start_configured};
use flowfleet_gateway::rate_limit::{Rate, RateLimitConfig, RateLimiter};
use flowfleet_gateway::GatewayConfig;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

async fn limited(config: RateLimitConfig) -> String {
    let config = GatewayConfig {
        rate_limiter: RateLimiter::local(config),
        ..GatewayConfig::default()
    };
    start_configured(&fixture("supergraph.graphql"), config).await
}

/// Three requests a minute from one address, no burst beyond that.
fn three_a_minute() -> RateLimitConfig {
    RateLimitConfig {
        per_address: Some(Rate::per_minute(3)),
        burst: 1.0,
        ..RateLimitConfig::off()
    }
}

async fn post(base: &str, body: Value) -> (u16, Option<String>, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .json(&body)
        .send()
        .await
        .expect("gateway request");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry_after, response.json().await.expect("json"))
}

fn query(name: &str) -> Value {
    json!({
        "query": format!("query {name} {{ topProducts {{ upc }} }}"),
        "operationName": name,
    })
}

#[tokio::test]
async fn the_request_past_the_burst_gets_429_with_retry_after_and_rate_limited() {
    let base = limited(three_a_minute()).await;
    for _ in 0..3 {
        let (status, _, body) = post(&base, query("Q")).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["data"]["topProducts"].is_array(), "{body}");
    }
    let (status, retry_after, body) = post(&base, query("Q")).await;
    assert_eq!(status, 429, "{body}");
    // One token at three a minute: twenty seconds.
    assert_eq!(retry_after.as_deref(), Some("20"));
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "RATE_LIMITED");
    assert_eq!(error["extensions"]["limit"], "address");
    assert_eq!(error["extensions"]["retryAfter"], 20);
    assert!(body.get("data").is_none(), "{body}");
    // GET is limited by the same bucket.
    let response = reqwest::get(format!("{base}/graphql?query=%7B__typename%7D"))
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn a_batch_weighs_the_sum_of_its_operations() {
    let base = limited(three_a_minute()).await;
    let batch = json!([query("A"), query("B"), query("C"), query("D")]);
    let (status, _, body) = post(&base, batch).await;
    assert_eq!(
        status, 429,
        "four operations do not fit three tokens: {body}"
    );
    // The refused batch took nothing: three single operations still go through.
    for _ in 0..3 {
        assert_eq!(post(&base, query("Q")).await.0, 200);
    }
}

#[tokio::test]
async fn a_weighted_operation_takes_its_weight() {
    let mut config = three_a_minute();
    config.operation_weights.insert("Report".into(), 3);
    let base = limited(config).await;
    assert_eq!(post(&base, query("Report")).await.0, 200);
    assert_eq!(post(&base, query("Q")).await.0, 429);
}

#[tokio::test]
async fn unlimited_by_default() {
    let base = limited(RateLimitConfig::off()).await;
    for _ in 0..50 {
        assert_eq!(post(&base, query("Q")).await.0, 200);
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next protocol message that is not a `next` (the query's one result).
async fn next_outcome(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message in time")
            .expect("the socket stays open")
            .unwrap();
        if let Message::Text(text) = message {
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["type"] != "next" {
                return message;
            }
        }
    }
}

#[tokio::test]
async fn each_websocket_operation_counts_as_a_request() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let base = limited(three_a_minute()).await;
    let mut request = format!("{}/graphql", base.replace("http", "ws"))
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    // Opening the connection takes one token of three.
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    send(&mut socket, json!({"type": "connection_init"})).await;
    assert_eq!(next_outcome(&mut socket).await["type"], "connection_ack");
    // Two operations take the other two.
    for id in ["1", "2"] {
        send(
            &mut socket,
            json!({"id": id, "type": "subscribe", "payload": query("Q")}),
        )
        .await;
        let outcome = next_outcome(&mut socket).await;
        assert_eq!(outcome["type"], "complete", "{outcome}");
    }
    // The third is refused, on its own id; the connection stays open.
    send(
        &mut socket,
        json!({"id": "3", "type": "subscribe", "payload": query("Q")}),
    )
    .await;
    let outcome = next_outcome(&mut socket).await;
    assert_eq!(outcome["type"], "error", "{outcome}");
    assert_eq!(outcome["id"], "3");
    assert_eq!(outcome["payload"][0]["extensions"]["code"], "RATE_LIMITED");
    send(&mut socket, json!({"type": "ping"})).await;
    assert_eq!(next_outcome(&mut socket).await["type"], "pong");
}
