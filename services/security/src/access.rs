//! Authorization: the one place where the fleet decides whether a caller may act in a
//! workspace.
//!
//! Every role decision of every subgraph, gRPC method and HTTP route goes through
//! [`Access::authorize`]. It knows every kind of caller ([`Principal`]):
//!
//! - a person signed in with an access token (a *session*): their membership role;
//! - an API key: its creator's membership role, capped at the key's role, and only in the
//!   key's own workspace (anywhere else it is an outsider);
//! - a fleet service with a sealed service credential, acting for the fleet in background
//!   work: allowed.
//!
//! A caller without access is answered as an outsider, and an outsider learns nothing it
//! did not already hold: a request that names a workspace gets `FORBIDDEN`, a request that
//! names a resource by id gets the same `NOT_FOUND` as for a resource that does not exist
//! ([`Target`]).
//!
//! The membership lookup itself is private to this module, so no other code can ask for a
//! caller's role and forget the API key's scope. Questions about a third party (is a
//! notification's recipient a member?) use [`Access::third_party_role`], whose name says
//! it is not about the caller. Membership answers come from a [`Memberships`] source: the
//! auth service over gRPC, cached for a few seconds (in Redis when configured, shared by
//! replicas), or the auth service's own store inside it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::identity::{Identity, Role};
use flowfleet_runtime::cache::Cache;
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::grpc::GrpcChannel;
use flowfleet_runtime::proto::auth::v1::{
    auth_service_client::AuthServiceClient, CheckMembershipRequest,
};

const TTL: Duration = Duration::from_secs(5);

/// The membership cache's name in `flowfleet_cache_lookups_total`.
const MEMBERSHIP_CACHE: &str = "memberships";

/// Where a membership answer is cached. The auth service deletes it when the membership
/// changes, so a removal or demotion takes effect at once rather than after [`TTL`].
pub fn membership_cache_key(user: Uuid, workspace: Uuid) -> String {
    format!("membership:{workspace}:{user}")
}

/// Who is asking, as verified at the service's edge.
#[derive(Debug, Clone, Copy)]
pub enum Principal<'a> {
    /// A person, by session or by API key (`Identity::api_key` is set for a key).
    User(&'a Identity),
    /// A fleet service acting on its own behalf (a sealed service credential).
    Service(&'a str),
}

impl<'a> From<&'a Identity> for Principal<'a> {
    fn from(identity: &'a Identity) -> Self {
        Principal::User(identity)
    }
}

/// What the request named, which decides how a caller without access is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The request names the workspace itself (a `workspaceId` argument, a field of the
    /// `Workspace` entity): an outsider gets `FORBIDDEN`.
    Workspace,
    /// The request names a resource of the workspace by its id: an outsider gets
    /// `NOT_FOUND` with this message, which must be the one a missing resource gets, so
    /// that existence does not leak.
    Resource(&'static str),
}

impl Target {
    /// The answer for a caller who is not (for this request) a member.
    pub fn outsider(self) -> ApiError {
        match self {
            Target::Workspace => ApiError::forbidden(
                "you have no access to this workspace (an API key reaches only its own workspace)",
            ),
            Target::Resource(missing) => ApiError::not_found(missing),
        }
    }
}

/// Where membership roles come from.
#[async_trait]
pub trait Memberships: Send + Sync + 'static {
    /// `user`'s role in `workspace`, or `None` for a non-member.
    async fn role(&self, user: Uuid, workspace: Uuid) -> Result<Option<Role>, ApiError>;
}

/// The auth service, asked over gRPC, with a short shared cache.
struct AuthOverGrpc {
    client: AuthServiceClient<GrpcChannel>,
    cache: Arc<dyn Cache>,
}

#[async_trait]
impl Memberships for AuthOverGrpc {
    async fn role(&self, user: Uuid, workspace: Uuid) -> Result<Option<Role>, ApiError> {
        let key = membership_cache_key(user, workspace);
        if let Ok(Some(v)) = self.cache.get(&key).await {
            flowfleet_runtime::series::cache_lookup(MEMBERSHIP_CACHE, true, 1);
            return Ok(Role::parse(&String::from_utf8_lossy(&v)));
        }
        flowfleet_runtime::series::cache_lookup(MEMBERSHIP_CACHE, false, 1);
        // Asked as this service: authorizing the caller is the service's question, not
        // one the caller's credential (an API key, say) may ask itself.
        let mut client = self.client.clone();
        let reply =
            flowfleet_runtime::grpc::as_service(client.check_membership(CheckMembershipRequest {
                user_id: user.to_string(),
                workspace_id: workspace.to_string(),
            }))
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
}

/// The fleet's authorization decisions (cheap to clone).
#[derive(Clone)]
pub struct Access {
    memberships: Arc<dyn Memberships>,
}

impl Access {
    /// Asks the auth service reached through `auth`, caching answers in `cache`.
    pub fn new(auth: GrpcChannel, cache: Arc<dyn Cache>) -> Self {
        flowfleet_runtime::series::register_cache(MEMBERSHIP_CACHE);
        Access::from_source(Arc::new(AuthOverGrpc {
            client: AuthServiceClient::new(auth),
            cache,
        }))
    }

    /// Reads memberships from `source` (the auth service uses its own store).
    pub fn from_source(source: Arc<dyn Memberships>) -> Self {
        Access {
            memberships: source,
        }
    }

