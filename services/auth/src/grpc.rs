//! The auth service's gRPC server: identity and membership questions.

use flowfleet_shared::error::{parse_id, ApiError};
use flowfleet_shared::proto::auth::v1::auth_service_server::AuthService;
use flowfleet_shared::proto::auth::v1::{CheckMembershipRequest, GetUserRequest, Membership, User};
use tonic::{Request, Response, Status};

use crate::store::Store;

pub struct AuthGrpc {
    pub store: Store,
}

#[tonic::async_trait]
impl AuthService for AuthGrpc {
    #[tracing::instrument(skip_all)]
    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        let id = parse_id("user_id", &request.get_ref().user_id)?;
        let user = self
            .store
            .user(id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such user"))?;
        Ok(Response::new(User {
            id: user.id.to_string(),
            email: user.email,
            name: user.name,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn check_membership(
        &self,
        request: Request<CheckMembershipRequest>,
    ) -> Result<Response<Membership>, Status> {
        let r = request.get_ref();
        let user = parse_id("user_id", &r.user_id)?;
        let workspace = parse_id("workspace_id", &r.workspace_id)?;
        let role = self.store.role(user, workspace).await?;
        Ok(Response::new(Membership {
            member: role.is_some(),
            role: role.map(|r| r.as_str().to_string()).unwrap_or_default(),
        }))
    }
}
