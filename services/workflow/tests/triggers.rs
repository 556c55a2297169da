//! The engine's gRPC view on every backend: the trigger feed follows
//! publishes, archives, restores and deletes; definitions validate; credential
//! values are for services only and only within their workspace.

mod common;

use std::time::Duration;

use common::{as_user, call, valid_definition, Service};
use flowfleet_host::testing::Backend;
use flowfleet_runtime::proto::workflow::v1::{
    GetCredentialValueRequest, ListActiveTriggersRequest, ValidateDefinitionRequest,
    WatchTriggersRequest, WorkflowTriggers,
};
use serde_json::json;
use tokio_stream::StreamExt;

async fn next(stream: &mut tonic::Streaming<WorkflowTriggers>) -> WorkflowTriggers {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a change within 10 s")
        .expect("the stream stays open")
        .expect("a change, not an error")
}

#[tokio::test]
async fn the_trigger_feed_follows_the_workflow_lifecycle() {
    for backend in Backend::all() {
        let s = Service::start(&backend).await;
        let mut engine = s.engine();
        let start = engine
            .list_active_triggers(ListActiveTriggersRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(start.workflows.is_empty());
        let mut watch = engine
            .watch_triggers(WatchTriggersRequest {
                cursor: start.cursor,
            })
            .await
            .unwrap()
            .into_inner();

        let secret = s.secret("hook-secret").await;
        let mut definition = valid_definition();
        definition["triggers"] = json!([{"kind": "CRON", "expression": "0 9 * * 1-5", "timezone": "Europe/Paris"}, {"kind": "WEBHOOK", "path": "in", "secretCredentialId": secret}]);
        let w = s.create(&s.editor, json!({"definition": definition})).await;
        let id = w["id"].as_str().unwrap().to_string();
        // A draft has no live triggers: nothing is sent for creating one.
        let m = |q: &str| format!("mutation($id: ID!) {{ {q} }}");
        call(
            s.subgraph(),
            &s.editor,
            &m("publishWorkflow(id: $id) { version }"),
            json!({"id": id}),
        )
        .await;
        let live = next(&mut watch).await;
        assert_eq!(
            (live.workflow_id.as_str(), live.version, live.triggers.len()),
            (id.as_str(), 1, 2),
            "{}",
            backend.name()
        );
        assert_eq!(
            (
                live.triggers[0].kind.as_str(),
                live.triggers[0].cron_expression.as_str(),
                live.triggers[0].timezone.as_str()
            ),
            ("CRON", "0 9 * * 1-5", "Europe/Paris")
        );
        assert_eq!(
            (
                live.triggers[1].kind.as_str(),
                live.triggers[1].webhook_path.as_str()
            ),
            ("WEBHOOK", "in")
        );

        call(
            s.subgraph(),
            &s.editor,
            &m("archiveWorkflow(id: $id) { id }"),
            json!({"id": id}),
        )
        .await;
        let archived = next(&mut watch).await;
        assert_eq!((archived.version, archived.triggers.len()), (0, 0));
        assert!(archived.cursor > live.cursor);
        call(
            s.subgraph(),
            &s.editor,
            &m("restoreWorkflow(id: $id) { id }"),
            json!({"id": id}),
        )
        .await;
        let restored = next(&mut watch).await;
        assert_eq!((restored.version, restored.triggers.len()), (1, 2));

        // A second publish replaces the triggers with the new version's.
        let mut manual = valid_definition();
        manual["triggers"] = json!([{"kind": "EVENT", "event": "execution.failed"}]);
        let q = "mutation($id: ID!, $d: JSON!, $r: Int!) { updateWorkflow(id: $id, expectedRevision: $r, input: {definition: $d}) { revision } }";
        let revision = call(
            s.subgraph(),
            &s.viewer,
            "query($id: ID!) { workflow(id: $id) { revision } }",
            json!({"id": id}),
        )
        .await["data"]["workflow"]["revision"]
            .clone();
        call(
            s.subgraph(),
            &s.editor,
            q,
            json!({"id": id, "d": manual, "r": revision}),
        )
        .await;
        call(
            s.subgraph(),
            &s.editor,
            &m("publishWorkflow(id: $id) { version }"),
            json!({"id": id}),
        )
        .await;
        let v2 = next(&mut watch).await;
        assert_eq!(
            (
                v2.version,
                v2.triggers[0].kind.as_str(),
                v2.triggers[0].event.as_str()
            ),
            (2, "EVENT", "execution.failed")
        );

        // A list now shows the live state; a watch from its cursor starts after it.
        let now = engine
            .list_active_triggers(ListActiveTriggersRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(now.workflows.len(), 1);
        assert_eq!((now.workflows[0].version, now.cursor), (2, v2.cursor));
        let mut late = engine
            .watch_triggers(WatchTriggersRequest { cursor: now.cursor })
            .await
            .unwrap()
            .into_inner();
        call(
            s.subgraph(),
            &s.editor,
            &m("archiveWorkflow(id: $id) { id }"),
            json!({"id": id}),
        )
        .await;
        call(
            s.subgraph(),
            &s.owner,
            &m("deleteWorkflow(id: $id)"),
            json!({"id": id}),
        )
        .await;
        let end = engine
            .list_active_triggers(ListActiveTriggersRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(end.workflows.is_empty());
        assert_eq!(
            end.cursor,
            now.cursor + 2,
            "one feed change each for the archive and the delete"
        );
        // Both watches reach the feed's end with the workflow's triggers gone. The feed
        // keeps each workflow's latest state, so a watcher that reads after both changes
        // committed sees only the delete: one message or two, in order, never another.
        for stream in [&mut watch, &mut late] {
            let mut cursor = now.cursor;
            while cursor < end.cursor {
                let change = next(stream).await;
                assert_eq!(
                    (
                        change.workflow_id.as_str(),
                        change.triggers.len(),
                        change.version
                    ),
                    (id.as_str(), 0, 0)
                );
                assert!(change.cursor > cursor);
                cursor = change.cursor;
            }
            assert_eq!(cursor, end.cursor);
        }

        // Users may not follow the feed; a negative cursor is refused.
        let refused = s
            .client()
            .watch_triggers(as_user(WatchTriggersRequest { cursor: 0 }, &s.owner))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        let bad = engine
            .watch_triggers(WatchTriggersRequest { cursor: -1 })
            .await
            .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    }
}

#[tokio::test]
async fn validation_and_credential_values_over_grpc() {
    for backend in Backend::all() {
        let s = Service::start(&backend).await;
        let checked = s
            .client()
            .validate_definition(as_user(
                ValidateDefinitionRequest {
                    workspace_id: s.ws(),
                    definition_json: r#"{"nodes": [{"id": "a", "type": "nope"}], "triggers": [{"kind": "MANUAL"}]}"#.into(),
                },
                &s.viewer,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(!checked.publishable);
        let first = &checked.problems[0];
        assert_eq!(
            (
                first.severity.as_str(),
                first.code.as_str(),
                first.path.as_str(),
                first.node_id.as_str(),
                first.edge_index
            ),
            ("ERROR", "UNKNOWN_NODE_TYPE", "nodes[0].type", "a", -1)
        );
        let ok = s
            .engine()
            .validate_definition(ValidateDefinitionRequest {
                workspace_id: s.ws(),
                definition_json: valid_definition().to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(ok.publishable && ok.problems.is_empty(), "{ok:?}");
        let malformed = s
            .engine()
            .validate_definition(ValidateDefinitionRequest {
                workspace_id: s.ws(),
                definition_json: r#"{"nodes": 3}"#.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(malformed.code(), tonic::Code::InvalidArgument);
        assert!(
            malformed.message().contains("`nodes`"),
            "{}",
            malformed.message()
        );

        let created = call(s.subgraph(), &s.editor, "mutation($i: CreateCredentialInput!) { createCredential(input: $i) { id } }",
            json!({"i": {"workspaceId": s.ws(), "name": "api", "kind": "HTTP_BEARER", "value": {"token": "s3cret"}}})).await;
        let credential = created["data"]["createCredential"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let value = s
            .engine()
            .get_credential_value(GetCredentialValueRequest {
                credential_id: credential.clone(),
                workspace_id: s.ws(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(value.kind, "HTTP_BEARER");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&value.value_json).unwrap(),
            json!({"token": "s3cret"})
        );
        // Another workspace cannot borrow it by naming its id.
        let elsewhere = s
            .engine()
            .get_credential_value(GetCredentialValueRequest {
                credential_id: credential.clone(),
                workspace_id: s.outsider.workspace.to_string(),
            })
            .await
            .unwrap_err();
        assert_eq!(elsewhere.code(), tonic::Code::NotFound);
        // Even the workspace's owner cannot read a value.
        let user = s
            .client()
            .get_credential_value(as_user(
                GetCredentialValueRequest {
                    credential_id: credential,
                    workspace_id: s.ws(),
                },
                &s.owner,
            ))
            .await
            .unwrap_err();
        assert_eq!(user.code(), tonic::Code::PermissionDenied);
    }
}
