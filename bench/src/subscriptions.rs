//! The subscription benchmark: gateways side by side on `reviewAdded`, whose `product` comes
//! from the products subgraph (and `inStock` from inventory) and `author` from accounts, so
//! that every event costs the gateway entity fetches.
//!
//! For each gateway: WebSocket (`graphql-transport-ws`) ramps of N subscriptions multiplexed
//! over at most `max_connections` connections, then SSE and multipart with one subscription
//! per connection. The reviews subgraph emits one event per second to every subscription;
//! each event carries the time it was emitted (`emittedAt`, µs since the epoch, same clock),
//! so the client measures delivery latency end to end. Reported: latency p50/p99, events per
//! second delivered, the share of expected events that arrived, and the gateway's resident
//! memory per subscription (its process tree's RSS with the subscriptions open, minus before,
//! divided by N). A step that fails (a connection refused, a gateway out of file descriptors
//! or gone) is reported as failed, with the reason, and the next step runs on a fresh start.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::process;

/// The subscription every client opens.
pub const SUBSCRIPTION: &str = "subscription { reviewAdded(everyMs: 1000) { id body emittedAt \
     author { id username name } product { upc name price inStock } } }";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    WebSocket,
    Sse,
    Multipart,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::WebSocket => "WebSocket",
            Protocol::Sse => "SSE",
            Protocol::Multipart => "multipart",
        }
    }
}

/// One step of the benchmark: a protocol and a number of subscriptions.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub protocol: Protocol,
    pub subscriptions: usize,
}

pub struct Settings {
    pub steps: Vec<Step>,
    pub max_connections: usize,
    /// How long events are counted once every subscription has had its first.
    pub duration: Duration,
}

/// What one step measured.
pub struct Measured {
    pub gateway: String,
    pub step: Step,
    pub outcome: Result<Figures, String>,
}

pub struct Figures {
    pub connections: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub events_per_sec: f64,
    /// Events received over events expected (one per subscription per second).
    pub delivered: f64,
    pub bytes_per_subscription: f64,
}

/// Counters shared by the clients of one step.
#[derive(Default)]
struct Tally {
    /// 0: warming up (events not counted), 1: measuring, 2: stop.
    phase: AtomicU8,
    /// Subscriptions that have received at least one event.
    started: AtomicU64,
    events: AtomicU64,
    /// Latencies in µs of the events counted.
    latencies: Mutex<Vec<u64>>,
    /// The first failure a client met.
    failure: Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, why: String) {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure.get_or_insert(why);
    }

    /// Takes in one event's response; `first` says whether it is its subscription's first.
    fn event(&self, response: &Value, first: bool) {
        if first {
            self.started.fetch_add(1, Ordering::Relaxed);
        }
        if self.phase.load(Ordering::Relaxed) != 1 {
            return;
        }
        let Some(emitted) = response["data"]["reviewAdded"]["emittedAt"].as_f64() else {
            if let Some(error) = response.get("errors") {
                self.fail(format!("an event with errors: {error}"));
            }
            return;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as f64;
        self.latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((now - emitted).max(0.0) as u64);
        self.events.fetch_add(1, Ordering::Relaxed);
    }
}

fn stopped(tally: &Tally) -> bool {
    tally.phase.load(Ordering::Relaxed) == 2
}

/// The environment variable naming the Hive Router configuration the runner writes next to
/// the supergraph: subscriptions on, the reviews subgraph over WebSocket (Hive's default,
/// multipart HTTP, is not something the benchmark subgraphs speak) with its connections
/// shared between subscriptions, client WebSockets on, and its limit on long-lived clients
/// (128 by default) out of the way, as ours is.
pub const PEER_CONFIG_ENV: &str = "BENCH_ROUTER_CONFIG";

pub const HIVE_ROUTER_CONFIG: &str = "\
websocket:
  enabled: true
subscriptions:
  enabled: true
  websocket:
    subgraphs:
      reviews: {}
traffic_shaping:
  router:
    max_long_lived_clients: 100000
  all:
    websocket:
      reuse_connections: true
";

