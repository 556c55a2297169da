//! Time zones of people and workspaces, on every backend: both start as `UTC`; a person
//! sets their own and an ADMIN the workspace's, to IANA names only (anything else is
//! `BAD_USER_INPUT` naming the field, and changes nothing); names may change with them.

mod common;

use common::{account, bearer, code, on_workspace, run_with, verifying_auth};
use flowfleet_host::testing::Backend;
use serde_json::json;

#[tokio::test]
async fn people_and_workspaces_keep_an_iana_time_zone() {
    for backend in Backend::all() {
        let name = backend.name();
        let env = backend.start().await;
        let auth = verifying_auth(&env, env.infra.clone()).await;
        let (_, ada) = account(&auth, "ada@example.com", "Ada").await;
        let headers = bearer(&ada);
        let me = |q: &'static str| run_with(&auth, q, json!({}), &headers);

        let before = me("{ me { timeZone memberships { workspace { id timeZone } } } }").await;
        assert_eq!(before["data"]["me"]["timeZone"], "UTC", "{name}: {before}");
        let ws = before["data"]["me"]["memberships"][0]["workspace"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {before}"))
            .to_string();
        assert_eq!(
            before["data"]["me"]["memberships"][0]["workspace"]["timeZone"], "UTC",
            "{name}"
        );

        let updated = me(
            "mutation { updateProfile(name: \"Ada L.\", timeZone: \"Europe/Paris\") { name timeZone } }",
        )
        .await;
        assert_eq!(
            updated["data"]["updateProfile"],
            json!({"name": "Ada L.", "timeZone": "Europe/Paris"}),
            "{name}: {updated}"
        );
        let refused =
            me("mutation { updateProfile(timeZone: \"Mars/Olympus\") { timeZone } }").await;
        assert_eq!(code(&refused), "BAD_USER_INPUT", "{name}: {refused}");
        assert_eq!(
            refused["errors"][0]["extensions"]["path"],
            json!(["timeZone"]),
            "{name}"
        );
        let kept = me("{ me { timeZone } }").await;
        assert_eq!(
            kept["data"]["me"]["timeZone"], "Europe/Paris",
            "{name}: {kept}"
        );

        let set = run_with(
            &auth,
            "mutation($w: ID!) { updateWorkspace(workspaceId: $w, timeZone: \"America/New_York\") { timeZone name } }",
            json!({"w": ws}),
            &bearer(&ada),
        )
        .await;
        assert_eq!(
            set["data"]["updateWorkspace"]["timeZone"], "America/New_York",
            "{name}: {set}"
        );
        let read = on_workspace(&auth, &ada, &ws, "timeZone").await;
        assert_eq!(
            read["data"]["_entities"][0]["timeZone"], "America/New_York",
            "{name}: {read}"
        );
        let refused = run_with(
            &auth,
            "mutation($w: ID!) { updateWorkspace(workspaceId: $w, timeZone: \"EST5EDT-ish\") { timeZone } }",
            json!({"w": ws}),
            &bearer(&ada),
        )
        .await;
        assert_eq!(code(&refused), "BAD_USER_INPUT", "{name}: {refused}");
    }
}
