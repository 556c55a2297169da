//! The storage service: files and workflow artifacts, content-addressed blobs,
//! signed expiring download links, uploads over HTTP and gRPC.
//!
//! Reading order: [`domain`] (names, types, hashing, link signing), [`store`]
//! (SQL and outbox), [`files`] (what every API shares), [`graphql`]
//! (subgraph), [`grpc`] (server), [`http`] (download and upload routes), and
//! [`build`], which wires them from explicit dependencies.

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

pub static MIGRATIONS: Migrations = Migrations::portable(&sqlx::migrate!("./migrations"));

/// Room for the other fields of a `PutFile` request around its content.
const GRPC_ENVELOPE_BYTES: usize = 64 * 1024;

pub async fn build(
    infra: &Infra,
    db: Db,
    access: Access,
    blobs: Blobs,
) -> anyhow::Result<ServiceParts> {
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
    let files = files::Files::new(
        store,
        blobs,
        relay.clone(),
        infra.clock.clone(),
        key,
        files::FilesConfig {
            max_bytes: cfg.max_file_bytes,
            url_base,
            url_ttl_secs: cfg.url_ttl_secs,
        },
    );
    let schema = graphql::schema(graphql::Ctx {
        files: files.clone(),
        access: access.clone(),
    });
    let message_limit = cfg.max_file_bytes as usize + GRPC_ENVELOPE_BYTES;
    // Exports what it holds about a user, and erases it on `user.deleted`.
    let (privacy_grpc, privacy_task) =
        flowfleet_host::privacy::wire(infra, ServiceName::Storage, Arc::new(files.clone())).await?;
    let grpc = flowfleet_runtime::grpc::service_routes(
        StorageServiceServer::new(grpc::StorageGrpc {
            files: files.clone(),
            guard: infra.grpc_guard(),
            access: access.clone(),
        })
        .max_decoding_message_size(message_limit)
        .max_encoding_message_size(message_limit),
    )
    .await;
    let http = http::router(files, access, infra.verifier.clone());
    Ok(ServiceParts {
        name: ServiceName::Storage,
        subgraph: Subgraph::new("storage", Arc::new(schema), infra.verifier.clone()),
        grpc: grpc.add_service(privacy_grpc),
        http,
        tasks: vec![Box::pin(relay.run(infra.shutdown.clone())), privacy_task],
    })
}
