//! EVENT triggers end to end, on both backends: a custom event (`emitEvent`) starts each
//! workflow of its workspace that follows it once, with the event as input, and a
//! redelivered event starts nothing new; another workspace's workflows never start; a
//! workflow following `execution.failed` gets the failure as input; and a workflow
//! started by its own success (or by its own artifact) stops at the depth limit.
//!
//! The trigger feed reaches the execution service moments after publishing, so each test
//! first waits until what it publishes is live, the way `tests/triggers.rs` waits for a
//! webhook to stop answering 404.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use flowfleet_host::testing::Backend;
use flowfleet_runtime::events::Event;
use serde_json::{json, Value};
use support::engine::{finished, publish_as, start, workspace};
use support::eventually;
use support::in_process::{self, Fleet, Person};

const EMIT: &str = "mutation($w: ID!, $n: String!, $p: JSON) { emitEvent(workspaceId: $w, name: $n, payload: $p) { id name occurredAt } }";

/// A workflow that outputs its input, started by `event`.
fn following(event: &str) -> Value {
    json!({
        "nodes": [{"id": "got", "type": "passthrough"}],
        "edges": [],
        "triggers": [{"kind": "EVENT", "event": event}]
    })
}

async fn emit(person: &Person, ws: &Value, name: &str, payload: Value) -> Value {
    person
        .client
        .ok(EMIT, json!({"w": ws, "n": name, "p": payload}))
        .await["emitEvent"]
        .clone()
}

