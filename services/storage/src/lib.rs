//! The storage service: files and workflow artifacts, content-addressed blobs,
//! signed expiring download links, uploads over HTTP and gRPC.
//!
//! Reading order: [`domain`] (names, types, hashing, sniffing, quotas, ranges, link
//! signing), [`store`] (SQL and outbox), [`files`] (the use cases every API shares:
//! streaming uploads, reads, deletion, retention), [`graphql`] (subgraph), [`grpc`]
//! (server), [`http`] (download and upload routes), and [`build`], which wires them
//! from explicit dependencies.

pub mod domain;
pub mod files;
pub mod graphql;
pub mod grpc;
pub mod http;
pub mod privacy;
pub mod store;

use std::sync::Arc;

use anyhow::Context as _;
use flowfleet_host::subgraph::Subgraph;
use flowfleet_host::{Infra, ServiceParts};
use flowfleet_runtime::blob::Blobs;
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::db::{Db, Migrations};
use flowfleet_runtime::events::outbox::Relay;
use flowfleet_runtime::proto::storage::v1::storage_service_server::StorageServiceServer;
use flowfleet_security::access::Access;

use crate::files::{Files, FilesConfig};

pub static MIGRATIONS: Migrations = Migrations::portable(&sqlx::migrate!("./migrations"));

/// A gRPC message's largest size: a content chunk and its envelope.
const GRPC_MESSAGE_BYTES: usize = flowfleet_runtime::files::CHUNK_BYTES + 64 * 1024;

pub async fn build(
    infra: &Infra,
    db: Db,
    access: Access,
    blobs: Blobs,
) -> anyhow::Result<ServiceParts> {
    let (files, relay) = use_cases(infra, db, access, blobs).await?;
    let schema = graphql::schema(graphql::Ctx {
        files: files.clone(),
    });
    // Exports what it holds about a user, and erases it on `user.deleted`.
    let (privacy_grpc, privacy_task) =
        flowfleet_host::privacy::wire(infra, ServiceName::Storage, Arc::new(files.clone())).await?;
    let grpc = flowfleet_runtime::grpc::service_routes(
        StorageServiceServer::new(grpc::StorageGrpc {
            files: files.clone(),
            guard: infra.grpc_guard(),
        })
        .max_decoding_message_size(GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(GRPC_MESSAGE_BYTES),
    )
    .await;
    let http = http::router(files.clone(), infra.verifier.clone());
    let cleanup = files.run_cleanup(infra.shutdown.clone());
    Ok(ServiceParts {
        name: ServiceName::Storage,
        subgraph: Subgraph::new("storage", Arc::new(schema), infra.verifier.clone()),
        grpc: grpc.add_service(privacy_grpc),
        http,
        tasks: vec![
            Box::pin(relay.run(infra.shutdown.clone())),
            privacy_task,
            Box::pin(cleanup),
        ],
    })
}

/// The service's use cases over its store, blobs and outbox relay (`build` serves them;
/// tests call them with callers of their choosing).
pub async fn use_cases(
    infra: &Infra,
    db: Db,
    access: Access,
    blobs: Blobs,
) -> anyhow::Result<(Files, Relay)> {
    let cfg = &infra.config.storage;
    // `File.size` is a GraphQL Int (32-bit), so no file may be larger.
    anyhow::ensure!(
        cfg.max_file_bytes <= i32::MAX as u64,
        "storage.max_file_bytes is {}, but files can be at most {} bytes (2 GiB - 1)",
        cfg.max_file_bytes,
        i32::MAX
    );
    let store = store::Store::new(db.clone());
    let key = store
        .signing_key()
        .await
        .map_err(anyhow::Error::from)
        .context("loading the URL-signing key")?;
    let url_base = if cfg.public_url.is_empty() {
        infra.config.service(ServiceName::Storage).http_url
    } else {
        cfg.public_url.clone()
    };
    let relay = Relay::new(db, infra.bus.clone());
    let files = Files::new(
        store,
        blobs,
        relay.clone(),
        infra.clock.clone(),
        access,
        key,
        FilesConfig {
            max_bytes: cfg.max_file_bytes,
            quota: domain::Quota {
                bytes: i64::try_from(cfg.quota_bytes).unwrap_or(i64::MAX),
                files: i64::try_from(cfg.quota_files).unwrap_or(i64::MAX),
            },
            url_base,
            url_ttl_secs: cfg.url_ttl_secs,
            replica: format!(
                "storage-{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..6]
            ),
            cleanup_interval_ms: i64::try_from(cfg.cleanup_interval_secs.max(1))
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
        },
    );
    Ok((files, relay))
}
