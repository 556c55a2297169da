//! The tenancy matrix: every query, mutation and gRPC method of the fleet, called as a
//! non-member and as each role of a workspace, on both backends (embedded: SQLite and
//! in-process parts; distributed: PostgreSQL, Redis and RabbitMQ). Each call must either
//! succeed, for the roles that may make it, or fail with the expected code and no data.
//!
//! The operation lists are read from `schemas/supergraph.graphql` and `proto/`: an
//! operation added without a row here fails the test, so the matrix grows with the API.

mod support;

use std::collections::{BTreeSet, HashMap};

use flowfleet_shared::config::ServiceName;
use flowfleet_shared::proto::analytics::v1::{
    analytics_service_client::AnalyticsServiceClient, GetWorkflowStatsRequest,
};
use flowfleet_shared::proto::auth::v1::{
    auth_service_client::AuthServiceClient, CheckMembershipRequest, GetUserRequest,
    VerifyApiKeyRequest,
};
use flowfleet_shared::proto::execution::v1::{
    execution_service_client::ExecutionServiceClient, GetExecutionRequest,
};
use flowfleet_shared::proto::notification::v1::{
    notification_service_client::NotificationServiceClient, SendNotificationRequest,
};
use flowfleet_shared::proto::privacy::v1::{
    user_data_client::UserDataClient, ExportUserDataRequest,
};
use flowfleet_shared::proto::storage::v1::{
    storage_service_client::StorageServiceClient, GetFileRequest, PutFileRequest,
};
use flowfleet_shared::proto::workflow::v1::{
    workflow_service_client::WorkflowServiceClient, GetCredentialValueRequest,
    GetPublishedVersionRequest, ListActiveTriggersRequest, ValidateDefinitionRequest,
    WatchTriggersRequest,
};
use flowfleet_shared::testing::Backend;
use serde_json::{json, Value};
use support::eventually;
use support::in_process::{start, Fleet, Person};

/// Who calls: an outsider (a member of another workspace only) or a member with a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Who {
    Outsider,
    Viewer,
    Editor,
    Admin,
    Owner,
}

const EVERYONE: [Who; 5] = [
    Who::Outsider,
    Who::Viewer,
    Who::Editor,
    Who::Admin,
    Who::Owner,
];

/// A call's outcome: `Ok` with the returned data, or the error code.
type Outcome = Result<Value, String>;

/// Runs a GraphQL operation and reads the one root field it selects.
async fn graphql(person: &Person, query: &str, variables: Value, field: &str) -> Outcome {
    let (_, body) = person.client.raw(query, variables).await;
    match body["errors"][0]["extensions"]["code"].as_str() {
        Some(code) => {
            let data = &body["data"];
            assert!(
                data.is_null() || data[field].is_null(),
                "{field} failed with {code} but returned data: {body}"
            );
            Err(code.to_string())
        }
        None => {
            assert!(!body["data"][field].is_null(), "{field}: {body}");
            Ok(body["data"][field].clone())
        }
    }
}

fn grpc_request<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn grpc_outcome<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> Outcome {
    match result {
        Ok(r) => Ok(json!(format!("{:?}", r.into_inner()))),
        Err(status) => Err(format!("{:?}", status.code())),
    }
}

/// The expectation for a workspace-scoped operation that needs `min`: the roles below it
/// get `denied`, an outsider gets `outsider`.
fn needs(min: Who, who: Who, outsider: &str, denied: &str) -> Option<String> {
    match who {
        Who::Outsider => Some(outsider.to_string()),
        w if w < min => Some(denied.to_string()),
        _ => None,
    }
}

/// What exists in the workspace under test.
struct World {
    people: HashMap<Who, Person>,
    /// A VIEWER whose role the matrix changes and who is removed and re-invited.
    subject: Person,
    workspace: String,
    workflow: String,
    /// A credential of the workspace (its value is for services only).
    credential: String,
    execution: String,
    file: String,
    notification: String,
}

