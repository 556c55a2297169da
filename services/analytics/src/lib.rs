//! The analytics service: execution facts from the fleet's events, hourly
//! rollups over them, and workflow statistics (`Workflow.stats`, gRPC).
//!
//! Reading order: [`domain`] (outcomes, percentile arithmetic), [`store`]
//! (SQL), [`handlers::events`] (the consumer), [`graphql`] (subgraph), [`grpc`]
//! (server), and [`build`], which wires them from explicit dependencies.
//!
//! Analytics only listens: it records no events of its own, so it has no
//! outbox and no relay.

pub mod domain;
pub mod graphql;
pub mod grpc;
pub mod handlers;
pub mod store;

use std::sync::Arc;

use flowfleet_host::subgraph::Subgraph;
use flowfleet_host::{Infra, ServiceParts};
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::db::{Db, Migrations};
use flowfleet_runtime::proto::analytics::v1::analytics_service_server::AnalyticsServiceServer;
use flowfleet_security::access::Access;

pub static MIGRATIONS: Migrations = Migrations::portable(&sqlx::migrate!("./migrations"));

pub async fn build(infra: &Infra, db: Db, access: Access) -> anyhow::Result<ServiceParts> {
    let store = store::Store::new(db);
    // Bound now, before anything can publish, so no outcome is missed.
    let consumer = handlers::events::bind(&infra.bus).await?;
    let handler = Arc::new(handlers::events::ExecutionFacts {
        store: store.clone(),
    });
    let schema = graphql::schema(graphql::Ctx {
        store: store.clone(),
        access: access.clone(),
    });
    // Exports what it holds about a user, and erases it on `user.deleted`.
    let (privacy_grpc, privacy_task) =
        flowfleet_host::privacy::wire(infra, ServiceName::Analytics, Arc::new(store.clone()))
            .await?;
    let grpc =
        flowfleet_runtime::grpc::service_routes(AnalyticsServiceServer::new(grpc::AnalyticsGrpc {
            store,
            guard: infra.grpc_guard(),
            access,
        }))
        .await;
    Ok(ServiceParts {
        name: ServiceName::Analytics,
        subgraph: Subgraph::new("analytics", Arc::new(schema), infra.verifier.clone()),
        grpc: grpc.add_service(privacy_grpc),
        http: axum::Router::new(),
        tasks: vec![
            Box::pin(consumer.run(handler, infra.shutdown.clone())),
            privacy_task,
        ],
    })
}
