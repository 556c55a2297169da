//! The notification service's benchmark (`scripts/bench notification` runs it): the whole
//! fleet in this process, embedded (SQLite, in-process queue) and distributed (PostgreSQL,
//! RabbitMQ and Redis from `FLOWFLEET_TEST_*` URLs), delivering to real receivers on
//! loopback: an HTTP server that verifies every webhook signature and an SMTP server (the
//! ones the notification tests use).
//!
//! Measured, per mode:
//! - webhook deliveries per second: a burst of `Notify` requests (as `notify` steps make
//!   them), one webhook delivery each, from the first request to the last receipt;
//! - e-mail deliveries per second, the same through the SMTP server;
//! - end-to-end latency p50/p99 from an execution failing (its recorded `finishedAtMs`) to
//!   the receiver getting the webhook a rule on `execution.failed` sends, one execution
//!   at a time.
//!
//! Usage: `notification_bench [--mode embedded|distributed|both] [--scale N] [--out FILE]`.

#[path = "../services/notification/tests/receivers/mod.rs"]
mod receivers;

mod common;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flowfleet::dev::DevApp;
use flowfleet_host::testing::Backend;
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::grpc::in_process;
use flowfleet_runtime::proto::notification::v1::notification_service_client::NotificationServiceClient;
use flowfleet_runtime::proto::notification::v1::NotifyRequest;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "bench-signing-secret-0123456789";

struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn call(&self, query: &str, variables: Value) -> anyhow::Result<Value> {
        let body: Value = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await?
            .json()
            .await?;
        if !body["errors"].is_null() {
            bail!("GraphQL errors: {}", body["errors"]);
        }
        Ok(body["data"].clone())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Waits until `count()` reaches `n`; fails after two minutes.
async fn until(n: usize, count: impl Fn() -> usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while count() < n {
        if Instant::now() > deadline {
            bail!("only {} of {n} deliveries arrived", count());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

async fn measure(backend: &Backend, scale: usize) -> anyhow::Result<Vec<(String, String)>> {
    let (mut config, _dir) = backend.config().await;
    config.telemetry.log_level = "warn".into();
    config.notification.allow = vec!["127.0.0.1/32".into()];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let shutdown = CancellationToken::new();
    let app = DevApp::build_as_configured(config, listener, shutdown.clone()).await?;
    let notification = app
        .fleet()
        .services
        .iter()
        .find(|s| s.name == ServiceName::Notification)
        .context("the notification service")?
        .grpc
        .clone();
    let credentials = app
        .fleet()
        .infra
        .service_credentials(ServiceName::Execution);
    let running = tokio::spawn(app.run());
    let client = NotificationServiceClient::new(in_process(notification, Some(credentials)));

    let http = Http::start(SECRET).await;
    let smtp = Smtp::start().await;
    let url = format!("http://127.0.0.1:{port}/graphql");
    let reqwest = reqwest::Client::new();
    let signed: Value = reqwest
        .post(&url)
        .json(&json!({"query": "mutation($i: SignUpInput!) { signUp(input: $i) { accessToken user { id } } }",
            "variables": {"i": {"email": "bench@example.com", "password": "long enough password", "name": "bench"}}}))
        .send()
        .await?
        .json()
        .await?;
    let token = signed["data"]["signUp"]["accessToken"]
        .as_str()
        .context("signed up")?
        .to_string();
    let me = signed["data"]["signUp"]["user"]["id"]
        .as_str()
        .context("user id")?
        .to_string();
    let api = Api {
        http: reqwest,
        url,
        token,
    };
    let ws = api
        .call("{ me { memberships { workspace { id } } } }", json!({}))
        .await?["me"]["memberships"][0]["workspace"]["id"]
        .clone();
    let channel = |input: Value| {
        let api = &api;
        let ws = ws.clone();
        async move {
            let r = api
                .call(
                    "mutation($w: ID!, $i: NotificationChannelInput!) { createNotificationChannel(workspaceId: $w, input: $i) { id } }",
                    json!({"w": ws, "i": input}),
                )
                .await?;
            anyhow::Ok(
                r["createNotificationChannel"]["id"]
                    .as_str()
                    .context("id")?
                    .to_string(),
            )
        }
    };
    let hook = channel(
        json!({"name": "hook", "webhook": {"url": http.url("burst"), "signingSecret": SECRET}}),
    )
    .await?;
    let mail = channel(json!({"name": "mail", "email": {"host": "127.0.0.1", "port": smtp.port(), "security": "NONE", "from": "bench@example.com"}})).await?;
    let failures = channel(json!({"name": "failures", "webhook": {"url": http.url("failed"), "signingSecret": SECRET}})).await?;
    api.call(
        "mutation($w: ID!, $i: NotificationRuleInput!) { createNotificationRule(workspaceId: $w, input: $i) { id } }",
        json!({"w": ws, "i": {"name": "failures", "events": ["execution.failed"], "channelIds": [failures], "inApp": false}}),
    )
    .await?;

    // A burst of Notify requests, `concurrency` at a time, each one delivery.
    let burst = |channel: String, member: Option<String>, n: usize, tag: &'static str| {
        let client = client.clone();
        let ws = ws.to_string().trim_matches('"').to_string();
        async move {
            use futures::StreamExt;
            let t0 = Instant::now();
            let results = futures::stream::iter(0..n)
                .map(|i| {
                    let mut client = client.clone();
                    let request = NotifyRequest {
                        workspace_id: ws.clone(),
                        source: format!("bench:{tag}:{i}:{}", uuid::Uuid::now_v7()),
                        member_ids: member.iter().cloned().collect(),
                        channel_ids: vec![channel.clone()],
                        subject: "Bench {{ input.i }}".into(),
                        body: "Delivery {{ input.i }}".into(),
                        data_json: json!({"input": {"i": i}}).to_string(),
                        in_app: false,
                        ..NotifyRequest::default()
                    };
                    async move { client.notify(request).await }
                })
                .buffer_unordered(32)
                .collect::<Vec<_>>()
                .await;
            for r in results {
                r?;
            }
            anyhow::Ok(t0)
        }
    };
    let mut rows = Vec::new();

    // Warm up both paths.
    burst(hook.clone(), None, 20, "warm").await?;
    until(20, || http.received("burst").len()).await?;
    burst(mail.clone(), Some(me.clone()), 20, "warm").await?;
    until(20, || smtp.mails().len()).await?;

    let n = 1_000 * scale;
    let t0 = burst(hook.clone(), None, n, "hook").await?;
    until(20 + n, || http.received("burst").len()).await?;
    let secs = t0.elapsed().as_secs_f64();
    rows.push((
        "webhook deliveries/s".to_string(),
        format!("{:.0}", n as f64 / secs),
    ));

    let n = 500 * scale;
    let t0 = burst(mail.clone(), Some(me.clone()), n, "mail").await?;
    until(20 + n, || smtp.mails().len()).await?;
    let secs = t0.elapsed().as_secs_f64();
    rows.push((
        "e-mail (SMTP) deliveries/s".to_string(),
        format!("{:.0}", n as f64 / secs),
    ));

    // A workflow that fails at once; a rule sends its failure to a webhook.
    let created = api
        .call(
            "mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { id } }",
            json!({"i": {"workspaceId": ws, "name": "fails", "definition": {
                "nodes": [{"id": "boom", "type": "transform", "config": {"expression": "error(\"boom\")"}, "maxRetries": 0}],
                "edges": [], "triggers": [{"kind": "MANUAL"}]}}}),
        )
        .await?;
    let wf = created["createWorkflow"]["id"]
        .as_str()
        .context("id")?
        .to_string();
    api.call(
        "mutation($id: ID!) { publishWorkflow(id: $id) { version } }",
        json!({"id": wf}),
    )
    .await?;
    let runs = 50 * scale;
    let mut latencies = Vec::new();
    for i in 0..runs {
        api.call(
            "mutation($i: StartExecutionInput!) { startExecution(input: $i) { id } }",
            json!({"i": {"workflowId": wf}}),
        )
        .await?;
        until(i + 1, || http.received("failed").len()).await?;
        let got = http.received("failed");
        let last = got.last().context("a delivery")?;
        let finished = last.json()["data"]["payload"]["finishedAtMs"]
            .as_i64()
            .context("finishedAtMs in the webhook")?;
        latencies.push((last.at_ms - finished) as f64);
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    rows.push((
        "execution.failed → webhook receiver p50 / p99 ms".to_string(),
        format!(
            "{:.0} / {:.0}",
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0)
        ),
    ));
    let refused = http
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.status != 200)
        .count();
    if refused > 0 {
        bail!("{refused} webhook requests failed the receiver's signature check");
    }

    shutdown.cancel();
    let _ = running.await;
    Ok(rows)
}

use receivers::{Http, Smtp};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = common::Args::from_env();
    let scale = args.number("--scale", 1)?;
    let mut columns = Vec::new();
    for backend in args.backends()? {
        eprintln!("[notification bench] measuring {}", backend.name());
        columns.push((backend.name(), measure(&backend, scale).await?));
    }
    common::report(&args, &columns)
}
