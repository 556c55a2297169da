//! Wiring the six services together.
//!
//! [`Fleet::embedded`] builds every service in one process, connected by
//! in-process gRPC channels, with the gateway calling the subgraphs in process;
//! it is what `flowfleet dev` runs and what `schema`/`compose` read SDL from.
//! [`remote_channels`] gives a separately running service its channels to the
//! others over the network.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use flowfleet_gateway::value::Value as ResponseValue;
use flowfleet_gateway::{
    Gateway, GatewayConfig, SubgraphRequest, SubgraphSource, SubgraphTransport, TransportError,
};
use flowfleet_host::subgraph::{GraphQLBody, Subgraph};
use flowfleet_host::{Infra, ServiceParts};
use flowfleet_runtime::blob::Blobs;
use flowfleet_runtime::config::{Config, ServiceName};
use flowfleet_runtime::grpc::CallCredentials;
use flowfleet_runtime::grpc::{self, GrpcChannel};
use flowfleet_security::access::Access;
use flowfleet_security::api_keys::GrpcApiKeys;
use flowfleet_security::identity::{DeferredJwks, JwksSource};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

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
        let infra = Infra::start(config.clone(), jwks.clone(), shutdown).await?;

        let auth = flowfleet_auth::build(
            &infra,
            infra
                .db(ServiceName::Auth, &flowfleet_auth::MIGRATIONS)
                .await?,
        )
        .await?;
        jwks.set(auth.keys.clone() as Arc<dyn JwksSource>);
        // Calls outside a user's request go out as the calling service.
        let as_service = |s: ServiceName| Some(infra.service_credentials(s));
        let auth_channel = grpc::in_process(auth.parts.grpc.clone(), as_service(ServiceName::Auth));
        infra.verifier.set_api_keys(Arc::new(GrpcApiKeys::new(
            auth_channel.clone(),
            infra.cache.clone(),
        )));
        let access = Access::new(auth_channel, infra.cache.clone());

        let workflow = flowfleet_workflow::build(
            &infra,
            infra
                .db(ServiceName::Workflow, &flowfleet_workflow::MIGRATIONS)
                .await?,
            access.clone(),
        )
        .await?;
        let blobs = Blobs::from_config(&config)?;
        let storage = flowfleet_storage::build(
            &infra,
            infra
                .db(ServiceName::Storage, &flowfleet_storage::MIGRATIONS)
                .await?,
            access.clone(),
            blobs,
        )
        .await?;
        let execution_db = infra
            .db(ServiceName::Execution, &flowfleet_execution::MIGRATIONS)
            .await?;
        let execution = flowfleet_execution::build(
            &infra,
            execution_db.clone(),
            access.clone(),
            grpc::in_process(workflow.grpc.clone(), as_service(ServiceName::Execution)),
        )
        .await?;
        let worker_tasks = flowfleet_execution::build_worker(
            &infra,
            execution_db,
            grpc::in_process(storage.grpc.clone(), as_service(ServiceName::Execution)),
            grpc::in_process(workflow.grpc.clone(), as_service(ServiceName::Execution)),
        )
        .await?;
        let notification = flowfleet_notification::build(
            &infra,
            infra
                .db(
                    ServiceName::Notification,
                    &flowfleet_notification::MIGRATIONS,
                )
                .await?,
            access.clone(),
        )
        .await?;
        let analytics = flowfleet_analytics::build(
            &infra,
            infra
                .db(ServiceName::Analytics, &flowfleet_analytics::MIGRATIONS)
                .await?,
            access,
        )
        .await?;
        let services = vec![
            workflow,
            execution,
            auth.parts,
            notification,
            analytics,
            storage,
        ];
        // `exportMyData` asks every service, once they all exist.
        let _ = auth.export_peers.set(
            services
                .iter()
                .map(|s| {
                    (
                        s.name,
                        grpc::in_process(s.grpc.clone(), as_service(ServiceName::Auth)),
                    )
                })
                .collect(),
        );
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
            // A configured URL override means: reach this subgraph over HTTP.
            if self
                .infra
                .config
                .gateway
                .subgraph_urls
                .contains_key(p.name.as_str())
            {
                continue;
            }
            transports.insert(
                p.name.as_str().to_string(),
                Arc::new(InProcess(p.subgraph.clone())),
            );
        }
        Ok(Gateway::new(
            &sdl,
            gateway_config(&self.infra.config)?,
            transports,
        )?)
    }
}

/// The gateway's settings from the fleet's configuration (reads `gateway.subgraph_ca_file`).
pub fn gateway_config(config: &Config) -> anyhow::Result<GatewayConfig> {
    let ca_file = &config.gateway.subgraph_ca_file;
    let subgraph_ca_pem = if ca_file.is_empty() {
        None
    } else {
        Some(std::fs::read(ca_file).with_context(|| {
            format!("cannot read gateway.subgraph_ca_file `{ca_file}` (a PEM file of certificate authorities)")
        })?)
    };
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
    })
}

/// The gateway's transport to a subgraph in the same process.
struct InProcess(Subgraph);

#[async_trait]
impl SubgraphTransport for InProcess {
    async fn execute(&self, request: SubgraphRequest) -> Result<ResponseValue, TransportError> {
        let body = GraphQLBody {
            query: request.query,
            operation_name: request.operation_name,
            variables: Some(serde_json::Value::Object(request.variables)),
        };
        Ok(self.0.execute(body, &request.headers).await.into())
    }
}

/// Channels from one separately running service to the others.
pub struct RemoteChannels {
    pub auth: GrpcChannel,
    pub workflow: GrpcChannel,
    pub storage: GrpcChannel,
}

/// Channels to every service, for the auth service's data export.
pub fn all_channels(
    config: &Config,
    service: Option<Arc<dyn CallCredentials>>,
) -> anyhow::Result<Vec<(ServiceName, GrpcChannel)>> {
    ServiceName::ALL
        .iter()
        .map(|s| {
            let channel = grpc::remote(&config.service(*s).grpc_url, service.clone())
                .with_context(|| format!("invalid gRPC URL for the {s} service"))?;
            Ok((*s, channel))
        })
        .collect()
}

/// `service` names the caller for calls made outside a user's request; without one (the
/// gateway), such calls carry no credential.
pub fn remote_channels(
    config: &Config,
    service: Option<Arc<dyn CallCredentials>>,
) -> anyhow::Result<RemoteChannels> {
    let ch = |s: ServiceName| {
        grpc::remote(&config.service(s).grpc_url, service.clone())
            .with_context(|| format!("invalid gRPC URL for the {s} service"))
    };
    Ok(RemoteChannels {
        auth: ch(ServiceName::Auth)?,
        workflow: ch(ServiceName::Workflow)?,
        storage: ch(ServiceName::Storage)?,
    })
}
