//! The rows for the root fields of `type Query` and `type Mutation`, called through the
//! gateway.

use serde_json::{json, Value};

use crate::support::in_process::Person;
use crate::world::{
    account, create_workflow, email_of, invite, needs, self_only, Caller, Outcome, Who, World,
    FORBIDDEN, NOT_FOUND,
};

/// Runs a GraphQL operation and reads the one root field it selects.
pub async fn graphql(person: &Person, query: &str, variables: Value, field: &str) -> Outcome {
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

/// One row of the matrix: runs the operation as `caller`, returns the outcome and the
/// expected error (`None`: it must succeed).
pub async fn row(operation: &str, w: &World, caller: Caller) -> (Outcome, Option<String>) {
    let me = &w.callers[&caller];
    let owner = w.owner();
    let ws = &w.workspace;
    match operation {
        // A caller without access cannot tell another workspace's workflow or execution
        // from a missing one.
        "workflow" => (
            graphql(me, "query($id: ID!) { workflow(id: $id) { id name } }", json!({"id": w.workflow}), "workflow").await,
            needs(Who::Viewer, caller, NOT_FOUND),
        ),
        "execution" => (
            graphql(me, "query($id: ID!) { execution(id: $id) { id status } }", json!({"id": w.execution}), "execution").await,
            needs(Who::Viewer, caller, NOT_FOUND),
        ),
        "createWorkflow" => (
            graphql(
                me,
                "mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { id } }",
                json!({"i": {"workspaceId": ws, "name": "x", "definition": {"nodes": [], "edges": [], "triggers": []}}}),
                "createWorkflow",
            )
            .await,
            needs(Who::Editor, caller, FORBIDDEN),
        ),
        "publishWorkflow" => {
            let draft = create_workflow(owner, ws).await;
            (
                graphql(me, "mutation($id: ID!) { publishWorkflow(id: $id) { version } }", json!({"id": draft}), "publishWorkflow").await,
                needs(Who::Editor, caller, NOT_FOUND),
            )
        }
        // It names the workflow by id: the workflow service answers NOT_FOUND to those
        // who may not see it, as for one that does not exist.
        "startExecution" => (
            graphql(
                me,
                "mutation($i: StartExecutionInput!) { startExecution(input: $i) { id } }",
                json!({"i": {"workflowId": w.workflow}}),
                "startExecution",
            )
            .await,
            needs(Who::Editor, caller, NOT_FOUND),
        ),
        "cancelExecution" => (
            graphql(
                me,
                "mutation($id: ID!) { cancelExecution(id: $id) { id status } }",
                json!({"id": w.execution}),
                "cancelExecution",
            )
            .await,
            needs(Who::Editor, caller, NOT_FOUND),
        ),
        "retryExecution" => {
            let id = cancelled_execution(owner, ws).await;
            (
                graphql(
                    me,
                    "mutation($id: ID!) { retryExecution(id: $id) { id retryOf } }",
                    json!({"id": id}),
                    "retryExecution",
                )
                .await,
                needs(Who::Editor, caller, NOT_FOUND),
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
                needs(min, caller, NOT_FOUND),
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
            needs(Who::Editor, caller, FORBIDDEN),
        ),
        "createCredential" => (
            graphql(
                me,
                "mutation($i: CreateCredentialInput!) { createCredential(input: $i) { id } }",
                json!({"i": {"workspaceId": ws, "name": format!("c-{}", caller.slug()), "kind": "SECRET", "value": {"value": "s"}}}),
                "createCredential",
            )
            .await,
            needs(Who::Editor, caller, FORBIDDEN),
        ),
        "updateCredential" | "deleteCredential" => {
            let created = owner
                .client
                .ok(
                    "mutation($i: CreateCredentialInput!) { createCredential(input: $i) { id } }",
                    json!({"i": {"workspaceId": ws, "name": format!("{operation}-{}", caller.slug()), "kind": "SECRET", "value": {"value": "s"}}}),
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
                needs(Who::Editor, caller, NOT_FOUND),
            )
        }
        // Keys, members and invitations are managed by people, in sessions.
        "createApiKey" => (
            graphql(
                me,
                "mutation($w: ID!) { createApiKey(workspaceId: $w, name: \"m\", role: VIEWER) { key } }",
                json!({"w": ws}),
                "createApiKey",
            )
            .await,
            account(caller, |_| needs(Who::Admin, caller, FORBIDDEN)),
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
                account(caller, |_| needs(Who::Admin, caller, NOT_FOUND)),
            )
        }
        "inviteMember" => (
            graphql(
                me,
                "mutation($w: ID!, $e: String!) { inviteMember(workspaceId: $w, email: $e, role: VIEWER) { token } }",
                json!({"w": ws, "e": format!("new-{}@example.com", caller.slug())}),
                "inviteMember",
            )
            .await,
            account(caller, |_| needs(Who::Admin, caller, FORBIDDEN)),
        ),
        "revokeInvitation" => {
            let invited = owner
                .client
                .ok(
                    "mutation($w: ID!, $e: String!) { inviteMember(workspaceId: $w, email: $e, role: VIEWER) { invitation { id } } }",
                    json!({"w": ws, "e": format!("revoke-{}@example.com", caller.slug())}),
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
                account(caller, |_| needs(Who::Admin, caller, NOT_FOUND)),
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
            account(caller, |_| needs(Who::Admin, caller, FORBIDDEN)),
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
                invite(owner, ws, &w.subject, "subject@example.com", "VIEWER").await;
            }
            (outcome, account(caller, |_| needs(Who::Admin, caller, FORBIDDEN)))
        }
        // Not tied to a workspace: each caller reaches only their own account, in a
        // session, and the owner's things stay out of others' reach.
        "me" => (graphql(me, "{ me { id } }", json!({}), "me").await, account(caller, |_| None)),
        // The catalog is the same for everyone signed in, keys included.
        "nodeTypes" => (graphql(me, "{ nodeTypes { name } }", json!({}), "nodeTypes").await, None),
        "markNotificationRead" => (
            graphql(
                me,
                "mutation($i: ID!) { markNotificationRead(id: $i) { id } }",
                json!({"i": w.notification}),
                "markNotificationRead",
            )
            .await,
            self_only(caller, NOT_FOUND),
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
            (outcome, Some(FORBIDDEN.to_string()))
        }
        "createWorkspace" => (
            graphql(me, "mutation { createWorkspace(name: \"mine\") { id } }", json!({}), "createWorkspace").await,
            account(caller, |_| None),
        ),
        "updateProfile" => (
            graphql(
                me,
                "mutation { updateProfile(timeZone: \"Europe/Paris\") { id } }",
                json!({}),
                "updateProfile",
            )
            .await,
            account(caller, |_| None),
        ),
        "updateWorkspace" => (
            graphql(
                me,
                "mutation($w: ID!) { updateWorkspace(workspaceId: $w, timeZone: \"Asia/Tokyo\") { timeZone } }",
                json!({"w": ws}),
                "updateWorkspace",
            )
            .await,
            needs(Who::Admin, caller, FORBIDDEN),
        ),
        "changePassword" => (
            graphql(
                me,
                "mutation { changePassword(currentPassword: \"not my password\", newPassword: \"whatever else\") { accessToken } }",
                json!({}),
                "changePassword",
            )
            .await,
            account(caller, |_| Some("UNAUTHENTICATED".to_string())),
        ),
        // The caller's own second factor: enrolling concerns only themself; confirming,
        // replacing codes or turning it off needs proof they do not have here.
        "enrollTotp" => (
            graphql(me, "mutation { enrollTotp { secret } }", json!({}), "enrollTotp").await,
            account(caller, |_| None),
        ),
        "confirmTotp" => {
            if !caller.is_key() {
                graphql(me, "mutation { enrollTotp { secret } }", json!({}), "enrollTotp")
                    .await
                    .expect("enrolling");
            }
            (
                graphql(me, "mutation { confirmTotp(code: \"000000\") }", json!({}), "confirmTotp").await,
                account(caller, |_| Some("BAD_USER_INPUT".to_string())),
            )
        }
        "regenerateRecoveryCodes" => (
            graphql(me, "mutation { regenerateRecoveryCodes(code: \"000000\") }", json!({}), "regenerateRecoveryCodes").await,
            account(caller, |_| Some("UNAUTHENTICATED".to_string())),
        ),
        "disableTotp" => (
            graphql(me, "mutation { disableTotp(password: \"not my password\", code: \"000000\") }", json!({}), "disableTotp").await,
            account(caller, |_| Some("UNAUTHENTICATED".to_string())),
        ),
        // The caller's own data: exported for themself; deleting needs the password.
        "exportMyData" => {
            let outcome = graphql(me, "{ exportMyData }", json!({}), "exportMyData").await;
            if let Ok(export) = &outcome {
                assert_eq!(export["userId"], json!(me.id), "{caller:?} got another's export");
            }
            (outcome, account(caller, |_| None))
        }
        "deleteMyAccount" => (
            graphql(me, "mutation { deleteMyAccount(password: \"not my password\") }", json!({}), "deleteMyAccount").await,
            account(caller, |_| Some("UNAUTHENTICATED".to_string())),
        ),
        // Anonymous entry points: a refresh token or a password is the credential, so
        // whatever the request also carries changes nothing.
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
            // A person signs in as themself; keys try an address nobody has, so the owner's
            // account is not locked by their failures.
            let email = match caller {
                Caller::Session(who) => email_of(who),
                _ => format!("{}@example.com", caller.slug()),
            };
            let outcome = graphql(me, query, json!({"e": email}), operation).await;
            if operation == "logOut" {
                assert_eq!(outcome, Ok(json!(false)), "{caller:?}: logOut of a token that is not one");
                return (Ok(json!(false)), None);
            }
            (outcome, Some(expected.to_string()))
        }
        other => match crate::notifications::row(other, w, caller).await {
            Some(row) => row,
            None => match crate::files::row(other, w, caller).await {
                Some(row) => row,
                None => panic!("no matrix row for the GraphQL operation `{other}`: add one"),
            },
        },
    }
}

/// A fresh execution of a workflow that waits, cancelled by the owner before it can
/// finish, so there is something to retry.
async fn cancelled_execution(owner: &Person, ws: &str) -> Value {
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
        .ok(
            "mutation($id: ID!) { publishWorkflow(id: $id) { version } }",
            json!({"id": waits}),
        )
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
        .ok(
            "mutation($id: ID!) { cancelExecution(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
    id
}

/// The root fields of `type Query` and `type Mutation` in the supergraph.
pub fn operations(supergraph: &str) -> std::collections::BTreeSet<String> {
    let mut operations = std::collections::BTreeSet::new();
    for root in ["Query", "Mutation"] {
        for (name, _) in crate::fields_of(supergraph, root) {
            operations.insert(name);
        }
    }
    operations
}
