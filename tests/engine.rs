//! The execution engine end to end, on both backends (embedded: SQLite and the
//! in-process queue; distributed: PostgreSQL and RabbitMQ), through the fleet's
//! GraphQL API with its real workers: scheduling across branches and joins, skips,
//! idempotent starts. Node types, retries, timeouts and dead letters are in
//! `nodes.rs`.

mod support;

use flowfleet_host::testing::Backend;
use serde_json::{json, Value};
use support::engine::{finished, published, start, steps_of};
use support::in_process::{start_with, Fleet};

/// A fleet whose workers retry quickly.
async fn fleet(backend: &Backend) -> Fleet {
    start_with(backend, |c| {
        c.worker.retry_base_ms = 200;
        c.worker.retry_cap_ms = 1_000;
    })
    .await
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
