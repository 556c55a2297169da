//! API keys on every backend: created by admins within their own role, shown once and
//! stored hashed, verified by every service's verifier (through the auth service's gRPC)
//! as their creator within their workspace and role, last use recorded, and revocation
//! effective at once despite the verifiers' cache.

mod common;

use std::sync::Arc;

use common::{account, bearer, code, on_workspace, run_with, verifying_auth};
use flowfleet_auth::Auth;
use flowfleet_host::testing::Backend;
use flowfleet_runtime::grpc::in_process;
use flowfleet_security::access::{Access, Target};
use flowfleet_security::api_keys::GrpcApiKeys;
use flowfleet_security::identity::{Role, TokenVerifier};
use serde_json::{json, Value};

async fn call(auth: &Auth, token: &Value, query: &str, variables: Value) -> Value {
    run_with(auth, query, variables, &bearer(token)).await
}

const CREATE: &str = "mutation($w: ID!, $n: String!, $r: WorkspaceRole!, $d: Int) { \
    createApiKey(workspaceId: $w, name: $n, role: $r, expiresInDays: $d) { key apiKey { id prefix role name } } }";

const KEYS: &str =
    "query($w: ID!) { _entities(representations: [{__typename: \"Workspace\", id: $w}]) \
    { ... on Workspace { apiKeys { id prefix lastUsedAt revokedAt expiresAt } } } }";

