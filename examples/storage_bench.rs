//! The storage benchmark (`scripts/bench storage` runs it): files through the gateway, as
//! separate `flowfleet` processes so that each one's memory can be watched.
//!
//! - embedded: one `flowfleet dev` process (gateway and services together);
//! - distributed: `flowfleet serve <service>` for each service and `flowfleet gateway`,
//!   on PostgreSQL, RabbitMQ and Redis, with files in the S3-compatible bucket when
//!   `FLOWFLEET_TEST_S3_URL` names one (`scripts/bench` starts s3s-fs), else a directory.
//!
//! Measured, per mode: upload and download throughput (MiB/s) of a `--size-mib` file
//! (1 GiB by default) over the streaming path (`PUT /files`, then its download link), and
//! of a `--multipart-mib` file (100 MiB) over a GraphQL multipart `uploadFile`; and the
//! peak resident memory of the gateway and of the storage service while doing it (sampled
//! every 20 ms from `/proc/<pid>/status`), next to their resident memory before.
//! The size limits are raised for the run (`storage.max_file_bytes` to 2 GiB - 1, the
//! quota, `gateway.upload_max_file_bytes`).
//!
//! Usage: `storage_bench [--mode embedded|distributed|both] [--size-mib N]
//! [--multipart-mib N] [--out FILE]`.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use flowfleet_host::testing::{fresh_database, Backend};
use futures::StreamExt;
use serde_json::{json, Value};

const MIB: u64 = 1024 * 1024;
const SERVICES: [&str; 6] = [
    "workflow",
    "execution",
    "auth",
    "notification",
    "analytics",
    "storage",
];

/// `flowfleet` next to this example (`target/<profile>/examples/..` → `target/<profile>`).
fn flowfleet_bin() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|profile| profile.join("flowfleet"))
        .context("locating the flowfleet binary")?;
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: build it first (cargo build --release --bin flowfleet)",
        bin.display()
    );
    Ok(bin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Child processes, stopped when dropped.
struct Fleet {
    children: Vec<(String, Child)>,
    url: String,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Fleet {
    fn pid(&self, name: &str) -> u32 {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id())
            .expect("a process of the fleet")
    }
}

fn spawn(bin: &std::path::Path, env: &[(String, String)], args: &[&str]) -> anyhow::Result<Child> {
    Command::new(bin)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting flowfleet {}", args.join(" ")))
}

async fn wait_healthy(base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("{base}/health")).await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("{base} did not become healthy")
}

/// The settings every process of the run shares: the raised limits.
fn limits() -> Vec<(String, String)> {
    vec![
        (
            "FLOWFLEET_STORAGE__MAX_FILE_BYTES".into(),
            i32::MAX.to_string(),
        ),
        (
            "FLOWFLEET_STORAGE__QUOTA_BYTES".into(),
            (64 * 1024 * MIB).to_string(),
        ),
        (
            "FLOWFLEET_GATEWAY__UPLOAD_MAX_FILE_BYTES".into(),
            (4 * 1024 * MIB).to_string(),
        ),
        (
            "FLOWFLEET_GATEWAY__SUBGRAPH_TIMEOUT_MS".into(),
            "600000".into(),
        ),
        ("FLOWFLEET_TELEMETRY__LOG_LEVEL".into(), "warn".into()),
        // The load comes from one address, faster than a person's.
        (
            "FLOWFLEET_GATEWAY__RATE_LIMITS__ENABLED".into(),
            "false".into(),
        ),
        ("RUST_LOG".into(), "warn".into()),
    ]
}

