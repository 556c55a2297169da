//! `@authenticated`, `@requiresScopes` and `@policy` enforced by the gateway: fields the
//! caller may not see are left out with an error at their path, and the rest is served.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{fixture, in_process_transports};
use flowfleet_gateway::authorization::Access;
use flowfleet_gateway::{serve, Gateway, GatewayConfig};
use serde_json::{json, Value};

/// The benchmark supergraph with `me` for signed-in callers, a user's birthday for the
/// `read:birthday` scope, and stock levels under the `stock` policy.
fn supergraph() -> String {
    let sdl = fixture("supergraph.graphql")
        .replace(
            "me: User @join__field(graph: ACCOUNTS)",
            "me: User @join__field(graph: ACCOUNTS) @authenticated",
        )
        .replace(
            "birthday: Int @join__field(graph: ACCOUNTS)",
            "birthday: Int @join__field(graph: ACCOUNTS) @requiresScopes(scopes: [[\"read:birthday\"]])",
        )
        .replace(
            "inStock: Boolean @join__field(graph: INVENTORY)",
            "inStock: Boolean @join__field(graph: INVENTORY) @policy(policies: [[\"stock\"]])",
        );
    assert_eq!(
        sdl.matches("@authenticated").count(),
        1,
        "the fixture changed"
    );
    format!(
        "{sdl}\ndirective @authenticated on FIELD_DEFINITION | OBJECT | INTERFACE | SCALAR | ENUM\n\
         directive @requiresScopes(scopes: [[String!]!]!) on FIELD_DEFINITION | OBJECT | INTERFACE | SCALAR | ENUM\n\
         directive @policy(policies: [[String!]!]!) on FIELD_DEFINITION | OBJECT | INTERFACE | SCALAR | ENUM\n"
    )
}

/// The gateway behind a stand-in for the edge layer: `x-test-access` names the caller's
/// scopes (`anonymous` for none at all).
async fn start() -> String {
    let config = GatewayConfig {
        policy: Some(Arc::new(|access: &Access, asked: &[String]| {
            // The `stock` policy: callers holding the `staff` scope.
            asked
                .iter()
                .filter(|p| *p == "stock" && access.scopes.contains("staff"))
                .cloned()
                .collect::<BTreeSet<_>>()
        })),
        ..GatewayConfig::default()
    };
    let gateway = Gateway::new(&supergraph(), config, in_process_transports()).expect("gateway");
    let router = gateway.router().layer(axum::middleware::from_fn(
        |mut request: axum::extract::Request, next: axum::middleware::Next| async move {
            let given = request
                .headers()
                .get("x-test-access")
                .map(|v| v.to_str().unwrap().to_string());
            if let Some(given) = given.filter(|g| g != "anonymous") {
                request.extensions_mut().insert(Access {
                    authenticated: true,
                    scopes: given.split_whitespace().map(str::to_string).collect(),
                });
            }
            next.run(request).await
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, router, std::future::pending()));
    format!("http://{addr}")
}

async fn run(base: &str, access: &str, query: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .header("x-test-access", access)
        .json(&json!({"query": query}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// (code, path) of each error.
fn denials(body: &Value) -> Vec<(String, Value)> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["extensions"]["code"].as_str().unwrap().to_string(),
                        e["path"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

const QUERY: &str = "{ me { id } topProducts { upc inStock } users { id birthday } }";

#[tokio::test]
async fn what_a_caller_may_not_see_is_left_out_with_an_error_at_its_path() {
    let base = start().await;

    let (status, body) = run(&base, "anonymous", QUERY).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        denials(&body),
        vec![
            ("UNAUTHENTICATED".into(), json!(["me"])),
            ("UNAUTHENTICATED".into(), json!(["topProducts", "inStock"])),
            ("UNAUTHENTICATED".into(), json!(["users", "birthday"])),
        ],
        "{body}"
    );
    // The rest is served, without the fields left out.
    assert!(body["data"].get("me").is_none(), "{body}");
    let product = &body["data"]["topProducts"][0];
    assert!(
        product["upc"].is_string() && product.get("inStock").is_none(),
        "{body}"
    );
    let user = &body["data"]["users"][0];
    assert!(
        user["id"].is_string() && user.get("birthday").is_none(),
        "{body}"
    );

    // Signed in without the scope or the policy.
    let (_, body) = run(&base, "", QUERY).await;
    assert_eq!(
        denials(&body),
        vec![
            ("FORBIDDEN".into(), json!(["topProducts", "inStock"])),
            ("FORBIDDEN".into(), json!(["users", "birthday"])),
        ],
        "{body}"
    );
    assert!(
        body["data"]["me"].is_object() || body["data"]["me"].is_null(),
        "{body}"
    );
    assert!(body["data"].get("me").is_some(), "{body}");

    // The scope and the policy: everything, no errors.
    let (_, body) = run(&base, "read:birthday staff", QUERY).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert!(body["data"]["users"][0]["birthday"].is_number(), "{body}");
    assert!(
        body["data"]["topProducts"][0]["inStock"].is_boolean(),
        "{body}"
    );
}

#[tokio::test]
async fn fragments_are_filtered_where_they_are_spread_and_an_empty_operation_runs_nothing() {
    let base = start().await;
    let (status, body) = run(
        &base,
        "anonymous",
        "{ users { ...U } } fragment U on User { id birthday }",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        denials(&body),
        vec![("UNAUTHENTICATED".into(), json!(["users", "birthday"]))]
    );
    assert!(body["data"]["users"][0]["id"].is_string(), "{body}");

    // Nothing left: no data, only the errors.
    let (status, body) = run(&base, "anonymous", "{ me { id name } }").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], Value::Null, "{body}");
    assert_eq!(
        denials(&body),
        vec![("UNAUTHENTICATED".into(), json!(["me"]))]
    );
}

#[tokio::test]
async fn variables_only_a_left_out_field_used_are_left_out_too() {
    let base = start().await;
    let response = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .header("x-test-access", "")
        .json(&json!({
            "query": "query Q($id: ID!) { topProducts { upc } user(id: $id) { birthday } }",
            "variables": {"id": "1"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    // `user` had nothing left, so `$id` is used by nothing: the rest still runs.
    assert_eq!(
        denials(&body),
        vec![("FORBIDDEN".into(), json!(["user", "birthday"]))],
        "{body}"
    );
    assert!(body["data"]["topProducts"].is_array(), "{body}");
}

#[tokio::test]
async fn an_incremental_delivery_is_refused_whole() {
    let base = start().await;
    let response = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .header("x-test-access", "anonymous")
        .header("accept", "multipart/mixed")
        .json(&json!({"query": "{ users { id ... @defer { birthday } } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
}
