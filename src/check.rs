//! `flowfleet check <command>`: what a process started as `flowfleet <command>` would use,
//! without starting it — the configuration it would load (and the `FLOWFLEET_*` variables
//! that name no key, which loading ignores), the ports it would listen on with the paths
//! probes and scrapers may use there, what it connects to (services by port, stores, the
//! OTLP collector, the internet), and the task queue it would consume. Deployment
//! manifests are checked against it (tests/deploy.rs), so a port, path, argument or
//! variable in `deploy/` or `docker/compose.yaml` that the binary does not have fails the
//! test suite instead of a rollout.

use flowfleet_runtime::config::{Config, Mode, ServiceName};
use flowfleet_runtime::telemetry::{HEALTH_PATH, METRICS_PATH};
use serde::Serialize;

use crate::services::{grpc_peers, Caller};

/// What `flowfleet check` says about one process.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `FLOWFLEET_*` variables of the environment that name no configuration key.
    pub unknown_variables: Vec<String>,
    /// The ports the process listens on.
    pub listens: Vec<Listener>,
    /// What the process connects to.
    pub reaches: Vec<Reach>,
    /// The RabbitMQ task queue the process consumes, if it is a worker.
    pub consumes: Option<String>,
}

/// Something a process connects to: a service's `http` or `grpc` port, or `postgres`,
/// `redis`, `rabbitmq`, `s3`, `otel-collector` or `internet` (public addresses: steps'
/// HTTP requests, notifications' SMTP servers and webhooks).
#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reach {
    pub to: String,
    /// `http` or `grpc` for a service; none for the rest.
    pub port: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct Listener {
    /// `http` or `grpc` (a service), `http` (the gateway, `flowfleet dev`) or `metrics`
    /// (a worker): the names the manifests give these ports.
    pub name: &'static str,
    pub port: u16,
    /// The HTTP paths served there that deployments use (probes, scraping, GraphQL).
    pub paths: Vec<&'static str>,
    /// Whether the gRPC health service (`grpc.health.v1.Health`) answers there.
    pub grpc_health: bool,
}

/// The kind of process a command line starts.
pub enum Process {
    Dev,
    Serve(ServiceName),
    Gateway,
    Worker,
    /// Migrates the databases and exits.
    Migrate,
    /// Runs and exits touching nothing else: composition, schema printing, key making.
    OneShot,
}

/// The report for `process` with the loaded `config` (command-line overrides applied), for
/// the environment variable names `vars`.
pub fn report(
    process: &Process,
    config: &Config,
    vars: impl IntoIterator<Item = String>,
) -> Report {
    use flowfleet_gateway::http::{GRAPHQL_PATH, HEALTH_PATH as GATEWAY_HEALTH, READY_PATH};
    let gateway = || Listener {
        name: "http",
        port: config.gateway.port,
        paths: vec![GRAPHQL_PATH, GATEWAY_HEALTH, READY_PATH, METRICS_PATH],
        grpc_health: false,
    };
    let listens = match process {
        Process::Dev | Process::Gateway => vec![gateway()],
        Process::Serve(service) => {
            let endpoint = config.service(*service);
            vec![
                Listener {
                    name: "http",
                    port: endpoint.http_port,
                    paths: vec![
                        flowfleet_host::subgraph::GRAPHQL_PATH,
                        HEALTH_PATH,
                        flowfleet_host::ready::READY_PATH,
                        METRICS_PATH,
                    ],
                    grpc_health: false,
                },
                Listener {
                    name: "grpc",
                    port: endpoint.grpc_port,
                    paths: Vec::new(),
                    grpc_health: true,
                },
            ]
        }
        Process::Worker => vec![Listener {
            name: "metrics",
            port: config.worker.metrics_port,
            paths: vec![HEALTH_PATH, flowfleet_host::ready::READY_PATH, METRICS_PATH],
            grpc_health: false,
        }],
        Process::Migrate | Process::OneShot => Vec::new(),
    };
    Report {
        unknown_variables: config.unknown_variables(vars),
        listens,
        reaches: reaches(process, config),
        consumes: matches!(process, Process::Worker).then(|| {
            format!(
                "{}.{}",
                config.amqp.exchange,
                flowfleet_execution::dispatch::STEP_QUEUE
            )
        }),
    }
}

/// What `process` connects to with `config`. The gRPC edges are [`grpc_peers`], which the
/// code enforces; the rest follows what each process starts (`Infra::start`: the
/// databases, the broker and Redis in distributed mode; telemetry export when configured).
fn reaches(process: &Process, config: &Config) -> Vec<Reach> {
    let to = |name: &str, port: Option<&'static str>| Reach {
        to: name.to_string(),
        port,
    };
    let distributed = config.mode == Mode::Distributed;
    let mut reaches = Vec::new();
    if !config.telemetry.otlp_endpoint.is_empty() && !matches!(process, Process::OneShot) {
        reaches.push(to("otel-collector", None));
    }
    // The infrastructure every long-running process of a distributed fleet starts with.
    let infrastructure = |reaches: &mut Vec<Reach>, database: bool| {
        if distributed {
            if database {
                reaches.push(to("postgres", None));
            }
            if !config.amqp.url.is_empty() {
                reaches.push(to("rabbitmq", None));
            }
            if !config.redis.url.is_empty() {
                reaches.push(to("redis", None));
            }
        }
    };
    let grpc = |reaches: &mut Vec<Reach>, caller: Caller| {
        for peer in grpc_peers(caller) {
            reaches.push(to(peer.as_str(), Some("grpc")));
        }
    };
    let s3 = config.storage.backend == "s3";
    match process {
        Process::Serve(service) => {
            infrastructure(&mut reaches, true);
            grpc(&mut reaches, Caller::Service(*service));
            if *service != ServiceName::Auth {
                // Access tokens are verified with the auth service's published keys.
                reaches.push(to(ServiceName::Auth.as_str(), Some("http")));
            }
            if *service == ServiceName::Storage && s3 {
                reaches.push(to("s3", None));
            }
            if *service == ServiceName::Notification {
                reaches.push(to("internet", None));
            }
        }
        Process::Worker => {
            infrastructure(&mut reaches, true);
            grpc(&mut reaches, Caller::Worker);
            reaches.push(to("internet", None));
        }
        Process::Gateway => {
            infrastructure(&mut reaches, false);
            grpc(&mut reaches, Caller::Gateway);
            for service in ServiceName::ALL {
                reaches.push(to(service.as_str(), Some("http")));
            }
        }
        Process::Dev => {
            if s3 {
                reaches.push(to("s3", None));
            }
            reaches.push(to("internet", None));
        }
        Process::Migrate => {
            if distributed {
                reaches.push(to("postgres", None));
            }
        }
        Process::OneShot => {}
    }
    reaches.sort();
    reaches.dedup();
    reaches
}
