//! The notification service: in-app notifications about what happens in a
//! user's workspaces (execution outcomes, and what other services send over gRPC), the inbox on
//! `User.notifications`, and `notification.created` events for live updates.
//!
//! Reading order: [`domain`] (channels, states, messages), [`store`] (SQL and
//! outbox), [`handlers::events`] (the consumer), [`graphql`] (subgraph),
//! [`grpc`] (server), and [`build`], which wires them from explicit
//! dependencies.

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
use flowfleet_runtime::events::outbox::Relay;
use flowfleet_runtime::proto::notification::v1::notification_service_server::NotificationServiceServer;
use flowfleet_security::access::Access;

pub static MIGRATIONS: Migrations = Migrations::portable(&sqlx::migrate!("./migrations"));

pub async fn build(infra: &Infra, db: Db, access: Access) -> anyhow::Result<ServiceParts> {
    let store = store::Store::new(db.clone());
    let relay = Relay::new(db, infra.bus.clone());
    // Bound now, before anything can publish, so no outcome is missed.
    let consumer = handlers::events::bind(&infra.bus).await?;
    let handler = Arc::new(handlers::events::ExecutionOutcomes {
        store: store.clone(),
        relay: relay.clone(),
        clock: infra.clock.clone(),
    });
    let schema = graphql::schema(graphql::Ctx {
        store: store.clone(),
        clock: infra.clock.clone(),
    });
    // Exports what it holds about a user, and erases it on `user.deleted`.
    let (privacy_grpc, privacy_task) =
        flowfleet_host::privacy::wire(infra, ServiceName::Notification, Arc::new(store.clone()))
            .await?;
    let grpc = flowfleet_runtime::grpc::service_routes(NotificationServiceServer::new(
        grpc::NotificationGrpc {
            store,
            relay: relay.clone(),
            access,
            clock: infra.clock.clone(),
            guard: infra.grpc_guard(),
        },
    ))
    .await;
    Ok(ServiceParts {
        name: ServiceName::Notification,
        subgraph: Subgraph::new("notification", Arc::new(schema), infra.verifier.clone()),
        grpc: grpc.add_service(privacy_grpc),
        http: axum::Router::new(),
        tasks: vec![
            Box::pin(consumer.run(handler, infra.shutdown.clone())),
            Box::pin(relay.run(infra.shutdown.clone())),
            privacy_task,
        ],
    })
}
