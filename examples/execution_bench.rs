//! The execution engine's benchmark (`scripts/bench execution` runs it): the
//! whole fleet in this process (gateway, services and a worker pool), embedded
//! (SQLite, in-process queue) and distributed (PostgreSQL, RabbitMQ and Redis
//! from `FLOWFLEET_TEST_*` URLs). Executions start through the public GraphQL
//! API, as a client would start them; their times come from the execution
//! service's own records (milliseconds), and client-side for start-to-finish.
//!
//! Measured, per mode:
//! - executions per second of a 1-step workflow (a burst, until all finished);
//! - steps per second of a 10-step linear workflow and of a 100-way foreach,
//!   the CPU time this process spent per step on each (the burst and, for two seconds
//!   after it, the work its steps set off: events relayed, facts rolled up), and their
//!   per-step overhead (a step's queued time to its recorded result, with the node
//!   itself doing nothing) p50/p99, one execution at a time;
//! - start-to-finish p50/p99 of a 3-step workflow, one at a time: from the
//!   client sending `startExecution` to it seeing the execution SUCCEEDED;
//! - live-update latency p50/p99: a client follows each run of a workflow (a 300 ms
//!   delay, then three passthroughs) with `executionUpdated` over SSE through the
//!   gateway; for every update of a step that finished after it subscribed, the time
//!   from the step's recorded finish (the worker's clock, in the transaction that
//!   commits it) to the client reading the update. Same machine, same clock.
//!
//! Usage: `execution_bench [--mode embedded|distributed|both] [--scale N] [--paired] [--out FILE]`.
//! `--paired` runs each mode four times, with and without the `step.finished` event
//! (`worker.step_events`), alternating, after an unreported warm-up run, to show what
//! the event costs the engine.

mod common;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use flowfleet::dev::DevApp;
use flowfleet_host::testing::Backend;
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::db::Db;
use serde_json::{json, Value};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

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

    async fn publish(&self, workspace: &Value, definition: Value) -> anyhow::Result<String> {
        let created = self
            .call(
                "mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { id } }",
                json!({"i": {"workspaceId": workspace, "name": "bench", "definition": definition}}),
            )
            .await?;
        let id = created["createWorkflow"]["id"]
            .as_str()
            .context("id")?
            .to_string();
        self.call(
            "mutation($id: ID!) { publishWorkflow(id: $id) { version } }",
            json!({"id": id}),
        )
        .await?;
        Ok(id)
    }

    async fn start(&self, workflow: &str, input: &Value) -> anyhow::Result<String> {
        let started = self
            .call(
                "mutation($i: StartExecutionInput!) { startExecution(input: $i) { id } }",
                json!({"i": {"workflowId": workflow, "input": input}}),
            )
            .await?;
        Ok(started["startExecution"]["id"]
            .as_str()
            .context("id")?
            .to_string())
    }
}

/// A 300 ms delay, then three passthroughs: time for a client to subscribe first.
fn delayed() -> Value {
    json!({
        "nodes": [
            {"id": "wait", "type": "delay", "config": {"durationMs": 300}},
            {"id": "a", "type": "passthrough"},
            {"id": "b", "type": "passthrough"},
            {"id": "c", "type": "passthrough"}
        ],
        "edges": [
            {"source": "wait", "target": "a"},
            {"source": "a", "target": "b"},
            {"source": "b", "target": "c"}
        ],
        "triggers": [{"kind": "MANUAL"}]
    })
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// A chain of `n` passthrough nodes.
fn linear(n: usize) -> Value {
    let nodes: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("s{i}"), "type": "passthrough"}))
        .collect();
    let edges: Vec<Value> = (1..n)
        .map(|i| json!({"source": format!("s{}", i - 1), "target": format!("s{i}")}))
        .collect();
    json!({"nodes": nodes, "edges": edges, "triggers": [{"kind": "MANUAL"}]})
}

