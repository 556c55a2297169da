//! Workspace credentials on every backend: editors create, rename, replace and delete them;
//! every member lists them by name; values are checked per kind, sealed at rest (bound to
//! the credential) and never returned.

use std::sync::Arc;

use flowfleet_auth::testing::{RealAuth, TestUser};
use flowfleet_host::subgraph::{GraphQLBody, Subgraph};
use flowfleet_host::testing::Backend;
use flowfleet_runtime::config::ServiceName;
use flowfleet_security::identity::{Role, TokenVerifier};
use flowfleet_workflow::{build, MIGRATIONS};
use serde_json::{json, Value};
use sqlx::Row;

async fn call(subgraph: &Subgraph, who: &TestUser, query: &str, variables: Value) -> Value {
    let mut headers = http::HeaderMap::new();
    let bearer = format!("Bearer {}", who.token).parse().unwrap();
    headers.insert(http::header::AUTHORIZATION, bearer);
    let body = GraphQLBody {
        query: query.into(),
        operation_name: None,
        variables: Some(variables),
    };
    subgraph.execute(body, &headers).await
}

fn code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

const CREATE: &str = "mutation($i: CreateCredentialInput!) { createCredential(input: $i) { id name kind workspaceId } }";
const LIST: &str =
    "query($w: ID!) { _entities(representations: [{__typename: \"Workspace\", id: $w}]) \
    { ... on Workspace { credentials { id name kind } } } }";
const UPDATE: &str = "mutation($id: ID!, $n: String, $v: JSON) { updateCredential(id: $id, name: $n, value: $v) { name } }";
const DELETE: &str = "mutation($id: ID!) { deleteCredential(id: $id) }";

async fn sealed_value(db: &flowfleet_runtime::db::Db, id: &str) -> String {
    sqlx::query("SELECT sealed_value FROM credentials WHERE id = $1")
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap()
        .try_get("sealed_value")
        .unwrap()
}

#[tokio::test]
async fn credentials_are_write_only_sealed_and_for_editors() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let auth = RealAuth::start(&env).await;
        let owner = auth.user("owner@example.com").await;
        let editor = auth
            .member(&owner, "editor@example.com", Role::Editor)
            .await;
        let viewer = auth
            .member(&owner, "viewer@example.com", Role::Viewer)
            .await;
        let outsider = auth.user("outsider@example.com").await;
        let infra = flowfleet_host::Infra {
            verifier: Arc::new(TokenVerifier::new(auth.keys(), "flowfleet", "flowfleet")),
            ..env.infra.clone()
        };
        let db = env.db(ServiceName::Workflow, &MIGRATIONS).await;
        let parts = build(&infra, db.clone(), auth.access()).await.unwrap();
        let wf = &parts.subgraph;
        let ws = owner.workspace.to_string();
        let input = |n: &str, kind: &str, value: Value| json!({"i": {"workspaceId": ws, "name": n, "kind": kind, "value": value}});
        let opened = |sealed: &str, id: &str| -> Value {
            let bytes = env
                .infra
                .secrets
                .open(sealed, &format!("credential:{id}"))
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };

        let created = call(
            wf,
            &editor,
            CREATE,
            input("github", "HTTP_BEARER", json!({"token": "ghp_very_secret"})),
        )
        .await;
        let credential = &created["data"]["createCredential"];
        assert_eq!(credential["kind"], "HTTP_BEARER", "{name}: {created}");
        assert!(!created.to_string().contains("ghp_very_secret"), "{name}");
        let id = credential["id"].as_str().unwrap().to_string();

        // Sealed at rest, bound to this credential, and it opens to the value.
        let sealed = sealed_value(&db, &id).await;
        assert!(!sealed.contains("ghp_very_secret"), "{name}");
        assert_eq!(opened(&sealed, &id), json!({"token": "ghp_very_secret"}));
        assert!(env.infra.secrets.open(&sealed, "credential:other").is_err());

        // Members list them by name; an outsider cannot.
        let listed = call(wf, &viewer, LIST, json!({"w": ws})).await;
        assert_eq!(
            listed["data"]["_entities"][0]["credentials"],
            json!([{"id": id, "name": "github", "kind": "HTTP_BEARER"}]),
            "{name}: {listed}"
        );
        let outside = call(wf, &outsider, LIST, json!({"w": ws})).await;
        assert_eq!(code(&outside), "FORBIDDEN", "{name}: {outside}");

        // Values are checked per kind, naming the field; names are unique per workspace.
        let smtp = json!({"host": "smtp", "port": 0, "username": "u", "password": "p"});
        let bad = call(wf, &editor, CREATE, input("mail", "SMTP", smtp)).await;
        assert_eq!(code(&bad), "BAD_USER_INPUT", "{name}: {bad}");
        assert!(bad.to_string().contains("value.port"), "{name}: {bad}");
        let twice = call(
            wf,
            &owner,
            CREATE,
            input("github", "SECRET", json!({"value": "x"})),
        )
        .await;
        assert_eq!(code(&twice), "CONFLICT", "{name}: {twice}");
        // Viewers and outsiders create nothing.
        for who in [&viewer, &outsider] {
            let refused = call(wf, who, CREATE, input("x", "SECRET", json!({"value": "x"}))).await;
            assert_eq!(code(&refused), "FORBIDDEN", "{name}: {refused}");
        }

        // Replacing the value re-seals it; renaming keeps it.
        let by_viewer = call(wf, &viewer, UPDATE, json!({"id": id, "n": "x"})).await;
        assert_eq!(code(&by_viewer), "FORBIDDEN", "{name}: {by_viewer}");
        let by_outsider = call(wf, &outsider, UPDATE, json!({"id": id, "n": "x"})).await;
        assert_eq!(code(&by_outsider), "NOT_FOUND", "{name}: {by_outsider}");
        let wrong_kind = call(wf, &editor, UPDATE, json!({"id": id, "v": {"value": "x"}})).await;
        assert_eq!(code(&wrong_kind), "BAD_USER_INPUT", "{name}: {wrong_kind}");
        let replaced = call(
            wf,
            &editor,
            UPDATE,
            json!({"id": id, "n": "github-ci", "v": {"token": "ghp_rotated"}}),
        )
        .await;
        assert_eq!(
            replaced["data"]["updateCredential"]["name"], "github-ci",
            "{name}: {replaced}"
        );
        let resealed = sealed_value(&db, &id).await;
        assert_eq!(opened(&resealed, &id), json!({"token": "ghp_rotated"}));

        // Deleting: editors only.
        assert_eq!(
            code(&call(wf, &viewer, DELETE, json!({"id": id})).await),
            "FORBIDDEN"
        );
        let deleted = call(wf, &editor, DELETE, json!({"id": id})).await;
        assert_eq!(
            deleted["data"]["deleteCredential"],
            json!(true),
            "{name}: {deleted}"
        );
        let gone = call(wf, &editor, DELETE, json!({"id": id})).await;
        assert_eq!(code(&gone), "NOT_FOUND", "{name}: {gone}");
    }
}
