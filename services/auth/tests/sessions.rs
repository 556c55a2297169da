//! Sign-in sessions on every backend of `Backend::all()`: in memory (embedded) and in Redis
//! (distributed). Refresh tokens rotate on use, a reused one ends its session, log-out ends
//! one session, and every access token they give verifies as the right user.

use std::sync::Arc;

use flowfleet_auth::{build, MIGRATIONS};
use flowfleet_shared::auth::{JwksSource, TokenVerifier};
use flowfleet_shared::config::ServiceName;
use flowfleet_shared::subgraph::GraphQLBody;
use flowfleet_shared::testing::Backend;
use serde_json::{json, Value};

const PAYLOAD: &str = "accessToken refreshToken refreshExpiresIn expiresIn user { id }";

async fn run(auth: &flowfleet_auth::Auth, query: &str, variables: Value) -> Value {
    auth.parts
        .subgraph
        .execute(
            GraphQLBody {
                query: query.into(),
                operation_name: None,
                variables: Some(variables),
            },
            &http::HeaderMap::new(),
        )
        .await
}

fn code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

async fn refresh(auth: &flowfleet_auth::Auth, token: &Value) -> Value {
    run(
        auth,
        &format!("mutation($t: String!) {{ refreshSession(refreshToken: $t) {{ {PAYLOAD} }} }}"),
        json!({"t": token}),
    )
    .await
}

#[tokio::test]
async fn refresh_tokens_rotate_reuse_ends_the_session_and_log_out_ends_one() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let db = env.db(ServiceName::Auth, &MIGRATIONS).await;
        let auth = build(&env.infra, db).await.expect("auth service");
        let verifier = TokenVerifier::new(
            auth.keys.clone() as Arc<dyn JwksSource>,
            "flowfleet",
            "flowfleet",
        );

        let signed_up = run(
            &auth,
            &format!(
                "mutation {{ signUp(input: {{email: \"ada@example.com\", password: \"correct horse\", name: \"Ada\"}}) {{ {PAYLOAD} }} }}"
            ),
            json!({}),
        )
        .await;
        let first = &signed_up["data"]["signUp"];
        let user = first["user"]["id"].as_str().expect("user id").to_string();
        assert!(
            first["refreshToken"]
                .as_str()
                .is_some_and(|t| t.starts_with("rt_")),
            "{name}: {signed_up}"
        );
        assert_eq!(first["refreshExpiresIn"], json!(30 * 24 * 3600), "{name}");

        // A refresh gives new tokens for the same user, and a new refresh token.
        let second = refresh(&auth, &first["refreshToken"]).await;
        let second = &second["data"]["refreshSession"];
        assert_ne!(second["refreshToken"], first["refreshToken"], "{name}");
        let identity = verifier
            .verify(second["accessToken"].as_str().expect("access token"))
            .await
            .expect("the refreshed access token verifies");
        assert_eq!(identity.user_id.to_string(), user, "{name}");
        let third = refresh(&auth, &second["refreshToken"]).await;
        let third = third["data"]["refreshSession"]["refreshToken"].clone();
        assert!(third.is_string(), "{name}");

        // The first token again: reuse. The session ends, so even the newest token is dead.
        let reused = refresh(&auth, &first["refreshToken"]).await;
        assert_eq!(code(&reused), "UNAUTHENTICATED", "{name}: {reused}");
        assert!(
            reused["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("already used")),
            "{name}: {reused}"
        );
        let after = refresh(&auth, &third).await;
        assert_eq!(code(&after), "UNAUTHENTICATED", "{name}: {after}");
        assert_eq!(after["data"], Value::Null, "{name}");

        // Two sign-ins are two sessions: logging out of one leaves the other.
        let log_in = format!(
            "mutation {{ logIn(input: {{email: \"ada@example.com\", password: \"correct horse\"}}) {{ {PAYLOAD} }} }}"
        );
        let phone = run(&auth, &log_in, json!({})).await["data"]["logIn"]["refreshToken"].clone();
        let laptop = run(&auth, &log_in, json!({})).await["data"]["logIn"]["refreshToken"].clone();
        let out = run(
            &auth,
            "mutation($t: String!) { logOut(refreshToken: $t) }",
            json!({"t": phone}),
        )
        .await;
        assert_eq!(out["data"]["logOut"], json!(true), "{name}: {out}");
        assert_eq!(
            code(&refresh(&auth, &phone).await),
            "UNAUTHENTICATED",
            "{name}"
        );
        let still = refresh(&auth, &laptop).await;
        assert!(
            still["data"]["refreshSession"]["accessToken"].is_string(),
            "{name}: {still}"
        );
        let again = run(
            &auth,
            "mutation($t: String!) { logOut(refreshToken: $t) }",
            json!({"t": phone}),
        )
        .await;
        assert_eq!(
            again["data"]["logOut"],
            json!(false),
            "{name}: nothing left to end"
        );

        // Garbage is refused without a lookup, with the same code and no internals.
        for garbage in ["", "rt_short", "not a token", "Bearer rt_x"] {
            let response = refresh(&auth, &json!(garbage)).await;
            assert_eq!(code(&response), "UNAUTHENTICATED", "{name}: {garbage:?}");
        }
    }
}