/// A foreach over the input array, all items at once, a passthrough body, and
/// a passthrough after the join.
fn fan_out() -> Value {
    json!({
        "nodes": [
            {"id": "loop", "type": "foreach", "config": {"concurrency": 1000}},
            {"id": "each", "type": "passthrough"},
            {"id": "after", "type": "passthrough"}
        ],
        "edges": [
            {"source": "loop", "sourceHandle": "item", "target": "each"},
            {"source": "loop", "sourceHandle": "done", "target": "after"}
        ],
        "triggers": [{"kind": "MANUAL"}]
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

struct Bench {
    api: Api,
    db: Db,
}

impl Bench {
    /// Waits until every one of `ids` has finished; fails on any that did not succeed.
    async fn wait_all(&self, ids: &[String]) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let open: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM executions WHERE status IN ('QUEUED', 'RUNNING')",
            )
            .fetch_one(self.db.pool())
            .await?
            .try_get("n")?;
            if open == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("{open} executions still open after 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for id in ids {
            let status: String = sqlx::query("SELECT status FROM executions WHERE id = $1")
                .bind(id)
                .fetch_one(self.db.pool())
                .await?
                .try_get("status")?;
            if status != "SUCCEEDED" {
                bail!("execution {id} ended {status}");
            }
        }
        Ok(())
    }

    /// Starts `n` executions, `concurrency` requests at a time; returns their ids.
    async fn burst(
        &self,
        workflow: &str,
        input: &Value,
        n: usize,
        concurrency: usize,
    ) -> anyhow::Result<Vec<String>> {
        use futures::StreamExt;
        let starts = futures::stream::iter(0..n)
            .map(|_| self.api.start(workflow, input))
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await;
        starts.into_iter().collect()
    }

    /// Work done per second over `ids`: from the first creation to the last finish.
    async fn rate(&self, ids: &[String], units_each: f64) -> anyhow::Result<f64> {
        let row =
            sqlx::query(&format!(
            "SELECT MIN(created_at) AS a, MAX(finished_at) AS b FROM executions WHERE id IN ({})",
            ids.iter().map(|i| format!("'{i}'")).collect::<Vec<_>>().join(",")
        ))
            .fetch_one(self.db.pool())
            .await?;
        let (a, b): (i64, i64) = (row.try_get("a")?, row.try_get("b")?);
        Ok(ids.len() as f64 * units_each / ((b - a).max(1) as f64 / 1000.0))
    }

    /// Per-step overhead (ms) of executions run one at a time: each step's time
    /// from queued to its recorded result; and each execution's mean per step
    /// (finer than the millisecond records).
    async fn overhead(
        &self,
        workflow: &str,
        input: &Value,
        runs: usize,
        steps: f64,
    ) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
        let mut per_step = Vec::new();
        let mut per_execution = Vec::new();
        for _ in 0..runs {
            let id = self.api.start(workflow, input).await?;
            self.wait_all(std::slice::from_ref(&id)).await?;
            let rows =
                sqlx::query("SELECT queued_at, finished_at FROM step_runs WHERE execution_id = $1")
                    .bind(&id)
                    .fetch_all(self.db.pool())
                    .await?;
            let mut first_queued = i64::MAX;
            let mut last_finished = 0;
            for r in &rows {
                let (q, f): (i64, i64) = (r.try_get("queued_at")?, r.try_get("finished_at")?);
                per_step.push((f - q) as f64);
                first_queued = first_queued.min(q);
                last_finished = last_finished.max(f);
            }
            per_execution.push((last_finished - first_queued) as f64 / steps);
        }
        Ok((sorted(per_step), sorted(per_execution)))
    }

    /// Live-update latency (ms): each run followed with `executionUpdated` over SSE; for
    /// each update of a step that finished after the subscription began, from its recorded
    /// finish to the client reading it.
    async fn live_latency(&self, workflow: &str, runs: usize) -> anyhow::Result<Vec<f64>> {
        use futures::StreamExt;
        let mut latencies = Vec::new();
        for _ in 0..runs {
            let id = self.api.start(workflow, &json!({})).await?;
            let response = self
                .api
                .http
                .post(&self.api.url)
                .bearer_auth(&self.api.token)
                .header("accept", "text/event-stream")
                .json(&json!({
                    "query": "subscription($id: ID!) { executionUpdated(id: $id) { kind at } }",
                    "variables": {"id": id}
                }))
                .send()
                .await?;
            let listening_since = now_ms();
            let mut body = response.bytes_stream();
            let mut buffer = String::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            'stream: while let Some(chunk) = tokio::time::timeout_at(deadline.into(), body.next())
                .await
                .context("an update within 60 s")?
            {
                buffer.push_str(&String::from_utf8_lossy(&chunk?));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let received = now_ms();
                    let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                        continue;
                    };
                    let Ok(update) = serde_json::from_str::<Value>(data) else {
                        continue;
                    };
                    let update = &update["data"]["executionUpdated"];
                    let at = update["at"]
                        .as_str()
                        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
                        .map(|at| at.timestamp_millis() as f64)
                        .context("an update's `at`")?;
                    if at > listening_since {
                        latencies.push(received - at);
                    }
                    if update["kind"] == "FINISHED" {
                        break 'stream;
                    }
                }
            }
        }
        Ok(sorted(latencies))
    }

    /// Start-to-finish (ms) seen by the client, one execution at a time.
    async fn start_to_finish(&self, workflow: &str, runs: usize) -> anyhow::Result<Vec<f64>> {
        let mut times = Vec::new();
        for _ in 0..runs {
            let t0 = Instant::now();
            let id = self.api.start(workflow, &json!({})).await?;
            loop {
                let status: String = sqlx::query("SELECT status FROM executions WHERE id = $1")
                    .bind(&id)
                    .fetch_one(self.db.pool())
                    .await?
                    .try_get("status")?;
                match status.as_str() {
                    "SUCCEEDED" => break,
                    "QUEUED" | "RUNNING" => tokio::time::sleep(Duration::from_micros(200)).await,
                    other => bail!("execution {id} ended {other}"),
                }
            }
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(sorted(times))
    }
}