    /// Succeeds when `who` may act in `workspace` with at least `min`; otherwise the
    /// refusal a client may see: `target`'s outsider answer for a caller without access
    /// (a non-member, or an API key of another workspace), `FORBIDDEN` for a member whose
    /// role (or key's role) is below `min`.
    pub async fn authorize<'a>(
        &self,
        who: impl Into<Principal<'a>>,
        workspace: Uuid,
        min: Role,
        target: Target,
    ) -> Result<(), ApiError> {
        let identity = match who.into() {
            Principal::Service(_) => return Ok(()),
            Principal::User(identity) => identity,
        };
        // A key of another workspace is an outsider here: no lookup needed.
        if let Some(scope) = &identity.api_key {
            if scope.workspace != workspace {
                return Err(target.outsider());
            }
        }
        let member = self.memberships.role(identity.user_id, workspace).await?;
        match effective_role(identity, workspace, member) {
            None => Err(target.outsider()),
            Some(role) if role >= min => Ok(()),
            Some(role) => Err(ApiError::forbidden(match identity.api_key {
                Some(_) => format!(
                    "this API key acts as {} in this workspace; this needs {} or above",
                    role.as_str(),
                    min.as_str()
                ),
                None => format!(
                    "your role in this workspace is {}; this needs {} or above",
                    role.as_str(),
                    min.as_str()
                ),
            })),
        }
    }

    /// The role of `user`, who is **not the caller**, in `workspace` (e.g. whether a
    /// notification's recipient belongs to it). Never use it to decide what a caller may
    /// do: that is [`Access::authorize`].
    pub async fn third_party_role(
        &self,
        user: Uuid,
        workspace: Uuid,
    ) -> Result<Option<Role>, ApiError> {
        self.memberships.role(user, workspace).await
    }
}

/// The caller's role in `workspace`, given their membership role there: an API key
/// reaches only its own workspace, and never beyond its role.
fn effective_role(who: &Identity, workspace: Uuid, member: Option<Role>) -> Option<Role> {
    match &who.api_key {
        None => member,
        Some(scope) if scope.workspace == workspace => member.map(|r| r.min(scope.role)),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::identity::ApiKeyScope;
    use flowfleet_runtime::error::ErrorCode;

    /// Memberships from a table: the decision is the code under test, not the lookup.
    struct Table(HashMap<(Uuid, Uuid), Role>);

    #[async_trait]
    impl Memberships for Table {
        async fn role(&self, user: Uuid, workspace: Uuid) -> Result<Option<Role>, ApiError> {
            Ok(self.0.get(&(user, workspace)).copied())
        }
    }

    fn person(user: Uuid, key: Option<(Uuid, Role)>) -> Identity {
        Identity {
            user_id: user,
            email: String::new(),
            api_key: key.map(|(workspace, role)| ApiKeyScope {
                key_id: Uuid::now_v7(),
                workspace,
                role,
            }),
        }
    }

    #[tokio::test]
    async fn keys_are_capped_by_their_role_and_held_to_their_workspace() {
        let (owner, home, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let access = Access::from_source(Arc::new(Table(HashMap::from([
            ((owner, home), Role::Owner),
            ((owner, other), Role::Owner),
        ]))));
        let code = |r: Result<(), ApiError>| r.err().map(|e| e.code);
        let missing = Target::Resource("no such thing");

        // The session: its membership.
        let session = person(owner, None);
        assert_eq!(
            code(access.authorize(&session, home, Role::Owner, missing).await),
            None
        );
        // A VIEWER key of `home`: VIEWER there, whatever its creator's role.
        let viewer = person(owner, Some((home, Role::Viewer)));
        assert_eq!(
            code(access.authorize(&viewer, home, Role::Viewer, missing).await),
            None
        );
        assert_eq!(
            code(access.authorize(&viewer, home, Role::Editor, missing).await),
            Some(ErrorCode::Forbidden)
        );
        // An OWNER key of `other` is an outsider in `home`, though its creator owns both.
        let foreign = person(owner, Some((other, Role::Owner)));
        assert_eq!(
            code(
                access
                    .authorize(&foreign, home, Role::Viewer, missing)
                    .await
            ),
            Some(ErrorCode::NotFound)
        );
        assert_eq!(
            code(
                access
                    .authorize(&foreign, home, Role::Viewer, Target::Workspace)
                    .await
            ),
            Some(ErrorCode::Forbidden)
        );
        // A non-member: the outsider's answer, the same as for the foreign key.
        let stranger = person(Uuid::now_v7(), None);
        let (a, b) = (
            access
                .authorize(&stranger, home, Role::Viewer, missing)
                .await
                .unwrap_err(),
            access
                .authorize(&foreign, home, Role::Viewer, missing)
                .await
                .unwrap_err(),
        );
        assert_eq!((a.code, a.message), (b.code, b.message));
        // A service acts for the fleet.
        assert_eq!(
            code(
                access
                    .authorize(Principal::Service("execution"), home, Role::Owner, missing)
                    .await
            ),
            None
        );
        // A key whose creator has left the workspace reaches nothing.
        let gone = person(Uuid::now_v7(), Some((home, Role::Owner)));
        assert_eq!(
            code(access.authorize(&gone, home, Role::Viewer, missing).await),
            Some(ErrorCode::NotFound)
        );
    }
}
