//! A gateway under measurement: started from a shell command, its resident memory sampled
//! over its whole process tree (a gateway may be a launcher with children), stopped cleanly.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;

pub struct Gateway {
    child: tokio::process::Child,
    port: u16,
    pub log: std::path::PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl Gateway {
    pub fn start(name: &str, command: &str, supergraph: &Path) -> anyhow::Result<Self> {
        Self::start_with(name, command, supergraph, &[])
    }

    /// [`Gateway::start`] with more environment variables (a peer's configuration file).
    pub fn start_with(
        name: &str,
        command: &str,
        supergraph: &Path,
        env: &[(&str, &Path)],
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("flowfleet-bench-{name}.log"));
        let stderr = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            // `exec`: the gateway replaces the shell, so signals and memory are its own.
            // Environment assignments go through `env` (`env A=1 cmd`).
            .arg(format!("exec {command}"))
            .env("SUPERGRAPH_FILE_PATH", supergraph)
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        eprintln!("    port {port}, log {}", log.display());
        Ok(Self { child, port, log })
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/graphql", self.port)
    }

    /// The process tree's resident memory now, in bytes.
    pub fn rss(&self) -> u64 {
        self.child.id().map_or(0, tree_rss_bytes)
    }

    /// Starts sampling the process tree's resident memory every 50 ms.
    pub fn sample_rss(&self) -> Sampler {
        let pid = self.child.id().unwrap_or(0);
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let mut peak = 0u64;
            loop {
                peak = peak.max(tree_rss_bytes(pid));
                tokio::select! {
                    _ = &mut stopped => return peak,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        });
        Sampler { stop, handle }
    }

    /// SIGTERM, then SIGKILL after 5 s.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

pub struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<u64>,
}

impl Sampler {
    /// The peak resident memory seen, in bytes.
    pub async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        self.handle.await.unwrap_or(0)
    }
}

fn tree_rss_bytes(pid: u32) -> u64 {
    let own = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let children: u64 = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .map(tree_rss_bytes)
        .sum();
    own + children
}
