//! The fleet in distributed mode as separate `flowfleet` processes, one per service
//! plus the gateway and workers, as in production: the environment they share, free
//! ports, migrations, spawning and waiting for health.

use std::path::Path;
use std::process::{Command, Stdio};

use flowfleet_host::testing::Backend;
use serde_json::json;

use super::in_process::Person;
use super::{eventually, Client, Proc, BIN};

/// Every service, each a `flowfleet serve <name>` process.
pub const SERVICES: [&str; 6] = [
    "workflow",
    "execution",
    "auth",
    "notification",
    "analytics",
    "storage",
];

/// The distributed servers' URLs (an administrative PostgreSQL URL, RabbitMQ,
/// Redis), or None, said why, when they are not running (and a failure under
/// `scripts/test`, as [`Backend::all`] does).
pub fn distributed_servers() -> Option<(String, String, String)> {
    Backend::all()
        .into_iter()
        .find_map(|backend| match backend {
            Backend::Distributed {
                database_url,
                amqp_url,
                redis_url,
                ..
            } => Some((database_url, amqp_url, redis_url)),
            Backend::Embedded => None,
        })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The environment every process of one fleet shares: distributed mode on the
/// database `db_url` (named `db_name`, which also names the fleet's exchange and
/// Redis prefix), the broker at `amqp_url`, Redis at `redis_url`, blobs in `blobs`,
/// a fresh secret key ring, and a free port pair for each service.
pub fn fleet_env(
    db_url: &str,
    db_name: &str,
    amqp_url: &str,
    redis_url: &str,
    blobs: &Path,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("FLOWFLEET_MODE".into(), "distributed".into()),
        ("FLOWFLEET_DATABASE__URL".into(), db_url.into()),
        ("FLOWFLEET_DATABASE__MAX_CONNECTIONS".into(), "4".into()),
        ("FLOWFLEET_AMQP__URL".into(), amqp_url.into()),
        // Membership answers and other caches go through Redis, as in production.
        ("FLOWFLEET_REDIS__URL".into(), redis_url.into()),
        ("FLOWFLEET_REDIS__KEY_PREFIX".into(), format!("{db_name}:")),
        (
            "FLOWFLEET_AMQP__EXCHANGE".into(),
            format!("{db_name}.events"),
        ),
        (
            "FLOWFLEET_STORAGE__LOCAL_PATH".into(),
            blobs.display().to_string(),
        ),
        ("RUST_LOG".into(), "warn".into()),
        // Tests send far more than a person would, from one address.
        (
            "FLOWFLEET_GATEWAY__RATE_LIMITS__ENABLED".into(),
            "false".into(),
        ),
        // The fleet's secret key ring: seals stored secrets and service credentials.
        (
            "FLOWFLEET_SECURITY__SECRET_KEYS".into(),
            format!(
                "[\"{}\"]",
                flowfleet_security::secrets::SecretKeyRing::generate_entry("fleet").unwrap()
            ),
        ),
    ];
    // Files go to the S3-compatible server when scripts/test started one, as in production.
    if let Some(bucket) = std::env::var("FLOWFLEET_TEST_S3_URL")
        .ok()
        .and_then(|url| flowfleet_host::testing::S3Bucket::parse(&url))
    {
        env.extend(bucket.env(db_name));
    }
    for s in SERVICES {
        let upper = s.to_uppercase();
        env.push((
            format!("FLOWFLEET_SERVICES__{upper}__HTTP_PORT"),
            free_port().to_string(),
        ));
        env.push((
            format!("FLOWFLEET_SERVICES__{upper}__GRPC_PORT"),
            free_port().to_string(),
        ));
    }
    env
}

/// Runs the migrations first, as the Kubernetes Job does, so services don't race.
pub fn migrate(env: &[(String, String)]) {
    let migrated = Command::new(BIN)
        .arg("migrate")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .status()
        .unwrap();
    assert!(migrated.success());
}

/// A `flowfleet` process with the test's environment.
pub fn spawn(env: &[(String, String)], args: &[&str]) -> Proc {
    Proc {
        child: Command::new(BIN)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
        name: args.join(" "),
    }
}

/// Waits up to `secs` seconds for `GET {base}/health` to succeed (`base` being a
/// gateway's URL without `/graphql`).
pub async fn wait_healthy(base: &str, secs: u64) {
    let url = format!("{base}/health");
    eventually(secs, || {
        let url = url.clone();
        async move {
            reqwest::get(url)
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())
        }
    })
    .await;
}

/// Signs up through the gateway at `url` (its GraphQL endpoint).
pub async fn sign_up(url: &str, email: &str) -> Person {
    let mut client = Client::new(url);
    let data = client
        .ok(
            "mutation($i: SignUpInput!) { signUp(input: $i) { accessToken user { id } } }",
            json!({"i": {"email": email, "password": "long enough password", "name": email}}),
        )
        .await;
    client.token = Some(data["signUp"]["accessToken"].as_str().unwrap().to_string());
    Person {
        id: data["signUp"]["user"]["id"].as_str().unwrap().to_string(),
        client,
    }
}
