//! Two replicas of a subgraph as separate `flowfleet serve workflow` processes behind one
//! distributed gateway, killed with SIGKILL and started again while clients keep querying:
//! no query error reaches a client while one replica is up, and a replica that comes back
//! gets its share again (proven by killing the other one next).

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flowfleet_host::testing::fresh_database;
use serde_json::{json, Value};
use support::processes::{
    distributed_servers, fleet_env, free_port, listens, migrate, port_of, spawn, start_services,
    wait_healthy,
};
use support::*;

/// The environment of one more `workflow` replica: the fleet's, on its own ports.
fn replica_env(env: &[(String, String)], http: u16) -> Vec<(String, String)> {
    let mut own: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| !k.starts_with("FLOWFLEET_SERVICES__WORKFLOW__"))
        .cloned()
        .collect();
    own.push((
        "FLOWFLEET_SERVICES__WORKFLOW__HTTP_PORT".into(),
        http.to_string(),
    ));
    own.push((
        "FLOWFLEET_SERVICES__WORKFLOW__GRPC_PORT".into(),
        free_port().to_string(),
    ));
    own
}

/// A second `workflow` replica, up and healthy. A port found free may be taken by another
/// test before the replica binds it: then it exits, and another port is tried.
async fn second_replica(env: &[(String, String)]) -> (Proc, Vec<(String, String)>, u16) {
    for _ in 0..5 {
        let own = replica_env(env, free_port());
        let port = port_of(&own, "FLOWFLEET_SERVICES__WORKFLOW__HTTP_PORT");
        let mut replica = spawn(&own, &["serve", "workflow"]);
        if listens(&mut replica, &format!("http://127.0.0.1:{port}/health")).await {
            return (replica, own, port);
        }
    }
    panic!("no second workflow replica could start");
}

/// The gateway's `flowfleet_gateway_subgraph_replicas_available` for `subgraph`.
async fn available(gateway: &str, subgraph: &str) -> Option<f64> {
    let page = reqwest::get(format!("{gateway}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let prefix =
        format!("flowfleet_gateway_subgraph_replicas_available{{subgraph=\"{subgraph}\"}} ");
    page.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

async fn wait_available(gateway: &str, count: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = available(gateway, "workflow").await;
        if now == Some(count) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{count} workflow replicas never available (now {now:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_and_restarting_subgraph_replicas_under_load_loses_no_query() {
    let Some((admin_url, amqp_url, redis_url)) = distributed_servers() else {
        return;
    };
    let db_name = format!("ff_{}", uuid::Uuid::now_v7().simple());
    let db_url = fresh_database(&admin_url, &db_name).await;
    let blobs = tempfile::tempdir().unwrap();
    let mut env = fleet_env(&db_url, &db_name, &amqp_url, &redis_url, blobs.path());
    migrate(&env);
    let mut procs = start_services(&mut env).await;
    let first_port = port_of(&env, "FLOWFLEET_SERVICES__WORKFLOW__HTTP_PORT");
    let first_env = env.clone();
    let (mut second, second_env, second_port) = second_replica(&env).await;

    let gateway_port = free_port();
    let mut gateway_env = env.clone();
    gateway_env.extend([
        (
            "FLOWFLEET_GATEWAY__TRAFFIC__SUBGRAPHS__WORKFLOW__URLS".to_string(),
            format!(
                "[\"http://127.0.0.1:{first_port}/graphql\", \"http://127.0.0.1:{second_port}/graphql\"]"
            ),
        ),
        (
            "FLOWFLEET_GATEWAY__TRAFFIC__HEALTH_CHECK_INTERVAL_MS".to_string(),
            "200".to_string(),
        ),
    ]);
    procs.push(spawn(
        &gateway_env,
        &["gateway", "--port", &gateway_port.to_string()],
    ));
    let base = format!("http://127.0.0.1:{gateway_port}");
    let url = format!("{base}/graphql");
    wait_healthy(&base, 90).await;
    wait_available(&base, 2.0).await;

    let person = support::processes::sign_up(&url, "ada@example.com").await;
    let client = person.client;
    let me = client
        .ok("{ me { memberships { workspace { id } } } }", json!({}))
        .await;
    let definition = json!({
        "nodes": [{"id": "greet", "type": "set", "config": {"value": {"greeting": "hello"}}}],
        "edges": [],
        "triggers": [{"kind": "MANUAL"}]
    });
    let created = client
        .ok(
            "mutation($i: CreateWorkflowInput!) { createWorkflow(input: $i) { id } }",
            json!({"i": {
                "workspaceId": me["me"]["memberships"][0]["workspace"]["id"],
                "name": "Greeter",
                "definition": definition
            }}),
        )
        .await;
    let workflow = created["createWorkflow"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (client, workflow) = (client.clone_for(&url), workflow.clone());
            let (stop, answered) = (stop.clone(), answered.clone());
            tokio::spawn(async move {
                let mut failures: Vec<Value> = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let (status, body) = client
                        .raw(
                            "query($id: ID!) { workflow(id: $id) { id name status } }",
                            json!({"id": workflow}),
                        )
                        .await;
                    if status == 200
                        && body["errors"].is_null()
                        && body["data"]["workflow"]["id"] == workflow.as_str()
                    {
                        answered.fetch_add(1, Ordering::SeqCst);
                    } else {
                        failures.push(json!({"status": status, "body": body}));
                    }
                }
                failures
            })
        })
        .collect();
    let answered_after = |ms: u64| {
        let answered = answered.clone();
        async move {
            let before = answered.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            answered.load(Ordering::SeqCst) - before
        }
    };
    assert!(answered_after(500).await > 0, "the clients are running");

    // SIGKILL: no graceful shutdown, connections reset mid-request.
    second.child.kill().unwrap();
    let _ = second.child.wait();
    assert!(
        answered_after(1_000).await > 10,
        "the first replica answers alone"
    );
    wait_available(&base, 1.0).await;

    // Back on the same port: health checks bring it back.
    let second = spawn(&second_env, &["serve", "workflow"]);
    wait_healthy(&format!("http://127.0.0.1:{second_port}"), 30).await;
    wait_available(&base, 2.0).await;

    // Now the first goes: every query must find the restarted second.
    let first = procs.remove(0);
    let mut first = first;
    first.child.kill().unwrap();
    let _ = first.child.wait();
    assert!(
        answered_after(1_000).await > 10,
        "the restarted replica answers alone"
    );
    let first = spawn(&first_env, &["serve", "workflow"]);
    wait_healthy(&format!("http://127.0.0.1:{first_port}"), 30).await;
    wait_available(&base, 2.0).await;
    assert!(answered_after(300).await > 0);

    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for task in clients {
        failures.extend(task.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries failed: {:?}",
        failures.len(),
        answered.load(Ordering::SeqCst) + failures.len(),
        &failures[..failures.len().min(3)]
    );
    drop((first, second, procs));
}
