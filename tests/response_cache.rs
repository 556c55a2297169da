//! The gateway's response cache in the fleet, in both runtimes (distributed: L2 in Redis,
//! events over RabbitMQ): a workflow read twice is answered from the cache the second
//! time; its owner reads their own publish at once; another credential sees it as soon as
//! the `workflow.published` event arrives, not when the answer's 30 s run out; a second
//! gateway replica finds in Redis what the first fetched, and events evict it there too.

mod support;

use std::time::{Duration, Instant};

use flowfleet_host::testing::Backend;
use serde_json::{json, Value};
use support::in_process::start_with;
use support::Client;

const READ: &str = "query($id: ID!) { workflow(id: $id) { id name status } }";

/// Answers served from the cache so far whose lookup result starts with `result`
/// (`hit_` for either level), from `/metrics`.
fn lookups(result: &str) -> f64 {
    let rendered = flowfleet_runtime::telemetry::metrics_handle().render();
    let prefix = format!("flowfleet_gateway_response_cache_lookups_total{{result=\"{result}");
    rendered
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn hits() -> f64 {
    lookups("hit_")
}

async fn status(client: &Client, workflow: &str) -> Value {
    let read = client.ok(READ, json!({"id": workflow})).await;
    read["workflow"]["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_workflows_are_evicted_by_their_owners_writes_and_by_events() {
    for backend in Backend::all() {
        hits();
        // Redis may be slow on a busy test machine: this test is about sharing answers,
        // not about going around a slow store.
        let fleet = start_with(&backend, |config| {
            config.gateway.response_cache.store_timeout_ms = 5_000
        })
        .await;
        let ada = fleet.sign_up("ada@example.com").await;
        let ws = support::engine::workspace(&ada).await;
        let definition = json!({
            "nodes": [{"id": "greet", "type": "set", "config": {"value": {"greeting": "hello"}}}],
            "edges": [],
            "triggers": [{"kind": "MANUAL"}]
        });
        let created = ada
            .client
            .ok(
                "mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { id } }",
                json!({"i": {"workspaceId": ws, "name": "Greeter", "definition": definition}}),
            )
            .await;
        let workflow = created["createWorkflow"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let key = ada
            .client
            .ok(
                "mutation($w: ID!) { createApiKey(workspaceId: $w, name: \"dashboard\", role: VIEWER) { key } }",
                json!({"w": ws}),
            )
            .await;
        let mut dashboard = Client::new(&fleet.url);
        dashboard.token = Some(key["createApiKey"]["key"].as_str().unwrap().into());

        // The gateway's event listener binds in the background; until it has, the cache
        // is bypassed. Read until the dashboard's answer comes from the cache.
        let before = hits();
        let started = Instant::now();
        while hits() == before {
            assert_eq!(status(&dashboard, &workflow).await, "DRAFT");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{backend:?}: nothing was ever served from the cache"
            );
        }
        let before = hits();
        assert_eq!(status(&ada.client, &workflow).await, "DRAFT");
        assert_eq!(
            hits(),
            before,
            "{backend:?}: another credential, another answer"
        );
        // (An event arriving late, such as Ada's `user.created`, evicts private answers:
        // hers comes from the cache on a read after that, not always the next one.)
        let started = Instant::now();
        while hits() == before {
            assert_eq!(status(&ada.client, &workflow).await, "DRAFT");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{backend:?}: Ada's answer never came from the cache"
            );
        }

        ada.client
            .ok(
                "mutation($id: ID!) { publishWorkflow(id: $id) { version } }",
                json!({"id": workflow}),
            )
            .await;
        assert_eq!(
            status(&ada.client, &workflow).await,
            "ACTIVE",
            "{backend:?}: the owner reads their own write at once"
        );
        let published = Instant::now();
        while status(&dashboard, &workflow).await != "ACTIVE" {
            assert!(
                published.elapsed() < Duration::from_secs(10),
                "{backend:?}: the event did not evict the dashboard's cached answer"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        if matches!(backend, Backend::Distributed { .. }) {
            // Another gateway replica finds in Redis what the first one fetched (the node
            // catalog: public, so no event about people evicts it). Its cache is bypassed
            // until its event listener is bound.
            let replica = fleet.replica().await;
            let there = dashboard.clone_for(&replica.url);
            let catalog = "{ nodeTypes { name branching } }";
            dashboard.ok(catalog, json!({})).await;
            let shared = lookups("hit_shared");
            let started = Instant::now();
            while lookups("hit_shared") == shared {
                let read = there.ok(catalog, json!({})).await;
                assert!(read["nodeTypes"][0]["name"].is_string(), "{read}");
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the replica never found the catalog in Redis (local hits {}, misses {})",
                    lookups("hit_local"),
                    lookups("miss")
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // An event evicts answers from Redis too: the workflow, read through the
            // replica (from Redis or fetched and kept there), then renamed.
            assert_eq!(status(&there, &workflow).await, "ACTIVE");
            assert_eq!(status(&there, &workflow).await, "ACTIVE");
            let revision = ada
                .client
                .ok(
                    "query($id: ID!) { workflow(id: $id) { revision } }",
                    json!({"id": workflow}),
                )
                .await["workflow"]["revision"]
                .clone();
            ada.client
                .ok(
                    "mutation($id: ID!, $r: Int!, $p: UpdateWorkflowInput!) { updateWorkflow(id: $id, expectedRevision: $r, input: $p) { id } }",
                    json!({"id": workflow, "r": revision, "p": {"name": "Renamed"}}),
                )
                .await;
            let renamed = Instant::now();
            loop {
                let read = there.ok(READ, json!({"id": workflow})).await;
                if read["workflow"]["name"] == "Renamed" {
                    break;
                }
                assert!(
                    renamed.elapsed() < Duration::from_secs(10),
                    "the rename's event did not evict the shared answer"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
