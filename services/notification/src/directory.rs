//! Who a workspace's members are, with their addresses and time zones: asked of the auth
//! service (the notification service keeps no copy of people's addresses).

use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::grpc::GrpcChannel;
use flowfleet_runtime::proto::auth::v1::auth_service_client::AuthServiceClient;
use flowfleet_runtime::proto::auth::v1::ListMembersRequest;
use flowfleet_security::identity::Role;
use uuid::Uuid;

use crate::domain::rules::Member;

#[derive(Clone)]
pub struct Directory {
    auth: AuthServiceClient<GrpcChannel>,
}

impl Directory {
    pub fn new(auth: GrpcChannel) -> Self {
        Directory {
            auth: AuthServiceClient::new(auth),
        }
    }

    /// The workspace's members; an unknown workspace has none.
    pub async fn members(&self, workspace: Uuid) -> Result<Vec<Member>, ApiError> {
        let members = self
            .auth
            .clone()
            .list_members(ListMembersRequest {
                workspace_id: workspace.to_string(),
            })
            .await
            .map_err(|s| ApiError::internal(format!("listing members at auth: {}", s.message())))?
            .into_inner()
            .members;
        Ok(members
            .into_iter()
            .filter_map(|m| {
                let user = m.user?;
                Some(Member {
                    user_id: user.id.parse().ok()?,
                    email: user.email,
                    name: user.name,
                    role: Role::parse(&m.role)?,
                    time_zone: user.time_zone.parse().unwrap_or(chrono_tz::UTC),
                })
            })
            .collect())
    }
}
