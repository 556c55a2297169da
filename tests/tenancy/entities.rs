//! The rows for the fields of federation entities, called on the subgraph that resolves
//! each one, as the gateway would call it (`_entities`). Every subgraph authorizes on its
//! own (zero trust): a field another subgraph adds to an entity is reached with nothing but
//! the entity's key, so it must check by itself, and this calls it without the gateway's
//! query plan in front of it.

use flowfleet_runtime::config::ServiceName;
use serde_json::{json, Value};

use crate::support::in_process::Fleet;
use crate::world::{needs, self_only, Caller, Outcome, Who, World, FORBIDDEN, NOT_FOUND};

/// What to select for a field (subfields for objects, arguments where needed).
fn selection(field: &str) -> String {
    if let Some(s) = crate::notifications::selection(field) {
        return s;
    }
    if let Some(s) = crate::files::selection(field) {
        return s;
    }
    match field {
        "progress" => "progress { done }".into(),
        "steps" => "steps { id }".into(),
        "workflow" | "workspace" | "owner" | "lastExecution" | "artifacts" => {
            format!("{field} {{ id }}")
        }
        "executions" | "workflows" | "versions" | "notifications" => {
            format!("{field} {{ totalCount }}")
        }
        "problems" => "problems { code }".into(),
        "publishedVersion" => "publishedVersion { version }".into(),
        "stats" => "stats { runs }".into(),
        "analytics" => "analytics(range: {from: \"2026-01-01T00:00:00Z\", to: \"2026-01-02T00:00:00Z\", bucket: DAY}) { totals { runs } }".into(),
        "apiKeys" | "credentials" | "invitations" => format!("{field} {{ id }}"),
        "members" | "memberships" => format!("{field} {{ role }}"),
        "securityEvents" => "securityEvents { nodes { kind } }".into(),
        scalar => scalar.into(),
    }
}

/// The expectation for `type.field` as `caller`, or `None` when the matrix has no row for
/// it yet (the test then fails, naming it).
#[allow(clippy::type_complexity)]
fn expected(ty: &str, field: &str, caller: Caller) -> Option<Option<String>> {
    if let Some(e) = crate::notifications::expected(ty, field, caller) {
        return Some(e);
    }
    if let Some(e) = crate::files::expected(ty, field, caller) {
        return Some(e);
    }
    Some(match (ty, field) {
        // An execution and what other subgraphs add to it: VIEWER or above; others cannot
        // tell it from a missing one.
        (
            "Execution",
            "createdAt" | "durationMs" | "error" | "finishedAt" | "input" | "output"
            | "parentExecutionId" | "priority" | "progress" | "retryOf" | "startedAt" | "status"
            | "steps" | "trigger" | "version" | "workflow" | "workspaceId" | "artifacts",
        ) => needs(Who::Viewer, caller, NOT_FOUND),
        (
            "File",
            "contentType" | "createdAt" | "downloadUrl" | "name" | "sha256" | "size"
            | "workspaceId",
        ) => needs(Who::Viewer, caller, NOT_FOUND),
        (
            "Workflow",
            "createdAt" | "definition" | "description" | "name" | "owner" | "problems"
            | "publishable" | "publishedVersion" | "revision" | "status" | "tags" | "updatedAt"
            | "version" | "versions" | "workspace" | "executions" | "lastExecution" | "stats",
        ) => needs(Who::Viewer, caller, NOT_FOUND),
        // A document can be imported anywhere: EDITOR or above.
        ("Workflow", "export") => needs(Who::Editor, caller, NOT_FOUND),
        // A workspace is named by its id: FORBIDDEN to those without access.
        (
            "Workspace",
            "name" | "timeZone" | "createdAt" | "members" | "workflows" | "credentials"
            | "executions" | "analytics",
        ) => needs(Who::Viewer, caller, FORBIDDEN),
        ("Workspace", "apiKeys" | "invitations" | "securityEvents") => {
            needs(Who::Admin, caller, FORBIDDEN)
        }
        // A person's name is shown to whoever meets them (e.g. as a workflow's owner).
        ("User", "name" | "createdAt") => None,
        // The rest of an account is its holder's alone, in a session: an API key reaches
        // one workspace, not its creator's other workspaces or inbox.
        (
            "User",
            "email"
            | "timeZone"
            | "memberships"
            | "mfaEnabled"
            | "securityEvents"
            | "notifications"
            | "unreadNotificationCount",
        ) => self_only(caller, FORBIDDEN),
        _ => return None,
    })
}

/// The entity's key in the world under test.
fn key(ty: &str, w: &World) -> String {
    match ty {
        "Execution" => w.execution.clone(),
        "File" => w.file.clone(),
        "Workflow" => w.workflow.clone(),
        "Workspace" => w.workspace.clone(),
        "User" => w.owner().id.clone(),
        other => panic!("no entity of type `{other}` in the matrix's world: add one"),
    }
}

/// One row: `ty.field` resolved by `graph` as `caller`; the outcome and the expected error.
pub async fn row(
    fleet: &Fleet,
    w: &World,
    ty: &str,
    field: &str,
    graph: ServiceName,
    caller: Caller,
) -> (Outcome, Option<String>) {
    let Some(expected) = expected(ty, field, caller) else {
        panic!("no matrix row for the entity field `{ty}.{field}` ({graph:?}): add one");
    };
    let query = format!(
        "query($r: [_Any!]!) {{ _entities(representations: $r) {{ ... on {ty} {{ {} }} }} }}",
        selection(field)
    );
    let mut representation = json!({"__typename": ty, "id": key(ty, w)});
    // What the gateway passes on for `@requires`: the execution's workspace, as the
    // execution service resolves it.
    if (ty, field) == ("Execution", "artifacts") {
        representation["workspaceId"] = json!(w.workspace);
    }
    // And the workspace's time zone, as the auth service resolves it.
    if (ty, field) == ("Workspace", "analytics") {
        representation["timeZone"] = json!("UTC");
    }
    let body = fleet
        .subgraph(
            graph,
            &query,
            json!({"r": [representation]}),
            Some(&w.credential_of(caller)),
        )
        .await;
    (outcome(&body, ty, field), expected)
}

fn outcome(body: &Value, ty: &str, field: &str) -> Outcome {
    let entity = &body["data"]["_entities"][0];
    match body["errors"][0]["extensions"]["code"].as_str() {
        Some(code) => {
            assert!(
                entity.is_null() || entity[field].is_null(),
                "{ty}.{field} failed with {code} but returned data: {body}"
            );
            Err(code.to_string())
        }
        None => {
            assert!(entity.is_object(), "{ty}.{field}: {body}");
            Ok(entity[field].clone())
        }
    }
}
