//! Helpers for tests that run workflows through the fleet's API.

use serde_json::{json, Value};

use super::eventually;
use super::in_process::{Fleet, Person};

pub const EXECUTION: &str = "query($id: ID!) { execution(id: $id) {
    id status output error progress { done total }
    steps { nodeId item nodeType status attempt input output branch error logs worker childExecutionId queuedAt dueAt startedAt finishedAt }
} }";

/// The workspace of `person`'s first membership.
pub async fn workspace(person: &Person) -> Value {
    let me = person
        .client
        .ok("{ me { memberships { workspace { id } } } }", json!({}))
        .await;
    me["me"]["memberships"][0]["workspace"]["id"].clone()
}

/// Signs up, creates and publishes `definition`; returns the owner and workflow id.
pub async fn published(fleet: &Fleet, email: &str, definition: Value) -> (Person, String) {
    let owner = fleet.sign_up(email).await;
    let wf = publish_as(&owner, definition).await;
    (owner, wf)
}

/// Creates and publishes `definition` in `owner`'s workspace; returns its id.
pub async fn publish_as(owner: &Person, definition: Value) -> String {
    let ws = workspace(owner).await;
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
    wf
}

pub async fn start(owner: &Person, wf: &str, input: Value) -> String {
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
pub async fn finished(owner: &Person, id: &str) -> Value {
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

pub fn steps_of<'a>(e: &'a Value, node: &str) -> Vec<&'a Value> {
    e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["nodeId"] == node)
        .collect()
}
