//! The whole fleet in the test's own process, behind its gateway on a local port, on the
//! infrastructure of a [`Backend`]: for tests that also need each service's gRPC server.

use std::collections::HashMap;

use flowfleet::dev::DevApp;
use flowfleet_host::subgraph::{GraphQLBody, Subgraph};
use flowfleet_host::testing::Backend;
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::grpc::{in_process, GrpcChannel};
use tokio_util::sync::CancellationToken;

use super::Client;

pub struct Person {
    pub id: String,
    pub client: Client,
}

impl Person {
    pub fn token(&self) -> &str {
        self.client.token.as_deref().expect("signed in")
    }
}

/// The fleet in this process behind its gateway, with in-process channels to each
/// service's gRPC server (the same servers the network would reach).
pub struct Fleet {
    pub url: String,
    pub grpc: HashMap<ServiceName, tonic::service::Routes>,
    /// Each service's subgraph, to call it as the gateway does (e.g. `_entities`).
    pub subgraphs: HashMap<ServiceName, Subgraph>,
    pub shutdown: CancellationToken,
    pub secrets: std::sync::Arc<flowfleet_security::secrets::SecretKeyRing>,
    /// The fleet's task queue (to look at dead letters).
    pub queue: std::sync::Arc<dyn flowfleet_runtime::queue::TaskQueue>,
    /// The fleet's event bus (to deliver an event again).
    pub bus: std::sync::Arc<dyn flowfleet_runtime::events::EventBus>,
    config: flowfleet_runtime::config::Config,
    port: u16,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn start(backend: &Backend) -> Fleet {
    start_with(backend, |_| {}).await
}

/// The fleet with its configuration adjusted first.
pub async fn start_with(
    backend: &Backend,
    adjust: impl FnOnce(&mut flowfleet_runtime::config::Config),
) -> Fleet {
    let (mut config, dir) = backend.config().await;
    adjust(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = CancellationToken::new();
    let launched = launch(&config, listener, &shutdown).await;
    Fleet {
        url: format!("http://127.0.0.1:{port}/graphql"),
        grpc: launched.grpc,
        subgraphs: launched.subgraphs,
        shutdown,
        secrets: launched.secrets,
        queue: launched.queue,
        bus: launched.bus,
        config,
        port,
        running: Some(launched.running),
        _dir: dir,
    }
}

struct Launched {
    grpc: HashMap<ServiceName, tonic::service::Routes>,
    subgraphs: HashMap<ServiceName, Subgraph>,
    secrets: std::sync::Arc<flowfleet_security::secrets::SecretKeyRing>,
    queue: std::sync::Arc<dyn flowfleet_runtime::queue::TaskQueue>,
    bus: std::sync::Arc<dyn flowfleet_runtime::events::EventBus>,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn launch(
    config: &flowfleet_runtime::config::Config,
    listener: tokio::net::TcpListener,
    shutdown: &CancellationToken,
) -> Launched {
    let app = DevApp::build_as_configured(config.clone(), listener, shutdown.clone())
        .await
        .expect("the fleet starts");
    Launched {
        grpc: app
            .fleet()
            .services
            .iter()
            .map(|s| (s.name, s.grpc.clone()))
            .collect(),
        subgraphs: app
            .fleet()
            .services
            .iter()
            .map(|s| (s.name, s.subgraph.clone()))
            .collect(),
        secrets: app.fleet().infra.secrets.clone(),
        queue: app.fleet().infra.queue.clone(),
        bus: app.fleet().infra.bus.clone(),
        running: tokio::spawn(app.run()),
    }
}

impl Fleet {
    /// Stops every process of the fleet (workers included: in-flight steps are
    /// given back) and starts it again on the same databases, broker and port,
    /// as after a deploy or a crash of everything.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.shutdown = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the fleet's port is free again");
        let launched = launch(&self.config, listener, &self.shutdown).await;
        self.grpc = launched.grpc;
        self.subgraphs = launched.subgraphs;
        self.secrets = launched.secrets;
        self.queue = launched.queue;
        self.bus = launched.bus;
        self.running = Some(launched.running);
    }

    /// Another replica of the whole fleet on the same databases and broker (and
    /// a port of its own), as a second pod of every deployment would be.
    pub async fn replica(&self) -> Fleet {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shutdown = CancellationToken::new();
        let launched = launch(&self.config, listener, &shutdown).await;
        Fleet {
            url: format!("http://127.0.0.1:{port}/graphql"),
            grpc: launched.grpc,
            subgraphs: launched.subgraphs,
            shutdown,
            secrets: launched.secrets,
            queue: launched.queue,
            bus: launched.bus,
            config: self.config.clone(),
            port,
            running: Some(launched.running),
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Stops every process of the fleet and waits until they have stopped.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            let _ = running.await;
        }
    }

    /// The fleet's public base address (webhooks are under it).
    pub fn base(&self) -> String {
        self.url.trim_end_matches("/graphql").to_string()
    }

    pub fn channel(&self, service: ServiceName) -> GrpcChannel {
        in_process(self.grpc[&service].clone(), None)
    }

    /// Runs a GraphQL request on one service's subgraph directly, with `bearer` as its
    /// credential: what the gateway would send it.
    pub async fn subgraph(
        &self,
        service: ServiceName,
        query: &str,
        variables: serde_json::Value,
        bearer: Option<&str>,
    ) -> serde_json::Value {
        let mut headers = http::HeaderMap::new();
        if let Some(bearer) = bearer {
            headers.insert(
                http::header::AUTHORIZATION,
                format!("Bearer {bearer}").parse().expect("a header value"),
            );
        }
        let body = GraphQLBody {
            query: query.to_string(),
            operation_name: None,
            variables: Some(variables),
        };
        self.subgraphs[&service].execute(body, &headers).await
    }

    pub async fn sign_up(&self, email: &str) -> Person {
        super::processes::sign_up(&self.url, email).await
    }
}
