//! `flowfleet`: one binary for every part of the fleet.
//!
//! `dev` runs everything in one process on embedded defaults; `serve <service>`,
//! `gateway` and `worker` run one part each (distributed mode, one process per
//! Kubernetes Deployment); `migrate` applies every service's migrations;
//! `compose` writes the supergraph; `schema` prints a subgraph's SDL.

use flowfleet::{check, processes};

use std::path::PathBuf;

/// mimalloc instead of the system allocator: the gateway and the services allocate many
/// small, short-lived JSON values across threads, where glibc's malloc spends a third of the
/// gateway's CPU time (measured with `perf` on `scripts/bench gateway`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option: its place in mimalloc's option enum (v3, the one built
/// here). The Rust bindings leave such options out as unstable and say to pass the number;
/// the test below pins it by its default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Memory freed is returned to the system at once instead of a second later (mimalloc
/// v3's default, for pages and arenas alike), in the processes that stream files: the
/// storage service and `flowfleet dev`. Streaming frees a buffer per chunk: with the
/// delay, a few hundred MiB/s of chunks kept tens of MiB resident at any moment (the
/// storage service peaked at 74–80 MiB during `scripts/bench storage`, 61 without it). The
/// gateway keeps the delay: without it the federation benchmark ran about 2–4 % slower, and
/// it stays under 64 MiB while streaming either way (58 MiB without the delay, 62 with).
/// `MIMALLOC_PURGE_DELAY` set in the environment still wins.
#[allow(unsafe_code)] // an FFI call: mimalloc's options have no safe binding
fn purge_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an option mimalloc reads on every purge; called on the main thread
        // before any other thread starts (mimalloc's options are not thread-safe to set).
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

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
    /// Say what `flowfleet <COMMAND>...` would use, without starting it: the ports it would
    /// listen on and the paths served there, the task queue a worker consumes, and every
    /// FLOWFLEET_* variable that names no configuration key (then exit 1). Prints JSON.
    Check {
        /// The command line to check, e.g. `serve workflow` or `gateway --port 4000`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
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

/// Applies the command line's overrides to `config`; says what kind of process it starts.
fn apply(command: &Command, config: &mut Config) -> check::Process {
    match command {
        Command::Dev { port, data_dir } => {
            if let Some(p) = port {
                config.gateway.port = *p;
            }
            if let Some(d) = data_dir {
                config.data_dir = d.clone();
            }
            check::Process::Dev
        }
        Command::Serve { service } => check::Process::Serve(*service),
        Command::Gateway { supergraph, port } => {
            if let Some(p) = port {
                config.gateway.port = *p;
            }
            if let Some(s) = supergraph {
                config.gateway.supergraph = s.display().to_string();
            }
            check::Process::Gateway
        }
        Command::Worker { concurrency } => {
            if let Some(c) = concurrency {
                config.worker.max_concurrency = *c;
                config.worker.min_concurrency = config.worker.min_concurrency.min(*c);
            }
            check::Process::Worker
        }
        Command::Migrate => check::Process::Migrate,
        Command::Compose { .. }
        | Command::Schema { .. }
        | Command::Analytics { .. }
        | Command::Check { .. }
        | Command::SecretKey { .. } => check::Process::OneShot,
    }
}

/// `flowfleet check <command>`: the report as JSON; an error when a variable names no key.
fn check_command(outer: Option<PathBuf>, command: Vec<String>) -> anyhow::Result<()> {
    let inner = Cli::try_parse_from(std::iter::once("flowfleet".to_string()).chain(command))
        .map_err(|e| anyhow::anyhow!("the command to check does not parse: {e}"))?;
    let mut config = Config::load(inner.config.as_deref().or(outer.as_deref()))?;
    let process = apply(&inner.command, &mut config);
    let vars = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    let report = check::report(&process, &config, vars);
    println!("{}", serde_json::to_string_pretty(&report)?);
    anyhow::ensure!(
        report.unknown_variables.is_empty(),
        "these variables name no configuration key (typos?): {}",
        report.unknown_variables.join(", ")
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Dev { .. }
            | Command::Serve {
                service: ServiceName::Storage
            }
    ) {
        purge_freed_memory_at_once();
    }
    if let Command::Check { command } = cli.command {
        return check_command(cli.config, command);
    }
    let mut config = Config::load(cli.config.as_deref())?;
    apply(&cli.command, &mut config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Dev { .. } => processes::dev(config).await,
            Command::Serve { service } => processes::serve(config, service).await,
            Command::Gateway { .. } => processes::gateway(config).await,
            Command::Worker { .. } => processes::worker(config).await,
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
            Command::Check { .. } => unreachable!("handled before the runtime starts"),
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

#[cfg(test)]
mod tests {
    /// Option 15 is `purge_delay`: 1000 ms unless set, and the function sets it to 0.
    #[test]
    #[allow(unsafe_code)] // reads mimalloc's option through its FFI binding
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads and sets a mimalloc option; this test's process sets no other.
        let default = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(
            default, 1000,
            "mimalloc v3's purge_delay defaults to 1000 ms"
        );
        super::purge_freed_memory_at_once();
        let now = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(now, 0);
    }
}