async fn start(backend: &Backend, data: &std::path::Path) -> anyhow::Result<Fleet> {
    let bin = flowfleet_bin()?;
    let mut env = limits();
    env.push(("FLOWFLEET_DATA_DIR".into(), data.display().to_string()));
    match backend {
        Backend::Embedded => {
            let port = free_port();
            let child = spawn(&bin, &env, &["dev", "--port", &port.to_string()])?;
            let fleet = Fleet {
                children: vec![("dev".into(), child)],
                url: format!("http://127.0.0.1:{port}"),
            };
            wait_healthy(&fleet.url).await?;
            Ok(fleet)
        }
        Backend::Distributed {
            database_url,
            amqp_url,
            redis_url,
            s3,
        } => {
            let name = format!("bench_{}", uuid::Uuid::now_v7().simple());
            let db = fresh_database(database_url, &name).await;
            let gateway_port = free_port();
            env.extend([
                ("FLOWFLEET_MODE".into(), "distributed".into()),
                ("FLOWFLEET_DATABASE__URL".into(), db),
                ("FLOWFLEET_AMQP__URL".into(), amqp_url.clone()),
                ("FLOWFLEET_AMQP__EXCHANGE".into(), format!("{name}.events")),
                ("FLOWFLEET_REDIS__URL".into(), redis_url.clone()),
                ("FLOWFLEET_REDIS__KEY_PREFIX".into(), format!("{name}:")),
                (
                    "FLOWFLEET_STORAGE__PUBLIC_URL".into(),
                    format!("http://127.0.0.1:{gateway_port}"),
                ),
                (
                    "FLOWFLEET_SECURITY__SECRET_KEYS".into(),
                    format!(
                        "[\"{}\"]",
                        flowfleet_security::secrets::SecretKeyRing::generate_entry("bench")?
                    ),
                ),
            ]);
            if let Some(bucket) = s3 {
                env.extend(bucket.env(&name));
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
            let migrated = Command::new(&bin)
                .arg("migrate")
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .status()?;
            anyhow::ensure!(migrated.success(), "flowfleet migrate failed");
            let mut children = Vec::new();
            for s in SERVICES {
                children.push((s.to_string(), spawn(&bin, &env, &["serve", s])?));
            }
            children.push((
                "gateway".into(),
                spawn(
                    &bin,
                    &env,
                    &["gateway", "--port", &gateway_port.to_string()],
                )?,
            ));
            let fleet = Fleet {
                children,
                url: format!("http://127.0.0.1:{gateway_port}"),
            };
            wait_healthy(&fleet.url).await?;
            // The gateway composes once every subgraph answers.
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let ok = reqwest::Client::new()
                    .post(format!("{}/graphql", fleet.url))
                    .json(&json!({"query": "{ __typename }"}))
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                if ok {
                    break;
                }
                anyhow::ensure!(Instant::now() < deadline, "the gateway did not compose");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Ok(fleet)
        }
    }
}

/// Resident memory (`VmRSS`) of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples the peak resident memory of some processes until dropped.
struct Watch {
    stop: Arc<AtomicBool>,
    peaks: Vec<Arc<AtomicU64>>,
}

impl Watch {
    fn start(pids: &[u32]) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks: Vec<Arc<AtomicU64>> = pids.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
        let (s, p, pids) = (stop.clone(), peaks.clone(), pids.to_vec());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for (pid, peak) in pids.iter().zip(&p) {
                    peak.fetch_max(rss_kib(*pid), Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Watch { stop, peaks }
    }

    /// Ends a phase: logs its peaks, folds them into `overall`, and starts the next.
    fn phase(&self, name: &str, overall: &mut [f64]) {
        let peaks: Vec<f64> = self
            .peaks
            .iter()
            .map(|p| p.swap(0, Ordering::Relaxed) as f64 / 1024.0)
            .collect();
        for (o, p) in overall.iter_mut().zip(&peaks) {
            *o = o.max(*p);
        }
        let shown: Vec<String> = peaks.iter().map(|p| format!("{p:.0}")).collect();
        eprintln!(
            "[storage bench] peak RSS during {name}: {} MiB",
            shown.join(" / ")
        );
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `size` bytes of content that differs per `seed`, made as it is sent, in 1 MiB chunks.
fn content(size: u64, seed: u64) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    let mut chunk = vec![0u8; MIB as usize];
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in chunk.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state as u8;
    }
    let chunk = Bytes::from(chunk);
    futures::stream::iter((0..size.div_ceil(MIB)).map(move |i| {
        let len = (size - i * MIB).min(MIB) as usize;
        // Each chunk starts with its index and the seed, so no two are equal.
        let mut c = chunk.slice(..len).to_vec();
        let tag = format!("{seed}:{i}:");
        let n = tag.len().min(c.len());
        c[..n].copy_from_slice(&tag.as_bytes()[..n]);
        Ok(Bytes::from(c))
    }))
}

fn mib_per_s(bytes: u64, elapsed: Duration) -> String {
    format!("{:.0}", bytes as f64 / MIB as f64 / elapsed.as_secs_f64())
}

async fn download(url: &str) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let response = reqwest::get(url).await?;
    anyhow::ensure!(
        response.status().is_success(),
        "download: {}",
        response.status()
    );
    let mut stream = response.bytes_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        n += chunk?.len() as u64;
    }
    Ok((n, started.elapsed()))
}

