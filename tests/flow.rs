//! The flow-control node types and execution operations end to end, on both
//! backends: `foreach` (fan-out within its concurrency, join in item order),
//! `merge`, a durable `delay` that survives a restart of the whole fleet,
//! `sub_workflow` (the parent waits for its child, fails with it, and cancels
//! it), retries of a failed execution (whole, or from the failed step), the
//! per-workflow concurrency limit, and filtered execution lists.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use flowfleet_host::testing::Backend;
use serde_json::{json, Value};
use support::engine::{finished, publish_as, published, start, steps_of};
use support::eventually;
use support::in_process::{start_with, Fleet, Person};

/// What the test server counts: requests in flight now and at most, and
/// whether `/flaky` works yet.
#[derive(Default)]
struct Counters {
    in_flight: AtomicUsize,
    most: AtomicUsize,
    flaky_fixed: AtomicBool,
}

/// `/double` answers `{"doubled": 2n}` for the body `n` after 200 ms, counting
/// requests in flight; `/flaky` is a 404 until `flaky_fixed`, then 200.
async fn server() -> (String, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let app = axum::Router::new()
        .route(
            "/double",
            post(
                |State(c): State<Arc<Counters>>, Json(n): Json<i64>| async move {
                    let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    c.most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    c.in_flight.fetch_sub(1, Ordering::SeqCst);
                    Json(json!({"doubled": n * 2}))
                },
            ),
        )
        .route(
            "/flaky",
            get(|State(c): State<Arc<Counters>>| async move {
                match c.flaky_fixed.load(Ordering::SeqCst) {
                    true => (StatusCode::OK, Json(json!({"fixed": true}))),
                    false => (StatusCode::NOT_FOUND, Json(json!({"fixed": false}))),
                }
            }),
        )
        .with_state(counters.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://127.0.0.1:{port}"), counters)
}

/// A fleet that may reach the test server and notices lost leases quickly.
async fn fleet(backend: &Backend) -> Fleet {
    start_with(backend, |c| {
        c.worker.lease_ms = 900;
        c.worker.max_concurrency = 8;
        c.http_request.allow = vec!["127.0.0.1/32".into()];
    })
    .await
}

const LIST: &str = "query($id: ID!, $f: ExecutionFilter) { workflow(id: $id) {
    executions(first: 50, filter: $f) { totalCount nodes { id status trigger retryOf } } } }";

#[tokio::test]
async fn a_foreach_runs_its_body_per_item_within_its_concurrency_and_joins_in_order() {
    for backend in Backend::all() {
        let (url, counters) = server().await;
        let f = fleet(&backend).await;
        let (owner, wf) = published(
            &f,
            "loop@example.com",
            json!({
                "nodes": [
                    {"id": "loop", "type": "foreach", "config": {"items": "/numbers", "concurrency": 2}},
                    {"id": "call", "type": "http_request", "config": {"method": "POST", "url": format!("{url}/double")}},
                    {"id": "pick", "type": "transform", "config": {"expression": ".body.doubled"}},
                    {"id": "sum", "type": "transform", "config": {"expression": "{results: ., total: add}"}}
                ],
                "edges": [
                    {"source": "loop", "sourceHandle": "item", "target": "call"},
                    {"source": "call", "target": "pick"},
                    {"source": "loop", "sourceHandle": "done", "target": "sum"}
                ],
                "triggers": [{"kind": "MANUAL"}]
            }),
        )
        .await;
        let id = start(&owner, &wf, json!({"numbers": [1, 2, 3, 4, 5, 6]})).await;
        let e = finished(&owner, &id).await;
        assert_eq!(e["status"], "SUCCEEDED", "{backend:?}: {e}");
        assert_eq!(
            e["output"],
            json!({"results": [2, 4, 6, 8, 10, 12], "total": 42}),
            "{backend:?}"
        );
        // Never more than the loop's concurrency at once, and that many at times.
        assert_eq!(counters.most.load(Ordering::SeqCst), 2, "{backend:?}");
        // Each item's body ran once: one successful attempt per node and item.
        for node in ["call", "pick"] {
            let mut items: Vec<i64> = steps_of(&e, node)
                .iter()
                .map(|s| {
                    assert_eq!(s["status"], "SUCCEEDED", "{backend:?}: {s}");
                    s["item"].as_i64().unwrap()
                })
                .collect();
            items.sort();
            assert_eq!(items, vec![0, 1, 2, 3, 4, 5], "{backend:?}: {node}");
        }
        assert!(
            steps_of(&e, "call")[0]["input"].is_number(),
            "{backend:?}: an item's input is its element"
        );
        assert_eq!(
            e["progress"],
            json!({"done": 14, "total": 14}),
            "{backend:?}"
        );

        // A loop over something that is not an array fails the step at once.
        let bad = start(&owner, &wf, json!({"numbers": "many"})).await;
        let e = finished(&owner, &bad).await;
        assert_eq!(e["status"], "FAILED", "{backend:?}");
        assert!(
            e["error"]
                .as_str()
                .unwrap()
                .contains("a string, not an array"),
            "{backend:?}: {e}"
        );
    }
}

