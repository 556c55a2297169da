//! `scripts/bench analytics`: the analytics service with a workspace's history of
//! `--executions` runs (default 1 000 000, ten steps each) over 30 days, on each backend:
//! ingestion through the event consumer (events/s), the bulk load of the rest and the
//! roll-up (facts/s), then every dashboard query's latency (p50 and p99 of repeated runs,
//! through the subgraph's GraphQL schema with a member's identity, authorization
//! included). The goal: every dashboard query under 50 ms p99 on PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use flowfleet_analytics::dashboards::Dashboards;
use flowfleet_analytics::domain::facts_of;
use flowfleet_analytics::graphql::{schema, AnalyticsSchema, Ctx};
use flowfleet_analytics::handlers::events::{self, Facts};
use flowfleet_analytics::roller::Roller;
use flowfleet_analytics::store::queries::{Sketches, StepLevel};
use flowfleet_analytics::store::Store;
use flowfleet_analytics::MIGRATIONS;
use flowfleet_auth::testing::RealAuth;
use flowfleet_host::testing::Backend;
use flowfleet_runtime::clock::{Clock, SystemClock};
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::events::Event;
use flowfleet_security::identity::{Caller, Identity};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const DAY_MS: i64 = 86_400_000;
const WORKFLOWS: usize = 50;
const NODES: usize = 10;
const STEPS: usize = 10;
const NODE_TYPES: [&str; 6] = [
    "http_request",
    "transform",
    "notify",
    "store_file",
    "merge",
    "sub_workflow",
];
/// Runs whose events go through the bus and the consumer (the rest are loaded in bulk).
const THROUGH_CONSUMER: usize = 5_000;

/// Each node's typical attempt in milliseconds, by workflow: log-uniform from 2 ms to
/// 2 s, as a workspace's nodes differ (a transform takes a millisecond, a call to a slow
/// API seconds).
fn node_profiles(rng: &mut StdRng) -> Vec<[f64; NODES]> {
    (0..WORKFLOWS)
        .map(|_| std::array::from_fn(|_| 2.0 * 1000f64.powf(rng.gen::<f64>())))
        .collect()
}

