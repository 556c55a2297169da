//! Test support for the service crates (feature `testing`, enabled only in
//! their dev-dependencies).
//!
//! A service's tests run against its real embedded backends (SQLite, the
//! in-process bus and cache). What they need from other services is given
//! here once: workspace memberships answered by a tonic `AuthService` over
//! the real in-process gRPC channel, and an [`Infra`] for embedded mode.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::access::Access;
use crate::auth::{DeferredJwks, Role, TokenVerifier};
use crate::cache::MemoryCache;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::events::EventBus;
use crate::proto::auth::v1::auth_service_server::{AuthService, AuthServiceServer};
use crate::proto::auth::v1::{CheckMembershipRequest, GetUserRequest, Membership, User};
use crate::Infra;

/// The auth service's membership contract, answered from a map.
struct Memberships(HashMap<(Uuid, Uuid), Role>);

#[tonic::async_trait]
impl AuthService for Memberships {
    async fn get_user(
        &self,
        _: tonic::Request<GetUserRequest>,
    ) -> Result<tonic::Response<User>, tonic::Status> {
        Err(tonic::Status::unimplemented("not part of this fixture"))
    }
    async fn check_membership(
        &self,
        request: tonic::Request<CheckMembershipRequest>,
    ) -> Result<tonic::Response<Membership>, tonic::Status> {
        let r = request.into_inner();
        let key = (
            r.user_id
                .parse()
                .map_err(|_| tonic::Status::invalid_argument("user_id"))?,
            r.workspace_id
                .parse()
                .map_err(|_| tonic::Status::invalid_argument("workspace_id"))?,
        );
        let role = self.0.get(&key);
        Ok(tonic::Response::new(Membership {
            member: role.is_some(),
            role: role.map(|r| r.as_str().to_string()).unwrap_or_default(),
        }))
    }
}

/// An [`Access`] whose answers are `members` (user, workspace, role).
pub fn access(members: &[(Uuid, Uuid, Role)]) -> Access {
    let map = members.iter().map(|(u, w, r)| ((*u, *w), *r)).collect();
    let routes = tonic::service::Routes::new(AuthServiceServer::new(Memberships(map)));
    Access::new(
        crate::grpc::in_process(routes),
        Arc::new(MemoryCache::default()),
    )
}

/// Embedded-mode infrastructure on `data_dir` with the given bus.
pub fn embedded_infra(data_dir: &Path, bus: Arc<dyn EventBus>) -> Infra {
    let config = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    Infra {
        config: Arc::new(config),
        bus,
        cache: Arc::new(MemoryCache::default()),
        clock: Arc::new(SystemClock),
        verifier: Arc::new(TokenVerifier::new(
            Arc::new(DeferredJwks::default()),
            "flowfleet",
            "flowfleet",
        )),
        shutdown: CancellationToken::new(),
    }
}
