//! The execution engine end to end, on both backends (embedded: SQLite and the
//! in-process queue; distributed: PostgreSQL and RabbitMQ), through the fleet's
//! GraphQL API with its real workers: scheduling across branches and joins, skips,
//! retries with backoff ending in the dead-letter queue, idempotent starts.

mod support;

use std::time::Duration;

use flowfleet_shared::queue::dead_letter_queue;
use flowfleet_shared::testing::Backend;
use serde_json::{json, Value};
use support::eventually;
use support::in_process::{start_with, Fleet, Person};

const EXECUTION: &str = "query($id: ID!) { execution(id: $id) {
    status output error progress { done total }
    steps { nodeId nodeType status attempt input output branch error logs worker queuedAt dueAt startedAt finishedAt }
} }";

/// A fleet whose workers retry quickly.
async fn fleet(backend: &Backend) -> Fleet {
    start_with(backend, |c| {
        c.worker.retry_base_ms = 200;
        c.worker.retry_cap_ms = 1_000;
    })
    .await
}

/// Signs up, creates and publishes `definition`; returns the owner and workflow id.
async fn published(fleet: &Fleet, email: &str, definition: Value) -> (Person, String) {
    let owner = fleet.sign_up(email).await;
    let me = owner
        .client
        .ok("{ me { memberships { workspace { id } } } }", json!({}))
        .await;
    let ws = me["me"]["memberships"][0]["workspace"]["id"].clone();
    let created = owner
        .client
        .ok(
            "mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { id } }",
            json!({"i": {"workspaceId": ws, "name": "Engine test", "definition": definition}}),
        )
        .await;
    let wf = created["createWorkflow"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, body) = owner
        .client
        .raw(
            "mutation($id: ID!) { publishWorkflow(id: $id) { version } }",
            json!({"id": wf}),
        )
        .await;
    assert_eq!(body["data"]["publishWorkflow"]["version"], 1, "{body}");
    (owner, wf)
}

async fn start(owner: &Person, wf: &str, input: Value) -> String {
    let started = owner
        .client
        .ok(
            "mutation($i: StartExecutionInput!) { startExecution(input: $i) { id status } }",
            json!({"i": {"workflowId": wf, "input": input}}),
        )
        .await;
    started["startExecution"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits for the execution to finish and returns it.
async fn finished(owner: &Person, id: &str) -> Value {
    eventually(60, || async move {
        let e = owner.client.ok(EXECUTION, json!({"id": id})).await["execution"].clone();
        matches!(
            e["status"].as_str(),
            Some("SUCCEEDED" | "FAILED" | "CANCELLED" | "TIMED_OUT")
        )
        .then_some(e)
    })
    .await
}

fn steps_of<'a>(e: &'a Value, node: &str) -> Vec<&'a Value> {
    e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["nodeId"] == node)
        .collect()
}

