//! Choosing the infrastructure at start-up, and running a service.
//!
//! [`Infra`] holds the implementations the configuration selected (bus, cache,
//! clock, token verifier); each service's constructor takes what it needs from it
//! plus its own [`Db`], and returns [`ServiceParts`]: its subgraph, its gRPC
//! routes, extra HTTP routes and background tasks. `flowfleet dev` runs the parts
//! of all six services in one process; `flowfleet serve <name>` runs one.

use std::sync::Arc;

use anyhow::Context as _;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::subgraph::Subgraph;
use flowfleet_runtime::amqp::AmqpClient;
use flowfleet_runtime::cache::{redis_connection, Cache, MemoryCache, RedisCache};
use flowfleet_runtime::clock::{Clock, SystemClock};
use flowfleet_runtime::config::{Config, Mode, ServiceName};
use flowfleet_runtime::db::Db;
use flowfleet_runtime::events::amqp::AmqpBus;
use flowfleet_runtime::events::memory::MemoryBus;
use flowfleet_runtime::events::EventBus;
use flowfleet_runtime::grpc::CallCredentials;
use flowfleet_runtime::queue::amqp::AmqpQueue;
use flowfleet_runtime::queue::memory::MemoryQueue;
use flowfleet_runtime::queue::TaskQueue;
use flowfleet_security::identity::{JwksSource, TokenVerifier};
use flowfleet_security::secrets::SecretKeyRing;
use flowfleet_security::service_auth::{GrpcGuard, ServiceCredentials};

#[derive(Clone)]
pub struct Infra {
    pub config: Arc<Config>,
    pub bus: Arc<dyn EventBus>,
    /// Step tasks for the worker pool (RabbitMQ in distributed mode).
    pub queue: Arc<dyn TaskQueue>,
    pub cache: Arc<dyn Cache>,
    /// The Redis connection replicas share their cache (and auth its sessions and
    /// counters) through: set in distributed mode when `redis.url` is; otherwise that
    /// state lives in this process.
    pub redis: Option<redis::aio::ConnectionManager>,
    pub clock: Arc<dyn Clock>,
    pub verifier: Arc<TokenVerifier>,
    /// The fleet's secret key ring: seals stored secrets and service credentials.
    pub secrets: Arc<SecretKeyRing>,
    pub shutdown: CancellationToken,
    /// What `/ready` checks: the broker, Redis, and each database opened through
    /// [`Infra::db`].
    pub readiness: crate::ready::Readiness,
}

impl Infra {
    /// Connects to what the configured mode needs.
    pub async fn start(
        config: Arc<Config>,
        jwks: Arc<dyn JwksSource>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Infra> {
        // One RabbitMQ connection serves the bus and the task queue (a channel each).
        let readiness = crate::ready::Readiness::default();
        let (bus, queue): (Arc<dyn EventBus>, Arc<dyn TaskQueue>) = match config.mode {
            Mode::Embedded => (Arc::new(MemoryBus::new()), Arc::new(MemoryQueue::new())),
            Mode::Distributed => {
                let client = AmqpClient::connect(&config.amqp.url)
                    .await
                    .context("connecting to RabbitMQ (amqp.url)")?;
                let broker = client.clone();
                readiness.add(
                    "broker",
                    Arc::new(move || {
                        let broker = broker.clone();
                        Box::pin(async move {
                            let channel = broker.channel().await.map_err(|e| e.to_string())?;
                            let _ = channel.close(200, "readiness check").await;
                            Ok(())
                        })
                    }),
                );
                let bus = AmqpBus::new(client.clone(), &config.amqp.exchange, config.amqp.prefetch)
                    .await
                    .context("connecting to RabbitMQ (amqp.url)")?;
                (
                    Arc::new(bus),
                    Arc::new(AmqpQueue::new(client, &config.amqp.exchange)),
                )
            }
        };
        // The cache (and auth's sessions and counters) share one Redis connection when
        // replicas must share them; otherwise they live in this process.
        let redis = if config.mode == Mode::Distributed && !config.redis.url.is_empty() {
            Some(
                redis_connection(&config.redis.url)
                    .await
                    .context("connecting to Redis (redis.url)")?,
            )
        } else {
            None
        };
        if let Some(connection) = &redis {
            let connection = connection.clone();
            readiness.add(
                "redis",
                Arc::new(move || {
                    let mut connection = connection.clone();
                    Box::pin(async move {
                        redis::cmd("PING")
                            .query_async::<String>(&mut connection)
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string())
                    })
                }),
            );
        }
        let cache: Arc<dyn Cache> = match &redis {
            Some(conn) => Arc::new(RedisCache::new(conn.clone(), &config.redis.key_prefix)),
            None => Arc::new(MemoryCache::default()),
        };
        let verifier = Arc::new(TokenVerifier::new(
            jwks,
            &config.security.jwt_issuer,
            &config.security.jwt_audience,
        ));
        let secrets = Arc::new(SecretKeyRing::from_config(&config).context(
            "loading the secret key ring (security.secret_keys; `flowfleet secret-key` makes a key)",
        )?);
        Ok(Infra {
            config,
            bus,
            queue,
            cache,
            redis,
            clock: Arc::new(SystemClock),
            verifier,
            secrets,
            shutdown,
            readiness,
        })
    }

