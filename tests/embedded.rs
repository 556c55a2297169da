//! The whole fleet in embedded mode (`flowfleet dev`), through the gateway.

mod support;

use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_six_subgraph_query_and_restart_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let (proc_, url) = start_dev(dir.path(), &[]);
    let (c, wf) = run_scenario(&url, "ada@example.com").await;
    let data = c.ok(CROSS_SIX, json!({})).await;
    assert_cross_six(&data, &wf);

    // The artifact's signed URL downloads the execution's output.
    let download = data["me"]["memberships"][0]["workspace"]["workflows"]["nodes"][0]
        ["lastExecution"]["artifacts"][0]["downloadUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let body: serde_json::Value = reqwest::get(&download).await.unwrap().json().await.unwrap();
    assert_eq!(body, json!({"greeting": "hello", "from": "flowfleet"}));

    // A clean stop, then a restart on the same data directory keeps everything.
    assert!(
        proc_.stop().success(),
        "flowfleet dev did not exit cleanly on SIGTERM"
    );
    let (_proc, url) = start_dev(dir.path(), &[]);
    let mut again = Client::new(&url);
    again.token = c.token.clone();
    let data = again.ok(CROSS_SIX, json!({})).await;
    assert_cross_six(&data, &wf);
    // Logging in again works against the persisted account and keys.
    let login = again
        .ok(
            "mutation { logIn(input: {email: \"ada@example.com\", password: \"correct horse battery\"}) { accessToken } }",
            json!({}),
        )
        .await;
    assert!(login["logIn"]["accessToken"].as_str().unwrap().len() > 20);
    // The signing keys are published at the same address, the persisted one included.
    assert_jwks_lists_the_signing_key(&url, c.token.as_deref().unwrap()).await;
    // Forged credentials are refused before anything runs.
    assert_forgeries_refused_at_the_edge(&url, c.token.as_deref().unwrap()).await;
    assert_api_key_lifecycle(&url, &again, &wf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_subgraph_gives_partial_data_and_an_error_with_a_path() {
    let dir = tempfile::tempdir().unwrap();
    // Point the gateway at an analytics subgraph that is not running.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/graphql", dead.local_addr().unwrap());
    drop(dead);
    let (_proc, url) = start_dev(
        dir.path(),
        &[(
            "FLOWFLEET_GATEWAY__SUBGRAPH_URLS__ANALYTICS",
            dead_url.clone(),
        )],
    );
    let (c, _wf) = {
        let mut c = Client::new(&url);
        let d = c
            .ok(
                "mutation { signUp(input: {email: \"eve@example.com\", password: \"correct horse battery\", name: \"Eve\"}) { accessToken } }",
                json!({}),
            )
            .await;
        c.token = Some(d["signUp"]["accessToken"].as_str().unwrap().to_string());
        let me = c
            .ok("{ me { memberships { workspace { id } } } }", json!({}))
            .await;
        let ws = me["me"]["memberships"][0]["workspace"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let w = c
            .ok(
                "mutation($ws: ID!) { createWorkflow(input: {workspaceId: $ws, name: \"W\"}) { id } }",
                json!({"ws": ws}),
            )
            .await;
        (c, w["createWorkflow"]["id"].as_str().unwrap().to_string())
    };
    let (status, body) = c
        .raw(
            "{ me { name memberships { workspace { workflows { nodes { name stats { runs } } } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let node = &body["data"]["me"]["memberships"][0]["workspace"]["workflows"]["nodes"][0];
    assert_eq!(
        node["name"], "W",
        "data from the live subgraphs is kept: {body}"
    );
    assert!(node["stats"].is_null(), "{body}");
    let err = &body["errors"][0];
    assert_eq!(
        err["path"],
        json!([
            "me",
            "memberships",
            0,
            "workspace",
            "workflows",
            "nodes",
            0,
            "stats"
        ]),
        "{body}"
    );
    let text = body.to_string();
    assert!(!text.contains(&dead_url), "internal URL leaked: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (_proc, url) = start_dev(dir.path(), &[]);
    let c = Client::new(&url);
    let (_, body) = c.raw("{ me { id } }", json!({})).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{body}"
    );
    let (_, body) = c
        .raw(
            "mutation { signUp(input: {email: \"not-an-email\", password: \"correct horse\", name: \"X\"}) { accessToken } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{body}"
    );
    let mut bad = Client::new(&url);
    bad.token = Some("not.a.jwt".into());
    let (_, body) = bad.raw("{ me { id } }", json!({})).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{body}"
    );
    let (status, _) = c.raw("{ me { ", json!({})).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_address_comes_from_the_connection_not_from_what_the_client_says() {
    let dir = tempfile::tempdir().unwrap();
    let (_proc, url) = start_dev(dir.path(), &[]);
    let mut c = Client::new(&url);
    let signed_up = c
        .ok(
            "mutation { signUp(input: {email: \"ip@example.com\", password: \"long enough password\", name: \"Ip\"}) { accessToken } }",
            json!({}),
        )
        .await;
    // A client claiming another address, directly and through a forged sealed header.
    c.headers
        .insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
    c.headers
        .insert("x-flowfleet-client", "v1.key.AAAA".parse().unwrap());
    c.ok(
        "mutation { logIn(input: {email: \"ip@example.com\", password: \"long enough password\"}) { accessToken } }",
        json!({}),
    )
    .await;
    c.token = Some(
        signed_up["signUp"]["accessToken"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let log = c
        .ok("{ me { securityEvents { nodes { kind ip } } } }", json!({}))
        .await;
    let signed_in = log["me"]["securityEvents"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "SIGNED_IN")
        .cloned()
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(signed_in["ip"], "127.0.0.1", "{log}");
}