/// The events of execution `i` of `n` spread over the 30 days before `end`.
#[allow(clippy::too_many_arguments)]
fn run_events(
    rng: &mut StdRng,
    i: usize,
    n: usize,
    end: i64,
    workspace: Uuid,
    workflows: &[Uuid],
    profiles: &[[f64; NODES]],
    users: &[Uuid],
) -> Vec<Event> {
    let finished = end - 30 * DAY_MS + (i as i64 * 30 * DAY_MS) / n as i64;
    let w = rng.gen_range(0..WORKFLOWS);
    let roll: f64 = rng.gen();
    let status = match roll {
        r if r < 0.90 => "SUCCEEDED",
        r if r < 0.96 => "FAILED",
        r if r < 0.98 => "TIMED_OUT",
        _ => "CANCELLED",
    };
    let kind = match status {
        "SUCCEEDED" => "execution.succeeded",
        "CANCELLED" => "execution.cancelled",
        _ => "execution.failed",
    };
    // Each attempt varies around its node's typical time, with a tail: one in thirty
    // takes five times as long.
    let steps: Vec<(usize, i64, i64)> = (0..STEPS)
        .map(|s| {
            let node = (w * 7 + s) % NODES;
            let tail = if rng.gen_bool(1.0 / 30.0) { 5.0 } else { 1.0 };
            let ms = profiles[w][node] * rng.gen_range(0.6..1.4) * tail;
            (node, ms as i64, rng.gen_range(0..200))
        })
        .collect();
    let duration: i64 = steps.iter().map(|(_, d, q)| d + q).sum();
    let execution = Uuid::now_v7();
    let user = if rng.gen_bool(0.3) {
        users[rng.gen_range(0..users.len())]
    } else {
        Uuid::nil()
    };
    let mut events = Vec::with_capacity(STEPS + 1);
    let mut step_finished = finished - duration;
    for (s, (node, ms, queue_wait)) in steps.into_iter().enumerate() {
        step_finished += ms + queue_wait;
        let failed = status != "SUCCEEDED" && s == STEPS - 1;
        events.push(Event::new(
            "step.finished",
            finished,
            json!({
                "stepId": Uuid::now_v7(), "executionId": execution, "workflowId": workflows[w],
                "workspaceId": workspace, "nodeId": format!("node_{node}"),
                "nodeType": NODE_TYPES[node % NODE_TYPES.len()], "attempt": 1 + i64::from(rng.gen_bool(0.05)),
                "status": if failed { "FAILED" } else { "SUCCEEDED" },
                "finishedAtMs": step_finished, "durationMs": ms, "queueWaitMs": queue_wait,
            }),
        ));
    }
    events.push(Event::new(
        kind,
        finished,
        json!({
            "executionId": execution, "workflowId": workflows[w], "workspaceId": workspace,
            "status": status, "triggeredBy": user, "finishedAtMs": finished, "durationMs": duration,
            "error": (status != "SUCCEEDED").then(|| format!("node `node_9` failed: {status}")),
        }),
    ));
    events
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

async fn measure(backend: &Backend, executions: usize) -> anyhow::Result<Vec<(String, String)>> {
    let env = backend.start().await;
    let db = env.db(ServiceName::Analytics, &MIGRATIONS).await;
    let auth = RealAuth::start(&env).await;
    let owner = auth.user("bench@example.com").await;
    let store = Store::new(db.clone());
    let end = SystemClock.now_ms() / 60_000 * 60_000;
    let mut rng = StdRng::seed_from_u64(7);
    let workflows: Vec<Uuid> = (0..WORKFLOWS).map(|_| Uuid::now_v7()).collect();
    let users: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
    let profiles = node_profiles(&mut rng);
    let mut rows = Vec::new();

    // Ingestion through the bus and the consumer: a backlog of the first runs' events,
    // published as the outbox relay publishes (in batches), then consumed as the service
    // consumes (what has arrived is taken together, up to the bus's prefetch).
    let through = THROUGH_CONSUMER.min(executions);
    let mut backlog = Vec::new();
    for i in 0..through {
        backlog.extend(run_events(
            &mut rng,
            i,
            executions,
            end,
            owner.workspace,
            &workflows,
            &profiles,
            &users,
        ));
    }
    let bus = env.infra.bus.clone();
    let consumer = events::bind(&bus).await?;
    for batch in backlog.chunks(100) {
        bus.publish_all(batch).await?;
    }
    let started = Instant::now();
    let shutdown = CancellationToken::new();
    let facts_handler = Arc::new(Facts {
        store: store.clone(),
        roller: Roller::default(),
    });
    let consuming = tokio::spawn(consumer.run(facts_handler, shutdown.clone()));
    let expected = through * (STEPS + 1);
    while store.unrolled().await? < expected as i64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = backlog.len() as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    consuming.await?;
    rows.push((
        "ingestion of a backlog through the bus and the consumer (events/s)".into(),
        format!("{rate:.0}"),
    ));
    eprintln!("[analytics bench] consumer: {rate:.0} events/s");

    // The rest in bulk, then the roll-up of everything.
    let started = Instant::now();
    let mut loaded = 0;
    let mut batch = Vec::new();
    for i in through..executions {
        for e in run_events(
            &mut rng,
            i,
            executions,
            end,
            owner.workspace,
            &workflows,
            &profiles,
            &users,
        ) {
            batch.extend(facts_of(&e.kind, e.occurred_at_ms, &e.payload)?);
        }
        if batch.len() >= 20_000 || i + 1 == executions {
            loaded += store.record_many(&batch).await?;
            batch.clear();
        }
        if i % 100_000 == 0 {
            eprintln!("[analytics bench] loaded {i} runs");
        }
    }
    let rate = loaded as f64 / started.elapsed().as_secs_f64().max(1e-9);
    rows.push(("bulk load (facts/s)".into(), format!("{rate:.0}")));
    let started = Instant::now();
    let total = store.unrolled().await?;
    while store.roll(5_000, end - 3 * DAY_MS).await? > 0 {}
    let rate = total as f64 / started.elapsed().as_secs_f64();
    rows.push(("roll-up (facts/s)".into(), format!("{rate:.0}")));
    eprintln!("[analytics bench] rolled {total} facts at {rate:.0}/s");
    // A live database's planner statistics and visibility map are kept by autovacuum; a
    // freshly loaded one has neither until it runs. Bring them up to date rather than
    // measure a state a running fleet does not stay in.
    let maintenance = match backend {
        Backend::Embedded => "ANALYZE",
        _ => "VACUUM ANALYZE",
    };
    sqlx::query(maintenance).execute(db.pool()).await?;

    let schema = schema(Ctx {
        dashboards: Dashboards {
            store: store.clone(),
            access: auth.access(),
            minute_days: 3,
        },
        clock: Arc::new(SystemClock),
    });
    let iso = |ms: i64| flowfleet_runtime::clock::to_datetime(ms).to_rfc3339();
    let month = json!({"from": iso(end - 30 * DAY_MS), "to": iso(end), "bucket": "DAY"});
    let week = json!({"from": iso(end - 7 * DAY_MS), "to": iso(end), "bucket": "HOUR"});
    let day = json!({"from": iso(end - DAY_MS), "to": iso(end), "bucket": "HOUR"});
    let queries: Vec<(&str, &str, Value)> = vec![
        (
            "executions by status, 24 h, hourly",
            "executions { runs succeeded failed p95DurationMs }",
            day.clone(),
        ),
        (
            "executions by status, 30 days, daily (Europe/Berlin)",
            "executions { runs successRate p50DurationMs p95DurationMs p99DurationMs }",
            json!({"from": iso(end - 30 * DAY_MS), "to": iso(end), "bucket": "DAY", "timeZone": "Europe/Berlin"}),
        ),
        (
            "totals, 30 days",
            "totals { runs successRate p99DurationMs }",
            month.clone(),
        ),
        (
            "top failing workflows, 30 days",
            "topFailingWorkflows { runs failures lastError }",
            month.clone(),
        ),
        (
            "busiest workflows, 30 days",
            "busiestWorkflows { runs }",
            month.clone(),
        ),
        (
            "slowest node types, 30 days",
            "slowestNodeTypes { nodeType p95DurationMs failureRate retries }",
            month.clone(),
        ),
        (
            "slowest nodes, 30 days",
            "slowestNodes { nodeId p95DurationMs failureRate }",
            month.clone(),
        ),
        (
            "steps and queue wait, 7 days, hourly",
            "steps { attempts p95QueueWaitMs }",
            week,
        ),
        (
            "KPIs, 30 days",
            "kpis { activeWorkflows runsPerDay activeUsers meanTimeToRecoveryMs }",
            month.clone(),
        ),
    ];
    let caller = Caller::User(Identity {
        user_id: owner.id,
        email: "bench@example.com".into(),
        api_key: None,
    });
    for (name, selection, range) in queries {
        let query = format!(
            "query($reps: [_Any!]!, $range: AnalyticsRange!) {{ _entities(representations: $reps) {{ \
             ... on Workspace {{ analytics(range: $range) {{ {selection} }} }} }} }}"
        );
        let vars = json!({"reps": [{"__typename": "Workspace", "id": owner.workspace, "timeZone": "UTC"}], "range": range});
        let (p50, p99) = time_query(&schema, &caller, &query, vars).await?;
        rows.push((
            format!("{name}: p50 / p99 (ms)"),
            format!("{p50:.1} / {p99:.1}"),
        ));
        eprintln!("[analytics bench] {name}: {p50:.1} / {p99:.1} ms");
    }
    let query = "query($reps: [_Any!]!, $range: AnalyticsRange) { _entities(representations: $reps) { \
        ... on Workflow { stats(range: $range) { runs p95DurationMs overTime { runs } nodes { nodeId p95DurationMs } } } } }";
    let vars = json!({"reps": [{"__typename": "Workflow", "id": workflows[0]}], "range": month});
    let (p50, p99) = time_query(&schema, &caller, query, vars).await?;
    rows.push((
        "Workflow.stats, 30 days, daily, with nodes: p50 / p99 (ms)".into(),
        format!("{p50:.1} / {p99:.1}"),
    ));
    eprintln!("[analytics bench] Workflow.stats: {p50:.1} / {p99:.1} ms");

    // The ranking's worst case: when every node has about the same p95, no ceiling
    // rules a node out and `slowestNodes` reads every node's duration sketches, as this
    // does (over the whole days a month-long ranking reads).
    let dashboards = Dashboards {
        store: store.clone(),
        access: auth.access(),
        minute_days: 3,
    };
    let mut times = Vec::new();
    for i in 0..23 {
        let started = Instant::now();
        let all = dashboards
            .steps_with(
                owner.workspace,
                StepLevel::Node(None),
                end - 30 * DAY_MS,
                end,
                Sketches::DurationsOnly,
            )
            .await?;
        anyhow::ensure!(all.len() == WORKFLOWS * NODES, "{} nodes", all.len());
        if i >= 3 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    rows.push((
        "every node's sketches, 30 days (the worst case of slowest nodes): p50 / p99 (ms)".into(),
        format!("{p50:.1} / {p99:.1}"),
    ));
    eprintln!("[analytics bench] every node's sketches: {p50:.1} / {p99:.1} ms");
    Ok(rows)
}

/// p50 and p99 of 100 runs (after 3 warm-ups), in milliseconds.
async fn time_query(
    schema: &AnalyticsSchema,
    caller: &Caller,
    query: &str,
    vars: Value,
) -> anyhow::Result<(f64, f64)> {
    let mut times = Vec::new();
    for i in 0..103 {
        let request = async_graphql::Request::new(query)
            .variables(async_graphql::Variables::from_json(vars.clone()))
            .data(caller.clone());
        let started = Instant::now();
        let response = schema.execute(request).await;
        let elapsed = started.elapsed();
        anyhow::ensure!(response.errors.is_empty(), "{query}: {:?}", response.errors);
        if i >= 3 {
            times.push(elapsed);
        }
    }
    times.sort();
    Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = common::Args::from_env();
    let executions = args.number("--executions", 1_000_000)?;
    let mut columns = Vec::new();
    for backend in args.backends()? {
        eprintln!(
            "[analytics bench] measuring {} with {executions} runs",
            backend.name()
        );
        columns.push((backend.name(), measure(&backend, executions).await?));
    }
    common::report(&args, &columns)
}
