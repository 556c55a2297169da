//! The auth service: users, workspaces and memberships, access tokens and the
//! JWKS that every other service verifies them with.
//!
//! Reading order: [`domain`] (types and rules), [`store`] (SQL), [`keys`]
//! (signing key ring), [`graphql`] (subgraph), [`grpc`] (server), and
//! [`build`], which wires them from explicit dependencies.

pub mod counters;
pub mod domain;
pub mod graphql;
pub mod grpc;
pub mod invitations;
pub mod keys;
pub mod mfa;
pub mod password;
pub mod sessions;
pub mod sign_in;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

use axum::response::IntoResponse;
use axum::routing::get;
use flowfleet_host::subgraph::Subgraph;
use flowfleet_host::{Infra, ServiceParts};
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::db::{Db, Migrations};
use flowfleet_runtime::events::outbox::Relay;
use flowfleet_runtime::proto::auth::v1::auth_service_server::AuthServiceServer;

pub static MIGRATIONS: Migrations = Migrations::portable(&sqlx::migrate!("./migrations"));

/// The auth service's parts, plus its key ring (embedded mode hands it to the
/// other services' token verifiers in process).
pub struct Auth {
    pub parts: ServiceParts,
    pub keys: Arc<keys::KeyRing>,
    /// Set to every service's export channel once they exist (`exportMyData`).
    pub export_peers: graphql::ExportPeers,
}

pub async fn build(infra: &Infra, db: Db) -> anyhow::Result<Auth> {
    let store = store::Store::new(db.clone());
    let sec = &infra.config.security;
    let keys = Arc::new(keys::KeyRing::new(
        store.clone(),
        infra.clock.clone(),
        infra.secrets.clone(),
        keys::KeyPolicy {
            issuer: sec.jwt_issuer.clone(),
            audience: sec.jwt_audience.clone(),
            token_ttl_secs: sec.access_token_ttl_secs,
            rotate_after_days: sec.signing_key_rotation_days,
        },
    ));
    let export_peers = graphql::ExportPeers::default();
    let schema = graphql::schema(graphql::Ctx {
        store: store.clone(),
        keys: keys.clone(),
        clock: infra.clock.clone(),
        token_ttl_secs: sec.access_token_ttl_secs,
        sessions: sessions::for_infra(infra),
        refresh_ttl_secs: sec.refresh_token_ttl_secs,
        counters: counters::for_infra(infra),
        login_throttle: graphql::LoginThrottle {
            max_failures: sec.login_max_failures.max(1),
            max_failures_per_ip: sec.login_max_failures_per_ip.max(1),
            window: std::time::Duration::from_secs(sec.login_lockout_secs.max(1)),
        },
        cache: infra.cache.clone(),
        secrets: infra.secrets.clone(),
        export_peers: export_peers.clone(),
        access: flowfleet_security::access::Access::from_source(Arc::new(store.clone())),
    });
    let grpc = flowfleet_runtime::grpc::service_routes(AuthServiceServer::new(grpc::AuthGrpc {
        store: store.clone(),
        clock: infra.clock.clone(),
        guard: infra.grpc_guard(),
    }))
    .await
    // Its part of a user's data export. (Its part of deleting a user runs in the deletion
    // itself, so it consumes no `user.deleted`.)
    .add_service(flowfleet_host::privacy::routes(
        "auth",
        Arc::new(store.clone()),
        infra.grpc_guard(),
    ));
    let jwks_keys = keys.clone();
    let http = axum::Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let keys = jwks_keys.clone();
            async move {
                match keys.jwks_json().await {
                    Ok(doc) => axum::Json(doc).into_response(),
                    Err(e) => {
                        tracing::error!(error = %e, "JWKS unavailable");
                        (
                            http::StatusCode::SERVICE_UNAVAILABLE,
                            "keys unavailable; retry",
                        )
                            .into_response()
                    }
                }
            }
        }),
    );
    let relay = Relay::new(db, infra.bus.clone());
    let shutdown = infra.shutdown.clone();
    Ok(Auth {
        parts: ServiceParts {
            name: ServiceName::Auth,
            // Sign-in throttling and the audit log use the client's address.
            subgraph: Subgraph::new("auth", Arc::new(schema), infra.verifier.clone())
                .with_client_addresses(infra.secrets.clone()),
            grpc,
            http,
            tasks: vec![Box::pin(relay.run(shutdown))],
        },
        keys,
        export_peers,
    })
}
