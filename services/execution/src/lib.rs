//! The execution service: executions of published workflow versions, their
//! step runs, and the worker that runs them from the queue.
//!
//! Reading order: [`domain`] (nodes), [`plan`] (what runs next), [`retry`] (its rules),
//! [`store`] (and its transitions), [`dispatch`] (onto the queue), [`effects`] (what a
//! recorded transition sets off), [`launch`] (starting and retrying executions),
//! [`graphql`], [`grpc`], [`worker`] (one step task, with [`large_outputs`] kept as
//! files), [`pool`] (many), then [`build`]
//! (the service) and [`build_worker`] (a worker process's part).

pub mod dispatch;
pub mod domain;
pub mod effects;
pub mod graphql;
pub mod grpc;
pub mod large_outputs;
pub mod launch;
pub mod nodes;
pub mod plan;
pub mod pool;
pub mod retry;
pub mod series;
pub mod store;
pub mod triggers;
pub mod updates;
pub mod worker;

use std::sync::Arc;

use flowfleet_host::subgraph::Subgraph;
use flowfleet_host::{Infra, ServiceParts};
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::db::{Db, Migrations};
use flowfleet_runtime::events::outbox::Relay;
use flowfleet_runtime::grpc::GrpcChannel;
use flowfleet_runtime::proto::execution::v1::execution_service_server::ExecutionServiceServer;
use flowfleet_runtime::proto::notification::v1::notification_service_client::NotificationServiceClient;
use flowfleet_runtime::proto::storage::v1::storage_service_client::StorageServiceClient;
use flowfleet_runtime::proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use flowfleet_security::access::Access;
use futures::future::BoxFuture;

pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
    postgres: &sqlx::migrate!("./migrations/postgres"),
};

/// The execution service (subgraph, gRPC, outbox relay). `workflow` and `storage` are
/// channels to those services (published versions; the artifacts of executions that
/// complete through what a cancellation sets off).
pub async fn build(
    infra: &Infra,
    db: Db,
    access: Access,
    workflow: GrpcChannel,
    storage: GrpcChannel,
) -> anyhow::Result<ServiceParts> {
    let store = store::Store::new(db.clone());
    let relay = Relay::new(db, infra.bus.clone());
    let workflows = WorkflowServiceClient::new(workflow);
    let dispatcher = dispatch::Dispatcher {
        store: store.clone(),
        queue: infra.queue.clone(),
        clock: infra.clock.clone(),
    };
    let launcher = launch::Launcher::new(
        store.clone(),
        dispatcher.clone(),
        workflows.clone(),
        infra.clock.clone(),
    );
    // Every execution event this process hears, for the subscriptions of its subgraph.
    let (updates, updates_feed) = flowfleet_runtime::events::live::LiveEvents::start(
        infra.bus.clone(),
        updates::BINDINGS,
        updates::CAPACITY,
        infra.shutdown.clone(),
    );
    let schema = graphql::schema(
        graphql::Ctx {
            store: store.clone(),
            access: access.clone(),
            clock: infra.clock.clone(),
            effects: effects::Effects {
                store: store.clone(),
                dispatcher,
                relay: relay.clone(),
                clock: infra.clock.clone(),
                storage: StorageServiceClient::new(storage),
            },
            launcher: launcher.clone(),
        },
        updates,
    );
    // Cron schedules, webhooks and events, following the workflow service's trigger feed.
    let live = triggers::Live::default();
    let settings = infra.config.triggers.clone();
    // Bound now, before anything can publish, so that no event is missed.
    let event_triggers = triggers::events::bind(&infra.bus).await?;
    let event_handler = Arc::new(triggers::events::EventTriggers {
        launcher: launcher.clone(),
        live: live.clone(),
    });
    let hooks = triggers::webhook::router(
        triggers::webhook::Hooks {
            launcher: launcher.clone(),
            live: live.clone(),
            credentials: workflows.clone(),
        },
        settings.webhook_max_body_bytes,
    );
    let mut tasks: Vec<BoxFuture<'static, ()>> = vec![
        Box::pin(live.clone().follow(workflows, infra.shutdown.clone())),
        Box::pin(keep_partitions(
            store.clone(),
            infra.clock.clone(),
            infra.shutdown.clone(),
        )),
        Box::pin(event_triggers.run(event_handler, infra.shutdown.clone())),
    ];
    let holder = instance_name();
    series::register_service(settings.cron.then_some(holder.as_str()));
    tasks.push(Box::pin(series::sample_queued_steps(
        store.clone(),
        flowfleet_runtime::series::SAMPLE_EVERY,
        infra.shutdown.clone(),
    )));
    if settings.cron {
        let scheduler = triggers::cron::Scheduler {
            launcher,
            live,
            holder,
            settings,
        };
        tasks.push(Box::pin(scheduler.run(infra.shutdown.clone())));
    }
    // Exports what it holds about a user, and erases it on `user.deleted`.
    let (privacy_grpc, privacy_task) =
        flowfleet_host::privacy::wire(infra, ServiceName::Execution, Arc::new(store.clone()))
            .await?;
    let grpc =
        flowfleet_runtime::grpc::service_routes(ExecutionServiceServer::new(grpc::ExecutionGrpc {
            store,
            guard: infra.grpc_guard(),
            access: access.clone(),
        }))
        .await;
    tasks.push(Box::pin(relay.run(infra.shutdown.clone())));
    tasks.push(privacy_task);
    tasks.push(updates_feed);
    Ok(ServiceParts {
        name: ServiceName::Execution,
        subgraph: Subgraph::new("execution", Arc::new(schema), infra.verifier.clone()),
        grpc: grpc.add_service(privacy_grpc),
        http: hooks,
        tasks,
    })
}

