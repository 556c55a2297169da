//! The auth service's gRPC server: identity and membership questions.

use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_runtime::proto::auth::v1::auth_service_server::AuthService;
use flowfleet_runtime::proto::auth::v1::{
    ApiKeyIdentity, CheckMembershipRequest, GetUserRequest, ListMembersRequest, Member, Members,
    Membership, User, VerifyApiKeyRequest,
};
use std::sync::Arc;

use flowfleet_runtime::clock::Clock;
use flowfleet_security::service_auth::GrpcGuard;
use tonic::{Request, Response, Status};

use crate::domain::ApiKeySecret;
use crate::store::Store;

pub struct AuthGrpc {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub guard: GrpcGuard,
}

fn user_message(user: crate::domain::User) -> User {
    User {
        id: user.id.to_string(),
        email: user.email,
        name: user.name,
        time_zone: user.time_zone.as_str().to_string(),
    }
}

impl AuthGrpc {
    /// Fleet services may ask about anyone; a user only about themself.
    async fn require_self_or_service<T>(
        &self,
        request: &Request<T>,
        user: uuid::Uuid,
    ) -> Result<(), ApiError> {
        self.guard.caller(request).await?.require_self(user)?;
        Ok(())
    }
}

#[tonic::async_trait]
impl AuthService for AuthGrpc {
    #[tracing::instrument(skip_all)]
    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        let id = parse_id("user_id", &request.get_ref().user_id)?;
        self.require_self_or_service(&request, id).await?;
        let user = self
            .store
            .user(id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such user"))?;
        Ok(Response::new(user_message(user)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_members(
        &self,
        request: Request<ListMembersRequest>,
    ) -> Result<Response<Members>, Status> {
        // Addresses of every member: for the fleet's services, never for a user.
        self.guard.caller(&request).await?.require_service()?;
        let workspace = parse_id("workspace_id", &request.get_ref().workspace_id)?;
        let members = self.store.members(workspace).await?;
        Ok(Response::new(Members {
            members: members
                .into_iter()
                .map(|m| Member {
                    role: m.role.as_str().to_string(),
                    user: Some(user_message(m.user)),
                })
                .collect(),
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
        self.require_self_or_service(&request, user).await?;
        let role = self.store.role(user, workspace).await?;
        Ok(Response::new(Membership {
            member: role.is_some(),
            role: role.map(|r| r.as_str().to_string()).unwrap_or_default(),
        }))
    }

    /// Needs no other credential: whoever presents the key holds it, and learns only whom
    /// it acts for.
    #[tracing::instrument(skip_all)]
    async fn verify_api_key(
        &self,
        request: Request<VerifyApiKeyRequest>,
    ) -> Result<Response<ApiKeyIdentity>, Status> {
        let secret = ApiKeySecret::parse(&request.get_ref().key)?;
        let now = self.clock.now_ms();
        let invalid = flowfleet_security::identity::invalid_api_key;
        let (key, email) = self
            .store
            .use_api_key(&secret.hash(), now)
            .await?
            .ok_or_else(invalid)?;
        if !key.usable(now) {
            return Err(invalid().into());
        }
        Ok(Response::new(ApiKeyIdentity {
            key_id: key.id.to_string(),
            workspace_id: key.workspace.to_string(),
            role: key.role.as_str().to_string(),
            user_id: key.created_by.to_string(),
            email,
        }))
    }
}