/// A report row: per-step overhead p50 / p99, per step and per execution.
fn overhead_row(workflow: &str, step: &[f64], mean: &[f64]) -> (String, String) {
    (
        format!("{workflow} per-step overhead p50 / p99 ms"),
        format!(
            "{:.1} / {:.1} (per execution: {:.2} / {:.2})",
            percentile(step, 50.0),
            percentile(step, 99.0),
            percentile(mean, 50.0),
            percentile(mean, 99.0)
        ),
    )
}

/// CPU time (user and system, all threads) this process has used, in milliseconds.
///
/// The fleet runs inside the benchmark's process, so this is the engine's cost together
/// with everything a step sets off in process (outbox relay, event consumers, analytics
/// roll-ups), and the client's requests, which are the same in both arms of `--paired`:
/// what an event costs in work, where throughput shows what it costs in time.
/// (PostgreSQL and RabbitMQ run in processes of their own: in distributed mode their
/// share is not counted.)
fn cpu_ms() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start at the state (3rd);
    // utime and stime are the 14th and 15th, in clock ticks (USER_HZ, 100 on Linux).
    let rest = stat.rsplit_once(')').context("reading /proc/self/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks * 10.0)
}

/// How long the fleet is left to finish what a burst set off (relaying its events,
/// consuming them, rolling up their facts): the roller alone waits a quarter of a second.
const SETTLE: Duration = Duration::from_secs(2);

/// CPU milliseconds per step since `since` (from [`cpu_ms`]) over `steps` steps,
/// counted after [`SETTLE`] so that work the steps set off after they finished is
/// included.
async fn cpu_row(what: &str, since: f64, steps: usize) -> anyhow::Result<(String, String)> {
    tokio::time::sleep(SETTLE).await;
    let used = cpu_ms()? - since;
    Ok((
        format!("{what} CPU ms per step (this process, work set off included)"),
        format!("{:.3}", used / steps as f64),
    ))
}

