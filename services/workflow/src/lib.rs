//! The workflow service: workflow definitions, their validation against the
//! node catalog, and immutable published versions.
//!
//! Reading order: [`domain`] (with [`credentials`] and [`interchange`]),
//! [`store`], [`graphql`], [`grpc`], then [`build`].

pub mod credentials;
pub mod domain;
pub mod graphql;
pub mod grpc;
pub mod interchange;
pub mod store;

use std::sync::Arc;

use flowfleet_host::subgraph::Subgraph;
use flowfleet_host::{Infra, ServiceParts};
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::db::{Db, Migrations};
use flowfleet_runtime::events::outbox::Relay;
use flowfleet_runtime::proto::workflow::v1::workflow_service_server::WorkflowServiceServer;
use flowfleet_security::access::Access;

pub static MIGRATIONS: Migrations = Migrations::portable(&sqlx::migrate!("./migrations"));

pub async fn build(infra: &Infra, db: Db, access: Access) -> anyhow::Result<ServiceParts> {
    let store = store::Store::new(db.clone(), infra.clock.clone());
    let relay = Relay::new(db, infra.bus.clone());
    let schema = graphql::schema(graphql::Ctx {
        store: store.clone(),
        access: access.clone(),
        clock: infra.clock.clone(),
        relay: relay.clone(),
        secrets: infra.secrets.clone(),
    });
    // Exports what it holds about a user, and erases it on `user.deleted`.
    let (privacy_grpc, privacy_task) =
        flowfleet_host::privacy::wire(infra, ServiceName::Workflow, Arc::new(store.clone()))
            .await?;
    let grpc =
        flowfleet_runtime::grpc::service_routes(WorkflowServiceServer::new(grpc::WorkflowGrpc {
            store,
            guard: infra.grpc_guard(),
            access: access.clone(),
            secrets: infra.secrets.clone(),
            shutdown: infra.shutdown.clone(),
        }))
        .await;
    Ok(ServiceParts {
        name: ServiceName::Workflow,
        subgraph: Subgraph::new("workflow", Arc::new(schema), infra.verifier.clone()),
        grpc: grpc.add_service(privacy_grpc),
        http: axum::Router::new(),
        tasks: vec![Box::pin(relay.run(infra.shutdown.clone())), privacy_task],
    })
}