#[tokio::test]
async fn a_merge_waits_for_a_durable_delay_that_survives_a_restart_of_everything() {
    for backend in Backend::all() {
        let mut f = fleet(&backend).await;
        let (owner, wf) = published(
            &f,
            "delay@example.com",
            json!({
                "nodes": [
                    {"id": "in", "type": "passthrough"},
                    {"id": "wait", "type": "delay", "config": {"durationMs": 2500}},
                    {"id": "fast", "type": "set", "config": {"value": {"fast": true}}},
                    {"id": "both", "type": "merge", "config": {"mode": "object"}}
                ],
                "edges": [
                    {"source": "in", "target": "wait"}, {"source": "in", "target": "fast"},
                    {"source": "wait", "target": "both"}, {"source": "fast", "target": "both"}
                ],
                "triggers": [{"kind": "MANUAL"}]
            }),
        )
        .await;
        let id = start(&owner, &wf, json!({"order": 7})).await;
        // Once the delay is recorded, stop every process and start them again.
        eventually(30, || async {
            let e = owner
                .client
                .ok(support::engine::EXECUTION, json!({"id": id}))
                .await["execution"]
                .clone();
            (!steps_of(&e, "wait").is_empty()).then_some(())
        })
        .await;
        f.restart().await;
        let e = finished(&owner, &id).await;
        assert_eq!(e["status"], "SUCCEEDED", "{backend:?}: {e}");
        assert_eq!(
            e["output"],
            json!({"order": 7, "fast": true}),
            "{backend:?}"
        );
        let wait = steps_of(&e, "wait");
        assert_eq!(wait.len(), 1, "{backend:?}: the wait is recorded once: {e}");
        let ms = |field: &str| {
            chrono::DateTime::parse_from_rfc3339(wait[0][field].as_str().unwrap())
                .unwrap()
                .timestamp_millis()
        };
        assert!(ms("dueAt") - ms("queuedAt") >= 2500, "{backend:?}: {e}");
        assert!(
            ms("startedAt") >= ms("dueAt"),
            "{backend:?}: not before it was due"
        );
        assert_eq!(
            steps_of(&e, "both")[0]["input"],
            json!({"wait": {"order": 7}, "fast": {"fast": true}})
        );
    }
}

/// Publishes a child workflow running `nodes` (a chain) in `owner`'s workspace.
async fn child(owner: &Person, nodes: Value) -> String {
    let ids: Vec<String> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    let edges: Vec<Value> = ids
        .windows(2)
        .map(|w| json!({"source": w[0], "target": w[1]}))
        .collect();
    publish_as(
        owner,
        json!({"nodes": nodes, "edges": edges, "triggers": [{"kind": "MANUAL"}]}),
    )
    .await
}

/// A parent that calls `child` and then doubles what it returns.
fn parent_of(child: &str) -> Value {
    json!({
        "nodes": [
            {"id": "call", "type": "sub_workflow", "config": {"workflowId": child}},
            {"id": "after", "type": "transform", "config": {"expression": ". * 2"}}
        ],
        "edges": [{"source": "call", "target": "after"}],
        "triggers": [{"kind": "MANUAL"}]
    })
}

const EXECUTION_OF_CHILD: &str =
    "query($id: ID!) { execution(id: $id) { status output error parentExecutionId trigger } }";

