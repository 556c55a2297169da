//! The analytics service on every backend of `Backend::all()`: embedded (SQLite,
//! the in-process bus and cache) and distributed (PostgreSQL, RabbitMQ, Redis), with
//! the real auth service answering who belongs where.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flowfleet_analytics::dashboards::Dashboards;
use flowfleet_analytics::domain::buckets::{Grain, DAY_MS, QUARTER_MS};
use flowfleet_analytics::domain::rollup::recoveries;
use flowfleet_analytics::domain::sketch::{Sketch, RELATIVE_ERROR};
use flowfleet_analytics::domain::RunStatus;
use flowfleet_analytics::graphql::{schema, AnalyticsSchema, Ctx};
use flowfleet_analytics::handlers::events::Facts;
use flowfleet_analytics::roller::Roller;
use flowfleet_analytics::store::Store;
use flowfleet_analytics::{build, MIGRATIONS};
use flowfleet_auth::testing::RealAuth;
use flowfleet_host::testing::{Backend, TestInfra};
use flowfleet_runtime::clock::ManualClock;
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::db::Db;
use flowfleet_runtime::events::consumer::EventHandler;
use flowfleet_runtime::events::Event;
use flowfleet_runtime::proto::analytics::v1::analytics_service_client::AnalyticsServiceClient;
use flowfleet_runtime::proto::analytics::v1::GetWorkflowStatsRequest;
use flowfleet_security::access::Access;
use flowfleet_security::identity::{Caller, Identity, Role};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;

/// 2026-03-02T00:00:00Z, a Monday.
const BASE: i64 = 1_772_409_600_000;

/// The service's database on `env`'s backend, migrated.
async fn db(env: &TestInfra) -> Db {
    env.db(ServiceName::Analytics, &MIGRATIONS).await
}

/// The consumer, the store and the schema over one database, with the clock at `now`.
struct Analytics {
    store: Store,
    facts: Facts,
    schema: AnalyticsSchema,
}

impl Analytics {
    fn new(db: &Db, access: Access, now: i64) -> Analytics {
        let store = Store::new(db.clone());
        Analytics {
            facts: Facts {
                store: store.clone(),
                roller: Roller::default(),
            },
            schema: schema(Ctx {
                dashboards: Dashboards {
                    store: store.clone(),
                    access,
                    minute_days: 3,
                },
                clock: Arc::new(ManualClock::new(now)),
            }),
            store,
        }
    }

    async fn handle(&self, event: &Event) {
        self.facts.handle(event).await.unwrap();
    }

    /// Rolls everything waiting, `batch` facts at a time.
    async fn roll(&self, batch: i64) {
        while self.store.roll(batch, BASE - 3 * DAY_MS).await.unwrap() > 0 {}
    }

    async fn query(&self, caller: Caller, query: &str, variables: Value) -> Value {
        let request = async_graphql::Request::new(query)
            .variables(async_graphql::Variables::from_json(variables))
            .data(caller);
        serde_json::to_value(self.schema.execute(request).await).unwrap()
    }
}

struct Run {
    workflow: Uuid,
    workspace: Uuid,
    status: &'static str,
    duration_ms: i64,
    finished_at_ms: i64,
}

fn outcome(run: &Run) -> Event {
    let kind = match run.status {
        "SUCCEEDED" => "execution.succeeded",
        "CANCELLED" => "execution.cancelled",
        _ => "execution.failed",
    };
    let error = (run.status != "SUCCEEDED").then(|| format!("step `fetch` ended {}", run.status));
    Event::new(
        kind,
        run.finished_at_ms,
        json!({
            "executionId": Uuid::now_v7(), "workflowId": run.workflow,
            "workspaceId": run.workspace, "version": 1, "status": run.status,
            "triggeredBy": Uuid::nil(), "workflowName": "Nightly sync",
            "startedAtMs": run.finished_at_ms - run.duration_ms,
            "finishedAtMs": run.finished_at_ms, "durationMs": run.duration_ms,
            "error": error,
        }),
    )
}

#[allow(clippy::too_many_arguments)]
fn step(
    workflow: Uuid,
    workspace: Uuid,
    node: &str,
    node_type: &str,
    status: &str,
    attempt: i64,
    duration_ms: i64,
    wait_ms: i64,
    finished_at_ms: i64,
) -> Event {
    Event::new(
        "step.finished",
        finished_at_ms,
        json!({
            "stepId": Uuid::now_v7(), "executionId": Uuid::now_v7(), "workflowId": workflow,
            "workspaceId": workspace, "nodeId": node, "nodeType": node_type, "item": null,
            "attempt": attempt, "status": status, "error": null, "queuedAtMs": 0,
            "startedAtMs": finished_at_ms - duration_ms, "finishedAtMs": finished_at_ms,
            "durationMs": duration_ms, "queueWaitMs": wait_ms,
        }),
    )
}

fn as_user(user: Uuid) -> Caller {
    Caller::User(Identity {
        user_id: user,
        email: "ada@example.com".into(),
        api_key: None,
    })
}

fn error_code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

fn iso(ms: i64) -> String {
    flowfleet_runtime::clock::to_datetime(ms).to_rfc3339()
}

const STATS: &str = "query($reps: [_Any!]!, $range: AnalyticsRange) { _entities(representations: $reps) { \
    ... on Workflow { id stats(range: $range) { runs succeeded failed cancelled timedOut successRate \
    averageDurationMs p50DurationMs p95DurationMs p99DurationMs lastRunAt \
    overTime { start runs } nodes { nodeId nodeType attempts failed retries p95DurationMs } } } } }";