    /// The guard a gRPC server verifies its callers with.
    pub fn grpc_guard(&self) -> GrpcGuard {
        GrpcGuard::new(self.verifier.clone(), self.secrets.clone())
    }

    /// Credentials for the gRPC calls `service` makes on its own behalf.
    pub fn service_credentials(&self, service: ServiceName) -> Arc<dyn CallCredentials> {
        Arc::new(ServiceCredentials::new(
            self.secrets.clone(),
            service.as_str(),
        ))
    }

    /// The service's database: its SQLite file, or its PostgreSQL schema; migrated
    /// when `database.migrate_on_start` is set.
    pub async fn db(
        &self,
        service: ServiceName,
        migrations: &flowfleet_runtime::db::Migrations,
    ) -> anyhow::Result<Db> {
        let db = open_database(&self.config, service).await?;
        let pinged = db.clone();
        self.readiness.add(
            format!("database:{service}"),
            Arc::new(move || {
                let db = pinged.clone();
                Box::pin(async move {
                    match db.ping().await {
                        true => Ok(()),
                        false => Err("the database does not answer".to_string()),
                    }
                })
            }),
        );
        tokio::spawn(flowfleet_runtime::series::sample_pool(
            db.clone(),
            self.shutdown.clone(),
        ));
        if self.config.database.migrate_on_start {
            db.migrate(migrations)
                .await
                .with_context(|| format!("migrating the {service} database"))?;
        }
        Ok(db)
    }
}

/// What a service contributes to a process.
pub struct ServiceParts {
    pub name: ServiceName,
    pub subgraph: Subgraph,
    pub grpc: tonic::service::Routes,
    /// Extra HTTP routes beside `/graphql` (JWKS, file downloads, ...).
    pub http: axum::Router,
    /// Background work (event consumers, outbox relay); each ends on shutdown.
    pub tasks: Vec<BoxFuture<'static, ()>>,
}

impl ServiceParts {
    /// `/graphql`, `/health`, `/metrics` and the service's own routes.
    pub fn http_router(&self) -> axum::Router {
        self.subgraph.router().merge(self.http.clone())
    }

    /// Starts the background tasks.
    pub fn spawn_tasks(&mut self) -> Vec<tokio::task::JoinHandle<()>> {
        self.tasks.drain(..).map(tokio::spawn).collect()
    }
}

/// Serves one service on its own HTTP and gRPC listeners until `shutdown`.
pub async fn serve(
    mut parts: ServiceParts,
    http: tokio::net::TcpListener,
    grpc: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tasks = parts.spawn_tasks();
    let router = parts.http_router();
    // Open event streams break off at shutdown, so the graceful shutdown below ends.
    let (closing, stopping) = (parts.subgraph.closing(), shutdown.clone());
    tokio::spawn(async move {
        stopping.cancelled().await;
        closing.cancel();
    });
    let s1 = shutdown.clone();
    let http_server = async move {
        axum::serve(http, router)
            .with_graceful_shutdown(async move { s1.cancelled().await })
            .await
            .context("HTTP server failed")
    };
    let s2 = shutdown.clone();
    let grpc_server = async move {
        flowfleet_runtime::grpc::serve(grpc, parts.grpc, async move { s2.cancelled().await })
            .await
            .context("gRPC server failed")
    };
    let result = tokio::try_join!(http_server, grpc_server);
    shutdown.cancel();
    for t in tasks {
        let _ = t.await;
    }
    result.map(|_| ())
}

/// A service's database as the configuration names it: its SQLite file (embedded) or its
/// schema in PostgreSQL (distributed). Not migrated.
pub async fn open_database(config: &Config, service: ServiceName) -> anyhow::Result<Db> {
    match config.mode {
        Mode::Embedded => Db::sqlite(&config.data_dir, service.as_str()).await,
        Mode::Distributed => {
            Db::postgres(
                &config.database_url_for(service),
                service.as_str(),
                config.database.max_connections,
            )
            .await
        }
    }
    .with_context(|| format!("opening the {service} database"))
}
