//! The one table of the fleet's services: in what order they are built, their
//! migrations, and how each is built from the infrastructure and its peers.
//!
//! `flowfleet dev` (and the `schema`/`compose` commands and the test fleet, which build
//! the same embedded fleet) builds every row in [`BUILD_ORDER`] in one process;
//! `flowfleet serve <name>` builds one row; `flowfleet worker` builds the execution
//! service's worker. They differ only in [`Peers`]: in process, a service reaches the
//! ones built before it through their gRPC routes; run separately, through the URLs the
//! configuration names. A new service is a new row here, and the compiler points at
//! every match that must learn it.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use flowfleet_host::{Infra, ServiceParts};
use flowfleet_runtime::blob::Blobs;
use flowfleet_runtime::config::{Config, ServiceName};
use flowfleet_runtime::db::Migrations;
use flowfleet_runtime::grpc::{self, GrpcChannel};
use flowfleet_security::access::Access;
use flowfleet_security::api_keys::GrpcApiKeys;
use flowfleet_security::identity::DeferredJwks;
use futures::future::BoxFuture;

/// The order services are built in: each comes after those it calls while being built
/// (auth answers everyone's access questions; execution reads workflows and sends
/// through the notification service).
pub const BUILD_ORDER: [ServiceName; 6] = [
    ServiceName::Auth,
    ServiceName::Workflow,
    ServiceName::Storage,
    ServiceName::Notification,
    ServiceName::Execution,
    ServiceName::Analytics,
];

/// A service's migrations (SQLite and PostgreSQL).
pub fn migrations(service: ServiceName) -> &'static Migrations {
    match service {
        ServiceName::Workflow => &flowfleet_workflow::MIGRATIONS,
        ServiceName::Execution => &flowfleet_execution::MIGRATIONS,
        ServiceName::Auth => &flowfleet_auth::MIGRATIONS,
        ServiceName::Notification => &flowfleet_notification::MIGRATIONS,
        ServiceName::Analytics => &flowfleet_analytics::MIGRATIONS,
        ServiceName::Storage => &flowfleet_storage::MIGRATIONS,
    }
}

/// A process of the fleet that calls services over gRPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Service(ServiceName),
    /// A worker pool (`flowfleet worker`), which calls as the execution service.
    Worker,
    /// The gateway, which asks the auth service about API keys.
    Gateway,
}

impl Caller {
    /// Whose service credentials the caller's own calls carry.
    fn credentials(self) -> ServiceName {
        match self {
            Caller::Service(s) => s,
            Caller::Worker => ServiceName::Execution,
            Caller::Gateway => ServiceName::Auth,
        }
    }
}

/// The services each process calls over gRPC. [`Peers::channel`] refuses any other, so
/// this is what the code does: `flowfleet check` reports it, and the NetworkPolicies of
/// `deploy/` allow exactly these edges (tests/deploy.rs). Every process that verifies API
/// keys asks auth; auth also gathers every service's data for a person's export.
pub fn grpc_peers(caller: Caller) -> &'static [ServiceName] {
    use ServiceName::*;
    match caller {
        Caller::Service(Auth) => &ServiceName::ALL,
        Caller::Service(Workflow | Notification | Analytics | Storage) | Caller::Gateway => &[Auth],
        Caller::Service(Execution) => &[Auth, Workflow, Storage],
        Caller::Worker => &[Storage, Workflow, Notification],
    }
}

/// How a service reaches the others over gRPC.
pub enum Peers<'a> {
    /// In this process: the routes of the services built so far.
    InProcess(HashMap<ServiceName, tonic::service::Routes>),
    /// Over the network, at the configured URLs.
    Remote(&'a Config),
}

