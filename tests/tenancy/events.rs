//! The rows for the operations about events: emitting a custom event (`emitEvent`) needs
//! an EDITOR of the workspace it names (an API key counts with its role, and only in its
//! own workspace); anyone else gets `FORBIDDEN` and nothing is recorded.

use serde_json::json;

use crate::graphql::graphql;
use crate::world::{needs, Caller, Outcome, Who, World, FORBIDDEN};

/// The operations these rows cover (the operations loop sends them here).
pub const OPERATIONS: [&str; 1] = ["emitEvent"];

/// One row of the matrix: runs the operation as `caller`, returns the outcome and the
/// expected error (`None`: it must succeed).
pub async fn row(operation: &str, w: &World, caller: Caller) -> (Outcome, Option<String>) {
    let me = &w.callers[&caller];
    match operation {
        "emitEvent" => (
            graphql(
                me,
                "mutation($w: ID!, $n: String!, $p: JSON) { emitEvent(workspaceId: $w, name: $n, payload: $p) { id name occurredAt } }",
                json!({"w": w.workspace, "n": "matrix.ping", "p": {"from": caller.slug()}}),
                "emitEvent",
            )
            .await,
            needs(Who::Editor, caller, FORBIDDEN),
        ),
        other => panic!("no matrix row for the event operation `{other}`"),
    }
}