/// Runs every step against one gateway started by `command`.
pub async fn measure(
    name: &str,
    command: &str,
    supergraph: &std::path::Path,
    settings: &Settings,
) -> Vec<Measured> {
    let mut results = Vec::new();
    for step in &settings.steps {
        eprintln!(
            "==> {name}: {} subscriptions over {}",
            step.subscriptions,
            step.protocol.name()
        );
        let peer_config = supergraph.with_file_name("router.config.yaml");
        let env = [(PEER_CONFIG_ENV, peer_config.as_path())];
        let outcome = match process::Gateway::start_with(name, command, supergraph, &env) {
            Ok(mut gateway) => {
                let outcome = run_step(&mut gateway, *step, settings).await;
                gateway.stop().await;
                outcome
            }
            Err(error) => Err(format!("could not start: {error:#}")),
        };
        match &outcome {
            Ok(f) => eprintln!(
                "    p50 {:.1} ms, p99 {:.1} ms, {:.0} events/s ({:.1}% delivered), {:.1} KiB per subscription",
                f.p50_ms,
                f.p99_ms,
                f.events_per_sec,
                f.delivered * 100.0,
                f.bytes_per_subscription / 1024.0
            ),
            Err(why) => eprintln!("    failed: {why}"),
        }
        results.push(Measured {
            gateway: name.to_string(),
            step: *step,
            outcome,
        });
    }
    results
}

async fn run_step(
    gateway: &mut process::Gateway,
    step: Step,
    settings: &Settings,
) -> Result<Figures, String> {
    let url = gateway.url();
    // Ready once it answers the standard query correctly (it has loaded the supergraph).
    let log = gateway.log.clone();
    crate::load::wait_until_correct(
        &url,
        &flowfleet_bench::expected_response(),
        Duration::from_secs(60),
        &mut || gateway.alive(),
    )
    .await
    .map_err(|e| format!("not ready within 60 s: {e:#} (see {})", log.display()))?;
    let idle_rss = gateway.rss();
    let tally = Arc::new(Tally::default());
    let connections = match step.protocol {
        Protocol::WebSocket => step.subscriptions.min(settings.max_connections).max(1),
        _ => step.subscriptions,
    };
    let mut clients = Vec::new();
    for c in 0..connections {
        // Subscriptions spread evenly over the connections.
        let share =
            step.subscriptions / connections + usize::from(c < step.subscriptions % connections);
        let (url, tally) = (url.clone(), tally.clone());
        clients.push(tokio::spawn(async move {
            let outcome = match step.protocol {
                Protocol::WebSocket => websocket(&url, share, &tally).await,
                Protocol::Sse => sse(&url, &tally).await,
                Protocol::Multipart => multipart(&url, &tally).await,
            };
            if let Err(why) = outcome {
                tally.fail(why);
            }
        }));
        if c % 100 == 99 {
            // Ramp up in waves rather than all at once.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Every subscription has its first event, or the step failed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(why) = tally
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            tally.phase.store(2, Ordering::Relaxed);
            return Err(why);
        }
        if !gateway.alive() {
            tally.phase.store(2, Ordering::Relaxed);
            return Err(format!(
                "the gateway exited (see {})",
                gateway.log.display()
            ));
        }
        if tally.started.load(Ordering::Relaxed) as usize >= step.subscriptions {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            tally.phase.store(2, Ordering::Relaxed);
            return Err(format!(
                "only {} of {} subscriptions had an event within 60 s",
                tally.started.load(Ordering::Relaxed),
                step.subscriptions
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tally.phase.store(1, Ordering::Relaxed);
    let started = tokio::time::Instant::now();
    tokio::time::sleep(settings.duration).await;
    let elapsed = started.elapsed().as_secs_f64();
    let rss = gateway.rss();
    tally.phase.store(2, Ordering::Relaxed);
    for client in clients {
        client.abort();
    }
    let failure = tally
        .failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(why) = failure {
        return Err(why);
    }
    let mut latencies =
        std::mem::take(&mut *tally.latencies.lock().unwrap_or_else(|p| p.into_inner()));
    latencies.sort_unstable();
    let quantile = |q: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[i] as f64 / 1000.0
    };
    let events = tally.events.load(Ordering::Relaxed) as f64;
    Ok(Figures {
        connections,
        p50_ms: quantile(0.50),
        p99_ms: quantile(0.99),
        events_per_sec: events / elapsed,
        delivered: events / (step.subscriptions as f64 * elapsed),
        bytes_per_subscription: rss.saturating_sub(idle_rss) as f64 / step.subscriptions as f64,
    })
}

/// One WebSocket with `share` subscriptions; reads until told to stop.
async fn websocket(url: &str, share: usize, tally: &Tally) -> Result<(), String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = url
        .replace("http://", "ws://")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        http::HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| format!("WebSocket connection failed: {e}"))?;
    let send = |value: Value| Message::Text(value.to_string().into());
    socket
        .send(send(json!({"type": "connection_init", "payload": {}})))
        .await
        .map_err(|e| e.to_string())?;
    let mut first_event = vec![true; share];
    let mut acknowledged = false;
    while let Some(message) = socket.next().await {
        if stopped(tally) {
            break;
        }
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(frame)) => {
                return Err(format!("the gateway closed the WebSocket: {frame:?}"))
            }
            Ok(_) => continue,
            Err(e) => return Err(format!("WebSocket error: {e}")),
        };
        let message: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        match message["type"].as_str() {
            Some("connection_ack") if !acknowledged => {
                acknowledged = true;
                for id in 0..share {
                    let subscribe = json!({"id": id.to_string(), "type": "subscribe",
                                           "payload": {"query": SUBSCRIPTION}});
                    socket
                        .send(send(subscribe))
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            Some("ping") => {
                let _ = socket.send(send(json!({"type": "pong"}))).await;
            }
            Some("next") => {
                let id: usize = message["id"]
                    .as_str()
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(0);
                let first = first_event
                    .get_mut(id)
                    .map(|f| std::mem::replace(f, false))
                    .unwrap_or(false);
                tally.event(&message["payload"], first);
            }
            Some("error") => return Err(format!("subscription refused: {}", message["payload"])),
            Some("complete") => return Err("a subscription completed early".into()),
            _ => {}
        }
    }
    Ok(())
}

/// Reads a streamed HTTP response, handing each complete frame (split on `separator`) to
/// `frame`.
async fn read_frames(
    response: reqwest::Response,
    separator: &str,
    tally: &Tally,
    mut frame: impl FnMut(&str, &mut bool),
) -> Result<(), String> {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut first = true;
    while let Some(chunk) = body.next().await {
        if stopped(tally) {
            break;
        }
        let chunk = chunk.map_err(|e| format!("stream broke: {e}"))?;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find(separator) {
            let block: String = buffer.drain(..end + separator.len()).collect();
            frame(&block, &mut first);
        }
    }
    if stopped(tally) {
        Ok(())
    } else {
        Err("the stream ended early".into())
    }
}

async fn open(url: &str, accept: &str) -> Result<reqwest::Response, String> {
    let response = reqwest::Client::new()
        .post(url)
        .header("accept", accept)
        .json(&json!({"query": SUBSCRIPTION}))
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(format!("refused with {status}: {body}"));
    }
    Ok(response)
}