#[tokio::test]
async fn a_sub_workflow_waits_for_its_child_fails_with_it_and_cancels_it() {
    for backend in Backend::all() {
        let f = fleet(&backend).await;
        let owner = f.sign_up("parent@example.com").await;
        let times_ten = child(
            &owner,
            json!([{"id": "x10", "type": "transform", "config": {"expression": ".n * 10"}}]),
        )
        .await;
        let parent = publish_as(&owner, parent_of(&times_ten)).await;
        let id = start(&owner, &parent, json!({"n": 4})).await;
        let e = finished(&owner, &id).await;
        assert_eq!(e["status"], "SUCCEEDED", "{backend:?}: {e}");
        assert_eq!(e["output"], json!(80), "{backend:?}");
        let call = steps_of(&e, "call");
        assert_eq!(call.len(), 1, "{backend:?}: one attempt, one child: {e}");
        assert_eq!(call[0]["output"], json!(40));
        let kid = call[0]["childExecutionId"].as_str().unwrap().to_string();
        let c = owner
            .client
            .ok(EXECUTION_OF_CHILD, json!({"id": kid}))
            .await["execution"]
            .clone();
        assert_eq!(
            (
                c["status"].as_str(),
                c["parentExecutionId"].as_str(),
                c["trigger"].as_str()
            ),
            (Some("SUCCEEDED"), Some(id.as_str()), Some("SUB_WORKFLOW")),
            "{backend:?}: {c}"
        );

        // A child that fails fails the step waiting for it, and the parent.
        let failing = child(
            &owner,
            json!([{"id": "boom", "type": "transform", "config": {"expression": "error(\"no stock\")"}}]),
        )
        .await;
        let parent = publish_as(&owner, parent_of(&failing)).await;
        let id = start(&owner, &parent, json!({})).await;
        let e = finished(&owner, &id).await;
        assert_eq!(e["status"], "FAILED", "{backend:?}: {e}");
        assert!(
            e["error"].as_str().unwrap().contains("no stock"),
            "{backend:?}: {e}"
        );
        assert!(steps_of(&e, "after").is_empty(), "{backend:?}");

        // Cancelling the parent cancels the child it waits for.
        let slow = child(
            &owner,
            json!([{"id": "nap", "type": "delay", "config": {"durationMs": 60000}}]),
        )
        .await;
        let parent = publish_as(&owner, parent_of(&slow)).await;
        let id = start(&owner, &parent, json!({})).await;
        let kid = eventually(30, || async {
            let e = owner
                .client
                .ok(support::engine::EXECUTION, json!({"id": id}))
                .await["execution"]
                .clone();
            let call = steps_of(&e, "call");
            (call.first()?["status"] == "WAITING")
                .then(|| call[0]["childExecutionId"].as_str().map(str::to_string))
                .flatten()
        })
        .await;
        owner
            .client
            .ok(
                "mutation($id: ID!) { cancelExecution(id: $id) { id } }",
                json!({"id": id}),
            )
            .await;
        let c = owner
            .client
            .ok(EXECUTION_OF_CHILD, json!({"id": kid}))
            .await["execution"]
            .clone();
        assert_eq!(c["status"], "CANCELLED", "{backend:?}: {c}");
        assert!(
            c["error"].as_str().unwrap().contains(&id),
            "{backend:?}: {c}"
        );

        // A workflow that does not exist (or is another workspace's) fails at once.
        let stranger = f.sign_up("stranger@example.com").await;
        let theirs = publish_as(&stranger, parent_of(&times_ten)).await;
        let id = start(&stranger, &theirs, json!({"n": 1})).await;
        let e = finished(&stranger, &id).await;
        assert_eq!(e["status"], "FAILED", "{backend:?}: {e}");
        assert!(
            e["error"]
                .as_str()
                .unwrap()
                .contains("no published workflow"),
            "{backend:?}: {e}"
        );
        assert_eq!(steps_of(&e, "call").len(), 1, "{backend:?}: not retried");
    }
}