async fn measure(
    backend: &Backend,
    size: u64,
    multipart: u64,
) -> anyhow::Result<Vec<(String, String)>> {
    let data = tempfile::tempdir()?;
    let fleet = start(backend, data.path()).await?;
    let graphql = format!("{}/graphql", fleet.url);
    let http = reqwest::Client::new();
    let signed: Value = http
        .post(&graphql)
        .json(&json!({
            "query": "mutation($i: SignUpInput!) { signUp(input: $i) { accessToken } }",
            "variables": {"i": {"email": "bench@example.com", "password": "long enough password", "name": "Bench"}},
        }))
        .send()
        .await?
        .json()
        .await?;
    let token = signed["data"]["signUp"]["accessToken"]
        .as_str()
        .with_context(|| format!("sign-up: {signed}"))?
        .to_string();
    let me: Value = http
        .post(&graphql)
        .bearer_auth(&token)
        .json(&json!({"query": "{ me { memberships { workspace { id } } } }"}))
        .send()
        .await?
        .json()
        .await?;
    let ws = me["data"]["me"]["memberships"][0]["workspace"]["id"]
        .as_str()
        .context("the workspace")?
        .to_string();

    let watched = match backend {
        Backend::Embedded => vec![fleet.pid("dev")],
        Backend::Distributed { .. } => vec![fleet.pid("gateway"), fleet.pid("storage")],
    };
    let before: Vec<f64> = watched
        .iter()
        .map(|p| rss_kib(*p) as f64 / 1024.0)
        .collect();
    let watch = Watch::start(&watched);
    let mut peaks = vec![0.0; watched.len()];
    let seed = match backend {
        Backend::Embedded => 1,
        Backend::Distributed { .. } => 2,
    };

    // The streaming path: PUT /files, then the download link.
    let started = Instant::now();
    let put = http
        .put(format!("{}/files", fleet.url))
        .query(&[("workspaceId", ws.as_str()), ("name", "big.bin")])
        .bearer_auth(&token)
        .header("content-length", size)
        .body(reqwest::Body::wrap_stream(content(size, seed)))
        .send()
        .await?;
    let put_elapsed = started.elapsed();
    watch.phase("PUT /files", &mut peaks);
    anyhow::ensure!(
        put.status() == 201,
        "PUT /files: {} {}",
        put.status(),
        put.text().await?
    );
    let file: Value = put.json().await?;
    anyhow::ensure!(file["size"] == size, "stored {} bytes", file["size"]);
    let (got, get_elapsed) = download(file["downloadUrl"].as_str().unwrap_or_default()).await?;
    watch.phase("its download", &mut peaks);
    anyhow::ensure!(got == size, "downloaded {got} bytes");

    // GraphQL multipart, streamed.
    let boundary = "storage-bench-boundary-7d1f";
    let operations = json!({
        "query": "mutation($w: ID!, $f: Upload!) { uploadFile(workspaceId: $w, file: $f) { id size downloadUrl } }",
        "variables": {"w": ws, "f": null},
    });
    let head = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"operations\"\r\n\r\n{operations}\r\n\
         --{boundary}\r\ncontent-disposition: form-data; name=\"map\"\r\n\r\n{{\"0\":[\"variables.f\"]}}\r\n\
         --{boundary}\r\ncontent-disposition: form-data; name=\"0\"; filename=\"multipart.bin\"\r\n\
         content-type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let body = futures::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(content(multipart, seed + 100))
        .chain(futures::stream::once(async move { Ok(Bytes::from(tail)) }));
    let started = Instant::now();
    let answer: Value = http
        .post(&graphql)
        .bearer_auth(&token)
        .header("graphql-require-preflight", "true")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await?
        .json()
        .await?;
    let multipart_elapsed = started.elapsed();
    watch.phase("GraphQL multipart", &mut peaks);
    let uploaded = &answer["data"]["uploadFile"];
    anyhow::ensure!(uploaded["size"] == multipart, "uploadFile: {answer}");
    let (got, multipart_get) =
        download(uploaded["downloadUrl"].as_str().unwrap_or_default()).await?;
    anyhow::ensure!(got == multipart, "downloaded {got} bytes");

    watch.phase("its download", &mut peaks);
    drop(watch);
    // The files go, and their blobs with them: a bench run against long-lived servers
    // (FLOWFLEET_TEST_* set) leaves nothing in their bucket.
    for id in [&file["id"], &uploaded["id"]] {
        let deleted: Value = http
            .post(&graphql)
            .bearer_auth(&token)
            .json(&json!({
                "query": "mutation($w: ID!, $id: ID!) { deleteFile(workspaceId: $w, id: $id) }",
                "variables": {"w": ws, "id": id},
            }))
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(deleted["errors"].is_null(), "deleteFile: {deleted}");
    }
    let size_label = |b: u64| {
        if b >= 1024 * MIB && b % (1024 * MIB) == 0 {
            format!("{} GiB", b / (1024 * MIB))
        } else {
            format!("{} MiB", b / MIB)
        }
    };
    let mut rows = vec![
        (
            format!("PUT /files upload, {} (MiB/s)", size_label(size)),
            mib_per_s(size, put_elapsed),
        ),
        (
            format!("download, {} (MiB/s)", size_label(size)),
            mib_per_s(size, get_elapsed),
        ),
        (
            format!(
                "GraphQL multipart upload, {} (MiB/s)",
                size_label(multipart)
            ),
            mib_per_s(multipart, multipart_elapsed),
        ),
        (
            format!("download, {} (MiB/s)", size_label(multipart)),
            mib_per_s(multipart, multipart_get),
        ),
    ];
    let change = |i: usize| format!("{:.0} → {:.0}", before[i], peaks[i]);
    match backend {
        Backend::Embedded => {
            rows.push((
                "RSS before → peak, gateway process (MiB)".into(),
                format!("{} (one process: gateway and services)", change(0)),
            ));
            rows.push((
                "RSS before → peak, storage service process (MiB)".into(),
                "(the same process)".into(),
            ));
        }
        Backend::Distributed { .. } => {
            rows.push(("RSS before → peak, gateway process (MiB)".into(), change(0)));
            rows.push((
                "RSS before → peak, storage service process (MiB)".into(),
                change(1),
            ));
        }
    }
    Ok(rows)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = common::Args::from_env();
    let size = args.number("--size-mib", 1024)? as u64 * MIB;
    let multipart = args.number("--multipart-mib", 100)? as u64 * MIB;
    let mut columns = Vec::new();
    for backend in args.backends()? {
        eprintln!("[storage bench] measuring {}", backend.name());
        columns.push((backend.name(), measure(&backend, size, multipart).await?));
    }
    common::report(&args, &columns)
}
