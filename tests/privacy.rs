//! A user's privacy across the fleet, on both backends: `exportMyData` gathers what every
//! service holds about the caller; `deleteMyAccount` refuses while the caller is the only
//! owner of a shared workspace, and otherwise deletes the account, the workspaces only they
//! belonged to (with their data in every service), and anonymises what shared workspaces
//! keep, so that afterwards no service holds anything about them.

mod support;

use flowfleet_host::testing::Backend;
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::proto::privacy::v1::{
    user_data_client::UserDataClient, ExportUserDataRequest,
};
use flowfleet_runtime::proto::workflow::v1::{
    workflow_service_client::WorkflowServiceClient, GetPublishedVersionRequest,
};
use flowfleet_security::service_auth::ServiceCredentials;
use serde_json::{json, Value};
use support::eventually;
use support::in_process::{start, Fleet, Person};

async fn workspace_of(person: &Person) -> String {
    let me = person
        .client
        .ok("{ me { memberships { workspace { id } } } }", json!({}))
        .await;
    me["me"]["memberships"][0]["workspace"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Creates and publishes a workflow in `workspace` and runs it to completion; returns the
/// workflow and execution ids.
async fn run_workflow(person: &Person, workspace: &str) -> (String, String) {
    let created = person
        .client
        .ok(
            "mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { id } }",
            json!({"i": {"workspaceId": workspace, "name": "Mine", "definition": {
                "nodes": [{"id": "a", "type": "set", "config": {"value": {"secret": "mine"}}}],
                "edges": [], "triggers": [{"kind": "MANUAL"}]}}}),
        )
        .await;
    let workflow = created["createWorkflow"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    person
        .client
        .ok(
            "mutation($id: ID!) { publishWorkflow(id: $id) { version } }",
            json!({"id": workflow}),
        )
        .await;
    let execution = start_run(person, &workflow).await;
    (workflow, execution)
}

async fn start_run(person: &Person, workflow: &str) -> String {
    let started = person
        .client
        .ok(
            "mutation($i: StartExecutionInput!) { startExecution(input: $i) { id } }",
            json!({"i": {"workflowId": workflow, "input": {"who": "me"}}}),
        )
        .await;
    let execution = started["startExecution"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(60, || {
        let (client, execution) = (&person.client, &execution);
        async move {
            let (_, body) = client
                .raw(
                    "query($id: ID!) { execution(id: $id) { status artifacts { id } } }",
                    json!({"id": execution}),
                )
                .await;
            let e = &body["data"]["execution"];
            (e["status"] == "SUCCEEDED" && e["artifacts"][0]["id"].is_string()).then_some(())
        }
    })
    .await;
    execution
}

/// What each service holds about `user`, asked as a fleet service would.
async fn held_about(fleet: &Fleet, user: &str) -> Value {
    let credentials = ServiceCredentials::new(fleet.secrets.clone(), "test");
    let mut services = serde_json::Map::new();
    for service in ServiceName::ALL {
        let mut request = tonic::Request::new(ExportUserDataRequest {
            user_id: user.to_string(),
        });
        let bearer = format!("Bearer {}", credentials.credential().unwrap());
        request
            .metadata_mut()
            .insert("authorization", bearer.parse().unwrap());
        let export = UserDataClient::new(fleet.channel(service))
            .export_user_data(request)
            .await
            .unwrap_or_else(|e| panic!("{service}: {e}"))
            .into_inner();
        services.insert(
            service.as_str().into(),
            serde_json::from_str(&export.json).unwrap(),
        );
    }
    Value::Object(services)
}

/// Every collection in an export is empty and the account is gone.
fn holds_nothing(held: &Value) -> bool {
    held.as_object().unwrap().values().all(|service| {
        service.as_object().unwrap().values().all(|v| match v {
            Value::Array(items) => items.is_empty(),
            Value::Null => true,
            _ => false,
        })
    })
}

fn count(export: &Value, service: &str, key: &str) -> usize {
    export[service][key].as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_gathers_every_service_and_deletion_leaves_nothing_behind() {
    for backend in Backend::all() {
        let name = backend.name();
        let fleet = start(&backend).await;
        let ada = fleet.sign_up("ada@example.com").await;
        let bob = fleet.sign_up("bob@example.com").await;
        let ada_ws = workspace_of(&ada).await;
        let bob_ws = workspace_of(&bob).await;
        // Bob edits in Ada's workspace and runs her workflow; he also has his own.
        let invited = ada
            .client
            .ok(
                "mutation($w: ID!) { inviteMember(workspaceId: $w, email: \"bob@example.com\", role: EDITOR) { token } }",
                json!({"w": ada_ws}),
            )
            .await;
        bob.client
            .ok(
                "mutation($t: String!) { acceptInvitation(token: $t) { role } }",
                json!({"t": invited["inviteMember"]["token"]}),
            )
            .await;
        let (ada_workflow, _) = run_workflow(&ada, &ada_ws).await;
        let bobs_run_in_ada_ws = start_run(&bob, &ada_workflow).await;
        let (bob_workflow, _) = run_workflow(&bob, &bob_ws).await;

        // Bob's export: every service, his data only.
        let export = eventually(30, || {
            let bob = &bob;
            async move {
                let data = bob.client.ok("{ exportMyData }", json!({})).await;
                let export = data["exportMyData"].clone();
                // Facts and notifications arrive through events: wait for both runs.
                (count(&export["services"], "analytics", "executionFacts") == 2
                    && count(&export["services"], "notification", "notifications") == 2)
                    .then_some(export)
            }
        })
        .await;
        assert_eq!(export["userId"], json!(bob.id), "{name}");
        let services = &export["services"];
        assert_eq!(
            services["auth"]["account"]["email"], "bob@example.com",
            "{name}"
        );
        assert_eq!(
            count(services, "auth", "memberships"),
            2,
            "{name}: {services}"
        );
        assert_eq!(count(services, "workflow", "workflowsOwned"), 1, "{name}");
        assert_eq!(
            count(services, "workflow", "versionsPublished"),
            1,
            "{name}"
        );
        assert_eq!(
            count(services, "execution", "executionsStarted"),
            2,
            "{name}"
        );
        assert_eq!(
            services["execution"]["executionsStarted"][0]["input"],
            json!({"who": "me"})
        );
        assert_eq!(count(services, "storage", "files"), 2, "{name}: {services}");
        // Bob's own records only: the workflow he owns is his, not Ada's.
        assert_eq!(
            services["workflow"]["workflowsOwned"][0]["workspace_id"],
            json!(bob_ws),
            "{name}"
        );

        // Ada is the only owner of a workspace Bob is in: she cannot leave it ownerless.
        let (_, refused) = ada
            .client
            .raw(
                "mutation { deleteMyAccount(password: \"long enough password\") }",
                json!({}),
            )
            .await;
        assert_eq!(
            refused["errors"][0]["extensions"]["code"], "CONFLICT",
            "{name}: {refused}"
        );
        // A wrong password deletes nothing.
        let (_, wrong) = bob
            .client
            .raw(
                "mutation { deleteMyAccount(password: \"nope nope\") }",
                json!({}),
            )
            .await;
        assert_eq!(
            wrong["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{name}"
        );

        let deleted = bob
            .client
            .ok(
                "mutation { deleteMyAccount(password: \"long enough password\") }",
                json!({}),
            )
            .await;
        assert_eq!(deleted["deleteMyAccount"], json!(true), "{name}");
        // He cannot sign in again.
        let (_, gone) = bob
            .client
            .raw(
                "mutation { logIn(input: {email: \"bob@example.com\", password: \"long enough password\"}) { accessToken } }",
                json!({}),
            )
            .await;
        assert_eq!(
            gone["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{name}"
        );

        // Every service lets go of him (the others through `user.deleted`).
        let held = eventually(30, || {
            let fleet = &fleet;
            let id = bob.id.clone();
            async move {
                let held = held_about(fleet, &id).await;
                holds_nothing(&held).then_some(held)
            }
        })
        .await;
        assert!(holds_nothing(&held), "{name}: {held}");
        // His own workspace went with its workflow (through `workspace.deleted`)...
        let credentials = ServiceCredentials::new(fleet.secrets.clone(), "test");
        eventually(30, || {
            let (fleet, workflow) = (&fleet, bob_workflow.clone());
            let bearer = format!("Bearer {}", credentials.credential().unwrap());
            async move {
                let mut request = tonic::Request::new(GetPublishedVersionRequest {
                    workflow_id: workflow,
                    version: 0,
                });
                request
                    .metadata_mut()
                    .insert("authorization", bearer.parse().unwrap());
                let answer = WorkflowServiceClient::new(fleet.channel(ServiceName::Workflow))
                    .get_published_version(request)
                    .await;
                matches!(answer, Err(s) if s.code() == tonic::Code::NotFound).then_some(())
            }
        })
        .await;
        // ...while Ada's workspace keeps his run, and its member list no longer has him.
        let kept = ada
            .client
            .ok(
                "query($id: ID!) { execution(id: $id) { status } }",
                json!({"id": bobs_run_in_ada_ws}),
            )
            .await;
        assert_eq!(kept["execution"]["status"], "SUCCEEDED", "{name}");
        let me = ada
            .client
            .ok(
                "{ me { memberships { workspace { members { user { id } } } } } }",
                json!({}),
            )
            .await;
        assert!(!me.to_string().contains(&bob.id), "{name}: {me}");
    }
}
