//! One function per `flowfleet` command: each sets up telemetry, builds its part
//! of the fleet and runs it until SIGTERM or Ctrl-C.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::routing::get;
use flowfleet_host::Infra;
use flowfleet_runtime::cache::{redis_connection, Cache, MemoryCache, RedisCache};
use flowfleet_runtime::config::{Config, Mode, ServiceName};
use flowfleet_security::api_keys::GrpcApiKeys;
use flowfleet_security::identity::{DeferredJwks, HttpJwks, JwksSource, TokenVerifier};
use tokio_util::sync::CancellationToken;

use crate::dev::DevApp;
use crate::fleet::Fleet;
use crate::services::{self, Peers};

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
    let _telemetry = flowfleet_runtime::telemetry::init("flowfleet-dev", &config.telemetry);
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
        flowfleet_runtime::telemetry::init(&format!("flowfleet-{service}"), &config.telemetry);
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
    let peers = Peers::Remote(&config);
    peers.verify_api_keys(&infra, services::Caller::Service(service))?;
    let built = services::build(service, &infra, &peers, &deferred).await?;
    if let Some(export_peers) = built.export_peers {
        let _ = export_peers.set(peers.all(&infra)?);
    }
    let mut parts = built.parts;
    parts.http = parts.http.merge(infra.readiness.route());
    tracing::info!(%service, http = %endpoint.http_port, grpc = %endpoint.grpc_port, "serving");
    flowfleet_host::serve(parts, http, grpc, shutdown).await
}

