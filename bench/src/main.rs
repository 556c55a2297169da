//! `flowfleet-bench`: measures federation gateways side by side on the standard benchmark.
//!
//! `flowfleet-bench gateway --gateway NAME=COMMAND ...` serves the four benchmark subgraphs,
//! then for each gateway in turn: starts COMMAND (through `sh -c`, with `SUPERGRAPH_FILE_PATH`,
//! `PORT` and `HOST` set), waits until it answers the benchmark query with exactly the
//! reference response, warms it up, drives the query at a fixed concurrency for a fixed time
//! (closed loop: peak throughput), then at half that rate (open loop: latency under normal
//! load), samples the resident memory of its process tree all along, and stops it. The report
//! is a Markdown table with ratios to the first gateway.
//!
//! `flowfleet-bench subscriptions --gateway NAME=COMMAND ...` measures subscriptions the same
//! way, side by side (see `subscriptions`).
//!
//! `flowfleet-bench subgraphs --port N` only serves the subgraphs (for manual runs).

mod load;
mod process;
mod subscriptions;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "The standard federation benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the four benchmark subgraphs at /accounts, /inventory, /products, /reviews.
    Subgraphs {
        #[arg(long, default_value_t = 4200)]
        port: u16,
    },
    /// Measure gateways on the benchmark query.
    Gateway {
        /// NAME=COMMAND, repeatable; the first is the baseline of the ratios.
        #[arg(long = "gateway", required = true)]
        gateways: Vec<String>,
        /// Concurrent connections of the closed-loop (peak) phase.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 20)]
        duration_secs: u64,
        #[arg(long, default_value_t = 5)]
        warmup_secs: u64,
        /// Rounds over all gateways; each is reported by its median round.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Where to write the Markdown report (also printed).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Measure gateways on subscriptions (`reviewAdded`).
    Subscriptions {
        /// NAME=COMMAND, repeatable (as for `gateway`); each also gets `BENCH_ROUTER_CONFIG`,
        /// the path of a Hive Router configuration with subscriptions on.
        #[arg(long = "gateway", required = true)]
        gateways: Vec<String>,
        /// Subscriptions of each WebSocket step (0 alone: none).
        #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
        websocket: Vec<usize>,
        /// Subscriptions of the SSE and multipart steps (0 skips them).
        #[arg(long, default_value_t = 1000)]
        http: usize,
        /// Most WebSocket connections of a step.
        #[arg(long, default_value_t = 1000)]
        max_connections: usize,
        #[arg(long, default_value_t = 20)]
        duration_secs: u64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// One gateway's measurements.
pub struct Measured {
    pub name: String,
    pub peak: load::Summary,
    pub half: load::Summary,
    pub peak_rss_bytes: u64,
    /// Lowest and highest peak req/s over the rounds.
    pub rps_range: (f64, f64),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Subgraphs { port } => {
                let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
                println!("benchmark subgraphs on http://{}", listener.local_addr()?);
                flowfleet_bench::serve(listener).await?;
                Ok(())
            }
            Command::Gateway {
                gateways,
                concurrency,
                duration_secs,
                warmup_secs,
                rounds,
                out,
            } => {
                let specs = parse_specs(&gateways)?;
                let settings = load::Settings {
                    concurrency,
                    duration: Duration::from_secs(duration_secs),
                    warmup: Duration::from_secs(warmup_secs),
                    rounds: rounds.max(1),
                };
                let report = run(&specs, &settings).await?;
                write_report(&report, out.as_deref())
            }
            Command::Subscriptions {
                gateways,
                websocket,
                http,
                max_connections,
                duration_secs,
                out,
            } => {
                let specs = parse_specs(&gateways)?;
                let mut steps: Vec<subscriptions::Step> = websocket
                    .iter()
                    .filter(|&&n| n > 0)
                    .map(|&n| subscriptions::Step {
                        protocol: subscriptions::Protocol::WebSocket,
                        subscriptions: n,
                    })
                    .collect();
                if http > 0 {
                    for protocol in [
                        subscriptions::Protocol::Sse,
                        subscriptions::Protocol::Multipart,
                    ] {
                        steps.push(subscriptions::Step {
                            protocol,
                            subscriptions: http,
                        });
                    }
                }
                let settings = subscriptions::Settings {
                    steps,
                    max_connections,
                    duration: Duration::from_secs(duration_secs),
                };
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let subgraphs_addr = listener.local_addr()?;
                tokio::spawn(flowfleet_bench::serve(listener));
                let dir = std::env::temp_dir().join(format!(
                    "flowfleet-bench-subscriptions-{}",
                    std::process::id()
                ));
                std::fs::create_dir_all(&dir)?;
                let supergraph_file = dir.join("supergraph.graphql");
                std::fs::write(
                    &supergraph_file,
                    flowfleet_bench::subscription_supergraph_at(subgraphs_addr),
                )?;
                std::fs::write(
                    dir.join("router.config.yaml"),
                    subscriptions::HIVE_ROUTER_CONFIG,
                )?;
                let mut results = Vec::new();
                for (name, command) in &specs {
                    results.extend(
                        subscriptions::measure(name, command, &supergraph_file, &settings).await,
                    );
                }
                let _ = std::fs::remove_dir_all(&dir);
                write_report(&subscriptions::report(&results, &settings), out.as_deref())
            }
        }
    })
}

fn parse_specs(gateways: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    gateways
        .iter()
        .map(|g| {
            g.split_once('=')
                .map(|(n, c)| (n.trim().to_string(), c.trim().to_string()))
                .with_context(|| format!("`{g}` is not NAME=COMMAND"))
        })
        .collect()
}