#[tokio::test]
async fn branches_skip_joins_wait_and_each_step_is_recorded_once() {
    for backend in Backend::all() {
        let name = backend.name();
        let fleet = fleet(&backend).await;
        // order → big? (condition) → review → notify ─┐
        //                     └──────→ ship ──────────┴→ done (a join)
        // plus a parallel `audit` branch from the start that the join also waits for.
        let (owner, wf) = published(
            &fleet,
            "branches@example.com",
            json!({
                "nodes": [
                    {"id": "order", "type": "passthrough"},
                    {"id": "big", "type": "condition", "config": {"field": "/total", "operator": "greaterThan", "value": 100}},
                    {"id": "review", "type": "set", "config": {"value": {"reviewed": true}}},
                    {"id": "notify", "type": "passthrough"},
                    {"id": "ship", "type": "set", "config": {"value": {"shipped": true}}},
                    {"id": "audit", "type": "set", "config": {"value": {"audited": true}}},
                    {"id": "done", "type": "passthrough"}
                ],
                "edges": [
                    {"source": "order", "target": "big"},
                    {"source": "big", "sourceHandle": "true", "target": "review"},
                    {"source": "review", "target": "notify"},
                    {"source": "big", "sourceHandle": "false", "target": "ship"},
                    {"source": "notify", "target": "done"},
                    {"source": "ship", "target": "done"},
                    {"source": "order", "target": "audit"},
                    {"source": "audit", "target": "done"}
                ],
                "triggers": [{"kind": "MANUAL"}]
            }),
        )
        .await;

        let small = start(&owner, &wf, json!({"total": 20})).await;
        let big = start(&owner, &wf, json!({"total": 500})).await;
        let small = finished(&owner, &small).await;
        assert_eq!(small["status"], "SUCCEEDED", "{name}: {small}");
        // The join ran once, with the two branches that ran.
        assert_eq!(
            small["output"],
            json!({"ship": {"shipped": true}, "audit": {"audited": true}}),
            "{name}"
        );
        assert_eq!(small["progress"], json!({"done": 7, "total": 7}), "{name}");
        for node in ["review", "notify"] {
            let s = steps_of(&small, node);
            assert_eq!(s.len(), 1, "{name}: {node}");
            assert_eq!(s[0]["status"], "SKIPPED", "{name}: {node}");
            assert!(s[0]["worker"].is_null(), "{name}: a skip runs nowhere");
        }
        assert_eq!(steps_of(&small, "big")[0]["branch"], "false", "{name}");
        for node in ["order", "big", "ship", "audit", "done"] {
            let s = steps_of(&small, node);
            assert_eq!(s.len(), 1, "{name}: {node} recorded once: {small}");
            assert_eq!(s[0]["status"], "SUCCEEDED", "{name}: {node}");
            assert_eq!(s[0]["attempt"], 1, "{name}");
            assert!(s[0]["worker"].is_string(), "{name}");
            assert!(
                s[0]["startedAt"].is_string() && s[0]["finishedAt"].is_string(),
                "{name}"
            );
            assert!(!s[0]["logs"].as_array().unwrap().is_empty(), "{name}");
        }
        // The join started after both its branches finished.
        let done = steps_of(&small, "done")[0];
        for before in ["ship", "audit"] {
            assert!(
                steps_of(&small, before)[0]["finishedAt"].as_str() <= done["startedAt"].as_str(),
                "{name}: {before} finished after the join started"
            );
        }

        let big = finished(&owner, &big).await;
        assert_eq!(big["status"], "SUCCEEDED", "{name}: {big}");
        assert_eq!(
            big["output"],
            json!({"notify": {"reviewed": true}, "audit": {"audited": true}}),
            "{name}"
        );
        assert_eq!(steps_of(&big, "ship")[0]["status"], "SKIPPED", "{name}");
        assert_eq!(
            steps_of(&big, "review")[0]["input"],
            json!({"total": 500}),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_failing_step_is_retried_with_backoff_then_dead_lettered() {
    for backend in Backend::all() {
        let name = backend.name();
        let fleet = fleet(&backend).await;
        // `merge` needs an object input: given a number, every attempt fails.
        let (owner, wf) = published(
            &fleet,
            "retries@example.com",
            json!({
                "nodes": [
                    {"id": "first", "type": "set", "config": {"value": 42}},
                    {"id": "broken", "type": "set", "config": {"value": {"a": 1}, "merge": true}, "maxRetries": 2},
                    {"id": "after", "type": "passthrough"}
                ],
                "edges": [
                    {"source": "first", "target": "broken"},
                    {"source": "broken", "target": "after"}
                ],
                "triggers": [{"kind": "MANUAL"}],
                "settings": {"maxRetries": 0}
            }),
        )
        .await;
        let id = start(&owner, &wf, json!({})).await;
        let e = finished(&owner, &id).await;
        assert_eq!(e["status"], "FAILED", "{name}: {e}");
        let error = e["error"].as_str().unwrap();
        assert!(
            error.contains("node `broken` failed after 3 attempts") && error.contains("merge"),
            "{name}: {error}"
        );
        let attempts = steps_of(&e, "broken");
        assert_eq!(
            attempts
                .iter()
                .map(|s| s["attempt"].as_i64().unwrap())
                .collect::<Vec<_>>(),
            vec![1, 2, 3],
            "{name}: the node's maxRetries (2) overrides the workflow's (0)"
        );
        for (i, s) in attempts.iter().enumerate() {
            assert_eq!(s["status"], "FAILED", "{name}");
            assert!(s["error"].as_str().unwrap().contains("merge"), "{name}");
            if i > 0 {
                // Each retry waited out a backoff after the previous attempt.
                let prev = attempts[i - 1]["finishedAt"].as_str().unwrap();
                let due = s["dueAt"].as_str().unwrap();
                assert!(
                    due > prev,
                    "{name}: retry {i} was due at {due}, before {prev}"
                );
                assert!(
                    s["startedAt"].as_str().unwrap() >= due,
                    "{name}: started before due"
                );
            }
        }
        assert!(
            steps_of(&e, "after").is_empty(),
            "{name}: nothing runs after a failure"
        );

        // The last attempt's task is in the dead-letter queue, with the reason.
        let mut dead = fleet
            .queue
            .consume(&dead_letter_queue("steps"), 8)
            .await
            .unwrap();
        let d = tokio::time::timeout(Duration::from_secs(10), dead.next())
            .await
            .unwrap_or_else(|_| panic!("{name}: no dead letter"))
            .unwrap();
        assert_eq!(d.task.payload["executionId"], id.as_str(), "{name}");
        assert_eq!(d.task.payload["nodeId"], "broken", "{name}");
        assert_eq!(d.task.attempt, 3, "{name}");
        assert!(
            d.task.last_error.as_deref().unwrap().contains("merge"),
            "{name}"
        );
        d.ack().await.unwrap();
    }
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_execution_once() {
    for backend in Backend::all() {
        let name = backend.name();
        let fleet = fleet(&backend).await;
        let (owner, wf) = published(
            &fleet,
            "idem@example.com",
            json!({
                "nodes": [{"id": "only", "type": "set", "config": {"value": "ran"}}],
                "triggers": [{"kind": "MANUAL"}]
            }),
        )
        .await;
        let query = "mutation($i: StartExecutionInput!) { startExecution(input: $i) { id } }";
        let variables = json!({"i": {"workflowId": wf, "idempotencyKey": "order-17"}});
        // Eight at once with one key: one execution.
        let ids: Vec<Value> =
            futures::future::join_all((0..8).map(|_| owner.client.ok(query, variables.clone())))
                .await;
        let first = ids[0]["startExecution"]["id"].clone();
        assert!(
            ids.iter().all(|v| v["startExecution"]["id"] == first),
            "{name}: {ids:?}"
        );
        let e = finished(&owner, first.as_str().unwrap()).await;
        assert_eq!(e["output"], "ran", "{name}");
        assert_eq!(e["steps"].as_array().unwrap().len(), 1, "{name}: ran once");
        let list = owner
            .client
            .ok(
                "query($id: ID!) { workflow(id: $id) { executions { totalCount } } }",
                json!({"id": wf}),
            )
            .await;
        assert_eq!(list["workflow"]["executions"]["totalCount"], 1, "{name}");
    }
}
