//! The fleet's subscriptions through the gateway, on both backends: `executionUpdated`,
//! `workspaceExecutions` and `notificationReceived`, with fields of other subgraphs
//! (the workflow's name) resolved on every event. On the distributed backend a second
//! replica of the whole fleet (its own gateway, services and workers) shares the
//! databases and the broker, and subscribers on each replica hear about a run whichever
//! replica's workers execute it.

mod support;

use std::time::Duration;

use flowfleet_host::testing::Backend;
use serde_json::{json, Value};
use support::engine::{published, start};
use support::in_process::start as start_fleet;
use tokio::sync::mpsc::UnboundedReceiver;

const EXECUTION_UPDATED: &str = "subscription($id: ID!) { executionUpdated(id: $id) {
    kind executionId step { nodeId status }
    execution { status progress { done total } workflow { name } } } }";

fn definition() -> Value {
    let nodes = vec![
        json!({"id": "first", "type": "transform", "config": {"expression": "{n: 1}"}}),
        // Long enough for every subscriber to be listening before the rest happens.
        json!({"id": "wait", "type": "delay", "config": {"durationMs": 1500}}),
        json!({"id": "last", "type": "transform", "config": {"expression": ".n + 1"}}),
    ];
    let edges: Vec<Value> = nodes
        .windows(2)
        .map(|w| json!({"source": w[0]["id"], "target": w[1]["id"]}))
        .collect();
    json!({"nodes": nodes, "edges": edges, "triggers": [{"kind": "MANUAL"}]})
}

/// Reads a subscription until it completes (at most 60 s).
async fn until_complete(mut events: UnboundedReceiver<Value>) -> Vec<Value> {
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => all.push(event),
            Ok(None) => return all,
            Err(_) => panic!("the subscription did not complete; got {all:?}"),
        }
    }
}

async fn first(events: &mut UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(60), events.recv())
        .await
        .expect("an event within 60 s")
        .expect("an event before the end")
}

