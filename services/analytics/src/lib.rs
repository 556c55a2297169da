//! The analytics service: facts from the fleet's events (executions, step attempts,
//! who did what), rollups over them per minute, quarter-hour and UTC day, and the
//! dashboards read from the rollups (`Workspace.analytics`, `Workflow.stats`, gRPC).
//!
//! Reading order: [`domain`] (facts, buckets and time zones, sketches, rollups),
//! [`store`] (SQL), [`handlers::events`] (the consumer), [`roller`] (facts into
//! rollups), [`dashboards`] (the use cases), [`graphql`] and [`grpc`] (adapters), and
//! [`build`], which wires them from explicit dependencies.
//!
//! Analytics only listens: it records no events of its own, so it has no
//! outbox and no relay.

pub mod dashboards;
pub mod domain;
pub mod graphql;
pub mod grpc;
pub mod handlers;
pub mod roller;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use flowfleet_host::subgraph::Subgraph;
use flowfleet_host::{Infra, ServiceParts};
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::db::{Db, Migrations};
use flowfleet_runtime::proto::analytics::v1::analytics_service_server::AnalyticsServiceServer;
use flowfleet_security::access::Access;

pub static MIGRATIONS: Migrations = Migrations::portable(&sqlx::migrate!("./migrations"));

pub async fn build(infra: &Infra, db: Db, access: Access) -> anyhow::Result<ServiceParts> {
    let store = store::Store::new(db);
    let config = &infra.config.analytics;
    // Bound now, before anything can publish, so no outcome is missed.
    let consumer = handlers::events::bind(&infra.bus).await?;
    let roller = roller::Roller::default();
    let handler = Arc::new(handlers::events::Facts {
        store: store.clone(),
        roller: roller.clone(),
    });
    let dashboards = dashboards::Dashboards {
        store: store.clone(),
        access,
        minute_days: config.minute_rollup_days,
    };
    let schema = graphql::schema(graphql::Ctx {
        dashboards: dashboards.clone(),
        clock: infra.clock.clone(),
    });
    // Exports what it holds about a user, and erases it on `user.deleted`.
    let (privacy_grpc, privacy_task) =
        flowfleet_host::privacy::wire(infra, ServiceName::Analytics, Arc::new(store.clone()))
            .await?;
    let grpc =
        flowfleet_runtime::grpc::service_routes(AnalyticsServiceServer::new(grpc::AnalyticsGrpc {
            dashboards,
            guard: infra.grpc_guard(),
        }))
        .await;
    let retention = store::retention::Retention {
        fact_days: config.fact_days,
        minute_days: config.minute_rollup_days,
        rollup_days: config.rollup_days,
    };
    let cleaning = roller::clean_up_periodically(
        store.clone(),
        infra.clock.clone(),
        retention,
        Duration::from_secs(config.cleanup_interval_secs),
        infra.shutdown.clone(),
    );
    let rolling = roller.run(
        store,
        infra.clock.clone(),
        roller::RollerSettings {
            interval: Duration::from_millis(config.roll_interval_ms),
            batch: config.roll_batch,
            minute_days: config.minute_rollup_days,
        },
        infra.shutdown.clone(),
    );
    Ok(ServiceParts {
        name: ServiceName::Analytics,
        subgraph: Subgraph::new("analytics", Arc::new(schema), infra.verifier.clone()),
        grpc: grpc.add_service(privacy_grpc),
        http: axum::Router::new(),
        tasks: vec![
            Box::pin(consumer.run(handler, infra.shutdown.clone())),
            Box::pin(rolling),
            Box::pin(cleaning),
            privacy_task,
        ],
    })
}