impl Peers<'_> {
    /// A channel from `caller` to `to`, whose calls outside a user's request carry the
    /// caller's service credentials. Only the peers [`grpc_peers`] lists for the caller.
    pub fn channel(
        &self,
        infra: &Infra,
        to: ServiceName,
        caller: Caller,
    ) -> anyhow::Result<GrpcChannel> {
        anyhow::ensure!(
            grpc_peers(caller).contains(&to),
            "{caller:?} calls the {to} service, which services::grpc_peers does not list for it \
             (add it there, and to the NetworkPolicies in deploy/)"
        );
        let credentials = Some(infra.service_credentials(caller.credentials()));
        match self {
            Peers::InProcess(routes) => {
                let routes = routes.get(&to).with_context(|| {
                    format!("the {to} service is not built yet; see services::BUILD_ORDER")
                })?;
                Ok(grpc::in_process(routes.clone(), credentials))
            }
            Peers::Remote(config) => grpc::remote(&config.service(to).grpc_url, credentials)
                .with_context(|| format!("invalid gRPC URL for the {to} service")),
        }
    }

    /// Channels to every service, for the auth service's data export.
    pub fn all(&self, infra: &Infra) -> anyhow::Result<Vec<(ServiceName, GrpcChannel)>> {
        ServiceName::ALL
            .into_iter()
            .map(|s| {
                Ok((
                    s,
                    self.channel(infra, s, Caller::Service(ServiceName::Auth))?,
                ))
            })
            .collect()
    }

    /// The access checks of a service other than auth (auth answers its own), asking the
    /// auth service as `caller`.
    pub fn access(&self, infra: &Infra, caller: ServiceName) -> anyhow::Result<Access> {
        let auth = self.channel(infra, ServiceName::Auth, Caller::Service(caller))?;
        Ok(Access::new(auth, infra.cache.clone()))
    }

    /// Lets this process's token verifier look API keys up at the auth service; to be
    /// called once the auth service is reachable through these peers.
    pub fn verify_api_keys(&self, infra: &Infra, caller: Caller) -> anyhow::Result<()> {
        let auth = self.channel(infra, ServiceName::Auth, caller)?;
        infra
            .verifier
            .set_api_keys(Arc::new(GrpcApiKeys::new(auth, infra.cache.clone())));
        Ok(())
    }
}

/// A built service, and for auth what must be set once the others exist.
pub struct Built {
    pub parts: ServiceParts,
    /// Auth's data export: to be given channels to every service.
    pub export_peers: Option<flowfleet_auth::graphql::ExportPeers>,
}

/// Builds `service` on `infra` (migrating its database as configured), reaching its
/// peers through `peers`. Building auth also hands its signing keys to `jwks`, where
/// this process verifies tokens with them.
pub async fn build(
    service: ServiceName,
    infra: &Infra,
    peers: &Peers<'_>,
    jwks: &DeferredJwks,
) -> anyhow::Result<Built> {
    let db = infra.db(service, migrations(service)).await?;
    let parts = match service {
        ServiceName::Auth => {
            let auth = flowfleet_auth::build(infra, db).await?;
            jwks.set(auth.keys.clone());
            return Ok(Built {
                parts: auth.parts,
                export_peers: Some(auth.export_peers),
            });
        }
        ServiceName::Workflow => {
            flowfleet_workflow::build(infra, db, peers.access(infra, service)?).await?
        }
        ServiceName::Execution => {
            flowfleet_execution::build(
                infra,
                db,
                peers.access(infra, service)?,
                peers.channel(infra, ServiceName::Workflow, Caller::Service(service))?,
                peers.channel(infra, ServiceName::Storage, Caller::Service(service))?,
            )
            .await?
        }
        ServiceName::Notification => {
            flowfleet_notification::build(
                infra,
                db,
                peers.access(infra, service)?,
                peers.channel(infra, ServiceName::Auth, Caller::Service(service))?,
            )
            .await?
        }
        ServiceName::Analytics => {
            flowfleet_analytics::build(infra, db, peers.access(infra, service)?).await?
        }
        ServiceName::Storage => {
            flowfleet_storage::build(
                infra,
                db,
                peers.access(infra, service)?,
                Blobs::from_config(&infra.config)?,
            )
            .await?
        }
    };
    Ok(Built {
        parts,
        export_peers: None,
    })
}

/// The execution service's worker pool (its consumers and their relay).
pub async fn build_worker(
    infra: &Infra,
    peers: &Peers<'_>,
) -> anyhow::Result<Vec<BoxFuture<'static, ()>>> {
    let db = infra
        .db(ServiceName::Execution, migrations(ServiceName::Execution))
        .await?;
    flowfleet_execution::build_worker(
        infra,
        db,
        peers.channel(infra, ServiceName::Storage, Caller::Worker)?,
        peers.channel(infra, ServiceName::Workflow, Caller::Worker)?,
        peers.channel(infra, ServiceName::Notification, Caller::Worker)?,
    )
    .await
}