/// One SSE subscription (GraphQL over SSE, distinct connections mode).
async fn sse(url: &str, tally: &Tally) -> Result<(), String> {
    let response = open(url, "text/event-stream").await?;
    read_frames(response, "\n\n", tally, |block, first| {
        let data: String = block
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim_start)
            .collect();
        let is_next = block.lines().any(|l| l.trim() == "event: next");
        if is_next {
            if let Ok(response) = serde_json::from_str::<Value>(&data) {
                tally.event(&response, std::mem::replace(first, false));
            }
        }
    })
    .await
}

/// One multipart subscription (Apollo's multipart subscription protocol).
async fn multipart(url: &str, tally: &Tally) -> Result<(), String> {
    let response = open(
        url,
        "multipart/mixed;subscriptionSpec=\"1.0\", application/json",
    )
    .await?;
    read_frames(response, "\r\n--graphql", tally, |block, first| {
        let Some((_, json)) = block.split_once("\r\n\r\n") else {
            return;
        };
        let json = json.trim_end_matches("\r\n--graphql").trim();
        if let Ok(part) = serde_json::from_str::<Value>(json) {
            if part.get("payload").is_some_and(|p| p.get("data").is_some()) {
                tally.event(&part["payload"], std::mem::replace(first, false));
            }
        }
    })
    .await
}

/// The report: one table, a row per gateway and step.
pub fn report(results: &[Measured], settings: &Settings) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Subscriptions: `reviewAdded` (reviews) with `author` (accounts) and `product` (products, \
         inventory) resolved on every event, one event per second per subscription, counted over \
         {} s once every subscription has had its first event. WebSocket steps spread the \
         subscriptions over at most {} connections; SSE and multipart use one connection per \
         subscription. Latency runs from the subgraph emitting an event to the client reading \
         it; memory is the gateway's resident set with the subscriptions open, less before, per \
         subscription.\n\n",
        settings.duration.as_secs(),
        settings.max_connections
    ));
    out.push_str("| gateway | protocol | subscriptions | connections | p50 ms | p99 ms | events/s | delivered | RSS per subscription |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for m in results {
        match &m.outcome {
            Ok(f) => out.push_str(&format!(
                "| {} | {} | {} | {} | {:.1} | {:.1} | {:.0} | {:.1}% | {:.1} KiB |\n",
                m.gateway,
                m.step.protocol.name(),
                m.step.subscriptions,
                f.connections,
                f.p50_ms,
                f.p99_ms,
                f.events_per_sec,
                f.delivered * 100.0,
                f.bytes_per_subscription / 1024.0
            )),
            Err(why) => out.push_str(&format!(
                "| {} | {} | {} | | failed: {} | | | | |\n",
                m.gateway,
                m.step.protocol.name(),
                m.step.subscriptions,
                why.replace('|', "/")
            )),
        }
    }
    out
}