#[tokio::test]
async fn a_failed_execution_is_retried_whole_or_from_the_failed_step() {
    for backend in Backend::all() {
        let (url, counters) = server().await;
        let f = fleet(&backend).await;
        let (owner, wf) = published(
            &f,
            "retry@example.com",
            json!({
                "nodes": [
                    {"id": "first", "type": "http_request", "config": {"method": "POST", "url": format!("{url}/double"), "body": 5}},
                    {"id": "flaky", "type": "http_request", "config": {"url": format!("{url}/flaky")}},
                    {"id": "last", "type": "transform", "config": {"expression": ".body"}}
                ],
                "edges": [{"source": "first", "target": "flaky"}, {"source": "flaky", "target": "last"}],
                "triggers": [{"kind": "MANUAL"}]
            }),
        )
        .await;
        let id = start(&owner, &wf, json!({})).await;
        let failed = finished(&owner, &id).await;
        assert_eq!(failed["status"], "FAILED", "{backend:?}: {failed}");
        let retry = "mutation($id: ID!, $from: Boolean) { retryExecution(id: $id, fromFailedStep: $from) { id retryOf trigger status } }";
        counters.flaky_fixed.store(true, Ordering::SeqCst);

        let from_failed = owner
            .client
            .ok(retry, json!({"id": id, "from": true}))
            .await["retryExecution"]
            .clone();
        assert_eq!(from_failed["retryOf"], json!(id), "{backend:?}");
        assert_eq!(from_failed["trigger"], "RETRY");
        let e = finished(&owner, from_failed["id"].as_str().unwrap()).await;
        assert_eq!(e["status"], "SUCCEEDED", "{backend:?}: {e}");
        assert_eq!(e["output"], json!({"fixed": true}));
        let first = steps_of(&e, "first");
        assert_eq!(first.len(), 1);
        assert!(
            first[0]["logs"][0]
                .as_str()
                .unwrap()
                .contains("reused from execution"),
            "{backend:?}: the first step was not run again: {e}"
        );
        assert_eq!(first[0]["output"]["body"], json!({"doubled": 10}));

        let whole = owner
            .client
            .ok(retry, json!({"id": id, "from": false}))
            .await["retryExecution"]
            .clone();
        let e = finished(&owner, whole["id"].as_str().unwrap()).await;
        assert_eq!(e["status"], "SUCCEEDED", "{backend:?}: {e}");
        assert!(
            !steps_of(&e, "first")[0]["logs"][0]
                .as_str()
                .unwrap()
                .contains("reused"),
            "{backend:?}: a whole retry runs every step: {e}"
        );

        // Only failed, cancelled or timed-out executions are retried.
        let (_, body) = owner.client.raw(retry, json!({"id": whole["id"]})).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{backend:?}: a succeeded execution is not retried: {body}"
        );

        // The list, filtered.
        let list = |filter: Value| {
            let owner = &owner;
            let wf = wf.clone();
            async move {
                owner.client.ok(LIST, json!({"id": wf, "f": filter})).await["workflow"]
                    ["executions"]
                    .clone()
            }
        };
        assert_eq!(list(json!(null)).await["totalCount"], 3, "{backend:?}");
        let failed = list(json!({"status": ["FAILED"]})).await;
        assert_eq!(failed["totalCount"], 1, "{backend:?}");
        assert_eq!(failed["nodes"][0]["id"], json!(id));
        let retries = list(json!({"trigger": "RETRY", "status": ["SUCCEEDED", "FAILED"]})).await;
        assert_eq!(retries["totalCount"], 2, "{backend:?}");
        assert!(retries["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["retryOf"] == json!(id)));
        let future = list(json!({"createdAfter": "2999-01-01T00:00:00Z"})).await;
        assert_eq!(future["totalCount"], 0, "{backend:?}");
        let (_, body) = owner
            .client
            .raw(LIST, json!({"id": wf, "f": {"trigger": "TELEPATHY"}}))
            .await;
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("`trigger` must be one of"),
            "{backend:?}: {body}"
        );
        // The workspace-wide list, narrowed to this workflow.
        let all = owner
            .client
            .ok(
                "query($f: ExecutionFilter) { me { memberships { workspace { executions(filter: $f) { totalCount } } } } }",
                json!({"f": {"workflowId": wf, "status": ["SUCCEEDED"]}}),
            )
            .await;
        assert_eq!(
            all["me"]["memberships"][0]["workspace"]["executions"]["totalCount"], 2,
            "{backend:?}: {all}"
        );
    }
}

#[tokio::test]
async fn a_concurrency_limit_runs_one_execution_at_a_time_and_admits_the_rest_in_turn() {
    for backend in Backend::all() {
        let f = fleet(&backend).await;
        let (owner, wf) = published(
            &f,
            "limit@example.com",
            json!({
                "nodes": [
                    {"id": "hold", "type": "delay", "config": {"durationMs": 600}},
                    {"id": "done", "type": "passthrough"}
                ],
                "edges": [{"source": "hold", "target": "done"}],
                "triggers": [{"kind": "MANUAL"}],
                "settings": {"concurrencyLimit": 1}
            }),
        )
        .await;
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(start(&owner, &wf, json!({"n": n})).await);
        }
        let mut spans = Vec::new();
        for id in &ids {
            let e = finished(&owner, id).await;
            assert_eq!(e["status"], "SUCCEEDED", "{backend:?}: {e}");
            let steps = e["steps"].as_array().unwrap();
            let at = |s: &Value, f: &str| {
                chrono::DateTime::parse_from_rfc3339(s[f].as_str().unwrap())
                    .unwrap()
                    .timestamp_millis()
            };
            spans.push((
                at(&steps[0], "queuedAt"),
                at(steps.last().unwrap(), "finishedAt"),
            ));
        }
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1,
                "{backend:?}: executions overlapped under a limit of 1: {spans:?}"
            );
        }
    }
}