const ANALYTICS: &str =
    "query($reps: [_Any!]!, $range: AnalyticsRange!) { _entities(representations: $reps) { \
    ... on Workspace { analytics(range: $range) { from to bucket timeZone \
    executions { start end runs succeeded failed cancelled timedOut successRate p95DurationMs } \
    totals { runs failed p50DurationMs } \
    topFailingWorkflows(limit: 5) { workflow { id } runs failures failureRate lastError } \
    busiestWorkflows(limit: 5) { workflow { id } runs } \
    slowestNodeTypes { nodeType attempts failed retries p95DurationMs } \
    slowestNodes(limit: 3) { workflow { id } nodeId p95DurationMs } \
    steps { start attempts p95QueueWaitMs } \
    kpis { activeWorkflows runs runsPerDay activeUsers } } } } }";

fn workspace_rep(workspace: Uuid, time_zone: &str) -> Value {
    json!([{"__typename": "Workspace", "id": workspace, "timeZone": time_zone}])
}

#[tokio::test]
async fn events_through_the_bus_are_counted_once_and_reach_grpc() {
    for backend in Backend::all() {
        events_through_the_bus_are_counted_once_and_reach_grpc_on(&backend).await;
    }
}

async fn events_through_the_bus_are_counted_once_and_reach_grpc_on(backend: &Backend) {
    let env = backend.start().await;
    let db = db(&env).await;
    let infra = env.infra.clone();
    let bus = infra.bus.clone();
    let access = RealAuth::start(&env).await.access();
    let mut parts = build(&infra, db.clone(), access).await.unwrap();
    let tasks = parts.spawn_tasks();

    let (workflow, workspace) = (Uuid::now_v7(), Uuid::now_v7());
    let first = outcome(&Run {
        workflow,
        workspace,
        status: "SUCCEEDED",
        duration_ms: 120,
        finished_at_ms: BASE,
    });
    // Published before anything consumed: the queue was bound in `build`.
    bus.publish(&first).await.unwrap();
    bus.publish(&first).await.unwrap();
    for (status, duration) in [("FAILED", 80), ("TIMED_OUT", 400), ("CANCELLED", 5)] {
        let run = Run {
            workflow,
            workspace,
            status,
            duration_ms: duration,
            finished_at_ms: BASE + 20 * 60_000,
        };
        bus.publish(&outcome(&run)).await.unwrap();
    }

    let mut client = AnalyticsServiceClient::new(flowfleet_runtime::grpc::in_process(
        parts.grpc.clone(),
        Some(infra.service_credentials(ServiceName::Execution)),
    ));
    let request = |from_ms, to_ms| GetWorkflowStatsRequest {
        workflow_id: workflow.to_string(),
        from_ms,
        to_ms,
    };
    // The roller folds the facts in the background: wait for all four.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let reply = loop {
        let reply = client
            .get_workflow_stats(request(0, 0))
            .await
            .unwrap()
            .into_inner();
        if reply.runs >= 4 {
            break reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events were not rolled up: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // One consumer handles a queue in order: the duplicate came before the others, so
    // once they counted, the duplicate was handled too, and counted once.
    assert_eq!(
        (
            reply.runs,
            reply.succeeded,
            reply.failed,
            reply.timed_out,
            reply.cancelled
        ),
        (4, 1, 1, 1, 1)
    );
    assert_eq!(
        reply.average_duration_ms,
        (120.0 + 80.0 + 400.0 + 5.0) / 4.0
    );
    assert_eq!(reply.last_run_at_ms, BASE + 20 * 60_000);
    assert_eq!(
        reply.success_rate,
        Some(1.0 / 3.0),
        "cancelled runs are left out"
    );
    // Of the four durations 5, 80, 120 and 400, rank ⌊0.99·3⌋ = 2 is 120.
    let p99 = reply.p99_duration_ms.unwrap();
    assert!((p99 - 120.0).abs() <= 120.0 * RELATIVE_ERROR + 0.5, "{p99}");
    // A range that holds only the first run (ends round to the quarter-hour).
    let early = client
        .get_workflow_stats(request(BASE - 60_000, BASE + 60_000))
        .await
        .unwrap()
        .into_inner();
    // (The rollups are in the message: this once failed under load, unexplained.)
    let rows: Vec<(String, String, i64, i64)> =
        sqlx::query_as("SELECT workflow_id, grain, bucket_start, runs FROM execution_rollups")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(
        (early.runs, early.succeeded),
        (1, 1),
        "{}: rollups {rows:?}, BASE {BASE}",
        backend.name()
    );
    let bad = client
        .get_workflow_stats(GetWorkflowStatsRequest {
            workflow_id: "not-a-uuid".into(),
            from_ms: 0,
            to_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let backwards = client
        .get_workflow_stats(request(BASE, BASE - 1))
        .await
        .unwrap_err();
    assert_eq!(backwards.code(), tonic::Code::InvalidArgument);

    infra.shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
}

/// What the rollups of a set of facts must be, computed from the facts directly.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    counts: [i64; 6],
    p50: Option<f64>,
    p95: Option<f64>,
}

#[tokio::test]
async fn rollups_equal_a_recomputation_from_facts_whatever_the_order() {
    for backend in Backend::all() {
        for seed in 0..4 {
            rollups_equal_a_recomputation_on(&backend, seed).await;
        }
    }
}

/// Random executions and step attempts over three days, delivered shuffled, partly
/// twice, with rolls of random batch sizes in between (late facts land in buckets rolled
/// before): every rollup row equals a recomputation from the distinct facts.
async fn rollups_equal_a_recomputation_on(backend: &Backend, seed: u64) {
    let env = backend.start().await;
    let db = db(&env).await;
    let access = RealAuth::start(&env).await.access();
    let a = Analytics::new(&db, access, BASE + 3 * DAY_MS);
    let mut rng = StdRng::seed_from_u64(seed);
    let workspace = Uuid::now_v7();
    let workflows: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let statuses = ["SUCCEEDED", "SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"];
    let mut runs = Vec::new();
    let mut steps = Vec::new();
    for _ in 0..60 {
        let run = Run {
            workflow: workflows[rng.gen_range(0..3)],
            workspace,
            status: statuses[rng.gen_range(0..statuses.len())],
            duration_ms: rng.gen_range(0..5_000),
            finished_at_ms: BASE + rng.gen_range(-2 * DAY_MS..DAY_MS),
        };
        runs.push((outcome(&run), run));
    }
    for _ in 0..60 {
        let (node, ty) = [
            ("fetch", "http_request"),
            ("shape", "transform"),
            ("again", "http_request"),
        ][rng.gen_range(0..3)];
        let status = ["SUCCEEDED", "FAILED", "TIMED_OUT"][rng.gen_range(0..3)];
        let event = step(
            workflows[rng.gen_range(0..3)],
            workspace,
            node,
            ty,
            status,
            rng.gen_range(1..4),
            rng.gen_range(0..3_000),
            rng.gen_range(0..500),
            BASE + rng.gen_range(-2 * DAY_MS..DAY_MS),
        );
        steps.push(event);
    }
    let mut deliveries: Vec<&Event> = runs.iter().map(|(e, _)| e).chain(steps.iter()).collect();
    let repeated: Vec<&Event> = deliveries.iter().step_by(3).copied().collect();
    deliveries.extend(repeated);
    deliveries.shuffle(&mut rng);
    for event in deliveries {
        a.handle(event).await;
        if rng.gen_bool(0.1) {
            a.roll(rng.gen_range(1..20)).await;
        }
    }
    a.roll(7).await;

    // Executions: per grain, workflow ('' for the workspace) and bucket.
    let minutes_since = BASE - 3 * DAY_MS;
    let mut expected: BTreeMap<(String, String, i64), (Expected, Vec<i64>)> = BTreeMap::new();
    for (_, run) in &runs {
        for grain in Grain::ALL {
            if grain == Grain::Minute && run.finished_at_ms < minutes_since {
                continue;
            }
            for workflow in [run.workflow.to_string(), String::new()] {
                let key = (
                    grain.as_str().to_string(),
                    workflow,
                    grain.start(run.finished_at_ms),
                );
                let (e, durations) = expected.entry(key).or_default();
                let i = 1 + ["SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"]
                    .iter()
                    .position(|s| *s == run.status)
                    .unwrap();
                e.counts[0] += 1;
                e.counts[i] += 1;
                e.counts[5] += run.duration_ms;
                durations.push(run.duration_ms);
            }
        }
    }
    let expected: BTreeMap<_, Expected> = expected
        .into_iter()
        .map(|(k, (mut e, durations))| {
            let mut sketch = Sketch::default();
            durations.iter().for_each(|d| sketch.add(*d));
            (e.p50, e.p95) = (sketch.quantile(0.5), sketch.quantile(0.95));
            (k, e)
        })
        .collect();
    let rows = sqlx::query(
        "SELECT grain, workflow_id, bucket_start, runs, succeeded, failed, cancelled, timed_out, \
         total_duration_ms, durations FROM execution_rollups WHERE workspace_id = $1",
    )
    .bind(workspace.to_string())
    .fetch_all(db.pool())
    .await
    .unwrap();
    let stored: BTreeMap<_, Expected> = rows
        .iter()
        .map(|r| {
            let sketch = Sketch::decode(&r.get::<String, _>("durations")).unwrap();
            (
                (r.get("grain"), r.get("workflow_id"), r.get("bucket_start")),
                Expected {
                    counts: [
                        "runs",
                        "succeeded",
                        "failed",
                        "cancelled",
                        "timed_out",
                        "total_duration_ms",
                    ]
                    .map(|c| r.get::<i64, _>(c)),
                    p50: sketch.quantile(0.5),
                    p95: sketch.quantile(0.95),
                },
            )
        })
        .collect();
    assert_eq!(stored, expected, "seed {seed}");

    // Steps: every attempt is in its node's, its type's and the workspace's rollups.
    let totals = sqlx::query(
        "SELECT node_type, node_id, CAST(SUM(attempts) AS BIGINT) AS n, \
         CAST(SUM(failed) AS BIGINT) AS failed, CAST(SUM(retries) AS BIGINT) AS retries \
         FROM step_rollups WHERE workspace_id = $1 AND grain = 'DAY' GROUP BY node_type, node_id",
    )
    .bind(workspace.to_string())
    .fetch_all(db.pool())
    .await
    .unwrap();
    let sum = |pick: &dyn Fn(&Value) -> bool| -> (i64, i64, i64) {
        steps
            .iter()
            .map(|e| &e.payload)
            .filter(|p| pick(p))
            .fold((0, 0, 0), |t, p| {
                (
                    t.0 + 1,
                    t.1 + i64::from(p["status"] != "SUCCEEDED"),
                    t.2 + i64::from(p["attempt"].as_i64() > Some(1)),
                )
            })
    };
    for r in &totals {
        let (ty, node): (String, String) = (r.get("node_type"), r.get("node_id"));
        let want = match (ty.as_str(), node.as_str()) {
            ("", "") => sum(&|_| true),
            (ty, "") => sum(&|p| p["nodeType"] == ty),
            (_, node) => sum(&|p| p["nodeId"] == node),
        };
        assert_eq!(
            (r.get("n"), r.get("failed"), r.get("retries")),
            want,
            "{ty}/{node}"
        );
    }
    assert_eq!(
        totals.len(),
        1 + 2 + 3,
        "levels: workspace, 2 types, 3 node ids"
    );
    assert_eq!(a.store.unrolled().await.unwrap(), 0);

    // Recoveries kept batch by batch equal those of each workflow's whole history.
    for workflow in &workflows {
        let mut history: Vec<(i64, RunStatus)> = runs
            .iter()
            .filter(|(_, r)| r.workflow == *workflow)
            .map(|(_, r)| (r.finished_at_ms, RunStatus::parse(r.status).unwrap()))
            .collect();
        history.sort_by_key(|(at, _)| *at);
        let stored: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT failed_at, recovered_at FROM recoveries WHERE workflow_id = $1 ORDER BY failed_at",
        )
        .bind(workflow.to_string())
        .fetch_all(db.pool())
        .await
        .unwrap();
        assert_eq!(stored, recoveries(&history), "seed {seed}");
        // Its span, as `Workflow.stats` reads it for "all time".
        let span: (i64, i64) = sqlx::query_as(
            "SELECT first_run_at, last_run_at FROM workflow_spans WHERE workflow_id = $1",
        )
        .bind(workflow.to_string())
        .fetch_one(db.pool())
        .await
        .unwrap();
        let want = (history.first().unwrap().0, history.last().unwrap().0);
        assert_eq!(span, want, "seed {seed}");
    }
    // Recovery rollups, adjusted as recoveries were replaced, equal the sums of the
    // recoveries kept.
    for (grain, len) in [("QUARTER", QUARTER_MS), ("DAY", DAY_MS)] {
        let stored: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT bucket_start, recoveries, total_ms FROM recovery_rollups \
             WHERE grain = $1 AND recoveries <> 0 ORDER BY bucket_start",
        )
        .bind(grain)
        .fetch_all(db.pool())
        .await
        .unwrap();
        let kept: Vec<(i64, i64)> =
            sqlx::query_as("SELECT failed_at, recovered_at FROM recoveries")
                .fetch_all(db.pool())
                .await
                .unwrap();
        let mut want: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for (failed_at, recovered_at) in kept {
            let sum = want
                .entry(recovered_at - recovered_at.rem_euclid(len))
                .or_default();
            sum.0 += 1;
            sum.1 += recovered_at - failed_at;
        }
        let want: Vec<(i64, i64, i64)> = want.into_iter().map(|(b, (n, t))| (b, n, t)).collect();
        assert!(!want.is_empty(), "seed {seed}: no recoveries to check");
        assert_eq!(stored, want, "seed {seed}, {grain}");
    }
}

