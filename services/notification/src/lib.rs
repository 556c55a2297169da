//! The notification service: tells people and systems what happens in their workspaces.
//!
//! Platform events (execution outcomes, publications, new files and members) and the
//! `notify` node's requests become inbox notifications and deliveries through a
//! workspace's channels (SMTP e-mail, signed webhooks in generic, Slack and PagerDuty
//! formats, Twilio-compatible SMS), chosen by the workspace's rules and tempered by each
//! person's preferences and quiet hours, rendered from templates, sent by tasks on the
//! queue with retries and a log of every attempt, or batched into digests.
//!
//! Reading order: [`domain`] (channels, rules, templates, deliveries: no I/O), [`store`]
//! (all SQL and the outbox), the use cases ([`dispatch`]: who gets what; [`deliver`]:
//! sending; [`settings`]: what admins and people configure), the adapters that talk to
//! the world ([`senders`], [`directory`]), then the edges ([`handlers::events`],
//! [`graphql`], [`grpc`]), and [`build`], which wires them from explicit dependencies.

pub mod deliver;
pub mod directory;
pub mod dispatch;
pub mod domain;
pub mod graphql;
pub mod grpc;
pub mod handlers;
pub mod senders;
pub mod settings;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use flowfleet_egress::Guard;
use flowfleet_host::subgraph::Subgraph;
use flowfleet_host::{Infra, ServiceParts};
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::db::{Db, Migrations};
use flowfleet_runtime::events::outbox::Relay;
use flowfleet_runtime::grpc::GrpcChannel;
use flowfleet_runtime::proto::notification::v1::notification_service_server::NotificationServiceServer;
use flowfleet_security::access::Access;

use crate::domain::delivery::RetryPolicy;

pub static MIGRATIONS: Migrations = Migrations::portable(&sqlx::migrate!("./migrations"));

/// Builds the service: `auth` is where it asks who a workspace's members are.
pub async fn build(
    infra: &Infra,
    db: Db,
    access: Access,
    auth: GrpcChannel,
) -> anyhow::Result<ServiceParts> {
    let config = &infra.config.notification;
    let store = store::Store::new(db.clone());
    let relay = Relay::new(db, infra.bus.clone());
    let directory = directory::Directory::new(auth);
    // Bound now, before anything can publish, so no event is missed.
    let consumer = handlers::events::bind(&infra.bus).await?;
    let dispatcher = dispatch::Dispatcher {
        store: store.clone(),
        relay: relay.clone(),
        queue: infra.queue.clone(),
        clock: infra.clock.clone(),
    };
    // A queue held in memory lost its tasks with the last process: the rows tell.
    if !infra.queue.durable() {
        let n = dispatcher.recover().await?;
        if n > 0 {
            tracing::info!(tasks = n, "re-enqueued pending deliveries and open digests");
        }
    }
    let handler = Arc::new(handlers::events::PlatformEvents {
        dispatcher: dispatcher.clone(),
        directory: directory.clone(),
        app_url: config.app_url.clone(),
    });
    let guard =
        Arc::new(Guard::new(&config.allow, "notification.allow").map_err(anyhow::Error::msg)?);
    let worker = Arc::new(deliver::Worker {
        dispatcher: dispatcher.clone(),
        senders: senders::Senders::new(guard, Duration::from_millis(config.timeout_ms))?,
        secrets: infra.secrets.clone(),
        policy: RetryPolicy {
            max_attempts: config.max_attempts.max(1),
            base: Duration::from_millis(config.retry_base_ms),
            cap: Duration::from_millis(config.retry_cap_ms.max(config.retry_base_ms)),
        },
    });
    let manage = settings::Manage {
        store: store.clone(),
        access: access.clone(),
        secrets: infra.secrets.clone(),
        clock: infra.clock.clone(),
        app_url: config.app_url.clone(),
    };
    // Every notification this process hears of, for `notificationReceived`.
    let (live, live_feed) = flowfleet_runtime::events::live::LiveEvents::start(
        infra.bus.clone(),
        graphql::live::BINDINGS,
        graphql::live::CAPACITY,
        infra.shutdown.clone(),
    );
    let schema = graphql::schema(
        graphql::Ctx {
            store: store.clone(),
            clock: infra.clock.clone(),
            manage,
        },
        live,
    );
    // Exports what it holds about a user, and erases it on `user.deleted`.
    let (privacy_grpc, privacy_task) =
        flowfleet_host::privacy::wire(infra, ServiceName::Notification, Arc::new(store.clone()))
            .await?;
    let grpc = flowfleet_runtime::grpc::service_routes(NotificationServiceServer::new(
        grpc::NotificationGrpc {
            dispatcher,
            directory,
            access,
            clock: infra.clock.clone(),
            guard: infra.grpc_guard(),
            secrets: infra.secrets.clone(),
            app_url: config.app_url.clone(),
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
            Box::pin(worker.run(
                infra.queue.clone(),
                config.concurrency,
                infra.shutdown.clone(),
            )),
            privacy_task,
            live_feed,
        ],
    })
}