async fn invite(
    fleet: &Fleet,
    owner: &Person,
    workspace: &str,
    person: &Person,
    email: &str,
    role: &str,
) {
    let invited = owner
        .client
        .ok(
            "mutation($w: ID!, $e: String!, $r: WorkspaceRole!) { inviteMember(workspaceId: $w, email: $e, role: $r) { token } }",
            json!({"w": workspace, "e": email, "r": role}),
        )
        .await;
    person
        .client
        .ok(
            "mutation($t: String!) { acceptInvitation(token: $t) { role } }",
            json!({"t": invited["inviteMember"]["token"]}),
        )
        .await;
    let _ = fleet;
}

async fn world(fleet: &Fleet) -> World {
    let mut people = HashMap::new();
    for who in EVERYONE {
        let email = format!("{who:?}@example.com").to_lowercase();
        people.insert(who, fleet.sign_up(&email).await);
    }
    let subject = fleet.sign_up("subject@example.com").await;
    let owner = &people[&Who::Owner];
    let me = owner
        .client
        .ok("{ me { memberships { workspace { id } } } }", json!({}))
        .await;
    let workspace = me["me"]["memberships"][0]["workspace"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (who, role) in [
        (Who::Viewer, "VIEWER"),
        (Who::Editor, "EDITOR"),
        (Who::Admin, "ADMIN"),
    ] {
        let email = format!("{who:?}@example.com").to_lowercase();
        invite(fleet, owner, &workspace, &people[&who], &email, role).await;
    }
    invite(
        fleet,
        owner,
        &workspace,
        &subject,
        "subject@example.com",
        "VIEWER",
    )
    .await;
    let workflow = create_workflow(owner, &workspace).await;
    let created = owner
        .client
        .ok(
            "mutation($i: CreateCredentialInput!) { createCredential(input: $i) { id } }",
            json!({"i": {"workspaceId": workspace, "name": "matrix", "kind": "HTTP_BEARER", "value": {"token": "t0ken"}}}),
        )
        .await;
    let credential = created["createCredential"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    owner
        .client
        .ok(
            "mutation($id: ID!) { publishWorkflow(id: $id) { version } }",
            json!({"id": workflow}),
        )
        .await;
    let started = owner
        .client
        .ok(
            "mutation($i: StartExecutionInput!) { startExecution(input: $i) { id } }",
            json!({"i": {"workflowId": workflow}}),
        )
        .await;
    let execution = started["startExecution"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The run's artifact (storage) and the owner's notification (from its outcome event).
    let (file, notification) = eventually(60, || {
        let (owner, execution) = (&owner.client, &execution);
        async move {
            let (_, body) = owner
                .raw(
                    "query($id: ID!) { execution(id: $id) { status artifacts { id } } \
                     me { notifications { nodes { id } } } }",
                    json!({"id": execution}),
                )
                .await;
            let file = body["data"]["execution"]["artifacts"][0]["id"].as_str()?;
            let notification = body["data"]["me"]["notifications"]["nodes"][0]["id"].as_str()?;
            Some((file.to_string(), notification.to_string()))
        }
    })
    .await;
    World {
        people,
        subject,
        workspace,
        workflow,
        credential,
        execution,
        file,
        notification,
    }
}

async fn create_workflow(person: &Person, workspace: &str) -> String {
    let created = person
        .client
        .ok(
            "mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { id } }",
            json!({"i": {"workspaceId": workspace, "name": "Matrix", "definition": {
                "nodes": [{"id": "a", "type": "set", "config": {"value": {"x": 1}}}],
                "edges": [], "triggers": [{"kind": "MANUAL"}]}}}),
        )
        .await;
    created["createWorkflow"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// One row of the matrix: runs the operation as `who`, returns the outcome and the
/// expected error (`None`: it must succeed).
async fn graphql_row(
    operation: &str,
    fleet: &Fleet,
    w: &World,
    who: Who,
) -> (Outcome, Option<String>) {
    let me = &w.people[&who];
    let owner = &w.people[&Who::Owner];
    let ws = &w.workspace;
    let forbidden = "FORBIDDEN";
    match operation {
        // An outsider cannot tell another workspace's workflow or execution from a missing one.
        "workflow" => (
            graphql(me, "query($id: ID!) { workflow(id: $id) { id name } }", json!({"id": w.workflow}), "workflow").await,
            needs(Who::Viewer, who, "NOT_FOUND", forbidden),
        ),
        "execution" => (
            graphql(me, "query($id: ID!) { execution(id: $id) { id status } }", json!({"id": w.execution}), "execution").await,
            needs(Who::Viewer, who, "NOT_FOUND", forbidden),
        ),
        "createWorkflow" => (
            graphql(
                me,
                "mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { id } }",
                json!({"i": {"workspaceId": ws, "name": "x", "definition": {"nodes": [], "edges": [], "triggers": []}}}),
                "createWorkflow",
            )
            .await,
            needs(Who::Editor, who, forbidden, forbidden),
        ),
        "publishWorkflow" => {
            let draft = create_workflow(owner, ws).await;
            (
                graphql(me, "mutation($id: ID!) { publishWorkflow(id: $id) { version } }", json!({"id": draft}), "publishWorkflow").await,
                needs(Who::Editor, who, "NOT_FOUND", forbidden),
            )
        }
        "startExecution" => (
            graphql(
                me,
                "mutation($i: StartExecutionInput!) { startExecution(input: $i) { id } }",
                json!({"i": {"workflowId": w.workflow}}),
                "startExecution",
            )
            .await,
            needs(Who::Editor, who, forbidden, forbidden),
        ),
        "cancelExecution" => (
            graphql(
                me,
                "mutation($id: ID!) { cancelExecution(id: $id) { id status } }",
                json!({"id": w.execution}),
                "cancelExecution",
            )
            .await,
            // Outsiders cannot tell another workspace's execution from a missing one.
            needs(Who::Editor, who, "NOT_FOUND", forbidden),
        ),
        "retryExecution" => {
            // A fresh execution of a workflow that waits, cancelled by the owner
            // before it can finish, so there is something to retry.
            let created = owner
                .client
                .ok(
                    "mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { id } }",
                    json!({"i": {"workspaceId": ws, "name": "Waits", "definition": {
                        "nodes": [{"id": "a", "type": "delay", "config": {"durationMs": 600000}}],
                        "edges": [], "triggers": [{"kind": "MANUAL"}]}}}),
                )
                .await;
            let waits = created["createWorkflow"]["id"].clone();
            owner
                .client
                .ok("mutation($id: ID!) { publishWorkflow(id: $id) { version } }", json!({"id": waits}))
                .await;
            let started = owner
                .client
                .ok(
                    "mutation($i: StartExecutionInput!) { startExecution(input: $i) { id } }",
                    json!({"i": {"workflowId": waits}}),
                )
                .await;
            let id = started["startExecution"]["id"].clone();
            owner
                .client
                .ok("mutation($id: ID!) { cancelExecution(id: $id) { id } }", json!({"id": id}))
                .await;
            (
                graphql(
                    me,
                    "mutation($id: ID!) { retryExecution(id: $id) { id retryOf } }",
                    json!({"id": id}),
                    "retryExecution",
                )
                .await,
                // Outsiders cannot tell another workspace's execution from a missing one.
                needs(Who::Editor, who, "NOT_FOUND", forbidden),
            )
        }
        "updateWorkflow" | "duplicateWorkflow" | "archiveWorkflow" | "restoreWorkflow"
        | "deleteWorkflow" | "rollbackWorkflow" => {
            // A fresh workflow in the state the operation needs, prepared by the owner.
            let id = create_workflow(owner, ws).await;
            let prepare: &[&str] = match operation {
                "restoreWorkflow" | "deleteWorkflow" => &["mutation($id: ID!) { archiveWorkflow(id: $id) { id } }"],
                "rollbackWorkflow" => &["mutation($id: ID!) { publishWorkflow(id: $id) { version } }"],
                _ => &[],
            };
            for mutation in prepare {
                owner.client.ok(mutation, json!({"id": id})).await;
            }
            let query = match operation {
                "updateWorkflow" => "mutation($id: ID!) { updateWorkflow(id: $id, expectedRevision: 1, input: {name: \"renamed\"}) { revision } }",
                "duplicateWorkflow" => "mutation($id: ID!) { duplicateWorkflow(id: $id) { id } }",
                "archiveWorkflow" => "mutation($id: ID!) { archiveWorkflow(id: $id) { status } }",
                "restoreWorkflow" => "mutation($id: ID!) { restoreWorkflow(id: $id) { status } }",
                "deleteWorkflow" => "mutation($id: ID!) { deleteWorkflow(id: $id) }",
                _ => "mutation($id: ID!) { rollbackWorkflow(id: $id, version: 1) { version } }",
            };
            let min = if operation == "deleteWorkflow" { Who::Admin } else { Who::Editor };
            (
                graphql(me, query, json!({"id": id}), operation).await,
                // Outsiders cannot tell another workspace's workflow from a missing one.
                needs(min, who, "NOT_FOUND", forbidden),
            )
        }
        "importWorkflow" => (
            graphql(
                me,
                "mutation($w: ID!, $d: JSON!) { importWorkflow(workspaceId: $w, document: $d) { id } }",
                json!({"w": ws, "d": {"format": "flowfleet.workflow", "formatVersion": 1, "name": "imported",
                    "definition": {"nodes": [{"id": "a", "type": "passthrough"}], "triggers": [{"kind": "MANUAL"}]}}}),
                "importWorkflow",
            )
            .await,
            needs(Who::Editor, who, forbidden, forbidden),
        ),
        "createCredential" => (
            graphql(
                me,
                "mutation($i: CreateCredentialInput!) { createCredential(input: $i) { id } }",
                json!({"i": {"workspaceId": ws, "name": format!("c-{who:?}"), "kind": "SECRET", "value": {"value": "s"}}}),
                "createCredential",
            )
            .await,
            needs(Who::Editor, who, forbidden, forbidden),
        ),
        "updateCredential" | "deleteCredential" => {
            let created = owner
                .client
                .ok(
                    "mutation($i: CreateCredentialInput!) { createCredential(input: $i) { id } }",
                    json!({"i": {"workspaceId": ws, "name": format!("{operation}-{who:?}"), "kind": "SECRET", "value": {"value": "s"}}}),
                )
                .await;
            let id = created["createCredential"]["id"].clone();
            let query = if operation == "updateCredential" {
                "mutation($id: ID!) { updateCredential(id: $id, value: {value: \"t\"}) { id } }"
            } else {
                "mutation($id: ID!) { deleteCredential(id: $id) }"
            };
            (
                graphql(me, query, json!({"id": id}), operation).await,
                // Outsiders cannot tell another workspace's credential from a missing one.
                needs(Who::Editor, who, "NOT_FOUND", forbidden),
            )
        }
        "createApiKey" => (
            graphql(
                me,
                "mutation($w: ID!) { createApiKey(workspaceId: $w, name: \"m\", role: VIEWER) { key } }",
                json!({"w": ws}),
                "createApiKey",
            )
            .await,
            needs(Who::Admin, who, forbidden, forbidden),
        ),
        "revokeApiKey" => {
            let key = owner
                .client
                .ok(
                    "mutation($w: ID!) { createApiKey(workspaceId: $w, name: \"r\", role: VIEWER) { apiKey { id } } }",
                    json!({"w": ws}),
                )
                .await;
            (
                graphql(
                    me,
                    "mutation($i: ID!) { revokeApiKey(id: $i) { id } }",
                    json!({"i": key["createApiKey"]["apiKey"]["id"]}),
                    "revokeApiKey",
                )
                .await,
                // Outsiders learn nothing about the workspace's keys.
                needs(Who::Admin, who, "NOT_FOUND", forbidden),
            )
        }
        "inviteMember" => (
            graphql(
                me,
                "mutation($w: ID!, $e: String!) { inviteMember(workspaceId: $w, email: $e, role: VIEWER) { token } }",
                json!({"w": ws, "e": format!("new-{who:?}@example.com").to_lowercase()}),
                "inviteMember",
            )
            .await,
            needs(Who::Admin, who, forbidden, forbidden),
        ),
        "revokeInvitation" => {
            let invited = owner
                .client
                .ok(
                    "mutation($w: ID!, $e: String!) { inviteMember(workspaceId: $w, email: $e, role: VIEWER) { invitation { id } } }",
                    json!({"w": ws, "e": format!("revoke-{who:?}@example.com").to_lowercase()}),
                )
                .await;
            (
                graphql(
                    me,
                    "mutation($i: ID!) { revokeInvitation(id: $i) { id } }",
                    json!({"i": invited["inviteMember"]["invitation"]["id"]}),
                    "revokeInvitation",
                )
                .await,
                needs(Who::Admin, who, "NOT_FOUND", forbidden),
            )
        }
        "changeMemberRole" => (
            graphql(
                me,
                "mutation($w: ID!, $u: ID!) { changeMemberRole(workspaceId: $w, userId: $u, role: VIEWER) { role } }",
                json!({"w": ws, "u": w.subject.id}),
                "changeMemberRole",
            )
            .await,
            needs(Who::Admin, who, forbidden, forbidden),
        ),
        "removeMember" => {
            let outcome = graphql(
                me,
                "mutation($w: ID!, $u: ID!) { removeMember(workspaceId: $w, userId: $u) }",
                json!({"w": ws, "u": w.subject.id}),
                "removeMember",
            )
            .await;
            if outcome.is_ok() {
                invite(fleet, owner, ws, &w.subject, "subject@example.com", "VIEWER").await;
            }
            (outcome, needs(Who::Admin, who, forbidden, forbidden))
        }
        // Not tied to a workspace: each caller reaches only their own account, and the
        // owner's things stay out of reach.
        "me" => (graphql(me, "{ me { id } }", json!({}), "me").await, None),
        "nodeTypes" => (graphql(me, "{ nodeTypes { name } }", json!({}), "nodeTypes").await, None),
        "markNotificationRead" => (
            graphql(
                me,
                "mutation($i: ID!) { markNotificationRead(id: $i) { id } }",
                json!({"i": w.notification}),
                "markNotificationRead",
            )
            .await,
            (who != Who::Owner).then(|| "NOT_FOUND".to_string()),
        ),
        "acceptInvitation" => {
            // An invitation meant for someone else: nobody here may take it.
            let invited = owner
                .client
                .ok(
                    "mutation($w: ID!) { inviteMember(workspaceId: $w, email: \"someone-else@example.com\", role: ADMIN) { token } }",
                    json!({"w": ws}),
                )
                .await;
            let outcome = graphql(
                me,
                "mutation($t: String!) { acceptInvitation(token: $t) { role } }",
                json!({"t": invited["inviteMember"]["token"]}),
                "acceptInvitation",
            )
            .await;
            (outcome, Some(forbidden.to_string()))
        }
        "createWorkspace" => (
            graphql(me, "mutation { createWorkspace(name: \"mine\") { id } }", json!({}), "createWorkspace").await,
            None,
        ),
        "changePassword" => (
            graphql(
                me,
                "mutation { changePassword(currentPassword: \"not my password\", newPassword: \"whatever else\") { accessToken } }",
                json!({}),
                "changePassword",
            )
            .await,
            Some("UNAUTHENTICATED".to_string()),
        ),
        // The caller's own second factor: enrolling concerns only themself; confirming,
        // replacing codes or turning it off needs proof they do not have here.
        "enrollTotp" => (
            graphql(me, "mutation { enrollTotp { secret } }", json!({}), "enrollTotp").await,
            None,
        ),
        "confirmTotp" => {
            graphql(me, "mutation { enrollTotp { secret } }", json!({}), "enrollTotp")
                .await
                .expect("enrolling");
            (
                graphql(me, "mutation { confirmTotp(code: \"000000\") }", json!({}), "confirmTotp").await,
                Some("BAD_USER_INPUT".to_string()),
            )
        }
        "regenerateRecoveryCodes" => (
            graphql(me, "mutation { regenerateRecoveryCodes(code: \"000000\") }", json!({}), "regenerateRecoveryCodes").await,
            Some("UNAUTHENTICATED".to_string()),
        ),
        "disableTotp" => (
            graphql(me, "mutation { disableTotp(password: \"not my password\", code: \"000000\") }", json!({}), "disableTotp").await,
            Some("UNAUTHENTICATED".to_string()),
        ),
        // The caller's own data: exported for themself; deleting needs the password.
        "exportMyData" => {
            let outcome = graphql(me, "{ exportMyData }", json!({}), "exportMyData").await;
            if let Ok(export) = &outcome {
                assert_eq!(export["userId"], json!(me.id), "{who:?} got another's export");
            }
            (outcome, None)
        }
        "deleteMyAccount" => (
            graphql(me, "mutation { deleteMyAccount(password: \"not my password\") }", json!({}), "deleteMyAccount").await,
            Some("UNAUTHENTICATED".to_string()),
        ),
        // Anonymous entry points: a refresh token or a password is the credential.
        "signUp" | "logIn" | "refreshSession" | "logOut" => {
            let query = match operation {
                "signUp" => "mutation { signUp(input: {email: \"owner@example.com\", password: \"long enough password\", name: \"x\"}) { accessToken } }",
                "logIn" => "mutation($e: String!) { logIn(input: {email: $e, password: \"wrong password\"}) { accessToken } }",
                "refreshSession" => "mutation { refreshSession(refreshToken: \"rt_not-a-token\") { accessToken } }",
                _ => "mutation { logOut(refreshToken: \"rt_not-a-token\") }",
            };
            let expected = match operation {
                "signUp" => "CONFLICT",
                "logIn" | "refreshSession" => "UNAUTHENTICATED",
                _ => "",
            };
            let own_email = format!("{who:?}@example.com").to_lowercase();
            let outcome = graphql(me, query, json!({"e": own_email}), operation).await;
            if operation == "logOut" {
                assert_eq!(outcome, Ok(json!(false)), "{who:?}: logOut of a token that is not one");
                return (Ok(json!(false)), None);
            }
            (outcome, Some(expected.to_string()))
        }
        other => panic!("no matrix row for the GraphQL operation `{other}`: add one"),
    }
}

/// One gRPC row: the call made with `who`'s own token, and the expected error.
async fn grpc_row(method: &str, fleet: &Fleet, w: &World, who: Who) -> (Outcome, Option<String>) {
    let denied = "PermissionDenied";
    let expected = match method {
        "GetPublishedVersion"
        | "GetExecution"
        | "GetWorkflowStats"
        | "GetFile"
        | "ValidateDefinition" => needs(Who::Viewer, who, denied, denied),
        // The engine's view of every workspace, and credential values: services only.
        "ListActiveTriggers" | "WatchTriggers" | "GetCredentialValue" => Some(denied.to_string()),
        "SendNotification" | "PutFile" => needs(Who::Editor, who, denied, denied),
        // About a person: only that person (or a service) may ask; every service answers
        // for its part of a user's data to that user only.
        "GetUser" | "CheckMembership" | "ExportUserData" => {
            (who != Who::Owner).then(|| denied.to_string())
        }
        // The key is the credential: an access token is not a key.
        "VerifyApiKey" => Some("Unauthenticated".to_string()),
        other => panic!("no matrix row for the gRPC method `{other}`: add one"),
    };
    let token = w.people[&who].token().to_string();
    (grpc_with(method, fleet, w, Some(&token)).await, expected)
}

/// The root fields of `type Query` and `type Mutation` in the supergraph.
fn graphql_operations() -> BTreeSet<String> {
    let supergraph = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/supergraph.graphql"
    ))
    .unwrap();
    let mut operations = BTreeSet::new();
    for root in ["type Query", "type Mutation"] {
        let start = supergraph.find(&format!("{root} ")).expect("a root type");
        let body = &supergraph[start..];
        let body = &body[body.find('{').unwrap() + 1..body.find("\n}").unwrap()];
        let mut in_description = false;
        for line in body.lines().map(str::trim) {
            if line.starts_with("\"\"\"") {
                in_description = !(in_description || line.len() > 3 && line.ends_with("\"\"\""));
                continue;
            }
            if in_description || line.starts_with('"') || line.is_empty() {
                continue;
            }
            let name: String = line
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && !name.starts_with('_') {
                operations.insert(name);
            }
        }
    }
    operations
}

/// Every `rpc` of every service in `proto/`.
fn grpc_methods() -> BTreeSet<String> {
    let mut methods = BTreeSet::new();
    let services = ServiceName::ALL.iter().map(|s| s.as_str());
    for s in services.chain(["privacy"]) {
        let path = format!(
            "{}/proto/flowfleet/{s}/v1/{s}.proto",
            env!("CARGO_MANIFEST_DIR")
        );
        for line in std::fs::read_to_string(path).unwrap().lines() {
            if let Some(rest) = line.trim().strip_prefix("rpc ") {
                methods.insert(rest.split('(').next().unwrap().trim().to_string());
            }
        }
    }
    methods
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_as_a_non_member_and_as_each_role() {
    let operations = graphql_operations();
    let methods = grpc_methods();
    assert!(
        operations.len() >= 20 && operations.contains("startExecution"),
        "{operations:?}"
    );
    assert!(
        methods.len() >= 9 && methods.contains("PutFile"),
        "{methods:?}"
    );
    for backend in Backend::all() {
        let name = backend.name();
        let fleet = start(&backend).await;
        let w = world(&fleet).await;
        let mut failures = Vec::new();
        for operation in &operations {
            for who in EVERYONE {
                let (outcome, expected) = graphql_row(operation, &fleet, &w, who).await;
                let ok = match (&outcome, &expected) {
                    (Ok(_), None) => true,
                    (Err(code), Some(want)) => code == want,
                    _ => false,
                };
                if !ok {
                    failures.push(format!(
                        "{name}: {operation} as {who:?}: got {outcome:?}, expected {expected:?}"
                    ));
                }
            }
        }
        for method in &methods {
            for who in EVERYONE {
                let (outcome, expected) = grpc_row(method, &fleet, &w, who).await;
                let ok = match (&outcome, &expected) {
                    (Ok(_), None) => true,
                    (Err(code), Some(want)) => code == want,
                    _ => false,
                };
                if !ok {
                    failures.push(format!(
                        "{name}: gRPC {method} as {who:?}: got {outcome:?}, expected {expected:?}"
                    ));
                }
            }
            // Without a credential, or with a forged one (the owner's token with another
            // subject, or without its signature), every method but the key check refuses
            // outright.
            if method != "VerifyApiKey" {
                let owner_token = w.people[&Who::Owner].token().to_string();
                let parts: Vec<&str> = owner_token.split('.').collect();
                let forged_payload = {
                    use base64::Engine as _;
                    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                    let mut claims: Value =
                        serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
                    claims["sub"] = json!(w.people[&Who::Outsider].id);
                    format!(
                        "{}.{}.{}",
                        parts[0],
                        engine.encode(claims.to_string()),
                        parts[2]
                    )
                };
                let unsigned = format!("{}.{}.", parts[0], parts[1]);
                for (what, credential) in [
                    ("without a credential", None),
                    ("with a tampered token", Some(forged_payload.as_str())),
                    ("with an unsigned token", Some(unsigned.as_str())),
                ] {
                    let outcome = grpc_with(method, &fleet, &w, credential).await;
                    if outcome.as_ref().err().map(String::as_str) != Some("Unauthenticated") {
                        failures.push(format!("{name}: gRPC {method} {what}: {outcome:?}"));
                    }
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} cells differ:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

/// A gRPC method called with `credential` (or none), on the world's resources.
async fn grpc_with(method: &str, fleet: &Fleet, w: &World, credential: Option<&str>) -> Outcome {
    let ws = w.workspace.clone();
    match method {
        "GetPublishedVersion" => grpc_outcome(
            WorkflowServiceClient::new(fleet.channel(ServiceName::Workflow))
                .get_published_version(grpc_request(
                    GetPublishedVersionRequest {
                        workflow_id: w.workflow.clone(),
                        version: 0,
                    },
                    credential,
                ))
                .await,
        ),
        "ValidateDefinition" => grpc_outcome(
            WorkflowServiceClient::new(fleet.channel(ServiceName::Workflow))
                .validate_definition(grpc_request(
                    ValidateDefinitionRequest {
                        workspace_id: ws,
                        definition_json: r#"{"nodes": [{"id": "a", "type": "passthrough"}]}"#
                            .into(),
                    },
                    credential,
                ))
                .await,
        ),
        "ListActiveTriggers" => grpc_outcome(
            WorkflowServiceClient::new(fleet.channel(ServiceName::Workflow))
                .list_active_triggers(grpc_request(ListActiveTriggersRequest {}, credential))
                .await,
        ),
        "WatchTriggers" => grpc_outcome(
            WorkflowServiceClient::new(fleet.channel(ServiceName::Workflow))
                .watch_triggers(grpc_request(WatchTriggersRequest { cursor: 0 }, credential))
                .await
                .map(|r| r.map(|_| "a stream")),
        ),
        "GetCredentialValue" => grpc_outcome(
            WorkflowServiceClient::new(fleet.channel(ServiceName::Workflow))
                .get_credential_value(grpc_request(
                    GetCredentialValueRequest {
                        credential_id: w.credential.clone(),
                        workspace_id: ws,
                    },
                    credential,
                ))
                .await,
        ),
        "GetExecution" => grpc_outcome(
            ExecutionServiceClient::new(fleet.channel(ServiceName::Execution))
                .get_execution(grpc_request(
                    GetExecutionRequest {
                        execution_id: w.execution.clone(),
                    },
                    credential,
                ))
                .await,
        ),
        "GetWorkflowStats" => grpc_outcome(
            AnalyticsServiceClient::new(fleet.channel(ServiceName::Analytics))
                .get_workflow_stats(grpc_request(
                    GetWorkflowStatsRequest {
                        workflow_id: w.workflow.clone(),
                    },
                    credential,
                ))
                .await,
        ),
        "SendNotification" => grpc_outcome(
            NotificationServiceClient::new(fleet.channel(ServiceName::Notification))
                .send_notification(grpc_request(
                    SendNotificationRequest {
                        workspace_id: ws,
                        recipient_id: w.people[&Who::Viewer].id.clone(),
                        channel: "IN_APP".into(),
                        subject: "s".into(),
                        body: "b".into(),
                    },
                    credential,
                ))
                .await,
        ),
        "PutFile" => grpc_outcome(
            StorageServiceClient::new(fleet.channel(ServiceName::Storage))
                .put_file(grpc_request(
                    PutFileRequest {
                        workspace_id: ws,
                        owner_id: w.people[&Who::Owner].id.clone(),
                        execution_id: String::new(),
                        name: "a.txt".into(),
                        content_type: "text/plain".into(),
                        content: b"x".to_vec(),
                    },
                    credential,
                ))
                .await,
        ),
        "GetFile" => grpc_outcome(
            StorageServiceClient::new(fleet.channel(ServiceName::Storage))
                .get_file(grpc_request(
                    GetFileRequest {
                        file_id: w.file.clone(),
                        workspace_id: ws,
                    },
                    credential,
                ))
                .await,
        ),
        "GetUser" => grpc_outcome(
            AuthServiceClient::new(fleet.channel(ServiceName::Auth))
                .get_user(grpc_request(
                    GetUserRequest {
                        user_id: w.people[&Who::Owner].id.clone(),
                    },
                    credential,
                ))
                .await,
        ),
        "CheckMembership" => grpc_outcome(
            AuthServiceClient::new(fleet.channel(ServiceName::Auth))
                .check_membership(grpc_request(
                    CheckMembershipRequest {
                        user_id: w.people[&Who::Owner].id.clone(),
                        workspace_id: ws,
                    },
                    credential,
                ))
                .await,
        ),
        // Every service's part: the first refusal, if any.
        "ExportUserData" => {
            for service in ServiceName::ALL {
                let answer = grpc_outcome(
                    UserDataClient::new(fleet.channel(service))
                        .export_user_data(grpc_request(
                            ExportUserDataRequest {
                                user_id: w.people[&Who::Owner].id.clone(),
                            },
                            credential,
                        ))
                        .await,
                );
                answer?;
            }
            Ok(json!("every service"))
        }
        "VerifyApiKey" => grpc_outcome(
            AuthServiceClient::new(fleet.channel(ServiceName::Auth))
                .verify_api_key(grpc_request(
                    VerifyApiKeyRequest {
                        key: credential.unwrap_or_default().to_string(),
                    },
                    credential,
                ))
                .await,
        ),

        other => panic!("no anonymous row for the gRPC method `{other}`: add one"),
    }
}