/// Prints the report and writes it to `out`, if given.
fn write_report(report: &str, out: Option<&std::path::Path>) -> anyhow::Result<()> {
    println!("{report}");
    if let Some(out) = out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, report).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

async fn run(specs: &[(String, String)], settings: &load::Settings) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let subgraphs_addr = listener.local_addr()?;
    tokio::spawn(flowfleet_bench::serve(listener));
    let dir = std::env::temp_dir().join(format!("flowfleet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let supergraph_file = dir.join("supergraph.graphql");
    std::fs::write(
        &supergraph_file,
        flowfleet_bench::supergraph_at(subgraphs_addr),
    )?;
    let expected = flowfleet_bench::expected_response();

    // Rounds alternate the gateways, so that a slow spell of a shared machine hits them
    // alike; each gateway is reported by its median round.
    let mut rounds: Vec<Vec<Measured>> = specs.iter().map(|_| Vec::new()).collect();
    for round in 0..settings.rounds {
        for (slot, (name, command)) in specs.iter().enumerate() {
            eprintln!(
                "==> round {}/{}: {name}: {command}",
                round + 1,
                settings.rounds
            );
            let measured = measure(name, command, &supergraph_file, &expected, settings).await?;
            rounds[slot].push(measured);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let results: Vec<Measured> = rounds
        .into_iter()
        .filter_map(|mut measured| {
            let spread = (
                measured
                    .iter()
                    .map(|m| m.peak.rps)
                    .fold(f64::INFINITY, f64::min),
                measured.iter().map(|m| m.peak.rps).fold(0.0, f64::max),
            );
            measured.sort_by(|a, b| a.peak.rps.total_cmp(&b.peak.rps));
            let median = measured.len() / 2;
            let mut chosen = measured.into_iter().nth(median)?;
            chosen.rps_range = spread;
            Some(chosen)
        })
        .collect();
    Ok(report(&results, settings))
}

async fn measure(
    name: &str,
    command: &str,
    supergraph_file: &std::path::Path,
    expected: &serde_json::Value,
    settings: &load::Settings,
) -> anyhow::Result<Measured> {
    let mut gateway = process::Gateway::start(name, command, supergraph_file)?;
    let url = gateway.url();
    let log = gateway.log.clone();
    let ready = load::wait_until_correct(&url, expected, Duration::from_secs(90), &mut || {
        gateway.alive()
    })
    .await
    .with_context(|| {
        format!(
            "{name} never answered the benchmark query correctly (see {})",
            log.display()
        )
    });
    let outcome = async {
        ready?;
        let sampler = gateway.sample_rss();
        load::closed_loop(&url, settings.concurrency, settings.warmup, expected).await;
        let peak = load::closed_loop(&url, settings.concurrency, settings.duration, expected).await;
        let half_rate = (peak.rps / 2.0).max(1.0);
        let half = load::open_loop(&url, half_rate, settings.duration, expected).await;
        let peak_rss_bytes = sampler.stop().await;
        eprintln!(
            "    {:.0} req/s, p99 {:.2} ms, at half rate p99 {:.2} ms (own time p99 {}), peak RSS {:.1} MiB",
            peak.rps,
            peak.p99_ms,
            half.p99_ms,
            half.overhead_ms
                .map_or("not reported".to_string(), |(_, p99)| format!("{p99:.3} ms")),
            peak_rss_bytes as f64 / 1048576.0
        );
        anyhow::Ok(Measured {
            name: name.to_string(),
            peak,
            half,
            peak_rss_bytes,
            rps_range: (0.0, 0.0),
        })
    }
    .await;
    gateway.stop().await;
    outcome
}

fn report(results: &[Measured], settings: &load::Settings) -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mut out = String::new();
    out.push_str(&format!(
        "Standard federation benchmark query; {} concurrent connections for {} s after {} s of \
         warm-up (closed loop), then {} s at half the measured peak rate (open loop); every \
         response checked; {} rounds alternating the gateways, each reported by its median \
         round; subgraphs, load generator and gateway on one machine ({cpus} CPUs, \
         {cpu_model}). Own time is what a gateway reports in `Server-Timing` (`gateway;dur=`): \
         its time per request minus its wait for subgraphs on the critical path.\n\n",
        settings.concurrency,
        settings.duration.as_secs(),
        settings.warmup.as_secs(),
        settings.duration.as_secs(),
        settings.rounds,
    ));
    out.push_str("| gateway | req/s | req/s range | p50 ms | p95 ms | p99 ms | p99 ms at half rate | own time p50 / p99 ms at half rate | errors | peak RSS MiB | req/s vs first | RSS vs first |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let base = results.first();
    for r in results {
        let (rps_ratio, rss_ratio) = match base {
            Some(b) => (
                r.peak.rps / b.peak.rps.max(f64::EPSILON),
                r.peak_rss_bytes as f64 / (b.peak_rss_bytes.max(1)) as f64,
            ),
            None => (1.0, 1.0),
        };
        out.push_str(&format!(
            "| {} | {:.0} | {:.0}–{:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {:.1} | {:.2} | {:.2} |\n",
            r.name,
            r.peak.rps,
            r.rps_range.0,
            r.rps_range.1,
            r.peak.p50_ms,
            r.peak.p95_ms,
            r.peak.p99_ms,
            r.half.p99_ms,
            r.half
                .overhead_ms
                .map_or("—".to_string(), |(p50, p99)| format!("{p50:.3} / {p99:.3}")),
            r.peak.errors + r.half.errors,
            r.peak_rss_bytes as f64 / 1048576.0,
            rps_ratio,
            rss_ratio,
        ));
    }
    out
}