pub async fn worker(config: Config) -> anyhow::Result<()> {
    let _telemetry = flowfleet_runtime::telemetry::init("flowfleet-worker", &config.telemetry);
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
    // A worker verifies no tokens: it has no key set to fetch.
    let infra = Infra::start(
        config.clone(),
        Arc::new(DeferredJwks::default()),
        shutdown.clone(),
    )
    .await?;
    let tasks = services::build_worker(&infra, &Peers::Remote(&config)).await?;
    let router: axum::Router =
        flowfleet_runtime::telemetry::ops_routes().merge(infra.readiness.route());
    let stop = shutdown.clone();
    let metrics_server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    tracing::info!(
        min_concurrency = config.worker.min_concurrency,
        max_concurrency = config.worker.max_concurrency,
        %addr,
        "worker started"
    );
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

/// Loads the supergraph. Subgraphs are retried for up to 30 s while they start; a missing
/// or unreadable file fails at once.
async fn load_supergraph(source: &flowfleet_gateway::SupergraphSource) -> anyhow::Result<String> {
    let client = reqwest::Client::new();
    let mut attempts = 0;
    loop {
        match source.load(&client).await {
            Ok(supergraph) => return Ok(supergraph),
            Err(error)
                if attempts < 60
                    && matches!(source, flowfleet_gateway::SupergraphSource::Subgraphs(_)) =>
            {
                attempts += 1;
                tracing::debug!(%error, "supergraph not available yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error).context("loading the supergraph"),
        }
    }
}

pub async fn gateway(config: Config) -> anyhow::Result<()> {
    let _telemetry = flowfleet_runtime::telemetry::init("flowfleet-gateway", &config.telemetry);
    let shutdown = shutdown_on_signal();
    let source = if config.gateway.supergraph.is_empty() {
        let endpoints = ServiceName::ALL
            .iter()
            .map(|s| flowfleet_gateway::SubgraphEndpoint {
                name: s.as_str().to_string(),
                url: crate::subgraph_traffic::configured_url(&config, *s)
                    .unwrap_or_else(|| format!("{}/graphql", config.service(*s).http_url)),
            })
            .collect();
        flowfleet_gateway::SupergraphSource::Subgraphs(endpoints)
    } else {
        flowfleet_gateway::SupergraphSource::File(config.gateway.supergraph.clone().into())
    };
    let supergraph = load_supergraph(&source).await?;
    let verifier = edge_verifier(&config).await?;
    let gateway = flowfleet_gateway::Gateway::new(
        &supergraph,
        crate::fleet::gateway_config(&config, verifier.clone())?,
        Default::default(),
    )?;
    // Open subscriptions complete when the gateway shuts down.
    {
        let (gateway, stop) = (gateway.clone(), shutdown.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            gateway.close_subscriptions();
        });
    }
    crate::edge_config::watch_trusted_documents(&gateway, &config, shutdown.clone());
    // Cached answers are evicted by the fleet's events; without a broker, no cache.
    if config.mode != Mode::Distributed || config.amqp.url.is_empty() {
        gateway.set_cache_fed(false);
    } else {
        crate::cache_events::spawn_amqp(
            gateway.clone(),
            config.amqp.url.clone(),
            config.amqp.exchange.clone(),
            shutdown.clone(),
        );
    }
    if config.gateway.reload_interval_ms > 0 {
        let every = std::time::Duration::from_millis(config.gateway.reload_interval_ms);
        let stop = shutdown.clone();
        tokio::spawn(flowfleet_gateway::watch(
            gateway.clone(),
            source,
            every,
            async move { stop.cancelled().await },
        ));
    }
    let router = gateway.router().route(
        flowfleet_runtime::telemetry::METRICS_PATH,
        get(flowfleet_runtime::telemetry::metrics_endpoint),
    );
    // The fleet's key ring seals client addresses for the services behind; a gateway
    // without `security.secret_keys` passes none on.
    let ring = if config.security.secret_keys.is_empty() {
        tracing::warn!("security.secret_keys is not set: services will not see client addresses (no per-address sign-in throttling)");
        None
    } else {
        Some(Arc::new(
            flowfleet_security::secrets::SecretKeyRing::from_config(&config)
                .context("loading security.secret_keys")?,
        ))
    };
    let router = crate::edge_auth::edge(
        router,
        verifier,
        crate::client_address::ClientAddresses::new(&config.gateway.trusted_proxies, ring)?,
    )
    .merge(crate::jwks::route(remote_jwks(&config)))
    .merge(crate::proxy::hooks(
        config.service(ServiceName::Execution).http_url.clone(),
        config.triggers.webhook_max_body_bytes,
    )?)
    .merge(crate::proxy::files(
        config.service(ServiceName::Storage).http_url.clone(),
    )?);
    let addr = format!("{}:{}", config.gateway.host, config.gateway.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, "gateway serving");
    flowfleet_gateway::serve(listener, router, async move { shutdown.cancelled().await }).await?;
    Ok(())
}

/// The gateway's verifier: access tokens against the auth service's JWKS, API keys by
/// asking the auth service (cached in Redis when configured, so a revocation reaches the
/// edge at once).
async fn edge_verifier(config: &Config) -> anyhow::Result<Arc<TokenVerifier>> {
    let cache: Arc<dyn Cache> = if config.mode == Mode::Distributed && !config.redis.url.is_empty()
    {
        let conn = redis_connection(&config.redis.url)
            .await
            .context("connecting to Redis (redis.url)")?;
        Arc::new(RedisCache::new(conn, &config.redis.key_prefix))
    } else {
        Arc::new(MemoryCache::default())
    };
    let verifier = Arc::new(TokenVerifier::new(
        remote_jwks(config),
        &config.security.jwt_issuer,
        &config.security.jwt_audience,
    ));
    // The gateway makes no calls of its own: API keys are verified with the key itself.
    anyhow::ensure!(
        services::grpc_peers(services::Caller::Gateway).contains(&ServiceName::Auth),
        "services::grpc_peers lists the gateway's calls to auth"
    );
    let auth = flowfleet_runtime::grpc::remote(&config.service(ServiceName::Auth).grpc_url, None)
        .context("invalid gRPC URL for the auth service")?;
    verifier.set_api_keys(Arc::new(GrpcApiKeys::new(auth, cache)));
    Ok(verifier)
}

pub async fn migrate(config: Config) -> anyhow::Result<()> {
    let _telemetry = flowfleet_runtime::telemetry::init("flowfleet-migrate", &config.telemetry);
    // The databases only: no broker, no Redis (the migration Job may reach nothing else).
    for s in services::BUILD_ORDER {
        let db = flowfleet_host::infra::open_database(&config, s).await?;
        db.migrate(services::migrations(s))
            .await
            .with_context(|| format!("migrating the {s} database"))?;
        db.close().await;
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

/// A date (`2026-03-01`, midnight UTC) or an RFC 3339 time, as milliseconds since the
/// epoch (`flowfleet analytics rebuild --from`).
pub fn parse_day(s: &str) -> Result<i64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| {
            d.and_time(chrono::NaiveTime::MIN)
                .and_utc()
                .timestamp_millis()
        })
        .map_err(|_| format!("`{s}` is neither a date (2026-03-01) nor an RFC 3339 time"))
}

/// `flowfleet analytics rebuild --from`: recomputes the analytics rollups from `from_ms`
/// (the start of its UTC day) on out of the facts, with a progress bar on stderr. Safe
/// while the fleet runs: its rollers take turns with this one.
pub async fn analytics_rebuild(config: Config, from_ms: i64) -> anyhow::Result<u64> {
    let _telemetry = flowfleet_runtime::telemetry::init("flowfleet-analytics", &config.telemetry);
    let analytics = config.analytics.clone();
    let infra = Infra::start(
        Arc::new(config),
        Arc::new(DeferredJwks::default()),
        CancellationToken::new(),
    )
    .await?;
    let db = infra
        .db(
            ServiceName::Analytics,
            services::migrations(ServiceName::Analytics),
        )
        .await?;
    let store = flowfleet_analytics::store::Store::new(db.clone());
    let retention = flowfleet_analytics::store::retention::Retention {
        fact_days: analytics.fact_days,
        minute_days: analytics.minute_rollup_days,
        rollup_days: analytics.rollup_days,
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} facts ({per_sec}, {eta} left)",
        )?
        .progress_chars("=> "),
    );
    bar.set_message("rebuilding rollups");
    let rebuilt = flowfleet_analytics::roller::rebuild(
        &store,
        from_ms,
        retention,
        analytics.roll_batch,
        infra.clock.now_ms(),
        |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )
    .await?;
    bar.finish_with_message("rebuilt rollups");
    db.close().await;
    Ok(rebuilt)
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

#[cfg(test)]
mod tests {
    #[test]
    fn rebuild_dates_are_days_or_times() {
        assert_eq!(super::parse_day("1970-01-02"), Ok(86_400_000));
        assert_eq!(super::parse_day("1970-01-01T00:00:01+00:00"), Ok(1_000));
        assert!(super::parse_day("yesterday")
            .unwrap_err()
            .contains("neither a date"));
    }
}
