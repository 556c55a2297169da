//! One function per `flowfleet` command: each sets up telemetry, builds its part
//! of the fleet and runs it until SIGTERM or Ctrl-C.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::routing::get;
use flowfleet_shared::access::Access;
use flowfleet_shared::auth::{DeferredJwks, HttpJwks, JwksSource};
use flowfleet_shared::blob::Blobs;
use flowfleet_shared::config::{Config, Mode, ServiceName};
use flowfleet_shared::Infra;
use tokio_util::sync::CancellationToken;

use crate::dev::DevApp;
use crate::fleet::{self, Fleet};

/// Cancels the token on SIGTERM or Ctrl-C.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        t.cancel();
    });
    token
}

pub async fn dev(config: Config) -> anyhow::Result<()> {
    let _telemetry = flowfleet_shared::telemetry::init("flowfleet-dev", &config.telemetry);
    let addr = format!("{}:{}", config.gateway.host, config.gateway.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}; pick another port with --port"))?;
    let data_dir = config.data_dir.clone();
    let shutdown = shutdown_on_signal();
    let app = DevApp::build(config, listener, shutdown).await?;
    println!(
        "Flowfleet is running (embedded mode, data in {}).\n  GraphQL: http://127.0.0.1:{}/graphql",
        data_dir.display(),
        app.port()
    );
    app.run().await
}

/// The JWKS source of a separately running service: the auth service's endpoint.
fn remote_jwks(config: &Config) -> Arc<dyn JwksSource> {
    Arc::new(HttpJwks::new(format!(
        "{}/.well-known/jwks.json",
        config.service(ServiceName::Auth).http_url
    )))
}