/// The EVENT-triggered executions of `wf`, oldest first.
async fn runs(person: &Person, wf: &str) -> Vec<Value> {
    let r = person
        .client
        .ok(
            "query($id: ID!) { workflow(id: $id) { executions(first: 100, filter: {trigger: \"EVENT\"}) { nodes { id status trigger input } } } }",
            json!({"id": wf}),
        )
        .await;
    let mut nodes = r["workflow"]["executions"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    nodes.reverse();
    nodes
}

/// How many runs of `wf` each event id started.
async fn runs_by_event(person: &Person, wf: &str) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for r in runs(person, wf).await {
        *by.entry(r["input"]["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    by
}

/// Waits until `wf` follows custom event `name` in `ws`: emits probes until one starts it
/// (events are handled in order, so no probe is left in flight then).
async fn until_live(person: &Person, ws: &Value, wf: &str, name: &str) {
    eventually(30, || async {
        let probe = emit(person, ws, name, json!({"probe": true})).await;
        for _ in 0..10 {
            if runs(person, wf)
                .await
                .iter()
                .any(|r| r["input"]["id"] == probe["id"])
            {
                return Some(());
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        None
    })
    .await;
}

/// The same event, delivered again by the bus.
async fn redeliver(f: &Fleet, emitted: &Value, workspace: &Value, by: &Person, payload: Value) {
    let at = chrono::DateTime::parse_from_rfc3339(emitted["occurredAt"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    let event = Event {
        id: emitted["id"].as_str().unwrap().parse().unwrap(),
        kind: format!("custom.{}", emitted["name"].as_str().unwrap()),
        occurred_at_ms: at,
        payload: json!({"workspaceId": workspace, "name": emitted["name"], "payload": payload, "emittedBy": by.id, "depth": 0}),
        trace: Default::default(),
    };
    f.bus.publish(&event).await.unwrap();
}

#[tokio::test]
async fn a_custom_event_starts_each_following_workflow_of_its_workspace_once() {
    for backend in Backend::all() {
        let f = in_process::start(&backend).await;
        let owner = f.sign_up("events@example.com").await;
        let ws = workspace(&owner).await;
        let other = f.sign_up("elsewhere@example.com").await;
        let other_ws = workspace(&other).await;
        let wf = publish_as(&owner, following("order.created")).await;
        let theirs = publish_as(&other, following("order.created")).await;
        until_live(&owner, &ws, &wf, "order.created").await;
        until_live(&other, &other_ws, &theirs, "order.created").await;

        // Two events, two runs, each with its event as input.
        let a = emit(&owner, &ws, "order.created", json!({"n": 1})).await;
        let b = emit(&owner, &ws, "order.created", json!({"n": 2})).await;
        assert_eq!(a["name"], "order.created");
        assert_ne!(a["id"], b["id"]);
        let id = |e: &Value| e["id"].as_str().unwrap().to_string();
        eventually(30, || async {
            let by = runs_by_event(&owner, &wf).await;
            (by.contains_key(&id(&a)) && by.contains_key(&id(&b))).then_some(())
        })
        .await;
        let run = runs(&owner, &wf)
            .await
            .into_iter()
            .find(|r| r["input"]["id"] == a["id"])
            .unwrap();
        let at = chrono::DateTime::parse_from_rfc3339(a["occurredAt"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        let input =
            json!({"event": "order.created", "id": a["id"], "occurredAt": at, "payload": {"n": 1}});
        assert_eq!(run["input"], input, "{backend:?}");
        assert_eq!(run["trigger"], "EVENT");
        let done = finished(&owner, run["id"].as_str().unwrap()).await;
        assert_eq!(
            (&done["status"], &done["output"]),
            (&json!("SUCCEEDED"), &input),
            "{backend:?}: {done}"
        );

        // The bus delivers `a` again, twice: nothing new starts. A later event is handled
        // after them (one consumer, in order), so once it ran they were handled too.
        redeliver(&f, &a, &ws, &owner, json!({"n": 1})).await;
        redeliver(&f, &a, &ws, &owner, json!({"n": 1})).await;
        let c = emit(&owner, &ws, "order.created", json!({"n": 3})).await;
        eventually(30, || async {
            runs_by_event(&owner, &wf)
                .await
                .contains_key(&id(&c))
                .then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let by = runs_by_event(&owner, &wf).await;
        for e in [&a, &b, &c] {
            assert_eq!(by.get(&id(e)), Some(&1), "{backend:?}: {by:?}");
        }

        // The other workspace's workflow follows the same name, but none of these started it.
        let theirs_by = runs_by_event(&other, &theirs).await;
        for e in [&a, &b, &c] {
            assert!(
                !theirs_by.contains_key(&id(e)),
                "{backend:?}: another workspace's event started it: {theirs_by:?}"
            );
        }

        // Names and payloads are checked.
        for (name, payload) in [
            ("execution.failed", json!({})),
            ("custom.order.created", json!({})),
            ("Order.Created", json!({})),
            ("order..created", json!({})),
            ("", json!({})),
        ] {
            assert_bad_input(&owner, &ws, name, payload, "name").await;
        }
        assert_bad_input(&owner, &ws, &"a".repeat(101), json!({}), "name").await;
        // 64 KiB of JSON, and one byte more: `{"x":"` and `"}` are 8 bytes.
        let at_limit = json!({"x": "a".repeat(64 * 1024 - 8)});
        assert_eq!(
            emit(&owner, &ws, "bulk.load", at_limit).await["name"],
            "bulk.load"
        );
        let over = json!({"x": "a".repeat(64 * 1024 - 7)});
        assert_bad_input(&owner, &ws, "bulk.load", over, "payload").await;
    }
}

async fn assert_bad_input(person: &Person, ws: &Value, name: &str, payload: Value, path: &str) {
    let (_, body) = person
        .client
        .raw(EMIT, json!({"w": ws, "n": name, "p": payload}))
        .await;
    let error = &body["errors"][0];
    assert_eq!(
        (
            error["extensions"]["code"].as_str(),
            &error["extensions"]["path"]
        ),
        (Some("BAD_USER_INPUT"), &json!([path])),
        "{name}: {body}"
    );
}

#[tokio::test]
async fn a_workflow_following_execution_failed_gets_the_failure_as_input() {
    for backend in Backend::all() {
        let f = in_process::start(&backend).await;
        let owner = f.sign_up("failures@example.com").await;
        let failing = publish_as(
            &owner,
            json!({
                "nodes": [{"id": "boom", "type": "transform", "config": {"expression": "error(\"no stock\")"}}],
                "edges": [],
                "triggers": [{"kind": "MANUAL"}],
                "settings": {"maxRetries": 0}
            }),
        )
        .await;
        let watcher = publish_as(&owner, following("execution.failed")).await;
        // Until the watcher is live, a failure starts nothing: fail again until one does.
        let (failed, run) = eventually(60, || async {
            let failed = start(&owner, &failing, json!({})).await;
            assert_eq!(finished(&owner, &failed).await["status"], "FAILED");
            for _ in 0..20 {
                let run = runs(&owner, &watcher)
                    .await
                    .into_iter()
                    .find(|r| r["input"]["payload"]["executionId"] == json!(failed));
                if let Some(run) = run {
                    return Some((failed, run));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            None
        })
        .await;
        let input = &run["input"];
        assert_eq!(input["event"], "execution.failed", "{backend:?}: {input}");
        assert!(input["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
        assert!(input["occurredAt"].as_i64().unwrap() > 0);
        let payload = &input["payload"];
        assert_eq!(
            (
                &payload["executionId"],
                &payload["workflowId"],
                &payload["status"],
                &payload["depth"]
            ),
            (&json!(failed), &json!(failing), &json!("FAILED"), &json!(0)),
            "{backend:?}: {payload}"
        );
        assert!(
            payload["error"].as_str().unwrap().contains("no stock"),
            "{payload}"
        );
        let done = finished(&owner, run["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "SUCCEEDED", "{backend:?}: {done}");
        assert_eq!(done["output"]["payload"]["executionId"], json!(failed));
    }
}

/// The runs that followed one another from `root` (each started by the previous one's
/// event, linked by `input.payload.executionId`), root first; panics if one started two.
async fn chain(person: &Person, wf: &str, root: &str) -> Vec<String> {
    let mut next: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in runs(person, wf).await {
        let from = r["input"]["payload"]["executionId"]
            .as_str()
            .unwrap()
            .to_string();
        next.entry(from)
            .or_default()
            .push(r["id"].as_str().unwrap().to_string());
    }
    let mut chain = vec![root.to_string()];
    while let Some(children) = next.get(chain.last().unwrap()) {
        assert_eq!(
            children.len(),
            1,
            "one event started several runs: {children:?}"
        );
        chain.push(children[0].clone());
    }
    chain
}

/// A workflow started by its own `event` (its success, or the artifact it stores), started
/// once by hand: it runs at depths 0 to 8 (`MAX_DEPTH`), nine times, and stops.
async fn self_loop_stops_at_the_depth_limit(event: &str, email: &str) {
    for backend in Backend::all() {
        let f = in_process::start(&backend).await;
        let owner = f.sign_up(email).await;
        let wf = publish_as(
            &owner,
            json!({
                "nodes": [{"id": "again", "type": "passthrough"}],
                "edges": [],
                "triggers": [{"kind": "MANUAL"}, {"kind": "EVENT", "event": event}]
            }),
        )
        .await;
        // A root started before the trigger was live starts nothing: start another.
        let root = eventually(60, || async {
            let root = start(&owner, &wf, json!({})).await;
            assert_eq!(finished(&owner, &root).await["status"], "SUCCEEDED");
            for _ in 0..20 {
                if chain(&owner, &wf, &root).await.len() > 1 {
                    return Some(root);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            None
        })
        .await;
        // Until it stops growing: its last run finished, and nothing followed for 3 s (the
        // last one's event would start a tenth, deeper than the limit).
        let c = eventually(90, || async {
            let grown = chain(&owner, &wf, &root).await;
            let last = finished(&owner, grown.last().unwrap()).await;
            assert_eq!(last["status"], "SUCCEEDED", "{backend:?}: {last}");
            tokio::time::sleep(Duration::from_secs(3)).await;
            let c = chain(&owner, &wf, &root).await;
            (c == grown).then_some(c)
        })
        .await;
        assert_eq!(c.len(), 9, "{backend:?} ({event}): {c:?}");
        let depths: Vec<Value> = {
            let by_id: BTreeMap<String, Value> = runs(&owner, &wf)
                .await
                .into_iter()
                .map(|r| (r["id"].as_str().unwrap().to_string(), r))
                .collect();
            c[1..]
                .iter()
                .map(|id| by_id[id]["input"]["payload"]["depth"].clone())
                .collect()
        };
        if event == "execution.succeeded" {
            // Each started by the outcome of the one before, at depths 0 to 7.
            assert_eq!(depths, (0..8).map(|d| json!(d)).collect::<Vec<_>>());
        }
    }
}

#[tokio::test]
async fn a_workflow_started_by_its_own_success_stops_at_the_depth_limit() {
    self_loop_stops_at_the_depth_limit("execution.succeeded", "loop@example.com").await;
}

#[tokio::test]
async fn a_workflow_started_by_its_own_artifact_stops_at_the_depth_limit() {
    self_loop_stops_at_the_depth_limit("file.created", "artifacts@example.com").await;
}
