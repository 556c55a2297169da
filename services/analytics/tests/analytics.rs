//! The analytics service on every backend of `Backend::all()`: embedded (SQLite,
//! the in-process bus and cache) and distributed (PostgreSQL, RabbitMQ, Redis).
//! Workspace membership comes from a small AuthService that answers from a map
//! (the auth service's gRPC contract, in process), until the auth service can
//! grant roles other than owner.

use std::time::Duration;

use flowfleet_analytics::domain::hour_start;
use flowfleet_analytics::graphql::{schema, AnalyticsSchema, Ctx};
use flowfleet_analytics::handlers::events::ExecutionFacts;
use flowfleet_analytics::store::Store;
use flowfleet_analytics::{build, MIGRATIONS};
use flowfleet_auth::testing::RealAuth;
use flowfleet_host::testing::{Backend, TestInfra};
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::db::Db;
use flowfleet_runtime::events::consumer::EventHandler;
use flowfleet_runtime::events::Event;
use flowfleet_runtime::proto::analytics::v1::analytics_service_client::AnalyticsServiceClient;
use flowfleet_runtime::proto::analytics::v1::GetWorkflowStatsRequest;
use flowfleet_security::identity::{Caller, Identity, Role};
use serde_json::{json, Value};
use uuid::Uuid;

/// The service's database on `env`'s backend, migrated.
async fn db(env: &TestInfra) -> Db {
    env.db(ServiceName::Analytics, &MIGRATIONS).await
}

struct Run {
    workflow: Uuid,
    workspace: Uuid,
    succeeded: bool,
    duration_ms: i64,
    finished_at_ms: i64,
}

