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

/// A port nobody listens on, for a process the test starts next. It is chosen below the
/// kernel's ephemeral range (`net.ipv4.ip_local_port_range`), where outgoing connections
/// take their local ports: a port from that range, found free and then released, is soon
/// taken by some test's connection to PostgreSQL or Redis before the process binds it.
/// Below the range only another test's pick can take it, which [`start_services`] and
/// the callers that retry absorb. A port is handed out once per test process: the
/// ports of one fleet are all chosen before any of its processes binds them.
pub fn free_port() -> u16 {
    use rand::Rng as _;
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = if ephemeral_low > 12_000 {
        (10_000, ephemeral_low)
    } else {
        (ephemeral_low, u16::MAX)
    };
    for _ in 0..1000 {
        let port = rand::thread_rng().gen_range(low..high);
        let mut handed_out = HANDED_OUT.lock().unwrap();
        if !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no free port between {low} and {high}");
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
    assert!(migrate_command(env).status().unwrap().success());
}

fn migrate_command(env: &[(String, String)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("migrate")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    command
}

/// [`migrate`], watching its connections: the remote ports it reached.
pub fn migrate_watched(env: &[(String, String)]) -> Vec<u16> {
    let mut child = migrate_command(env).spawn().unwrap();
    let (mut reached, mut listened) = (Vec::new(), Default::default());
    let status = loop {
        reached.extend(super::network::remote_ports(child.id(), &mut listened));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    assert!(status.success());
    reached
}

/// Starts `flowfleet serve <name>` for every service and waits until each listens. A
/// service whose port was taken after [`fleet_env`] chose it exits at once: then it gets
/// fresh ports, written into `env`, and every service starts again (the others were told
/// its old ports), as do the gateway and workers started next from `env`.
pub async fn start_services(env: &mut Vec<(String, String)>) -> Vec<Proc> {
    for _ in 0..5 {
        let mut procs: Vec<Proc> = SERVICES.iter().map(|s| spawn(env, &["serve", s])).collect();
        let mut taken = Vec::new();
        for (service, proc) in SERVICES.iter().zip(procs.iter_mut()) {
            let http = format!("FLOWFLEET_SERVICES__{}__HTTP_PORT", service.to_uppercase());
            let health = format!("http://127.0.0.1:{}/health", port_of(env, &http));
            if !listens(proc, &health).await {
                taken.push(service);
            }
        }
        if taken.is_empty() {
            return procs;
        }
        drop(procs); // Stops them all.
        for service in taken {
            for kind in ["HTTP", "GRPC"] {
                let key = format!(
                    "FLOWFLEET_SERVICES__{}__{kind}_PORT",
                    service.to_uppercase()
                );
                env.retain(|(k, _)| *k != key);
                env.push((key, free_port().to_string()));
            }
        }
    }
    panic!("the services never started on free ports");
}

/// The port in the variable `key` of `env`.
pub fn port_of(env: &[(String, String)], key: &str) -> u16 {
    env.iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} is not a port in the environment"))
}

/// Waits up to 60 s for `GET health` to succeed while `proc` runs: false as soon as it
/// has exited (its port taken, for one), true once it answers.
pub async fn listens(proc: &mut Proc, health: &str) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(60) {
        if let Ok(Some(_)) = proc.child.try_wait() {
            return false;
        }
        let answer = reqwest::get(health).await;
        if answer.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("`{}` did not answer {health} within 60 s", proc.name);
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
