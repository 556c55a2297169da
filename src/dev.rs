//! `flowfleet dev`: the whole fleet in one process on embedded defaults.
//!
//! Built like an application under test: [`DevApp::build`] takes a listener
//! (port 0 in tests) and exposes [`DevApp::port`]; [`DevApp::run`] serves until
//! the shutdown token is cancelled.

use std::sync::Arc;

use axum::routing::get;
use flowfleet_runtime::config::Config;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::fleet::Fleet;

pub struct DevApp {
    listener: TcpListener,
    port: u16,
    router: axum::Router,
    fleet: Fleet,
    shutdown: CancellationToken,
}

impl DevApp {
    /// Builds the fleet on `config` (embedded mode is forced) behind `listener`.
    pub async fn build(
        mut config: Config,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<DevApp> {
        config.mode = flowfleet_runtime::config::Mode::Embedded;
        Self::build_as_configured(config, listener, shutdown).await
    }

    /// [`DevApp::build`] on the infrastructure `config` names: in distributed mode the six
    /// services still run in this process, on PostgreSQL, Redis and RabbitMQ (tests use this
    /// to run one scenario on both backends).
    pub async fn build_as_configured(
        mut config: Config,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<DevApp> {
        let port = listener.local_addr()?.port();
        if config.storage.public_url.is_empty() {
            // File downloads are served by this same process.
            config.storage.public_url = format!("http://127.0.0.1:{port}");
        }
        let fleet = Fleet::embedded(Arc::new(config), shutdown.clone()).await?;
        let supergraph = match fleet.infra.config.gateway.supergraph.as_str() {
            "" => None,
            path => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read supergraph {path}: {e}"))?,
            ),
        };
        let gateway = fleet.gateway(supergraph)?;
        crate::edge_config::watch_trusted_documents(
            &gateway,
            &fleet.infra.config,
            shutdown.clone(),
        );
        {
            let (gateway, stop) = (gateway.clone(), shutdown.clone());
            tokio::spawn(async move {
                stop.cancelled().await;
                gateway.close_subscriptions();
            });
        }
        let mut router = gateway.router().route(
            flowfleet_runtime::telemetry::METRICS_PATH,
            get(flowfleet_runtime::telemetry::metrics_endpoint),
        );
        router = crate::edge_auth::edge(
            router,
            fleet.infra.verifier.clone(),
            crate::client_address::ClientAddresses::new(
                &fleet.infra.config.gateway.trusted_proxies,
                Some(fleet.infra.secrets.clone()),
            )?,
        );
        for s in &fleet.services {
            router = router.merge(s.http.clone());
        }
        Ok(DevApp {
            listener,
            port,
            router,
            fleet,
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// Serves until the shutdown token is cancelled, then waits for background
    /// work to stop.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut handles = Vec::new();
        for s in &mut self.fleet.services {
            handles.extend(s.spawn_tasks());
        }
        handles.extend(self.fleet.worker_tasks.drain(..).map(tokio::spawn));
        let shutdown = self.shutdown.clone();
        let served = flowfleet_gateway::serve(self.listener, self.router, async move {
            shutdown.cancelled().await
        })
        .await;
        self.shutdown.cancel();
        for h in handles {
            let _ = h.await;
        }
        served.map_err(Into::into)
    }
}