async fn measure(
    backend: &Backend,
    scale: usize,
    step_events: bool,
) -> anyhow::Result<Vec<(String, String)>> {
    let (mut config, _dir) = backend.config().await;
    config.telemetry.log_level = "warn".into();
    config.worker.step_events = step_events;
    config.worker.min_concurrency = 4;
    config.worker.max_concurrency = 32;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let shutdown = CancellationToken::new();
    let db = match backend {
        Backend::Embedded => Db::sqlite(&config.data_dir, ServiceName::Execution.as_str()).await?,
        Backend::Distributed { .. } => {
            Db::postgres(&config.database.url, ServiceName::Execution.as_str(), 4).await?
        }
    };
    let app = DevApp::build_as_configured(config, listener, shutdown.clone()).await?;
    let running = tokio::spawn(app.run());
    let url = format!("http://127.0.0.1:{port}/graphql");
    let http = reqwest::Client::new();
    let signed: Value = http
        .post(&url)
        .json(&json!({"query": "mutation($i: SignUpInput!) { signUp(input: $i) { accessToken } }",
            "variables": {"i": {"email": "bench@example.com", "password": "long enough password", "name": "bench"}}}))
        .send()
        .await?
        .json()
        .await?;
    let token = signed["data"]["signUp"]["accessToken"]
        .as_str()
        .context("signed up")?
        .to_string();
    let api = Api { http, url, token };
    let me = api
        .call("{ me { memberships { workspace { id } } } }", json!({}))
        .await?;
    let ws = me["me"]["memberships"][0]["workspace"]["id"].clone();
    let bench = Bench { db, api };
    let one = bench.api.publish(&ws, linear(1)).await?;
    let ten = bench.api.publish(&ws, linear(10)).await?;
    let three = bench.api.publish(&ws, linear(3)).await?;
    let fan = bench.api.publish(&ws, fan_out()).await?;
    let waits = bench.api.publish(&ws, delayed()).await?;
    let items = json!((0..100).collect::<Vec<i64>>());
    let empty = json!({});

    // Warm up every path once.
    let warm = bench.burst(&one, &empty, 50, 8).await?;
    bench.wait_all(&warm).await?;

    let mut rows = Vec::new();
    tokio::time::sleep(SETTLE).await;
    let ids = bench.burst(&one, &empty, 200 * scale, 32).await?;
    bench.wait_all(&ids).await?;
    rows.push((
        "1-step executions/s".to_string(),
        format!("{:.0}", bench.rate(&ids, 1.0).await?),
    ));

    // Each burst starts on a quiet fleet: the work the last one set off (its events
    // relayed and consumed, its facts rolled up) would otherwise run during this one.
    tokio::time::sleep(SETTLE).await;
    let cpu = cpu_ms()?;
    let ids = bench.burst(&ten, &empty, 50 * scale, 32).await?;
    bench.wait_all(&ids).await?;
    rows.push((
        "10-step linear steps/s".into(),
        format!("{:.0}", bench.rate(&ids, 10.0).await?),
    ));
    rows.push(cpu_row("10-step linear", cpu, ids.len() * 10).await?);
    let (step, mean) = bench.overhead(&ten, &empty, 10 * scale, 10.0).await?;
    rows.push(overhead_row("10-step linear", &step, &mean));

    tokio::time::sleep(SETTLE).await;
    let cpu = cpu_ms()?;
    let ids = bench.burst(&fan, &items, 5 * scale, 8).await?;
    bench.wait_all(&ids).await?;
    rows.push((
        "100-way foreach steps/s".into(),
        format!("{:.0}", bench.rate(&ids, 102.0).await?),
    ));
    rows.push(cpu_row("100-way foreach", cpu, ids.len() * 102).await?);
    let (step, mean) = bench.overhead(&fan, &items, 3 * scale, 102.0).await?;
    rows.push(overhead_row("100-way foreach", &step, &mean));

    let times = bench.start_to_finish(&three, 50 * scale).await?;
    rows.push((
        "3-step start-to-finish p50 / p99 ms".into(),
        format!(
            "{:.1} / {:.1}",
            percentile(&times, 50.0),
            percentile(&times, 99.0)
        ),
    ));

    let live = bench.live_latency(&waits, 20 * scale).await?;
    rows.push((
        "executionUpdated latency p50 / p99 ms (step finished → client)".into(),
        format!(
            "{:.1} / {:.1} ({} updates)",
            percentile(&live, 50.0),
            percentile(&live, 99.0),
            live.len()
        ),
    ));

    shutdown.cancel();
    let _ = running.await;
    Ok(rows)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = common::Args::from_env();
    let scale = args.number("--scale", 1)?;
    let paired = std::env::args().any(|a| a == "--paired");
    let mut columns = Vec::new();
    for backend in args.backends()? {
        if !paired {
            eprintln!("[execution bench] measuring {}", backend.name());
            columns.push((backend.name(), measure(&backend, scale, true).await?));
            continue;
        }
        // Paired runs: with and without `step.finished`, alternating, twice, each on a
        // fresh fleet, so drift on the machine hits both alike. A first fleet runs
        // unreported: the process's first run pays for warming up (the binary's pages,
        // the allocator), which would otherwise count against whichever arm came first.
        eprintln!(
            "[execution bench] warming up ({}, not reported)",
            backend.name()
        );
        measure(&backend, scale, true).await?;
        for (round, on) in [(1, true), (1, false), (2, false), (2, true)] {
            let label = format!(
                "{} {} #{round}",
                backend.name(),
                if on { "with step.finished" } else { "without" }
            );
            eprintln!("[execution bench] measuring {label}");
            let rows = measure(&backend, scale, on).await?;
            let before = cpu_ms()?;
            tokio::time::sleep(SETTLE).await;
            eprintln!(
                "[execution bench] CPU after the fleet stopped: {:.0} ms in {SETTLE:?}",
                cpu_ms()? - before
            );
            columns.push((&*Box::leak(label.into_boxed_str()), rows));
        }
    }
    common::report(&args, &columns)
}