fn assert_run_updates(updates: &[Value], execution: &str, replica: &str) {
    assert!(
        updates.iter().all(|u| u.get("errors").is_none()),
        "{replica}: {updates:?}"
    );
    let data: Vec<&Value> = updates
        .iter()
        .map(|u| &u["data"]["executionUpdated"])
        .collect();
    assert!(data.iter().all(|u| u["executionId"] == execution));
    let last = data.last().expect("updates");
    assert_eq!(last["kind"], "FINISHED", "{replica}: ends with the outcome");
    assert_eq!(last["execution"]["status"], "SUCCEEDED");
    assert_eq!(
        last["execution"]["workflow"]["name"], "Engine test",
        "from the workflow subgraph"
    );
    assert_eq!(
        last["execution"]["progress"],
        json!({"done": 3, "total": 3})
    );
    let steps: Vec<(&str, &str)> = data
        .iter()
        .filter(|u| u["kind"] == "STEP_FINISHED")
        .map(|u| {
            (
                u["step"]["nodeId"].as_str().unwrap(),
                u["step"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    // `first` may have finished before the subscription began; what follows may not be missed.
    assert!(
        steps.ends_with(&[("wait", "SUCCEEDED"), ("last", "SUCCEEDED")]),
        "{replica}: {steps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_every_replica_follow_runs_and_notifications() {
    for backend in Backend::all() {
        let name = backend.name();
        let fleet = start_fleet(&backend).await;
        let replica = match backend {
            Backend::Distributed { .. } => Some(fleet.replica().await),
            _ => None,
        };
        let (owner, wf) = published(&fleet, "watcher@example.com", definition()).await;
        let mut clients = vec![("first replica", owner.client.clone_for(&fleet.url))];
        if let Some(replica) = &replica {
            clients.push(("second replica", owner.client.clone_for(&replica.url)));
        }
        let workspace = support::engine::workspace(&owner).await;
        let mut runs = Vec::new();
        let mut inboxes = Vec::new();
        for (label, client) in &clients {
            let runs_of_workspace = client
                .subscribe(
                    "subscription($w: ID!) { workspaceExecutions(workspaceId: $w, filter: {kinds: [FINISHED]}) { kind executionId execution { status } } }",
                    json!({"w": workspace}),
                )
                .await
                .unwrap_or_else(|e| panic!("{name} {label}: {e:?}"));
            runs.push(runs_of_workspace);
            let inbox = client
                .subscribe(
                    "subscription { notificationReceived { id workspaceId subject } }",
                    json!({}),
                )
                .await
                .unwrap_or_else(|e| panic!("{name} {label}: {e:?}"));
            inboxes.push(inbox);
        }
        // The listeners register with the bus as the subscriptions start.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let execution = start(&owner, &wf, json!({})).await;
        let mut followers = Vec::new();
        for (label, client) in &clients {
            let updates = client
                .subscribe(EXECUTION_UPDATED, json!({"id": execution}))
                .await
                .unwrap_or_else(|e| panic!("{name} {label}: {e:?}"));
            followers.push((label, tokio::spawn(until_complete(updates))));
        }
        for (label, follower) in followers {
            let updates = follower.await.expect("follower");
            assert_run_updates(&updates, &execution, &format!("{name} {label}"));
        }
        for (((label, _), runs), inbox) in clients.iter().zip(&mut runs).zip(&mut inboxes) {
            let finished = first(runs).await;
            let update = &finished["data"]["workspaceExecutions"];
            assert_eq!(
                update["executionId"],
                execution.as_str(),
                "{name} {label}: {finished}"
            );
            assert_eq!(update["execution"]["status"], "SUCCEEDED");
            let notification = first(inbox).await;
            let received = &notification["data"]["notificationReceived"];
            assert_eq!(
                received["workspaceId"], workspace,
                "{name} {label}: {notification}"
            );
            assert!(received["subject"].as_str().is_some_and(|s| !s.is_empty()));
        }
        // An execution that has ended: its outcome at once, then the end.
        let again = clients[0]
            .1
            .subscribe(EXECUTION_UPDATED, json!({"id": execution}))
            .await
            .expect("subscribe");
        let updates = until_complete(again).await;
        assert_eq!(updates.len(), 1, "{updates:?}");
        assert_eq!(updates[0]["data"]["executionUpdated"]["kind"], "FINISHED");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_subscribing_to_a_run_gets_not_found_and_nothing_else() {
    let backend = Backend::Embedded;
    let fleet = start_fleet(&backend).await;
    let (owner, wf) = published(&fleet, "owner@example.com", definition()).await;
    let stranger = fleet.sign_up("stranger@example.com").await;
    let execution = start(&owner, &wf, json!({})).await;
    let refused = stranger
        .client
        .subscribe(EXECUTION_UPDATED, json!({"id": execution}))
        .await
        .expect("the stream starts; the refusal is its event");
    let events = until_complete(refused).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["errors"][0]["extensions"]["code"], "NOT_FOUND");
    assert!(events[0]["data"].is_null());
}

/// A subscription ends when its access token expires, with an error that says so: the
/// gateway checks the fleet's real tokens (here living three seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ends_when_its_access_token_expires() {
    let fleet = support::in_process::start_with(&Backend::Embedded, |c| {
        c.security.access_token_ttl_secs = 3;
    })
    .await;
    let owner = fleet.sign_up("brief@example.com").await;
    let workspace = support::engine::workspace(&owner).await;
    // A fresh token, so the subscription starts with its three seconds ahead.
    let mut client = owner.client.clone_for(&fleet.url);
    let logged_in = client
        .ok(
            "mutation($i: LogInInput!) { logIn(input: $i) { accessToken } }",
            json!({"i": {"email": "brief@example.com", "password": "long enough password"}}),
        )
        .await;
    client.token = Some(
        logged_in["logIn"]["accessToken"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let began = std::time::Instant::now();
    let runs = client
        .subscribe(
            "subscription($w: ID!) { workspaceExecutions(workspaceId: $w) { kind executionId } }",
            json!({"w": workspace}),
        )
        .await
        .expect("subscribe");
    let events = until_complete(runs).await;
    let last = events.last().expect("an event");
    assert_eq!(
        last["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{events:?}"
    );
    assert!(
        last["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{last}"
    );
    // At the token's expiry, not at the next periodic check (a minute).
    let lasted = began.elapsed();
    assert!(
        lasted >= Duration::from_secs(2) && lasted < Duration::from_secs(30),
        "ended after {lasted:?}"
    );
}
