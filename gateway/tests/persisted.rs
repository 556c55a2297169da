//! Persisted operations: automatic persisted queries (Apollo's protocol, over POST and
//! GET) and trusted documents from a manifest file, reloaded when it changes, allowing or
//! enforcing.

mod common;

use std::time::Duration;

use common::{fixture, post_strict, start_configured};
use flowfleet_gateway::persisted::{
    sha256_hex, watch_manifest, PersistedConfig, TrustedDocuments, TrustedMode,
};
use flowfleet_gateway::GatewayConfig;
use serde_json::{json, Value};

const TOP: &str = "{ topProducts { upc } }";
const ME: &str = "{ me { id } }";

async fn gateway(persisted: PersistedConfig) -> String {
    let config = GatewayConfig {
        persisted,
        ..GatewayConfig::default()
    };
    start_configured(&fixture("supergraph.graphql"), config).await
}

fn by_hash(query: &str) -> Value {
    json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(query)}}})
}

fn with_text(query: &str) -> Value {
    let mut body = by_hash(query);
    body["query"] = query.into();
    body
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn apq_registers_a_text_by_its_hash_then_runs_it_by_hash() {
    let base = gateway(PersistedConfig::default()).await;
    // Unknown: the client is told to send the text (200, as Apollo clients expect).
    let (status, body) = post_strict(&base, by_hash(TOP)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}");
    assert!(body.get("data").is_none());
    // Text and hash: run and remembered.
    let (status, body) = post_strict(&base, with_text(TOP)).await;
    assert_eq!(status, 200, "{body}");
    let expected = body["data"].clone();
    assert!(expected["topProducts"].is_array(), "{body}");
    // The hash alone now runs it, over POST and GET.
    let (status, body) = post_strict(&base, by_hash(TOP)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], expected);
    let extensions = by_hash(TOP)["extensions"].to_string();
    let get: Value = reqwest::Client::new()
        .get(format!("{base}/graphql"))
        .query(&[("extensions", extensions.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(get["data"], expected, "{get}");
}

#[tokio::test]
async fn a_hash_that_is_not_the_texts_or_malformed_is_refused() {
    let base = gateway(PersistedConfig::default()).await;
    let mut lying = with_text(TOP);
    lying["extensions"]["persistedQuery"]["sha256Hash"] = sha256_hex(ME).into();
    let (status, body) = post_strict(&base, lying).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "PERSISTED_QUERY_HASH_MISMATCH");
    // The lie registered nothing: ME's hash is still unknown.
    let (_, body) = post_strict(&base, by_hash(ME)).await;
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_FOUND", "{body}");
    for bad in [
        json!({"extensions": {"persistedQuery": {"version": 2, "sha256Hash": sha256_hex(TOP)}}}),
        json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "abc"}}}),
        json!({"extensions": {"persistedQuery": "abc"}}),
    ] {
        let (status, body) = post_strict(&base, bad).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(code(&body), "BAD_REQUEST", "{body}");
    }
}

#[tokio::test]
async fn apq_can_be_switched_off() {
    let base = gateway(PersistedConfig {
        apq: false,
        ..PersistedConfig::default()
    })
    .await;
    let (status, body) = post_strict(&base, by_hash(TOP)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_SUPPORTED");
}

fn manifest(dir: &tempfile::TempDir, bodies: &[&str]) -> std::path::PathBuf {
    let path = dir.path().join("manifest.json");
    let operations: Vec<Value> = bodies
        .iter()
        .map(|body| json!({"id": sha256_hex(body), "type": "query", "body": body}))
        .collect();
    let manifest = json!({
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": operations,
    });
    std::fs::write(&path, manifest.to_string()).unwrap();
    path
}

#[tokio::test]
async fn trusted_documents_allow_by_hash_and_enforce_only_their_operations() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(&dir, &[TOP]);
    let allow = gateway(PersistedConfig {
        trusted: Some(TrustedDocuments::load(&path).unwrap()),
        ..PersistedConfig::default()
    })
    .await;
    // A listed operation runs by hash without ever being registered; others run too.
    let (status, body) = post_strict(&allow, by_hash(TOP)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["topProducts"].is_array(), "{body}");
    let (status, body) = post_strict(&allow, json!({"query": ME})).await;
    assert_eq!(status, 200, "{body}");

    let enforce = gateway(PersistedConfig {
        trusted: Some(TrustedDocuments::load(&path).unwrap()),
        mode: TrustedMode::Enforce,
        ..PersistedConfig::default()
    })
    .await;
    let (status, body) = post_strict(&enforce, by_hash(TOP)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_strict(&enforce, json!({"query": TOP})).await;
    assert_eq!(status, 200, "the listed text itself: {body}");
    for refused in [json!({"query": ME}), by_hash(ME), with_text(ME)] {
        let (status, body) = post_strict(&enforce, refused.clone()).await;
        assert_eq!(status, 400, "{refused}: {body}");
        assert_eq!(code(&body), "PERSISTED_QUERY_NOT_IN_LIST", "{body}");
    }
    // Registering through APQ did not sneak ME in.
    let (_, body) = post_strict(&enforce, json!({"query": ME})).await;
    assert_eq!(code(&body), "PERSISTED_QUERY_NOT_IN_LIST");
}

#[tokio::test]
async fn the_manifest_is_reloaded_when_it_changes_and_kept_when_broken() {
    let dir = tempfile::tempdir().unwrap();
    let path = manifest(&dir, &[TOP]);
    let trusted = TrustedDocuments::load(&path).unwrap();
    let base = gateway(PersistedConfig {
        trusted: Some(trusted.clone()),
        mode: TrustedMode::Enforce,
        ..PersistedConfig::default()
    })
    .await;
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(watch_manifest(
        trusted,
        Duration::from_millis(50),
        stop.clone().cancelled_owned(),
    ));
    assert_eq!(
        code(&post_strict(&base, json!({"query": ME})).await.1),
        "PERSISTED_QUERY_NOT_IN_LIST"
    );
    manifest(&dir, &[TOP, ME]);
    let mut allowed = false;
    for _ in 0..100 {
        if post_strict(&base, json!({"query": ME})).await.0 == 200 {
            allowed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(allowed, "the new manifest was not loaded");
    // A broken file: the last good list stays in force.
    std::fs::write(&path, "{ not json").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(post_strict(&base, json!({"query": ME})).await.0, 200);
    assert_eq!(post_strict(&base, json!({"query": TOP})).await.0, 200);
    stop.cancel();
}