pub async fn serve(config: Config, service: ServiceName) -> anyhow::Result<()> {
    let _telemetry =
        flowfleet_shared::telemetry::init(&format!("flowfleet-{service}"), &config.telemetry);
    let config = Arc::new(config);
    let shutdown = shutdown_on_signal();
    let endpoint = config.service(service);
    let http = tokio::net::TcpListener::bind((endpoint.host.as_str(), endpoint.http_port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", endpoint.host, endpoint.http_port))?;
    let grpc = tokio::net::TcpListener::bind((endpoint.host.as_str(), endpoint.grpc_port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", endpoint.host, endpoint.grpc_port))?;
    let deferred = Arc::new(DeferredJwks::default());
    let jwks: Arc<dyn JwksSource> = if service == ServiceName::Auth {
        deferred.clone()
    } else {
        remote_jwks(&config)
    };
    let infra = Infra::start(config.clone(), jwks, shutdown.clone()).await?;
    let channels = fleet::remote_channels(&config)?;
    let access = Access::new(channels.auth.clone(), infra.cache.clone());
    let parts = match service {
        ServiceName::Auth => {
            let auth = flowfleet_auth::build(
                &infra,
                infra.db(service, &flowfleet_auth::MIGRATIONS).await?,
            )
            .await?;
            deferred.set(auth.keys.clone());
            auth.parts
        }
        ServiceName::Workflow => {
            flowfleet_workflow::build(
                &infra,
                infra.db(service, &flowfleet_workflow::MIGRATIONS).await?,
                access,
            )
            .await?
        }
        ServiceName::Execution => {
            flowfleet_execution::build(
                &infra,
                infra.db(service, &flowfleet_execution::MIGRATIONS).await?,
                access,
                channels.workflow,
            )
            .await?
        }
        ServiceName::Notification => {
            flowfleet_notification::build(
                &infra,
                infra
                    .db(service, &flowfleet_notification::MIGRATIONS)
                    .await?,
                access,
            )
            .await?
        }
        ServiceName::Analytics => {
            flowfleet_analytics::build(
                &infra,
                infra.db(service, &flowfleet_analytics::MIGRATIONS).await?,
                access,
            )
            .await?
        }
        ServiceName::Storage => {
            flowfleet_storage::build(
                &infra,
                infra.db(service, &flowfleet_storage::MIGRATIONS).await?,
                access,
                Blobs::from_config(&config)?,
            )
            .await?
        }
    };
    tracing::info!(%service, http = %endpoint.http_port, grpc = %endpoint.grpc_port, "serving");
    flowfleet_shared::runtime::serve(parts, http, grpc, shutdown).await
}

pub async fn worker(config: Config) -> anyhow::Result<()> {
    let _telemetry = flowfleet_shared::telemetry::init("flowfleet-worker", &config.telemetry);
    let config = Arc::new(config);
    let shutdown = shutdown_on_signal();
    // Bind first, so a taken port fails start-up instead of silently serving no metrics.
    let addr = format!("{}:{}", config.worker.host, config.worker.metrics_port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {addr}; set worker.metrics_port (FLOWFLEET_WORKER__METRICS_PORT)"
            )
        })?;
    let infra = Infra::start(config.clone(), remote_jwks(&config), shutdown.clone()).await?;
    let channels = fleet::remote_channels(&config)?;
    let db = infra
        .db(ServiceName::Execution, &flowfleet_execution::MIGRATIONS)
        .await?;
    let tasks =
        flowfleet_execution::build_worker(&infra, db, channels.storage, config.worker.concurrency)
            .await?;
    let router: axum::Router = flowfleet_shared::telemetry::ops_routes();
    let stop = shutdown.clone();
    let metrics_server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    tracing::info!(concurrency = config.worker.concurrency, %addr, "worker started");
    let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
    shutdown.cancelled().await;
    metrics_server
        .await
        .context("the metrics server panicked")?
        .context("serving worker metrics")?;
    for h in handles {
        let _ = h.await;
    }
    Ok(())
}

/// Fetches a subgraph's SDL with `_service { sdl }`, retrying while it starts.
async fn fetch_sdl(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let mut last = None;
    for _ in 0..60 {
        let attempt = async {
            let body: serde_json::Value = client
                .post(url)
                .json(&serde_json::json!({"query": "{ _service { sdl } }"}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            body.pointer("/data/_service/sdl")
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| anyhow::anyhow!("no SDL in the response"))
        };
        match attempt.await {
            Ok(sdl) => return Ok(sdl),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
        .with_context(|| format!("fetching the subgraph SDL from {url}"))
}

pub async fn gateway(config: Config) -> anyhow::Result<()> {
    let _telemetry = flowfleet_shared::telemetry::init("flowfleet-gateway", &config.telemetry);
    let shutdown = shutdown_on_signal();
    let supergraph = if config.gateway.supergraph.is_empty() {
        let client = reqwest::Client::new();
        let mut sources = Vec::new();
        for s in ServiceName::ALL {
            let url = config
                .gateway
                .subgraph_urls
                .get(s.as_str())
                .cloned()
                .unwrap_or_else(|| format!("{}/graphql", config.service(s).http_url));
            let sdl = fetch_sdl(&client, &url).await?;
            sources.push(flowfleet_gateway::SubgraphSource {
                name: s.as_str().to_string(),
                url,
                sdl,
            });
        }
        flowfleet_gateway::compose(&sources).context("composing the supergraph")?
    } else {
        std::fs::read_to_string(&config.gateway.supergraph).with_context(|| {
            format!(
                "cannot read the supergraph file {}",
                config.gateway.supergraph
            )
        })?
    };
    let gateway = flowfleet_gateway::Gateway::new(
        &supergraph,
        fleet::gateway_config(&config),
        Default::default(),
    )?;
    let router = gateway.router().route(
        "/metrics",
        get(flowfleet_shared::telemetry::metrics_endpoint),
    );
    let addr = format!("{}:{}", config.gateway.host, config.gateway.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, "gateway serving");
    flowfleet_gateway::serve(listener, router, async move { shutdown.cancelled().await }).await?;
    Ok(())
}

pub async fn migrate(config: Config) -> anyhow::Result<()> {
    let _telemetry = flowfleet_shared::telemetry::init("flowfleet-migrate", &config.telemetry);
    let mut config = config;
    config.database.migrate_on_start = true;
    let infra = Infra::start(
        Arc::new(config),
        Arc::new(DeferredJwks::default()),
        CancellationToken::new(),
    )
    .await?;
    for s in ServiceName::ALL {
        let migrations = match s {
            ServiceName::Workflow => &flowfleet_workflow::MIGRATIONS,
            ServiceName::Execution => &flowfleet_execution::MIGRATIONS,
            ServiceName::Auth => &flowfleet_auth::MIGRATIONS,
            ServiceName::Notification => &flowfleet_notification::MIGRATIONS,
            ServiceName::Analytics => &flowfleet_analytics::MIGRATIONS,
            ServiceName::Storage => &flowfleet_storage::MIGRATIONS,
        };
        infra.db(s, migrations).await?.close().await;
        println!("migrated {s}");
    }
    Ok(())
}

/// Builds the fleet on a throw-away embedded data directory, to read its SDL.
async fn sdl_fleet(config: Config) -> anyhow::Result<(Fleet, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let mut config = config;
    config.mode = Mode::Embedded;
    config.data_dir = dir.path().to_path_buf();
    config.storage.local_path = String::new();
    let fleet = Fleet::embedded(Arc::new(config), CancellationToken::new()).await?;
    Ok((fleet, dir))
}

pub async fn compose(config: Config, out: &Path) -> anyhow::Result<()> {
    let (fleet, _dir) = sdl_fleet(config).await?;
    let supergraph = flowfleet_gateway::compose(&fleet.subgraph_sources())?;
    std::fs::write(out, supergraph).with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

pub async fn schema(config: Config, service: ServiceName) -> anyhow::Result<()> {
    let (fleet, _dir) = sdl_fleet(config).await?;
    let parts = fleet
        .services
        .iter()
        .find(|p| p.name == service)
        .context("service missing from the fleet")?;
    print!("{}", parts.subgraph.sdl());
    Ok(())
}