#[tokio::test]
async fn api_keys_act_within_their_workspace_and_role_until_revoked() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let auth = verifying_auth(&env, env.infra.clone()).await;
        // What every other service runs: a verifier that asks the auth service about keys,
        // and membership checks, both cached in the shared cache.
        let channel = in_process(
            auth.parts.grpc.clone(),
            Some(
                env.infra
                    .service_credentials(flowfleet_runtime::config::ServiceName::Workflow),
            ),
        );
        let verifier = TokenVerifier::new(auth.keys.clone(), "flowfleet", "flowfleet");
        verifier.set_api_keys(Arc::new(GrpcApiKeys::new(
            channel.clone(),
            env.infra.cache.clone(),
        )));
        let access = Access::new(channel, env.infra.cache.clone());

        let (ada_id, ada) = account(&auth, "ada@example.com", "Ada").await;
        let (_, bob) = account(&auth, "bob@example.com", "Bob").await;
        let me = call(
            &auth,
            &ada,
            "{ me { memberships { workspace { id } } } }",
            json!({}),
        )
        .await;
        let ws = me["data"]["me"]["memberships"][0]["workspace"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{me}"))
            .to_string();
        let bob_ws = call(
            &auth,
            &bob,
            "{ me { memberships { workspace { id } } } }",
            json!({}),
        )
        .await["data"]["me"]["memberships"][0]["workspace"]["id"]
            .as_str()
            .unwrap()
            .to_string();

        let created = call(
            &auth,
            &ada,
            CREATE,
            json!({"w": ws, "n": "ci", "r": "EDITOR", "d": 30}),
        )
        .await;
        let payload = &created["data"]["createApiKey"];
        let key = payload["key"].clone();
        let secret = key.as_str().unwrap_or_else(|| panic!("{name}: {created}"));
        assert!(secret.starts_with("ffk_"), "{name}");
        assert!(secret.starts_with(payload["apiKey"]["prefix"].as_str().unwrap()));
        assert_eq!(payload["apiKey"]["role"], "EDITOR", "{name}");
        // Listed without the secret, never used yet.
        let listed = call(&auth, &ada, KEYS, json!({"w": ws})).await;
        let listed_text = listed.to_string();
        assert!(
            !listed_text.contains(secret),
            "{name}: the secret is shown once"
        );
        assert_eq!(
            listed["data"]["_entities"][0]["apiKeys"][0]["lastUsedAt"],
            Value::Null,
            "{name}: {listed}"
        );

        // The key verifies as Ada, scoped to her workspace as an EDITOR.
        let identity = verifier
            .verify_bearer(secret)
            .await
            .expect("the key verifies");
        assert_eq!(identity.user_id.to_string(), ada_id, "{name}");
        let scope = identity.api_key.expect("an API key scope");
        assert_eq!(scope.workspace.to_string(), ws, "{name}");
        assert_eq!(scope.role, Role::Editor, "{name}");
        let (ws_id, bob_ws_id) = (ws.parse().unwrap(), bob_ws.parse().unwrap());
        assert!(
            access
                .authorize(&identity, ws_id, Role::Editor, Target::Workspace)
                .await
                .is_ok(),
            "{name}: Ada is OWNER, the key is capped at EDITOR"
        );
        let above = access
            .authorize(&identity, ws_id, Role::Admin, Target::Workspace)
            .await;
        assert!(above.is_err(), "{name}: above the key's role");
        // Nowhere else, even where its creator is a member.
        let bob_invites_ada = call(
            &auth,
            &bob,
            "mutation($w: ID!) { inviteMember(workspaceId: $w, email: \"ada@example.com\", role: ADMIN) { token } }",
            json!({"w": bob_ws}),
        )
        .await;
        let token = bob_invites_ada["data"]["inviteMember"]["token"].clone();
        let joined = call(
            &auth,
            &ada,
            "mutation($t: String!) { acceptInvitation(token: $t) { role } }",
            json!({"t": token}),
        )
        .await;
        assert_eq!(
            joined["data"]["acceptInvitation"]["role"], "ADMIN",
            "{name}"
        );
        assert!(
            access
                .authorize(&identity, bob_ws_id, Role::Viewer, Target::Workspace)
                .await
                .is_err(),
            "{name}: another workspace"
        );

        // Used through the auth subgraph: workspace reads within its role work; what
        // concerns the account itself needs a user session.
        let members = on_workspace(&auth, &key, &ws, "members { role }").await;
        assert!(
            members["data"]["_entities"][0]["members"].is_array(),
            "{name}: {members}"
        );
        for account_only in [
            "{ me { id } }",
            "mutation { createWorkspace(name: \"x\") { id } }",
            "mutation { changePassword(currentPassword: \"long enough password\", newPassword: \"another password\") { accessToken } }",
        ] {
            let refused = call(&auth, &key, account_only, json!({})).await;
            assert_eq!(code(&refused), "FORBIDDEN", "{name}: {account_only} {refused}");
        }
        let escalate = call(
            &auth,
            &key,
            CREATE,
            json!({"w": ws, "n": "more", "r": "OWNER"}),
        )
        .await;
        assert_eq!(code(&escalate), "FORBIDDEN", "{name}: {escalate}");
        let audit = on_workspace(&auth, &key, &ws, "securityEvents { nodes { kind } }").await;
        assert_eq!(
            code(&audit),
            "FORBIDDEN",
            "{name}: EDITOR cannot read the log"
        );

        // Its use is recorded.
        let listed = call(&auth, &ada, KEYS, json!({"w": ws})).await;
        assert!(
            listed["data"]["_entities"][0]["apiKeys"][0]["lastUsedAt"].is_string(),
            "{name}: {listed}"
        );

        // Creation rules: below ADMIN nobody creates keys, and never above one's own role.
        let viewer_invite = call(
            &auth,
            &ada,
            "mutation($w: ID!) { inviteMember(workspaceId: $w, email: \"bob@example.com\", role: VIEWER) { token } }",
            json!({"w": ws}),
        )
        .await;
        let token = viewer_invite["data"]["inviteMember"]["token"].clone();
        call(
            &auth,
            &bob,
            "mutation($t: String!) { acceptInvitation(token: $t) { role } }",
            json!({"t": token}),
        )
        .await;
        let by_viewer = call(
            &auth,
            &bob,
            CREATE,
            json!({"w": ws, "n": "x", "r": "VIEWER"}),
        )
        .await;
        assert_eq!(code(&by_viewer), "FORBIDDEN", "{name}: {by_viewer}");
        for (days, expected) in [(0, "BAD_USER_INPUT"), (5000, "BAD_USER_INPUT")] {
            let bad = call(
                &auth,
                &ada,
                CREATE,
                json!({"w": ws, "n": "x", "r": "VIEWER", "d": days}),
            )
            .await;
            assert_eq!(code(&bad), expected, "{name}: {bad}");
        }

        // Revocation: at once, although the verifier cached the key a moment ago.
        let key_id = payload["apiKey"]["id"].clone();
        let by_outsider = call(
            &auth,
            &bob,
            "mutation($i: ID!) { revokeApiKey(id: $i) { id } }",
            json!({"i": key_id}),
        )
        .await;
        assert_eq!(
            code(&by_outsider),
            "FORBIDDEN",
            "{name}: a viewer: {by_outsider}"
        );
        let revoked = call(
            &auth,
            &ada,
            "mutation($i: ID!) { revokeApiKey(id: $i) { revokedAt } }",
            json!({"i": key_id}),
        )
        .await;
        assert!(
            revoked["data"]["revokeApiKey"]["revokedAt"].is_string(),
            "{name}: {revoked}"
        );
        let after = verifier.verify_bearer(secret).await;
        assert!(after.is_err(), "{name}: a revoked key still verified");
        // Refused before anything runs, even what an anonymous caller may ask.
        let refused = call(&auth, &key, "{ __typename }", json!({})).await;
        assert_eq!(code(&refused), "UNAUTHENTICATED", "{name}: {refused}");
        assert!(refused["data"].is_null(), "{name}: {refused}");
        let refused = on_workspace(&auth, &key, &ws, "members { role }").await;
        assert_eq!(code(&refused), "UNAUTHENTICATED", "{name}: {refused}");

        // Garbage and look-alikes are refused.
        for garbage in [
            "ffk_",
            "ffk_short",
            "ffk_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            assert!(
                verifier.verify_bearer(garbage).await.is_err(),
                "{name}: {garbage}"
            );
        }
        // The audit log has the key's creation and revocation.
        let log = on_workspace(
            &auth,
            &ada,
            &ws,
            "securityEvents(first: 50) { nodes { kind } }",
        )
        .await;
        let kinds = log["data"]["_entities"][0]["securityEvents"]["nodes"].to_string();
        assert!(kinds.contains("API_KEY_CREATED"), "{name}: {log}");
        assert!(kinds.contains("API_KEY_REVOKED"), "{name}: {log}");
    }
}
