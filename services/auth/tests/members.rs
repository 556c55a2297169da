//! Workspace membership on every backend: invitations (accepted once, by the invited
//! address only, revocable), role changes and removal within each role's powers, the
//! last-owner rule (also under two owners racing to demote each other), membership
//! answers to other services changing at once, and the audit log admins read.

mod common;

use common::{account, bearer, code, log_in, on_workspace, run_with, verifying_auth};
use flowfleet_auth::Auth;
use flowfleet_host::testing::Backend;
use flowfleet_security::access::Access;
use flowfleet_security::identity::Role;
use serde_json::{json, Value};

async fn call(auth: &Auth, token: &Value, query: &str, variables: Value) -> Value {
    run_with(auth, query, variables, &bearer(token)).await
}

async fn personal_workspace(auth: &Auth, token: &Value) -> String {
    let me = call(
        auth,
        token,
        "{ me { memberships { workspace { id } } } }",
        json!({}),
    )
    .await;
    me["data"]["me"]["memberships"][0]["workspace"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{me}"))
        .to_string()
}

const INVITE: &str = "mutation($w: ID!, $e: String!, $r: WorkspaceRole!) { \
    inviteMember(workspaceId: $w, email: $e, role: $r) { token invitation { id email role } } }";
const ACCEPT: &str =
    "mutation($t: String!) { acceptInvitation(token: $t) { role workspace { id name } } }";
const CHANGE: &str = "mutation($w: ID!, $u: ID!, $r: WorkspaceRole!) { \
    changeMemberRole(workspaceId: $w, userId: $u, role: $r) { role user { id } } }";
const REMOVE: &str = "mutation($w: ID!, $u: ID!) { removeMember(workspaceId: $w, userId: $u) }";

/// Invites `email` with `role` and has `token` (theirs) accept it.
async fn join(auth: &Auth, inviter: &Value, ws: &str, email: &str, role: &str, token: &Value) {
    let invited = call(
        auth,
        inviter,
        INVITE,
        json!({"w": ws, "e": email, "r": role}),
    )
    .await;
    let invitation = invited["data"]["inviteMember"]["token"].clone();
    let accepted = call(auth, token, ACCEPT, json!({"t": invitation})).await;
    assert_eq!(
        accepted["data"]["acceptInvitation"]["role"], role,
        "{invited} {accepted}"
    );
}

fn roles(members: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = members
        .as_array()
        .unwrap_or_else(|| panic!("{members}"))
        .iter()
        .map(|m| {
            (
                m["user"]["id"].as_str().unwrap_or("").to_string(),
                m["role"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn invitations_are_accepted_once_by_the_invited_address_and_can_be_revoked() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let auth = verifying_auth(&env, env.infra.clone()).await;
        let (_, ada) = account(&auth, "ada@example.com", "Ada").await;
        let (bob_id, bob) = account(&auth, "bob@example.com", "Bob").await;
        let (_, eve) = account(&auth, "eve@example.com", "Eve").await;
        let ws = personal_workspace(&auth, &ada).await;

        let invited = call(
            &auth,
            &ada,
            INVITE,
            json!({"w": ws, "e": " Bob@Example.com ", "r": "EDITOR"}),
        )
        .await;
        let payload = &invited["data"]["inviteMember"];
        let token = payload["token"].clone();
        assert!(
            token.as_str().is_some_and(|t| t.starts_with("inv_")),
            "{name}: {invited}"
        );
        assert_eq!(payload["invitation"]["email"], "bob@example.com", "{name}");
        let pending = on_workspace(&auth, &ada, &ws, "invitations { id email role }").await;
        assert_eq!(
            pending["data"]["_entities"][0]["invitations"][0]["email"], "bob@example.com",
            "{name}: {pending}"
        );

        // Someone else cannot use it, and it is not consumed by their attempt.
        let stolen = call(&auth, &eve, ACCEPT, json!({"t": token})).await;
        assert_eq!(code(&stolen), "FORBIDDEN", "{name}: {stolen}");
        let accepted = call(&auth, &bob, ACCEPT, json!({"t": token})).await;
        assert_eq!(
            accepted["data"]["acceptInvitation"],
            json!({"role": "EDITOR", "workspace": {"id": ws, "name": "Ada's workspace"}}),
            "{name}: {accepted}"
        );
        let again = call(&auth, &bob, ACCEPT, json!({"t": token})).await;
        assert_eq!(code(&again), "CONFLICT", "{name}: {again}");

        // Members see each other; Bob is an editor now.
        let members = on_workspace(&auth, &bob, &ws, "members { role user { id name } }").await;
        let list = &members["data"]["_entities"][0]["members"];
        assert!(
            roles(list).contains(&(bob_id.clone(), "EDITOR".into())),
            "{name}: {members}"
        );
        // An editor cannot invite.
        let by_editor = call(
            &auth,
            &bob,
            INVITE,
            json!({"w": ws, "e": "cy@example.com", "r": "VIEWER"}),
        )
        .await;
        assert_eq!(code(&by_editor), "FORBIDDEN", "{name}: {by_editor}");
        // Inviting a member again is a conflict.
        let twice = call(
            &auth,
            &ada,
            INVITE,
            json!({"w": ws, "e": "bob@example.com", "r": "VIEWER"}),
        )
        .await;
        assert_eq!(code(&twice), "CONFLICT", "{name}: {twice}");

        // A revoked invitation cannot be accepted; an outsider cannot revoke or see one.
        let second = call(
            &auth,
            &ada,
            INVITE,
            json!({"w": ws, "e": "eve@example.com", "r": "VIEWER"}),
        )
        .await;
        let second_id = second["data"]["inviteMember"]["invitation"]["id"].clone();
        let second_token = second["data"]["inviteMember"]["token"].clone();
        let revoke = "mutation($i: ID!) { revokeInvitation(id: $i) { id revokedAt } }";
        let by_outsider = call(&auth, &eve, revoke, json!({"i": second_id})).await;
        assert_eq!(code(&by_outsider), "NOT_FOUND", "{name}: {by_outsider}");
        let revoked = call(&auth, &ada, revoke, json!({"i": second_id})).await;
        assert!(
            revoked["data"]["revokeInvitation"]["revokedAt"].is_string(),
            "{name}: {revoked}"
        );
        let late = call(&auth, &eve, ACCEPT, json!({"t": second_token})).await;
        assert_eq!(code(&late), "CONFLICT", "{name}: {late}");
        for garbage in [
            "",
            "inv_short",
            "rt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            let response = call(&auth, &eve, ACCEPT, json!({"t": garbage})).await;
            assert_eq!(code(&response), "NOT_FOUND", "{name}: {garbage:?}");
        }
        // Anonymous callers get nothing.
        let anonymous = run_with(&auth, ACCEPT, json!({"t": token}), &http::HeaderMap::new()).await;
        assert_eq!(code(&anonymous), "UNAUTHENTICATED", "{name}");
    }
}

#[tokio::test]
async fn roles_change_within_each_roles_powers_and_a_workspace_keeps_an_owner() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let auth = verifying_auth(&env, env.infra.clone()).await;
        let (ada_id, ada) = account(&auth, "ada@example.com", "Ada").await;
        let (bob_id, bob) = account(&auth, "bob@example.com", "Bob").await;
        let (cy_id, cy) = account(&auth, "cy@example.com", "Cy").await;
        let ws = personal_workspace(&auth, &ada).await;
        join(&auth, &ada, &ws, "bob@example.com", "ADMIN", &bob).await;
        join(&auth, &bob, &ws, "cy@example.com", "VIEWER", &cy).await;

        // Other services ask the auth service over gRPC and cache the answer.
        let access = Access::new(
            flowfleet_runtime::grpc::in_process(
                auth.parts.grpc.clone(),
                Some(
                    env.infra
                        .service_credentials(flowfleet_runtime::config::ServiceName::Workflow),
                ),
            ),
            env.infra.cache.clone(),
        );
        let (ws_id, cy_uuid) = (ws.parse().unwrap(), cy_id.parse().unwrap());
        assert_eq!(
            access.third_party_role(cy_uuid, ws_id).await.unwrap(),
            Some(Role::Viewer),
            "{name}"
        );

        let change = |token: &Value, user: &str, role: &str| {
            let (token, vars) = (token.clone(), json!({"w": ws, "u": user, "r": role}));
            let auth = &auth;
            async move { call(auth, &token, CHANGE, vars).await }
        };
        // An admin cannot make owners, nor touch the owner; a viewer changes nothing.
        assert_eq!(
            code(&change(&bob, &cy_id, "OWNER").await),
            "FORBIDDEN",
            "{name}"
        );
        assert_eq!(
            code(&change(&bob, &ada_id, "VIEWER").await),
            "FORBIDDEN",
            "{name}"
        );
        assert_eq!(
            code(&change(&cy, &cy_id, "ADMIN").await),
            "FORBIDDEN",
            "{name}"
        );
        // An admin promotes a viewer to editor; the cached answer elsewhere changes at once.
        let promoted = change(&bob, &cy_id, "EDITOR").await;
        assert_eq!(
            promoted["data"]["changeMemberRole"],
            json!({"role": "EDITOR", "user": {"id": cy_id}}),
            "{name}: {promoted}"
        );
        assert_eq!(
            access.third_party_role(cy_uuid, ws_id).await.unwrap(),
            Some(Role::Editor),
            "{name}"
        );

        // The only owner cannot step down or leave.
        let alone = change(&ada, &ada_id, "ADMIN").await;
        assert_eq!(code(&alone), "CONFLICT", "{name}: {alone}");
        let leave = call(&auth, &ada, REMOVE, json!({"w": ws, "u": ada_id})).await;
        assert_eq!(code(&leave), "CONFLICT", "{name}: {leave}");
        // With a second owner, two owners demoting each other at once: exactly one wins.
        // Repeated, since a missing lock loses only some races.
        let (mut owner, mut other) = (&ada, &bob_id);
        for round in 0..6 {
            let promoted = change(owner, other, "OWNER").await;
            assert!(promoted["data"].is_object(), "{name}: {promoted}");
            let (a, b) = tokio::join!(
                change(&ada, &bob_id, "ADMIN"),
                change(&bob, &ada_id, "ADMIN")
            );
            let won = [&a, &b]
                .iter()
                .filter(|r| r["data"]["changeMemberRole"].is_object())
                .count();
            assert_eq!(won, 1, "{name} round {round}: {a} {b}");
            let members = on_workspace(&auth, &cy, &ws, "members { role user { id } }").await;
            let owners = roles(&members["data"]["_entities"][0]["members"])
                .into_iter()
                .filter(|(_, r)| r == "OWNER")
                .count();
            assert_eq!(owners, 1, "{name} round {round}: {members}");
            (owner, other) = if a["data"]["changeMemberRole"].is_object() {
                (&ada, &bob_id)
            } else {
                (&bob, &ada_id)
            };
        }

        // Removal: a member may leave; an admin removes lower roles; the removed lose access
        // at once, here and in other services.
        let by_editor = call(&auth, &cy, REMOVE, json!({"w": ws, "u": other})).await;
        assert_eq!(code(&by_editor), "FORBIDDEN", "{name}: {by_editor}");
        let removed = call(&auth, owner, REMOVE, json!({"w": ws, "u": cy_id})).await;
        assert_eq!(
            removed["data"]["removeMember"],
            json!(true),
            "{name}: {removed}"
        );
        assert_eq!(
            access.third_party_role(cy_uuid, ws_id).await.unwrap(),
            None,
            "{name}"
        );
        let gone = on_workspace(&auth, &cy, &ws, "members { role }").await;
        assert_eq!(code(&gone), "FORBIDDEN", "{name}: {gone}");
        let again = call(&auth, owner, REMOVE, json!({"w": ws, "u": cy_id})).await;
        assert_eq!(code(&again), "NOT_FOUND", "{name}: {again}");
        let left = call(
            &auth,
            if owner == &ada { &bob } else { &ada },
            REMOVE,
            json!({"w": ws, "u": other}),
        )
        .await;
        assert_eq!(left["data"]["removeMember"], json!(true), "{name}: {left}");
        // Bad ids are input errors, not internal ones.
        let bad = call(&auth, owner, REMOVE, json!({"w": "nope", "u": cy_id})).await;
        assert_eq!(code(&bad), "BAD_USER_INPUT", "{name}: {bad}");
    }
}

#[tokio::test]
async fn admins_read_the_workspace_audit_log_and_members_their_own() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let auth = verifying_auth(&env, env.infra.clone()).await;
        let (ada_id, ada) = account(&auth, "ada@example.com", "Ada").await;
        let (bob_id, bob) = account(&auth, "bob@example.com", "Bob").await;
        let (_, eve) = account(&auth, "eve@example.com", "Eve").await;
        let ws = personal_workspace(&auth, &ada).await;
        join(&auth, &ada, &ws, "bob@example.com", "VIEWER", &bob).await;
        call(
            &auth,
            &ada,
            CHANGE,
            json!({"w": ws, "u": bob_id, "r": "EDITOR"}),
        )
        .await;
        // Bob signs in, fails once; Eve (not a member) fails too.
        assert!(
            log_in(&auth, "bob@example.com", "long enough password").await["data"]["logIn"]
                .is_object()
        );
        log_in(&auth, "bob@example.com", "wrong password").await;
        log_in(&auth, "eve@example.com", "wrong password").await;

        let query = "query($w: ID!, $after: String) { _entities(representations: \
            [{__typename: \"Workspace\", id: $w}]) { ... on Workspace { \
            securityEvents(first: 4, after: $after) { nodes { kind userId actorId workspaceId detail } \
            pageInfo { hasNextPage endCursor } } } } }";
        let mut kinds = Vec::new();
        let mut after = Value::Null;
        let mut pages = 0;
        loop {
            let page = call(&auth, &ada, query, json!({"w": ws, "after": after})).await;
            let log = &page["data"]["_entities"][0]["securityEvents"];
            for event in log["nodes"].as_array().unwrap_or_else(|| panic!("{page}")) {
                kinds.push(event["kind"].as_str().unwrap_or("").to_string());
                if event["kind"] == "MEMBER_ROLE_CHANGED" {
                    assert_eq!(event["actorId"], json!(ada_id), "{name}");
                    assert_eq!(event["userId"], json!(bob_id), "{name}");
                    assert_eq!(event["detail"], json!({"from": "VIEWER", "to": "EDITOR"}));
                }
                // Nothing about a non-member's account reaches this workspace's admins.
                assert_ne!(
                    event["detail"]["email"], "eve@example.com",
                    "{name}: {event}"
                );
            }
            pages += 1;
            if log["pageInfo"]["hasNextPage"] != json!(true) {
                break;
            }
            after = log["pageInfo"]["endCursor"].clone();
        }
        assert!(pages >= 2, "{name}: paged");
        // Newest first.
        for expected in [
            "SIGN_IN_FAILED",
            "SIGNED_IN",
            "MEMBER_ROLE_CHANGED",
            "MEMBER_JOINED",
            "MEMBER_INVITED",
        ] {
            assert!(kinds.contains(&expected.to_string()), "{name}: {kinds:?}");
        }
        let position = |k: &str| kinds.iter().position(|x| x == k).unwrap();
        assert!(
            position("SIGN_IN_FAILED") < position("MEMBER_INVITED"),
            "{name}"
        );

        // Below ADMIN, or outside the workspace: refused, no data.
        for outsider in [&bob, &eve] {
            let refused = call(&auth, outsider, query, json!({"w": ws, "after": null})).await;
            assert_eq!(code(&refused), "FORBIDDEN", "{name}: {refused}");
            assert!(
                refused["data"].is_null() || refused["data"]["_entities"][0].is_null(),
                "{name}: {refused}"
            );
        }
        // Each account reads its own entries, and only its own.
        let own = "query($u: ID!) { _entities(representations: [{__typename: \"User\", id: $u}]) \
            { ... on User { securityEvents { nodes { kind userId } } } } }";
        let mine = call(&auth, &bob, own, json!({"u": bob_id})).await;
        let nodes = mine["data"]["_entities"][0]["securityEvents"]["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{mine}"))
            .clone();
        assert!(nodes.iter().all(|n| n["userId"] == json!(bob_id)), "{name}");
        assert!(
            nodes.iter().any(|n| n["kind"] == "SIGN_IN_FAILED"),
            "{name}: {mine}"
        );
        let theirs = call(&auth, &eve, own, json!({"u": bob_id})).await;
        assert_eq!(code(&theirs), "FORBIDDEN", "{name}: {theirs}");
    }
}
