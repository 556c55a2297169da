//! Wiring the six services together.
//!
//! [`Fleet::embedded`] builds every service of the table in [`crate::services`] in one
//! process, connected by in-process gRPC channels, with the gateway calling the
//! subgraphs in process; it is what `flowfleet dev` and the test fleet run and what
//! `schema`/`compose` read SDL from.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use flowfleet_gateway::value::Value as ResponseValue;
use flowfleet_gateway::{
    Gateway, GatewayConfig, ResponseStream, SubgraphRequest, SubgraphSource, SubgraphTransport,
    TransportError,
};
use flowfleet_host::subgraph::{GraphQLBody, Subgraph};
use flowfleet_host::{Infra, ServiceParts};
use flowfleet_runtime::config::{Config, ServiceName};
use flowfleet_security::identity::DeferredJwks;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::services::{self, Peers};

/// Every service of the fleet, built in one process.
pub struct Fleet {
    pub infra: Infra,
    pub services: Vec<ServiceParts>,
    /// Worker consumers and their relay.
    pub worker_tasks: Vec<BoxFuture<'static, ()>>,
}

impl Fleet {
    pub async fn embedded(
        config: Arc<Config>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Fleet> {
        let jwks = Arc::new(DeferredJwks::default());
        let infra = Infra::start(config, jwks.clone(), shutdown).await?;
        let mut peers = Peers::InProcess(HashMap::new());
        let mut services = Vec::new();
        let mut export_peers = None;
        for service in services::BUILD_ORDER {
            let built = services::build(service, &infra, &peers, &jwks).await?;
            if let Peers::InProcess(routes) = &mut peers {
                routes.insert(service, built.parts.grpc.clone());
            }
            if service == ServiceName::Auth {
                peers.verify_api_keys(&infra, services::Caller::Service(ServiceName::Auth))?;
            }
            export_peers = export_peers.or(built.export_peers);
            services.push(built.parts);
        }
        // `exportMyData` asks every service, once they all exist.
        if let Some(export_peers) = export_peers {
            let _ = export_peers.set(peers.all(&infra)?);
        }
        let worker_tasks = services::build_worker(&infra, &peers).await?;
        Ok(Fleet {
            infra,
            services,
            worker_tasks,
        })
    }

    /// Each subgraph's name, URL (as configured for distributed mode) and SDL.
    pub fn subgraph_sources(&self) -> Vec<SubgraphSource> {
        self.services
            .iter()
            .map(|p| SubgraphSource {
                name: p.name.as_str().to_string(),
                url: format!("{}/graphql", self.infra.config.service(p.name).http_url),
                sdl: p.subgraph.sdl(),
            })
            .collect()
    }

    /// The gateway over this fleet, calling every subgraph in process. With
    /// `supergraph` unset, the supergraph is composed from the services' SDL.
    pub fn gateway(&self, supergraph: Option<String>) -> anyhow::Result<Gateway> {
        let sdl = match supergraph {
            Some(s) => s,
            None => flowfleet_gateway::compose(&self.subgraph_sources())
                .context("composing the supergraph from the services")?,
        };
        let mut transports: HashMap<String, Arc<dyn SubgraphTransport>> = HashMap::new();
        for p in &self.services {
            // A configured URL (or replicas) means: reach this subgraph over HTTP.
            if crate::subgraph_traffic::configured_url(&self.infra.config, p.name).is_some() {
                continue;
            }
            transports.insert(
                p.name.as_str().to_string(),
                Arc::new(InProcess(p.subgraph.clone())),
            );
        }
        let gateway = Gateway::new(
            &sdl,
            gateway_config(&self.infra.config, self.infra.verifier.clone())?,
            transports,
        )?;
        // Cached answers are evicted by the fleet's events.
        crate::cache_events::spawn(
            gateway.clone(),
            self.infra.bus.clone(),
            self.infra.shutdown.clone(),
        );
        Ok(gateway)
    }
}

/// The gateway's settings from the fleet's configuration (reads `gateway.subgraph_ca_file`);
/// `verifier` checks the credentials of subscriptions when they start and expire.
pub fn gateway_config(
    config: &Config,
    verifier: Arc<flowfleet_security::identity::TokenVerifier>,
) -> anyhow::Result<GatewayConfig> {
    let ca_file = &config.gateway.subgraph_ca_file;
    let subgraph_ca_pem = if ca_file.is_empty() {
        None
    } else {
        Some(std::fs::read(ca_file).with_context(|| {
            format!("cannot read gateway.subgraph_ca_file `{ca_file}` (a PEM file of certificate authorities)")
        })?)
    };
    let edge = crate::edge_config::Edge::from_config(config)?;
    Ok(GatewayConfig {
        introspection: config.gateway.introspection,
        graphiql: config.gateway.graphiql,
        max_batch_size: config.gateway.max_batch_size,
        uploads: flowfleet_gateway::UploadLimits {
            max_files: config.gateway.upload_max_files,
            max_file_bytes: config.gateway.upload_max_file_bytes,
        },
        max_request_bytes: config.gateway.max_request_bytes,
        plan_cache_size: config.gateway.plan_cache_size,
        dedupe_subgraph_requests: config.gateway.dedupe_subgraph_requests,
        h2c_subgraphs: config.gateway.h2c_subgraphs.iter().cloned().collect(),
        subgraph_ca_pem,
        server_timing: config.gateway.server_timing,
        subgraph_timeout: std::time::Duration::from_millis(config.gateway.subgraph_timeout_ms),
        url_overrides: config
            .gateway
            .subgraph_urls
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        traffic: crate::subgraph_traffic::traffic_config(config)?,
        request_hook: Some(Arc::new(flowfleet_runtime::telemetry::inject_headers)),
        span_hook: Some(Arc::new(
            flowfleet_runtime::telemetry::set_parent_from_headers,
        )),
        forward_headers: {
            let mut headers = GatewayConfig::default().forward_headers;
            headers.push(http::HeaderName::from_static(
                flowfleet_security::service_auth::CLIENT_ADDRESS_HEADER,
            ));
            headers
        },
        // Sealed with a timestamp, so different on every request; the answers do not
        // depend on it.
        dedupe_ignored_headers: vec![http::HeaderName::from_static(
            flowfleet_security::service_auth::CLIENT_ADDRESS_HEADER,
        )],
        subscriptions: flowfleet_gateway::SubscriptionConfig {
            limits: flowfleet_gateway::SubscriptionLimits {
                max_connections: config.gateway.subscription_max_connections,
                max_per_connection: config.gateway.subscription_max_per_connection,
                max_per_credential: config.gateway.subscription_max_per_credential,
            },
            buffer: config.gateway.subscription_buffer,
            heartbeat: std::time::Duration::from_millis(
                config.gateway.subscription_heartbeat_ms.max(100),
            ),
            recheck_credentials: std::time::Duration::from_millis(
                config.gateway.subscription_recheck_ms.max(100),
            ),
            credentials: Some(crate::edge_auth::credential_check(verifier.clone())),
            ..Default::default()
        },
        rate_limiter: edge.rate_limiter,
        cors: edge.cors,
        demand: edge.demand,
        persisted: edge.persisted,
        response_cache: edge.response_cache,
        access_check: Some(crate::edge_auth::access_check(verifier.clone())),
        policy: None,
    })
}

/// The gateway's transport to a subgraph in the same process. A request with files
/// hands the subgraph the gateway's multipart stream, as HTTP would carry it, so files
/// stream from the client to the resolver in both runtimes.
struct InProcess(Subgraph);

/// The multipart boundary of in-process requests with files.
const UPLOAD_BOUNDARY: &str = "flowfleet-in-process-upload-5d1e8c";

#[async_trait]
impl SubgraphTransport for InProcess {
    fn supports_uploads(&self) -> bool {
        true
    }

