//! The gateway's edge in the fleet: rate limits keyed on the caller the edge verified (a
//! person across addresses, an API key apart from its creator), with buckets in Redis
//! shared by replicas and local limits while Redis is away; and the fleet's authorization
//! directives enforced by the gateway for what the edge verified.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use flowfleet_gateway::rate_limit::{Principal, RateKeys};
use flowfleet_host::testing::Backend;
use flowfleet_runtime::config::{Config, Mode};
use serde_json::{json, Value};
use support::in_process::start_with;
use support::Client;

const ME: &str = "{ me { id } }";

/// Sends `ME` until the gateway refuses; returns how many went through and the refusal.
async fn until_refused(client: &Client, most: usize) -> (usize, Value) {
    for sent in 0..most {
        let (status, body) = client.raw(ME, json!({})).await;
        if status == 429 {
            return (sent, body);
        }
        assert_eq!(status, 200, "{body}");
    }
    panic!("{most} requests and no refusal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_key_on_the_verified_person_and_api_key() {
    for backend in Backend::all() {
        let fleet = start_with(&backend, |c| {
            let limits = &mut c.gateway.rate_limits;
            limits.enabled = true;
            // Only the per-person and per-key limits, so everyone shares one address.
            limits.global_per_second = Some(0);
            limits.per_address_per_second = Some(0);
            limits.per_user_per_minute = Some(6);
            limits.per_api_key_per_minute = Some(3);
            limits.burst = 1.0;
        })
        .await;
        // Signing up is anonymous: it counts against no person.
        let ada = fleet.sign_up("ada@example.com").await;
        let bob = fleet.sign_up("bob@example.com").await;
        let (sent, refusal) = until_refused(&ada.client, 20).await;
        assert_eq!(sent, 6, "{backend:?}");
        let error = &refusal["errors"][0];
        assert_eq!(error["extensions"]["code"], "RATE_LIMITED", "{refusal}");
        assert_eq!(error["extensions"]["limit"], "user");
        // Six a minute: the next one in ten seconds.
        assert_eq!(error["extensions"]["retryAfter"], 10);

        // Bob, from the same address, has his own bucket; his API key has another.
        let ws = support::engine::workspace(&bob).await;
        let created = bob
            .client
            .ok(
                "mutation($w: ID!) { createApiKey(workspaceId: $w, name: \"ci\", role: VIEWER) { key } }",
                json!({"w": ws}),
            )
            .await;
        let mut key = Client::new(&fleet.url);
        key.token = Some(created["createApiKey"]["key"].as_str().unwrap().into());
        let (sent, refusal) = until_refused(&key, 20).await;
        assert_eq!(sent, 3, "{backend:?}");
        assert_eq!(refusal["errors"][0]["extensions"]["limit"], "api_key");
        // Bob spent two of his six (workspace, createApiKey): four remain.
        let (sent, _) = until_refused(&bob.client, 20).await;
        assert_eq!(sent, 4, "{backend:?}");
    }
}

/// A Redis server of the test's own, to stop and start.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

impl PrivateRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test installs it)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        PrivateRedis { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replica_config(redis_url: &str) -> Config {
    let mut config = Config {
        mode: Mode::Distributed,
        ..Config::default()
    };
    config.redis.url = redis_url.to_string();
    config.redis.key_prefix = "rl-test:".into();
    let limits = &mut config.gateway.rate_limits;
    limits.global_per_second = Some(0);
    limits.per_address_per_second = Some(0);
    limits.per_user_per_minute = Some(3);
    limits.burst = 1.0;
    config
}

fn person(id: &str) -> RateKeys {
    RateKeys {
        address: Some("203.0.113.7".parse().unwrap()),
        principal: Some(Principal::User(id.into())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_buckets_in_redis_and_limit_locally_while_it_is_away() {
    let port = support::processes::free_port();
    let redis = PrivateRedis::start(port);
    let config = replica_config(&redis.url());
    let limiter = |config: &Config| {
        flowfleet::edge_config::Edge::from_config(config)
            .unwrap()
            .rate_limiter
    };
    let (a, b) = (limiter(&config), limiter(&config));
    let ada = person("ada");
    // Both replicas connect in the background; wait until they share a bucket. A new
    // person each time: local buckets start full, so only a shared one refuses b.
    let probes = std::sync::atomic::AtomicUsize::new(0);
    let shared = || async {
        let n = probes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let probe = person(&format!("probe-{n}"));
        a.admit(&probe, 3).await.ok()?;
        b.admit(&probe, 1).await.is_err().then_some(())
    };
    support::eventually(10, &shared).await;
    // Three a minute across both replicas.
    a.admit(&ada, 1).await.unwrap();
    b.admit(&ada, 1).await.unwrap();
    a.admit(&ada, 1).await.unwrap();
    assert!(b.admit(&ada, 1).await.is_err());
    assert!(a.admit(&ada, 1).await.is_err());

    // Redis goes away: no refusal because of it, no wait beyond the store timeout, and
    // each replica limits on its own (three more each, from fresh local buckets).
    drop(redis);
    for replica in [&a, &b] {
        for _ in 0..3 {
            let started = std::time::Instant::now();
            replica.admit(&ada, 1).await.unwrap();
            assert!(started.elapsed() < Duration::from_secs(2));
        }
        assert!(replica.admit(&ada, 1).await.is_err());
    }

    // Redis comes back (empty): the replicas share it again.
    let _redis = PrivateRedis::start(port);
    support::eventually(20, &shared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_leaves_session_only_fields_out_for_api_keys() {
    let fleet = start_with(&Backend::Embedded, |_| {}).await;
    let ada = fleet.sign_up("ada@example.com").await;
    let ws = support::engine::workspace(&ada).await;
    let created = ada
        .client
        .ok(
            "mutation($w: ID!) { createApiKey(workspaceId: $w, name: \"ci\", role: ADMIN) { key } }",
            json!({"w": ws}),
        )
        .await;
    let mut key = Client::new(&fleet.url);
    key.token = Some(created["createApiKey"]["key"].as_str().unwrap().into());
    // `me` is marked @requiresScopes(scopes: [["session"]]): the gateway takes it out for
    // an API key and serves the rest.
    let (status, body) = key
        .raw("{ me { id } nodeTypes { branching } }", json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "FORBIDDEN", "{body}");
    assert_eq!(error["path"], json!(["me"]), "{body}");
    assert!(
        error["message"].as_str().unwrap().contains("left out"),
        "the gateway's answer, not the subgraph's: {body}"
    );
    assert!(body["data"].get("me").is_none(), "{body}");
    assert!(body["data"]["nodeTypes"].is_array(), "{body}");
    // A session sees it.
    let me = ada.client.ok("{ me { id } }", json!({})).await;
    assert_eq!(me["me"]["id"], ada.id.as_str());
    // Anonymous: signed out, told to sign in.
    let (_, body) = Client::new(&fleet.url)
        .raw("{ me { id } }", json!({}))
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    assert_eq!(body["data"], Value::Null, "{body}");
}

/// graphql-js's introspection query (`getIntrospectionQuery` of graphql 16.15, with the
/// options on, as GraphiQL can send it): 15 levels deep.
const INTROSPECTION: &str = include_str!("fixtures/graphiql-introspection.graphql");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_demand_limits_let_graphiqls_introspection_through() {
    // The fleet with its default configuration (only rate limits are off in test fleets).
    let fleet = start_with(&Backend::Embedded, |_| {}).await;
    let (status, body) = Client::new(&fleet.url).raw(INTROSPECTION, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    assert!(
        body["data"]["__schema"]["types"].as_array().unwrap().len() > 50,
        "{body}"
    );
    // One level more than allowed is refused, naming the limit.
    let deep = format!(
        "{{ __schema {{ types {{ {} name {} }} }} }}",
        "ofType { ".repeat(22),
        "} ".repeat(22)
    );
    let (status, body) = Client::new(&fleet.url).raw(&deep, json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "MAX_DEPTH_EXCEEDED"
    );
    assert_eq!(body["errors"][0]["extensions"]["limit"], 24);
    assert_eq!(body["errors"][0]["extensions"]["measured"], 25);
}
