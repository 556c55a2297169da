//! The execution service: executions of published workflow versions, their
//! step runs, and the worker that runs them from the queue.
//!
//! Reading order: [`domain`], [`store`], [`graphql`], [`grpc`], [`worker`], then
//! [`build`] (the service) and [`build_worker`] (a worker process's part).

pub mod domain;
pub mod graphql;
pub mod grpc;
pub mod privacy;
pub mod store;
pub mod worker;

use std::sync::Arc;

use flowfleet_shared::access::Access;
use flowfleet_shared::config::ServiceName;
use flowfleet_shared::db::{Db, Migrations};
use flowfleet_shared::events::consumer::Consumer;
use flowfleet_shared::events::outbox::Relay;
use flowfleet_shared::grpc::GrpcChannel;
use flowfleet_shared::proto::execution::v1::execution_service_server::ExecutionServiceServer;
use flowfleet_shared::proto::storage::v1::storage_service_client::StorageServiceClient;
use flowfleet_shared::proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use flowfleet_shared::subgraph::Subgraph;
use flowfleet_shared::{Infra, ServiceParts};
use futures::future::BoxFuture;

pub static MIGRATIONS: Migrations = Migrations::portable(&sqlx::migrate!("./migrations"));

/// The execution service (subgraph, gRPC, outbox relay). `workflow` is a channel
/// to the workflow service.
pub async fn build(
    infra: &Infra,
    db: Db,
    access: Access,
    workflow: GrpcChannel,
) -> anyhow::Result<ServiceParts> {
    let store = store::Store::new(db.clone());
    let relay = Relay::new(db, infra.bus.clone());
    let schema = graphql::schema(graphql::Ctx {
        store: store.clone(),
        access: access.clone(),
        clock: infra.clock.clone(),
        relay: relay.clone(),
        workflows: WorkflowServiceClient::new(workflow),
    });
    // Exports what it holds about a user, and erases it on `user.deleted`.
    let (privacy_grpc, privacy_task) =
        flowfleet_shared::privacy::wire(infra, ServiceName::Execution, Arc::new(store.clone()))
            .await?;
    let grpc =
        flowfleet_shared::grpc::service_routes(ExecutionServiceServer::new(grpc::ExecutionGrpc {
            store,
            guard: infra.grpc_guard(),
            access: access.clone(),
        }))
        .await;
    Ok(ServiceParts {
        name: ServiceName::Execution,
        subgraph: Subgraph::new("execution", Arc::new(schema), infra.verifier.clone()),
        grpc: grpc.add_service(privacy_grpc),
        http: axum::Router::new(),
        tasks: vec![Box::pin(relay.run(infra.shutdown.clone())), privacy_task],
    })
}

/// A worker pool: `concurrency` consumers of the task queue, plus an outbox
/// relay for the outcome events they record. `storage` is a channel to the
/// storage service (artifacts).
pub async fn build_worker(
    infra: &Infra,
    db: Db,
    storage: GrpcChannel,
    concurrency: usize,
) -> anyhow::Result<Vec<BoxFuture<'static, ()>>> {
    let relay = Relay::new(db.clone(), infra.bus.clone());
    let worker = Arc::new(worker::Worker {
        store: store::Store::new(db),
        storage: StorageServiceClient::new(storage),
        clock: infra.clock.clone(),
        relay: relay.clone(),
        name: format!("{}-{}", hostname(), std::process::id()),
    });
    let mut tasks: Vec<BoxFuture<'static, ()>> = vec![Box::pin(relay.run(infra.shutdown.clone()))];
    for _ in 0..concurrency.max(1) {
        let consumer = Consumer::bind(&infra.bus, worker::TASK_QUEUE, &[worker::TASK_KIND]).await?;
        tasks.push(Box::pin(
            consumer.run(worker.clone(), infra.shutdown.clone()),
        ));
    }
    Ok(tasks)
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into())
}
