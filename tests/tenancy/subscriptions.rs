//! The rows for the root fields of `type Subscription`, subscribed through the gateway (GraphQL
//! over SSE) by every caller at once, with one execution of the workspace's workflow
//! started while they listen:
//! - `executionUpdated(id)`: VIEWER (keys within their workspace); others get `NOT_FOUND`,
//!   as for `execution`. The world's execution has ended, so a subscriber gets its outcome
//!   at once.
//! - `workspaceExecutions(workspaceId)`: VIEWER; others get `FORBIDDEN` and no event, as
//!   for `Workspace.executions`. A subscriber gets the new execution's outcome.
//! - `notificationReceived`: a session of one's own (keys get `FORBIDDEN`); the owner gets
//!   the notification the new execution's outcome creates for them, and nobody else gets
//!   anything.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::world::{account, needs, Caller, Outcome, Who, World, CALLERS, FORBIDDEN, NOT_FOUND};

/// Every `Subscription` root field of the supergraph.
pub fn operations(supergraph: &str) -> Vec<String> {
    crate::fields_of(supergraph, "Subscription")
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

fn request(operation: &str, w: &World) -> (&'static str, Value) {
    match operation {
        "executionUpdated" => (
            "subscription($id: ID!) { executionUpdated(id: $id) { kind executionId execution { status workflow { name } } } }",
            json!({"id": w.execution}),
        ),
        "workspaceExecutions" => (
            "subscription($w: ID!) { workspaceExecutions(workspaceId: $w, filter: {kinds: [FINISHED]}) { kind executionId execution { status } } }",
            json!({"w": w.workspace}),
        ),
        "notificationReceived" => (
            "subscription { notificationReceived { id workspaceId subject } }",
            json!({}),
        ),
        other => panic!("no matrix row for the subscription `{other}`"),
    }
}

fn expected(operation: &str, caller: Caller) -> Option<String> {
    match operation {
        "executionUpdated" => needs(Who::Viewer, caller, NOT_FOUND),
        "workspaceExecutions" => needs(Who::Viewer, caller, FORBIDDEN),
        "notificationReceived" => account(caller, |_| None),
        other => panic!("no matrix row for the subscription `{other}`"),
    }
}

/// Whether `caller` must receive an event in the row (others that may subscribe get none).
fn hears(operation: &str, caller: Caller) -> bool {
    match operation {
        "notificationReceived" => caller == Caller::Session(Who::Owner),
        _ => true,
    }
}

/// The rows of one subscription: (caller, outcome, expected).
pub async fn rows(operation: &str, w: &World) -> Vec<(Caller, Outcome, Option<String>)> {
    let (query, variables) = request(operation, w);
    let mut streams = HashMap::new();
    let mut outcomes: HashMap<Caller, Outcome> = HashMap::new();
    for caller in CALLERS {
        match w.callers[&caller]
            .client
            .subscribe(query, variables.clone())
            .await
        {
            Ok(receiver) => {
                streams.insert(caller, receiver);
            }
            Err((_, body)) => {
                let code = body["errors"][0]["extensions"]["code"]
                    .as_str()
                    .unwrap_or("NO_CODE");
                outcomes.insert(caller, Err(code.to_string()));
            }
        }
    }
    // Refusals come as the stream's only event; give them a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (caller, receiver) in &mut streams {
        if let Ok(first) = receiver.try_recv() {
            outcomes.insert(*caller, outcome_of(&first));
        }
    }
    // Something for the listeners to hear: a new run of the workspace's workflow, whose
    // outcome also notifies the owner.
    w.owner()
        .client
        .ok(
            "mutation($i: StartExecutionInput!) { startExecution(input: $i) { id } }",
            json!({"i": {"workflowId": w.workflow}}),
        )
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for (caller, receiver) in &mut streams {
        if outcomes.contains_key(caller) || !hears(operation, *caller) {
            continue;
        }
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Ok(Some(first)) => {
                outcomes.insert(*caller, outcome_of(&first));
            }
            _ => {
                outcomes.insert(*caller, Err("NO_EVENT".into()));
            }
        }
    }
    // Those who may subscribe but must not hear anything: still nothing, a moment after
    // the others heard.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (caller, receiver) in &mut streams {
        if outcomes.contains_key(caller) {
            continue;
        }
        let outcome = match receiver.try_recv() {
            Ok(leaked) => Err(format!("LEAKED {leaked}")),
            Err(_) => Ok(Value::Null),
        };
        outcomes.insert(*caller, outcome);
    }
    CALLERS
        .into_iter()
        .map(|caller| {
            let outcome = outcomes
                .remove(&caller)
                .expect("every caller has an outcome");
            (caller, outcome, expected(operation, caller))
        })
        .collect()
}

/// An event's response as an outcome: its error code, or its data.
fn outcome_of(response: &Value) -> Outcome {
    match response["errors"][0]["extensions"]["code"].as_str() {
        Some(code) => {
            assert!(
                response["data"].is_null(),
                "a refused subscription returned data: {response}"
            );
            Err(code.to_string())
        }
        None => {
            assert!(response["data"].is_object(), "{response}");
            Ok(response["data"].clone())
        }
    }
}
