//! Workspace access checks, asked of the auth service over gRPC.
//!
//! Every service checks that the caller is a member of a resource's workspace
//! with a sufficient role before it reads or changes the resource. Answers are
//! cached for a few seconds (in Redis when configured, shared by replicas) so a
//! page of results does not cost a round trip per row.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::auth::{Identity, Role};
use crate::cache::Cache;
use crate::error::ApiError;
use crate::grpc::GrpcChannel;
use crate::proto::auth::v1::{auth_service_client::AuthServiceClient, CheckMembershipRequest};

const TTL: Duration = Duration::from_secs(5);

/// Where a membership answer is cached. The auth service deletes it when the membership
/// changes, so a removal or demotion takes effect at once rather than after [`TTL`].
pub fn membership_cache_key(user: Uuid, workspace: Uuid) -> String {
    format!("membership:{workspace}:{user}")
}

#[derive(Clone)]
pub struct Access {
    client: AuthServiceClient<GrpcChannel>,
    cache: Arc<dyn Cache>,
}

impl Access {
    pub fn new(auth: GrpcChannel, cache: Arc<dyn Cache>) -> Self {
        Access {
            client: AuthServiceClient::new(auth),
            cache,
        }
    }

    /// The caller's role in the workspace, or `None` for a non-member.
    pub async fn role(&self, user: Uuid, workspace: Uuid) -> Result<Option<Role>, ApiError> {
        let key = membership_cache_key(user, workspace);
        if let Ok(Some(v)) = self.cache.get(&key).await {
            let s = String::from_utf8_lossy(&v);
            return Ok(Role::parse(&s));
        }
        let reply = self
            .client
            .clone()
            .check_membership(CheckMembershipRequest {
                user_id: user.to_string(),
                workspace_id: workspace.to_string(),
            })
            .await
            .map_err(ApiError::from)?
            .into_inner();
        let role = if reply.member {
            Role::parse(&reply.role)
        } else {
            None
        };
        let _ = self
            .cache
            .set(&key, role.map(Role::as_str).unwrap_or("-").as_bytes(), TTL)
            .await;
        Ok(role)
    }

    /// Succeeds when the caller has at least `min` in the workspace (an API key: within
    /// its role, and only in its workspace). A non-member
    /// gets `NOT_FOUND`-free `FORBIDDEN`, so no existence is revealed beyond the id
    /// the caller already holds.
    pub async fn require(
        &self,
        who: &Identity,
        workspace: Uuid,
        min: Role,
    ) -> Result<Role, ApiError> {
        let role = who.effective_role(workspace, self.role(who.user_id, workspace).await?);
        if role.is_none() && who.api_key.is_some() {
            return Err(ApiError::forbidden(
                "this API key is for another workspace, or its creator is no longer a member",
            ));
        }
        match role {
            Some(role) if role >= min => Ok(role),
            Some(role) => Err(ApiError::forbidden(format!(
                "your role in this workspace is {}; this needs {} or above",
                role.as_str(),
                min.as_str()
            ))),
            None => Err(ApiError::forbidden(
                "you are not a member of this workspace",
            )),
        }
    }
}
