//! `flowfleet`: one binary for every part of the fleet.
//!
//! `dev` runs everything in one process on embedded defaults; `serve <service>`,
//! `gateway` and `worker` run one part each (distributed mode, one process per
//! Kubernetes Deployment); `migrate` applies every service's migrations;
//! `compose` writes the supergraph; `schema` prints a subgraph's SDL.

use flowfleet::processes;

use std::path::PathBuf;

/// mimalloc instead of the system allocator: the gateway and the services allocate many
/// small, short-lived JSON values across threads, where glibc's malloc spends a third of the
/// gateway's CPU time (measured with `perf` on `scripts/bench gateway`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use flowfleet_runtime::config::{Config, ServiceName};

#[derive(Parser)]
#[command(
    name = "flowfleet",
    version,
    about = "Workflow automation as a fleet of federated Rust services"
)]
struct Cli {
    /// A TOML configuration file (FLOWFLEET_* environment variables override it).
    #[arg(long, global = true, env = "FLOWFLEET_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole fleet in one process on embedded defaults.
    Dev {
        /// Port of the GraphQL endpoint.
        #[arg(long)]
        port: Option<u16>,
        /// Where SQLite files and blobs live.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run one service (its subgraph over HTTP and its gRPC server).
    Serve { service: ServiceName },
    /// Run the federation gateway.
    Gateway {
        /// A supergraph file; without it the gateway composes one from the
        /// running subgraphs' SDL.
        #[arg(long)]
        supergraph: Option<PathBuf>,
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run a worker pool that executes workflow steps from the queue.
    Worker {
        /// The most tasks run at once (worker.max_concurrency).
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Apply every service's database migrations and exit.
    Migrate,
    /// Write the supergraph composed from all six subgraphs.
    Compose {
        #[arg(long, default_value = "schemas/supergraph.graphql")]
        out: PathBuf,
    },
    /// Print a service's Federation v2 subgraph SDL.
    Schema { service: ServiceName },
    /// Analytics maintenance.
    Analytics {
        #[command(subcommand)]
        command: AnalyticsCommand,
    },
    /// Print a new key for `security.secret_keys` (`kid:base64`). Append it to the list to
    /// rotate: new secrets are sealed with it, older ones still open.
    SecretKey {
        /// Key id: letters, digits, `-` or `_`.
        #[arg(long, default_value = "key-1")]
        kid: String,
    },
}

#[derive(Subcommand)]
enum AnalyticsCommand {
    /// Recompute the rollups from a day on out of the kept facts (after a bug fix, or to
    /// check them), with a progress bar. Safe while the fleet runs.
    Rebuild {
        /// A date (`2026-03-01`, UTC) or an RFC 3339 time; the rebuild starts at the
        /// beginning of its UTC day, which must be within `analytics.fact_days`.
        #[arg(long, value_parser = processes::parse_day)]
        from: i64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Dev { port, data_dir } => {
                if let Some(p) = port {
                    config.gateway.port = p;
                }
                if let Some(d) = data_dir {
                    config.data_dir = d;
                }
                processes::dev(config).await
            }
            Command::Serve { service } => processes::serve(config, service).await,
            Command::Gateway { supergraph, port } => {
                if let Some(p) = port {
                    config.gateway.port = p;
                }
                if let Some(s) = supergraph {
                    config.gateway.supergraph = s.display().to_string();
                }
                processes::gateway(config).await
            }
            Command::Worker { concurrency } => {
                if let Some(c) = concurrency {
                    config.worker.max_concurrency = c;
                    config.worker.min_concurrency = config.worker.min_concurrency.min(c);
                }
                processes::worker(config).await
            }
            Command::Migrate => processes::migrate(config).await,
            Command::Compose { out } => processes::compose(config, &out).await,
            Command::Schema { service } => processes::schema(config, service).await,
            Command::Analytics {
                command: AnalyticsCommand::Rebuild { from },
            } => {
                let facts = processes::analytics_rebuild(config, from).await?;
                println!("rebuilt the analytics rollups from {facts} facts");
                Ok(())
            }
            Command::SecretKey { kid } => {
                println!(
                    "{}",
                    flowfleet_security::secrets::SecretKeyRing::generate_entry(&kid)?
                );
                Ok(())
            }
        }
    })
}