fn outcome(run: &Run) -> Event {
    let (kind, status, error) = if run.succeeded {
        ("execution.succeeded", "SUCCEEDED", Value::Null)
    } else {
        (
            "execution.failed",
            "FAILED",
            json!("step `fetch` failed: HTTP 502"),
        )
    };
    Event::new(
        kind,
        run.finished_at_ms,
        json!({
            "executionId": Uuid::now_v7(), "workflowId": run.workflow,
            "workspaceId": run.workspace, "version": 1, "status": status,
            "triggeredBy": Uuid::now_v7(), "workflowName": "Nightly sync",
            "startedAtMs": run.finished_at_ms - run.duration_ms,
            "finishedAtMs": run.finished_at_ms, "durationMs": run.duration_ms,
            "error": error,
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

async fn stats(schema: &AnalyticsSchema, caller: Caller, workflow: Uuid) -> Value {
    let query = "query($reps: [_Any!]!) { _entities(representations: $reps) { ... on Workflow { id stats { \
        runs succeeded failed successRate averageDurationMs p50DurationMs p95DurationMs p99DurationMs lastRunAt } } } }";
    let request = async_graphql::Request::new(query)
        .variables(async_graphql::Variables::from_json(json!({
            "reps": [{"__typename": "Workflow", "id": workflow}]
        })))
        .data(caller);
    serde_json::to_value(schema.execute(request).await).unwrap()
}

fn error_code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn consuming_the_same_event_twice_counts_it_once() {
    for backend in Backend::all() {
        consuming_the_same_event_twice_counts_it_once_on(&backend).await;
    }
}

async fn consuming_the_same_event_twice_counts_it_once_on(backend: &Backend) {
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
        succeeded: true,
        duration_ms: 120,
        finished_at_ms: 1_700_000_000_000,
    });
    // Published before anything consumed: the queue was bound in `build`.
    bus.publish(&first).await.unwrap();
    bus.publish(&first).await.unwrap();
    let later = outcome(&Run {
        workflow,
        workspace,
        succeeded: false,
        duration_ms: 80,
        finished_at_ms: 1_700_000_100_000,
    });
    bus.publish(&later).await.unwrap();

    let store = Store::new(db.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.stats(workflow).await.unwrap().failed == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events were not consumed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One consumer handles a queue in order: the duplicate came before `later`, so once
    // `later` counted, the duplicate was handled too, and counted once.
    let s = store.stats(workflow).await.unwrap();
    assert_eq!(
        (s.runs, s.succeeded, s.failed, s.total_duration_ms),
        (2, 1, 1, 200)
    );

    // Through gRPC as well.
    let mut client = AnalyticsServiceClient::new(flowfleet_runtime::grpc::in_process(
        parts.grpc.clone(),
        Some(infra.service_credentials(flowfleet_runtime::config::ServiceName::Execution)),
    ));
    let reply = client
        .get_workflow_stats(GetWorkflowStatsRequest {
            workflow_id: workflow.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((reply.runs, reply.succeeded, reply.failed), (2, 1, 1));
    assert_eq!(reply.average_duration_ms, 100.0);
    assert_eq!(reply.last_run_at_ms, 1_700_000_100_000);
    let bad = client
        .get_workflow_stats(GetWorkflowStatsRequest {
            workflow_id: "not-a-uuid".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    infra.shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn handler_is_idempotent_and_rollups_match_facts() {
    for backend in Backend::all() {
        handler_is_idempotent_and_rollups_match_facts_on(&backend).await;
    }
}

async fn handler_is_idempotent_and_rollups_match_facts_on(backend: &Backend) {
    let env = backend.start().await;
    let db = db(&env).await;
    let handler = ExecutionFacts {
        store: Store::new(db.clone()),
    };
    let (workflow, workspace) = (Uuid::now_v7(), Uuid::now_v7());
    let base = 1_700_000_000_000_i64;
    let mut events = Vec::new();
    for i in 0..10 {
        events.push(outcome(&Run {
            workflow,
            workspace,
            succeeded: i % 3 != 0,
            duration_ms: 100 * (i + 1),
            // Spread across three hours.
            finished_at_ms: base + i * 20 * 60_000,
        }));
    }
    for e in events.iter().chain(events.iter()) {
        handler.handle(e).await.unwrap();
    }
    // A malformed payload is dropped, not retried forever.
    let junk = Event::new("execution.failed", base, json!({"executionId": 7}));
    handler.handle(&junk).await.unwrap();

    let facts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM facts")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(facts, 10);
    let rows: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT hour_start, runs, succeeded, failed, total_duration_ms FROM hourly_rollups \
         WHERE workflow_id = $1 ORDER BY hour_start",
    )
    .bind(workflow.to_string())
    .fetch_all(db.pool())
    .await
    .unwrap();
    let mut expected: Vec<(i64, i64, i64, i64, i64)> = Vec::new();
    for i in 0..10_i64 {
        let hour = hour_start(base + i * 20 * 60_000);
        let ok = i % 3 != 0;
        match expected.last_mut() {
            Some(last) if last.0 == hour => {
                last.1 += 1;
                last.2 += ok as i64;
                last.3 += (!ok) as i64;
                last.4 += 100 * (i + 1);
            }
            _ => expected.push((hour, 1, ok as i64, (!ok) as i64, 100 * (i + 1))),
        }
    }
    assert_eq!(rows, expected);
    assert!(rows.len() >= 3, "the runs span several hours");
}

#[tokio::test]
async fn stats_and_percentiles_come_from_the_facts() {
    for backend in Backend::all() {
        stats_and_percentiles_come_from_the_facts_on(&backend).await;
    }
}

async fn stats_and_percentiles_come_from_the_facts_on(backend: &Backend) {
    let env = backend.start().await;
    let db = db(&env).await;
    let handler = ExecutionFacts {
        store: Store::new(db.clone()),
    };
    // A viewer of a workspace, as the real auth service knows them.
    let auth = RealAuth::start(&env).await;
    let owner = auth.user("owner@example.com").await;
    let viewer = auth
        .member(&owner, "viewer@example.com", Role::Viewer)
        .await;
    let (workflow, workspace) = (Uuid::now_v7(), owner.workspace);
    let base = 1_700_000_000_000_i64;
    // Durations 1..=100 ms in a shuffled order; every fourth run failed.
    for k in 0..100_i64 {
        let d = (k * 37) % 100 + 1;
        handler
            .handle(&outcome(&Run {
                workflow,
                workspace,
                succeeded: d % 4 != 0,
                duration_ms: d,
                finished_at_ms: base + k * 1_000,
            }))
            .await
            .unwrap();
    }
    let schema = schema(Ctx {
        store: Store::new(db.clone()),
        access: auth.access(),
    });
    let r = stats(&schema, as_user(viewer.id), workflow).await;
    assert!(r["errors"].is_null(), "{r}");
    let s = &r["data"]["_entities"][0]["stats"];
    assert_eq!(s["runs"], 100);
    assert_eq!(s["succeeded"], 75);
    assert_eq!(s["failed"], 25);
    assert_eq!(s["successRate"], 0.75);
    assert_eq!(s["averageDurationMs"], 50.5);
    assert_eq!(s["p50DurationMs"], 50.0);
    assert_eq!(s["p95DurationMs"], 95.0);
    assert_eq!(s["p99DurationMs"], 99.0);
    let last = chrono::DateTime::parse_from_rfc3339(s["lastRunAt"].as_str().unwrap()).unwrap();
    assert_eq!(last.timestamp_millis(), base + 99 * 1_000);
}

#[tokio::test]
async fn stats_need_a_member_and_are_zero_without_runs() {
    for backend in Backend::all() {
        stats_need_a_member_and_are_zero_without_runs_on(&backend).await;
    }
}

async fn stats_need_a_member_and_are_zero_without_runs_on(backend: &Backend) {
    let env = backend.start().await;
    let db = db(&env).await;
    let auth = RealAuth::start(&env).await;
    let owner = auth.user("owner@example.com").await;
    let (workflow, workspace) = (Uuid::now_v7(), owner.workspace);
    let (member, stranger) = (owner.id, auth.user("stranger@example.com").await.id);
    ExecutionFacts {
        store: Store::new(db.clone()),
    }
    .handle(&outcome(&Run {
        workflow,
        workspace,
        succeeded: true,
        duration_ms: 10,
        finished_at_ms: 1_700_000_000_000,
    }))
    .await
    .unwrap();
    let schema = schema(Ctx {
        store: Store::new(db.clone()),
        access: auth.access(),
    });

    // A workflow that ran is another workspace's, and looks like a missing one.
    let r = stats(&schema, as_user(stranger), workflow).await;
    assert_eq!(error_code(&r), "NOT_FOUND", "{r}");
    let r = stats(&schema, Caller::Anonymous, workflow).await;
    assert_eq!(error_code(&r), "UNAUTHENTICATED", "{r}");
    let r = stats(&schema, as_user(member), workflow).await;
    assert_eq!(r["data"]["_entities"][0]["stats"]["runs"], 1, "{r}");

    // A workflow that never finished a run: zeros and nulls, for anyone signed in.
    let r = stats(&schema, as_user(stranger), Uuid::now_v7()).await;
    assert!(r["errors"].is_null(), "{r}");
    let s = &r["data"]["_entities"][0]["stats"];
    assert_eq!(
        *s,
        json!({
            "runs": 0, "succeeded": 0, "failed": 0, "successRate": 0.0,
            "averageDurationMs": 0.0, "p50DurationMs": null, "p95DurationMs": null,
            "p99DurationMs": null, "lastRunAt": null
        })
    );
}

#[tokio::test]
async fn the_subgraph_extends_workflow_with_stats() {
    for backend in Backend::all() {
        the_subgraph_extends_workflow_with_stats_on(&backend).await;
    }
}

async fn the_subgraph_extends_workflow_with_stats_on(backend: &Backend) {
    let env = backend.start().await;
    let db = db(&env).await;
    let access = RealAuth::start(&env).await.access();
    let parts = build(&env.infra, db, access).await.unwrap();
    let sdl = parts.subgraph.sdl();
    assert!(sdl.contains("type Workflow @key(fields: \"id\")"), "{sdl}");
    // Nullable on purpose: a failure nulls only this field, not the workflow.
    assert!(sdl.contains("stats: WorkflowStats\n"), "{sdl}");
    assert!(sdl.contains("p95DurationMs: Float"), "{sdl}");
    assert!(sdl.contains("lastRunAt: DateTime"), "{sdl}");
}
