//! What the auth service's tests share: running GraphQL against the subgraph, signing
//! up and in, and a service whose subgraph verifies callers with its own keys.

#![allow(dead_code)] // each test file uses a different part

use std::sync::Arc;

use flowfleet_auth::{build, Auth, MIGRATIONS};
use flowfleet_host::subgraph::GraphQLBody;
use flowfleet_host::testing::TestInfra;
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::grpc::in_process;
use flowfleet_security::api_keys::GrpcApiKeys;
use flowfleet_security::identity::{DeferredJwks, TokenVerifier};
use serde_json::{json, Value};

pub const PAYLOAD: &str = "accessToken refreshToken refreshExpiresIn expiresIn user { id }";

pub async fn run(auth: &flowfleet_auth::Auth, query: &str, variables: Value) -> Value {
    run_with(auth, query, variables, &http::HeaderMap::new()).await
}

/// [`run`] with request headers (an `Authorization` for a signed-in caller).
pub async fn run_with(
    auth: &flowfleet_auth::Auth,
    query: &str,
    variables: Value,
    headers: &http::HeaderMap,
) -> Value {
    auth.parts
        .subgraph
        .execute(
            GraphQLBody {
                query: query.into(),
                operation_name: None,
                variables: Some(variables),
            },
            headers,
        )
        .await
}

pub fn code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

/// The response to `signUp`, selecting the whole payload.
pub async fn sign_up(
    auth: &flowfleet_auth::Auth,
    email: &str,
    password: &str,
    name: &str,
) -> Value {
    run(
        auth,
        &format!("mutation($i: SignUpInput!) {{ signUp(input: $i) {{ {PAYLOAD} }} }}"),
        json!({"i": {"email": email, "password": password, "name": name}}),
    )
    .await
}

/// The response to `logIn`, selecting the whole payload.
pub async fn log_in(auth: &flowfleet_auth::Auth, email: &str, password: &str) -> Value {
    run(
        auth,
        &format!("mutation($i: LogInInput!) {{ logIn(input: $i) {{ {PAYLOAD} }} }}"),
        json!({"i": {"email": email, "password": password}}),
    )
    .await
}

/// `Authorization` headers for an access token.
pub fn bearer(token: &Value) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    let value = format!("Bearer {}", token.as_str().expect("an access token"));
    headers.insert("authorization", value.parse().expect("header"));
    headers
}

/// The auth service on `env`, its subgraph verifying access tokens with its own keys (as
/// every service does through the JWKS) and API keys through its own gRPC server.
pub async fn verifying_auth(env: &TestInfra, infra: flowfleet_host::Infra) -> Auth {
    let db = env.db(ServiceName::Auth, &MIGRATIONS).await;
    let jwks = Arc::new(DeferredJwks::default());
    let verifier = Arc::new(TokenVerifier::new(jwks.clone(), "flowfleet", "flowfleet"));
    let infra = flowfleet_host::Infra {
        verifier: verifier.clone(),
        ..infra
    };
    let auth = build(&infra, db).await.expect("auth service");
    jwks.set(auth.keys.clone());
    verifier.set_api_keys(Arc::new(GrpcApiKeys::new(
        in_process(
            auth.parts.grpc.clone(),
            Some(
                env.infra
                    .service_credentials(flowfleet_runtime::config::ServiceName::Workflow),
            ),
        ),
        infra.cache.clone(),
    )));
    auth
}

/// Signs up and returns (user id, access token).
pub async fn account(auth: &Auth, email: &str, name: &str) -> (String, Value) {
    let response = sign_up(auth, email, "long enough password", name).await;
    let payload = &response["data"]["signUp"];
    let id = payload["user"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("sign-up failed: {response}"))
        .to_string();
    (id, payload["accessToken"].clone())
}

/// Reads `selection` of workspace `ws` (through its federation entity) as `token`'s owner.
pub async fn on_workspace(auth: &Auth, token: &Value, ws: &str, selection: &str) -> Value {
    run_with(
        auth,
        &format!(
            "query($w: ID!) {{ _entities(representations: [{{__typename: \"Workspace\", id: $w}}]) \
             {{ ... on Workspace {{ {selection} }} }} }}"
        ),
        json!({"w": ws}),
        &bearer(token),
    )
    .await
}