    async fn execute(&self, request: SubgraphRequest) -> Result<ResponseValue, TransportError> {
        if let Some(uploads) = &request.uploads {
            let operations = String::from_utf8_lossy(&request.encoded()).into_owned();
            if let Some(body) = uploads.take_body(&operations, UPLOAD_BOUNDARY) {
                let content_type = format!("multipart/form-data; boundary={UPLOAD_BOUNDARY}");
                return Ok(self
                    .0
                    .execute_multipart(&content_type, body, &request.headers)
                    .await
                    .into());
            }
        }
        let body = GraphQLBody {
            query: request.query,
            operation_name: request.operation_name,
            variables: Some(serde_json::Value::Object(request.variables)),
        };
        Ok(self.0.execute(body, &request.headers).await.into())
    }

    /// The subgraph's own stream, in process: no serialization between events and the
    /// gateway, and the stream ends when the subgraph completes it.
    async fn subscribe(&self, request: SubgraphRequest) -> Result<ResponseStream, TransportError> {
        use futures::StreamExt as _;
        let body = GraphQLBody {
            query: request.query,
            operation_name: request.operation_name,
            variables: Some(serde_json::Value::Object(request.variables)),
        };
        let events = self.0.subscribe(body, &request.headers).await;
        Ok(events.map(|event| Ok(event.into())).boxed())
    }
}