#[tokio::test]
async fn dashboards_bucket_in_the_workspace_time_zone_across_daylight_saving() {
    for backend in Backend::all() {
        dashboards_on(&backend).await;
    }
}

async fn dashboards_on(backend: &Backend) {
    let env = backend.start().await;
    let db = db(&env).await;
    let auth = RealAuth::start(&env).await;
    let owner = auth.user("owner@example.com").await;
    let viewer = auth
        .member(&owner, "viewer@example.com", Role::Viewer)
        .await;
    let stranger = auth.user("stranger@example.com").await;
    let workspace = owner.workspace;
    // Berlin moved its clocks forward at 02:00 on 2026-03-29: that local day is 23 hours.
    let berlin = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    };
    let a = Analytics::new(&db, auth.access(), berlin("2026-04-01T00:00:00+02:00"));
    let (nightly, hourly) = (Uuid::now_v7(), Uuid::now_v7());
    let runs = [
        (nightly, "SUCCEEDED", 100, "2026-03-28T23:30:00+01:00"),
        (nightly, "FAILED", 300, "2026-03-29T00:30:00+01:00"),
        (hourly, "SUCCEEDED", 200, "2026-03-29T23:30:00+02:00"),
        (hourly, "TIMED_OUT", 900, "2026-03-30T00:10:00+02:00"),
        (hourly, "CANCELLED", 10, "2026-03-30T01:00:00+02:00"),
    ];
    for (workflow, status, duration_ms, at) in runs {
        a.handle(&outcome(&Run {
            workflow,
            workspace,
            status,
            duration_ms,
            finished_at_ms: berlin(at),
        }))
        .await;
    }
    for (node, ty, status, attempt, duration, wait) in [
        ("fetch", "http_request", "FAILED", 1, 900, 40),
        ("fetch", "http_request", "SUCCEEDED", 2, 700, 60),
        ("shape", "transform", "SUCCEEDED", 1, 5, 2),
    ] {
        a.handle(&step(
            nightly,
            workspace,
            node,
            ty,
            status,
            attempt,
            duration,
            wait,
            berlin("2026-03-29T00:20:00+01:00"),
        ))
        .await;
    }
    // Someone published a workflow: an active user.
    a.handle(&Event::new(
        "workflow.published",
        berlin("2026-03-29T10:00:00+02:00"),
        json!({"workflowId": nightly, "workspaceId": workspace, "version": 1, "publishedBy": owner.id}),
    ))
    .await;
    a.roll(100).await;

    let range = json!({"from": "2026-03-28T00:00:00+01:00", "to": "2026-03-31T00:00:00+02:00", "bucket": "DAY"});
    let r = a
        .query(
            as_user(viewer.id),
            ANALYTICS,
            json!({"reps": workspace_rep(workspace, "Europe/Berlin"), "range": range}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let d = &r["data"]["_entities"][0]["analytics"];
    assert_eq!(d["timeZone"], "Europe/Berlin");
    let days: Vec<(String, i64)> = d["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["start"].as_str().unwrap().to_string(),
                b["runs"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        days,
        vec![
            (iso(berlin("2026-03-28T00:00:00+01:00")), 1),
            (iso(berlin("2026-03-29T00:00:00+01:00")), 2),
            (iso(berlin("2026-03-30T00:00:00+02:00")), 2),
        ]
    );
    let day2 = &d["executions"][1];
    assert_eq!(
        day2["end"],
        iso(berlin("2026-03-30T00:00:00+02:00")),
        "a 23-hour day"
    );
    assert_eq!(
        (day2["succeeded"].as_i64(), day2["failed"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(day2["successRate"], 0.5);
    assert_eq!(
        d["executions"][2]["successRate"], 0.0,
        "cancelled runs are left out"
    );
    assert_eq!(d["totals"]["runs"], 5);
    let failing = &d["topFailingWorkflows"];
    assert_eq!(failing.as_array().unwrap().len(), 2);
    assert_eq!(failing[0]["failures"], 1);
    assert!(failing[0]["lastError"].as_str().unwrap().contains("ended"));
    assert_eq!(
        d["busiestWorkflows"][0]["workflow"]["id"],
        hourly.to_string()
    );
    assert_eq!(d["busiestWorkflows"][0]["runs"], 3);
    let types = &d["slowestNodeTypes"];
    assert_eq!(types[0]["nodeType"], "http_request");
    assert_eq!(
        (
            types[0]["attempts"].as_i64(),
            types[0]["failed"].as_i64(),
            types[0]["retries"].as_i64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(d["slowestNodes"][0]["nodeId"], "fetch");
    let steps: i64 = d["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["attempts"].as_i64().unwrap())
        .sum();
    assert_eq!(steps, 3);
    assert_eq!(d["kpis"]["activeWorkflows"], 2);
    assert_eq!(d["kpis"]["activeUsers"], 1);
    let per_day = d["kpis"]["runsPerDay"].as_f64().unwrap();
    assert!((per_day - 5.0 / (71.0 / 24.0)).abs() < 1e-9, "{per_day}");

    // The same range in UTC cuts the days elsewhere.
    let utc = json!({"from": "2026-03-28T00:00:00Z", "to": "2026-03-31T00:00:00Z", "bucket": "DAY", "timeZone": "UTC"});
    let r = a
        .query(
            as_user(owner.id),
            ANALYTICS,
            json!({"reps": workspace_rep(workspace, "Europe/Berlin"), "range": utc}),
        )
        .await;
    let runs: Vec<i64> = r["data"]["_entities"][0]["analytics"]["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["runs"].as_i64().unwrap())
        .collect();
    assert_eq!(runs, vec![2, 3, 0], "{r}");

    // Bad input and outsiders.
    for (range, message) in [
        (
            json!({"from": "2026-03-28T00:00:00Z", "to": "2026-03-28T00:00:00Z"}),
            "empty",
        ),
        (
            json!({"from": "2026-01-01T00:00:00Z", "to": "2026-03-28T00:00:00Z", "bucket": "MINUTE"}),
            "kept for 3 days",
        ),
        (
            json!({"from": "2020-01-01T00:00:00Z", "to": "2026-03-28T00:00:00Z", "bucket": "HOUR"}),
            "at most 2000",
        ),
        (
            json!({"from": "2026-03-28T00:00:00Z", "to": "2026-03-29T00:00:00Z", "timeZone": "Mars/Olympus"}),
            "IANA",
        ),
    ] {
        let r = a
            .query(
                as_user(owner.id),
                ANALYTICS,
                json!({"reps": workspace_rep(workspace, "UTC"), "range": range}),
            )
            .await;
        assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
        assert!(
            r["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(message),
            "{r}"
        );
    }
    let r = a
        .query(
            as_user(stranger.id),
            ANALYTICS,
            json!({"reps": workspace_rep(workspace, "UTC"), "range": range}),
        )
        .await;
    assert_eq!(error_code(&r), "FORBIDDEN", "{r}");
    let r = a
        .query(
            Caller::Anonymous,
            ANALYTICS,
            json!({"reps": workspace_rep(workspace, "UTC"), "range": range}),
        )
        .await;
    assert_eq!(error_code(&r), "UNAUTHENTICATED", "{r}");
}

#[tokio::test]
async fn workflow_stats_percentiles_are_within_the_sketch_error() {
    for backend in Backend::all() {
        workflow_stats_on(&backend).await;
    }
}

async fn workflow_stats_on(backend: &Backend) {
    let env = backend.start().await;
    let db = db(&env).await;
    let auth = RealAuth::start(&env).await;
    let owner = auth.user("owner@example.com").await;
    let stranger = auth.user("stranger@example.com").await;
    let a = Analytics::new(&db, auth.access(), BASE + DAY_MS);
    let workflow = Uuid::now_v7();
    // Durations 1..=1000 ms in a shuffled order over a day; every fourth run failed.
    let mut durations = Vec::new();
    for k in 0..1000_i64 {
        let d = (k * 379) % 1000 + 1;
        durations.push(d);
        let status = if d % 4 == 0 { "FAILED" } else { "SUCCEEDED" };
        let run = Run {
            workflow,
            workspace: owner.workspace,
            status,
            duration_ms: d,
            finished_at_ms: BASE + k * 60_000,
        };
        a.handle(&outcome(&run)).await;
    }
    a.handle(&step(
        workflow,
        owner.workspace,
        "fetch",
        "http_request",
        "SUCCEEDED",
        1,
        50,
        3,
        BASE + 5_000,
    ))
    .await;
    a.roll(333).await;
    durations.sort();
    let exact = |q: f64| durations[(q * (durations.len() as f64 - 1.0)) as usize] as f64;
    let reps = json!([{"__typename": "Workflow", "id": workflow}]);
    let r = a
        .query(as_user(owner.id), STATS, json!({"reps": reps}))
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let s = &r["data"]["_entities"][0]["stats"];
    assert_eq!(
        (
            s["runs"].as_i64(),
            s["succeeded"].as_i64(),
            s["failed"].as_i64()
        ),
        (Some(1000), Some(750), Some(250))
    );
    assert_eq!(s["successRate"], 0.75);
    assert_eq!(s["averageDurationMs"], 500.5);
    for (field, q) in [
        ("p50DurationMs", 0.5),
        ("p95DurationMs", 0.95),
        ("p99DurationMs", 0.99),
    ] {
        let (got, want) = (s[field].as_f64().unwrap(), exact(q));
        assert!(
            (got - want).abs() <= want * RELATIVE_ERROR + 0.5,
            "{field}: {got} vs {want}"
        );
    }
    assert_eq!(s["lastRunAt"], iso(BASE + 999 * 60_000));
    assert!(s["overTime"].is_null(), "no range, no series");

    // Over a range: hourly buckets and the nodes.
    let range = json!({"from": iso(BASE), "to": iso(BASE + 2 * 3_600_000), "bucket": "HOUR"});
    let r = a
        .query(
            as_user(owner.id),
            STATS,
            json!({"reps": reps, "range": range}),
        )
        .await;
    let s = &r["data"]["_entities"][0]["stats"];
    assert_eq!(s["runs"], 120, "{r}");
    let hours: Vec<i64> = s["overTime"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["runs"].as_i64().unwrap())
        .collect();
    assert_eq!(hours, vec![60, 60]);
    assert_eq!(s["nodes"][0]["nodeId"], "fetch");
    assert_eq!(s["nodes"][0]["attempts"], 1);

    // Outsiders cannot tell the workflow from a missing one; one that never ran is zeros.
    let r = a
        .query(as_user(stranger.id), STATS, json!({"reps": reps}))
        .await;
    assert_eq!(error_code(&r), "NOT_FOUND", "{r}");
    let r = a
        .query(Caller::Anonymous, STATS, json!({"reps": reps}))
        .await;
    assert_eq!(error_code(&r), "UNAUTHENTICATED", "{r}");
    let never = json!([{"__typename": "Workflow", "id": Uuid::now_v7()}]);
    let r = a
        .query(as_user(stranger.id), STATS, json!({"reps": never}))
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let s = &r["data"]["_entities"][0]["stats"];
    assert_eq!(
        (
            s["runs"].as_i64(),
            s["successRate"].is_null(),
            s["p50DurationMs"].is_null()
        ),
        (Some(0), true, true)
    );
}

#[tokio::test]
async fn a_rebuild_recomputes_the_rollups_from_the_facts() {
    for backend in Backend::all() {
        let env = backend.start().await;
        let db = db(&env).await;
        let a = Analytics::new(&db, RealAuth::start(&env).await.access(), BASE);
        let (workflow, workspace) = (Uuid::now_v7(), Uuid::now_v7());
        for k in 0..30 {
            let run = Run {
                workflow,
                workspace,
                status: "SUCCEEDED",
                duration_ms: k,
                finished_at_ms: BASE - k * 3_600_000,
            };
            a.handle(&outcome(&run)).await;
        }
        a.roll(1000).await;
        let before = rollup_rows(&db).await;
        // Rollups corrupted by hand since a day are put right from the facts.
        let since = Grain::Day.start(BASE - 10 * 3_600_000);
        sqlx::query("UPDATE execution_rollups SET runs = 999 WHERE bucket_start >= $1")
            .bind(since)
            .execute(db.pool())
            .await
            .unwrap();
        assert_ne!(rollup_rows(&db).await, before);
        let queued = a.store.unroll_since(BASE - 10 * 3_600_000).await.unwrap();
        assert!(queued >= 10, "{queued}");
        a.roll(1000).await;
        assert!(
            rollup_rows(&db).await == before,
            "the rebuild restores the rollups"
        );
    }
}

async fn rollup_rows(db: &Db) -> Vec<(String, String, i64, i64, String)> {
    sqlx::query_as(
        "SELECT grain, workflow_id, bucket_start, runs, durations FROM execution_rollups \
         ORDER BY grain, workflow_id, bucket_start",
    )
    .fetch_all(db.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn the_subgraph_extends_workflow_and_workspace() {
    let env = Backend::all().remove(0).start().await;
    let db = db(&env).await;
    let access = RealAuth::start(&env).await.access();
    let parts = build(&env.infra, db, access).await.unwrap();
    let sdl = parts.subgraph.sdl();
    assert!(sdl.contains("type Workflow @key(fields: \"id\")"), "{sdl}");
    // Nullable on purpose: a failure nulls only this field, not the workflow.
    assert!(
        sdl.contains("stats(range: AnalyticsRange): WorkflowStats\n"),
        "{sdl}"
    );
    assert!(sdl.contains("timeZone: String! @external"), "{sdl}");
    assert!(sdl.contains("@requires(fields: \"timeZone\")"), "{sdl}");
}

/// The workspace's recovery KPIs over the first two hours after `BASE`.
async fn kpis(a: &Analytics, user: Uuid, workspace: Uuid) -> Value {
    let range = json!({"from": iso(BASE), "to": iso(BASE + 2 * 3_600_000), "bucket": "HOUR"});
    let query = "query($reps: [_Any!]!, $range: AnalyticsRange!) { _entities(representations: $reps) { \
        ... on Workspace { analytics(range: $range) { kpis { meanTimeToRecoveryMs recoveries } } } } }";
    let r = a
        .query(
            as_user(user),
            query,
            json!({"reps": workspace_rep(workspace, "UTC"), "range": range}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    r["data"]["_entities"][0]["analytics"]["kpis"].clone()
}

#[tokio::test]
async fn mean_time_to_recovery_counts_late_runs_in_their_place() {
    for backend in Backend::all() {
        let env = backend.start().await;
        let db = db(&env).await;
        let auth = RealAuth::start(&env).await;
        let owner = auth.user("owner@example.com").await;
        let a = Analytics::new(&db, auth.access(), BASE + DAY_MS);
        let workflow = Uuid::now_v7();
        let run = |status, minutes: i64| {
            outcome(&Run {
                workflow,
                workspace: owner.workspace,
                status,
                duration_ms: 10,
                finished_at_ms: BASE + minutes * 60_000,
            })
        };
        // Fails at 10, recovers at 40; fails at 60, recovers at 70.
        for (status, minutes) in [
            ("SUCCEEDED", 0),
            ("FAILED", 10),
            ("TIMED_OUT", 20),
            ("SUCCEEDED", 40),
            ("FAILED", 60),
            ("SUCCEEDED", 70),
        ] {
            a.handle(&run(status, minutes)).await;
        }
        a.roll(2).await;
        assert_eq!(
            kpis(&a, owner.id, owner.workspace).await,
            json!({"meanTimeToRecoveryMs": 20.0 * 60_000.0, "recoveries": 2})
        );
        // A late failure at 65 lengthens nothing (the stretch began at 60); one at 50,
        // after the success at 40, starts the second stretch earlier.
        a.handle(&run("FAILED", 65)).await;
        a.handle(&run("FAILED", 50)).await;
        a.roll(100).await;
        assert_eq!(
            kpis(&a, owner.id, owner.workspace).await,
            json!({"meanTimeToRecoveryMs": 25.0 * 60_000.0, "recoveries": 2})
        );
        // A late success at 15 splits the first stretch: 10→15, then 20→40.
        a.handle(&run("SUCCEEDED", 15)).await;
        a.roll(100).await;
        assert_eq!(
            kpis(&a, owner.id, owner.workspace).await,
            json!({"meanTimeToRecoveryMs": (5.0 + 20.0 + 20.0) / 3.0 * 60_000.0, "recoveries": 3})
        );
    }
}

#[tokio::test]
async fn retention_deletes_old_facts_once_across_replicas_and_keeps_rollups() {
    use flowfleet_analytics::store::retention::Retention;
    for backend in Backend::all() {
        let env = backend.start().await;
        let db = db(&env).await;
        let a = Analytics::new(&db, RealAuth::start(&env).await.access(), BASE);
        let (workflow, workspace) = (Uuid::now_v7(), Uuid::now_v7());
        for days_ago in [40, 10, 1] {
            let run = Run {
                workflow,
                workspace,
                status: "SUCCEEDED",
                duration_ms: 5,
                finished_at_ms: BASE - days_ago * DAY_MS,
            };
            a.handle(&outcome(&run)).await;
        }
        a.roll(100).await;
        // One more, old and not rolled up yet: it stays until it is.
        let late = Run {
            workflow,
            workspace,
            status: "FAILED",
            duration_ms: 5,
            finished_at_ms: BASE - 50 * DAY_MS,
        };
        a.handle(&outcome(&late)).await;
        let retention = Retention {
            fact_days: 30,
            minute_days: 3,
            rollup_days: 400,
        };
        let replica = Store::new(db.clone());
        let period = 7;
        assert!(a.store.claim_cleanup(period, BASE).await.unwrap());
        assert!(
            !replica.claim_cleanup(period, BASE).await.unwrap(),
            "one replica per period"
        );
        a.store.clean_up(period, retention, BASE).await.unwrap();
        let count = |sql: &'static str| {
            let db = db.clone();
            async move {
                sqlx::query(sql)
                    .fetch_one(db.pool())
                    .await
                    .unwrap()
                    .get::<i64, _>(0)
            }
        };
        assert_eq!(
            count("SELECT COUNT(*) FROM execution_facts").await,
            3,
            "the 40-day-old fact went; the unrolled one stayed"
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM execution_rollups WHERE grain = 'MINUTE'").await,
            2,
            "minutes of the last 3 days"
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM execution_rollups WHERE grain = 'DAY'").await,
            2 * 3,
            "day rollups outlive their facts"
        );
        // A rebuild cannot start where the facts are gone.
        let refused = flowfleet_analytics::roller::rebuild(
            &a.store,
            BASE - 35 * DAY_MS,
            retention,
            100,
            BASE,
            |_, _| {},
        )
        .await;
        assert!(refused
            .unwrap_err()
            .to_string()
            .contains("facts are kept 30 days"));
        let mut seen = Vec::new();
        let rebuilt = flowfleet_analytics::roller::rebuild(
            &a.store,
            BASE - 20 * DAY_MS,
            retention,
            1,
            BASE,
            |done, total| seen.push((done, total)),
        )
        .await
        .unwrap();
        assert_eq!(rebuilt, 2);
        assert_eq!(seen.first(), Some(&(0, 2)));
        assert_eq!(seen.last(), Some(&(2, 2)));
    }
}

#[tokio::test]
async fn worker_reports_add_up_across_pools_and_count_once() {
    for backend in Backend::all() {
        let env = backend.start().await;
        let db = db(&env).await;
        let auth = RealAuth::start(&env).await;
        let owner = auth.user("owner@example.com").await;
        let a = Analytics::new(&db, auth.access(), BASE + DAY_MS);
        let report =
            |worker: &str, minute: i64, slots: i64, busy: i64, steps: i64, backlog: i64| {
                Event::new(
                    "worker.sampled",
                    BASE + minute * 60_000,
                    json!({
                        "workerId": worker, "atMs": BASE + minute * 60_000, "intervalMs": 60_000,
                        "slots": slots, "slotMs": slots * 60_000, "busyMs": busy * 60_000,
                        "stepsFinished": steps, "backlog": backlog, "backlogMax": backlog + 5,
                    }),
                )
            };
        // Two pools over the first hour; one report delivered twice.
        let first = report("worker-a", 1, 4, 2, 120, 10);
        a.handle(&first).await;
        a.handle(&first).await;
        a.handle(&report("worker-b", 2, 4, 4, 240, 30)).await;
        a.handle(&report("worker-a", 70, 4, 1, 60, 0)).await;
        let range = json!({"from": iso(BASE), "to": iso(BASE + 2 * 3_600_000), "bucket": "HOUR"});
        let query = "query($reps: [_Any!]!, $range: AnalyticsRange!) { _entities(representations: $reps) { \
            ... on Workspace { analytics(range: $range) { workers { samples stepsPerMinute utilisation \
            averageSlots averageBacklog maxBacklog } } } } }";
        let r = a
            .query(
                as_user(owner.id),
                query,
                json!({"reps": workspace_rep(owner.workspace, "UTC"), "range": range}),
            )
            .await;
        assert!(r["errors"].is_null(), "{r}");
        let hours = &r["data"]["_entities"][0]["analytics"]["workers"];
        assert_eq!(
            hours[0],
            json!({
                "samples": 2, "stepsPerMinute": 360.0 / 60.0, "utilisation": 6.0 / 8.0,
                "averageSlots": 8.0 / 60.0, "averageBacklog": 20.0, "maxBacklog": 35
            })
        );
        assert_eq!(hours[1]["samples"], 1);
        assert_eq!(hours[1]["utilisation"], 0.25);
    }
}

#[tokio::test]
async fn the_slowest_nodes_are_those_a_full_scan_ranks_first() {
    use flowfleet_analytics::store::queries::StepLevel;
    for backend in Backend::all() {
        let env = backend.start().await;
        let db = db(&env).await;
        let auth = RealAuth::start(&env).await;
        let a = Analytics::new(&db, auth.access(), BASE + DAY_MS);
        let dashboards = Dashboards {
            store: a.store.clone(),
            access: auth.access(),
            minute_days: 3,
        };
        let (workspace, workflow) = (Uuid::now_v7(), Uuid::now_v7());
        let mut rng = StdRng::seed_from_u64(11);
        // 150 nodes (more than a ranking reads at once) whose means and tails disagree:
        // some are usually fast with rare long attempts, which a ranking by mean would
        // miss.
        for n in 0..150 {
            let (typical, tail) = (rng.gen_range(10..500), rng.gen_range(10..5_000));
            for k in 0..20 {
                let d = if k % 10 == 0 {
                    tail
                } else {
                    typical + rng.gen_range(0..20)
                };
                let ty = ["http_request", "transform", "notify"][n % 3];
                a.handle(&step(
                    workflow,
                    workspace,
                    &format!("n{n}"),
                    ty,
                    "SUCCEEDED",
                    1,
                    d,
                    0,
                    BASE + (n * 20 + k) as i64 * 10_000,
                ))
                .await;
            }
        }
        a.roll(1_000).await;
        let (from, to) = (BASE - DAY_MS, BASE + DAY_MS);
        for level in [StepLevel::Node(None), StepLevel::NodeType] {
            let mut all: Vec<(String, f64)> = dashboards
                .steps(workspace, level, from, to)
                .await
                .unwrap()
                .into_iter()
                .map(|(s, x)| {
                    (
                        format!("{}{}", s.node, s.node_type),
                        x.durations.quantile(0.95).unwrap(),
                    )
                })
                .collect();
            all.sort_by(|x, y| y.1.total_cmp(&x.1));
            let limit = 5.min(all.len());
            let top: Vec<f64> = dashboards
                .slowest(workspace, level, from, to, limit)
                .await
                .unwrap()
                .iter()
                .map(|(_, x)| x.durations.quantile(0.95).unwrap())
                .collect();
            let want: Vec<f64> = all.iter().take(limit).map(|(_, p)| *p).collect();
            assert_eq!(top, want, "{level:?}");
        }
    }
}

#[tokio::test]
async fn a_deleted_workspace_leaves_nothing_behind() {
    use flowfleet_host::privacy::UserDataHolder;
    for backend in Backend::all() {
        let env = backend.start().await;
        let db = db(&env).await;
        let a = Analytics::new(&db, RealAuth::start(&env).await.access(), BASE);
        let (workflow, workspace) = (Uuid::now_v7(), Uuid::now_v7());
        for (status, minutes) in [("FAILED", 1), ("SUCCEEDED", 5)] {
            let run = Run {
                workflow,
                workspace,
                status,
                duration_ms: 5,
                finished_at_ms: BASE + minutes * 60_000,
            };
            a.handle(&outcome(&run)).await;
        }
        a.handle(&step(
            workflow,
            workspace,
            "n",
            "transform",
            "SUCCEEDED",
            1,
            3,
            0,
            BASE,
        ))
        .await;
        a.handle(&Event::new(
            "workflow.updated",
            BASE,
            json!({"workflowId": workflow, "workspaceId": workspace, "revision": 2, "updatedBy": Uuid::now_v7()}),
        ))
        .await;
        a.roll(100).await;
        a.store.erase_workspace(workspace).await.unwrap();
        for table in [
            "execution_facts",
            "step_facts",
            "activity",
            "activity_days",
            "recoveries",
            "recovery_rollups",
            "workflow_spans",
            "execution_rollups",
            "step_rollups",
            "unrolled_executions",
            "unrolled_steps",
        ] {
            let n: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(db.pool())
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 0, "{table}");
        }
    }
}

/// Active people are counted from day rows for the whole days of a range and from
/// quarter-hour rows at its edges: someone active earlier on the range's first day, or
/// later on its last, is not in it.
#[tokio::test]
async fn active_users_count_whole_days_and_the_edges_only() {
    use flowfleet_analytics::domain::{Activity, ActivityKind, Fact};
    for backend in Backend::all() {
        let env = backend.start().await;
        let db = db(&env).await;
        let store = Store::new(db.clone());
        let workspace = Uuid::now_v7();
        let hour = 3_600_000;
        let (from, to) = (BASE + 10 * hour, BASE + 2 * DAY_MS + 6 * hour);
        let people: Vec<(Uuid, i64)> = [
            DAY_MS + 12 * hour,     // a whole day inside
            11 * hour,              // the first day, after `from`
            9 * hour + 45 * 60_000, // the first day, before `from`
            2 * DAY_MS + 5 * hour,  // the last day, before `to`
            2 * DAY_MS + 7 * hour,  // the last day, after `to`
            3 * DAY_MS,             // after the range
        ]
        .iter()
        .map(|at| (Uuid::now_v7(), BASE + at))
        .collect();
        for (user, at) in &people {
            for kind in [ActivityKind::Started, ActivityKind::Edited] {
                store
                    .record(&[Fact::Activity(Activity {
                        workspace_id: workspace,
                        user_id: *user,
                        kind,
                        at_ms: *at,
                    })])
                    .await
                    .unwrap();
            }
        }
        let n = store.active_users(workspace, from, to).await.unwrap();
        assert_eq!(n, 3, "{}", backend.name());
        // Within one day: quarter-hours only.
        let n = store
            .active_users(workspace, BASE + 10 * hour, BASE + 12 * hour)
            .await
            .unwrap();
        assert_eq!(n, 1, "{}", backend.name());
        assert_eq!(
            store.active_users(Uuid::now_v7(), from, to).await.unwrap(),
            0
        );
    }
}