/// A worker process's part: the pool running step tasks (sized by `worker.*`), the
/// sweeper resending lost tasks, and an outbox relay for the outcome events the
/// workers record. `storage`, `workflow` and `notification` are channels to those
/// services (artifacts and the `store_file` node; credentials for `http_request`; the
/// `notify` node).
pub async fn build_worker(
    infra: &Infra,
    db: Db,
    storage: GrpcChannel,
    workflow: GrpcChannel,
    notification: GrpcChannel,
) -> anyhow::Result<Vec<BoxFuture<'static, ()>>> {
    let workflows = WorkflowServiceClient::new(workflow);
    let relay = Relay::new(db.clone(), infra.bus.clone());
    let store = store::Store::new(db).with_step_events(infra.config.worker.step_events);
    let dispatcher = dispatch::Dispatcher {
        store: store.clone(),
        queue: infra.queue.clone(),
        clock: infra.clock.clone(),
    };
    let name = instance_name();
    let effects = effects::Effects {
        store: store.clone(),
        dispatcher: dispatcher.clone(),
        relay: relay.clone(),
        clock: infra.clock.clone(),
        storage: StorageServiceClient::new(storage.clone()),
    };
    let nodes = nodes::Nodes {
        http: nodes::http::HttpNode::new(&infra.config.http_request, workflows.clone())?,
        children: nodes::sub_workflow::Children {
            launcher: launch::Launcher::new(
                store.clone(),
                dispatcher.clone(),
                workflows,
                infra.clock.clone(),
            ),
            worker: name.clone(),
            effects: effects.clone(),
        },
        notify: nodes::notify::NotifyNode {
            notifications: NotificationServiceClient::new(notification),
        },
        store_file: nodes::store_file::StoreFileNode {
            storage: StorageServiceClient::new(storage.clone()),
        },
    };
    let settings = infra.config.worker.clone();
    let large_outputs = large_outputs::LargeOutputs {
        storage: StorageServiceClient::new(storage.clone()),
        max_inline_bytes: infra.config.worker.max_inline_output_bytes,
        max_file_bytes: infra.config.worker.max_output_file_bytes,
    };
    let worker = Arc::new(worker::Worker {
        effects,
        store,
        nodes,
        large_outputs,
        dispatcher: dispatcher.clone(),
        clock: infra.clock.clone(),
        name,
        settings: settings.clone(),
        executions: moka::future::Cache::builder()
            .max_capacity(worker::EXECUTION_CACHE)
            .time_to_idle(std::time::Duration::from_secs(600))
            .build(),
    });
    Ok(vec![
        Box::pin(relay.run(infra.shutdown.clone())),
        Box::pin(dispatch::sweep(
            dispatcher,
            settings,
            infra.shutdown.clone(),
        )),
        Box::pin(pool::run(
            worker,
            infra.queue.clone(),
            infra.bus.clone(),
            infra.shutdown.clone(),
        )),
    ])
}

/// Creates the months ahead of PostgreSQL's execution partitions now and daily.
async fn keep_partitions(
    store: store::Store,
    clock: Arc<dyn flowfleet_runtime::clock::Clock>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut daily = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = daily.tick() => {}
        }
        if let Err(e) = store.ensure_partitions(clock.now_ms()).await {
            tracing::warn!(error = %e.message, "could not create the next months' execution partitions");
        }
    }
}

/// This process's name among replicas and workers: host, process id, and a
/// random suffix (several fleets may share one test process).
fn instance_name() -> String {
    format!(
        "{}-{}-{}",
        hostname(),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    )
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into())
}
