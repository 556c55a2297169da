//! The real auth service for other services' tests: users, workspaces and roles made
//! through its own subgraph (sign-up, invitation, acceptance), and an [`Access`] that asks
//! it over gRPC, as every service does in production. (Feature `testing`.)

use std::sync::Arc;

use flowfleet_host::subgraph::GraphQLBody;
use flowfleet_host::testing::TestInfra;
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::grpc::in_process;
use flowfleet_security::access::Access;
use flowfleet_security::identity::{DeferredJwks, Role, TokenVerifier};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{build, Auth, MIGRATIONS};

/// A running auth service on a test's infrastructure.
pub struct RealAuth {
    auth: Auth,
    access: Access,
    channel: flowfleet_runtime::grpc::GrpcChannel,
}

/// A signed-up user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    /// Their personal workspace, which they own.
    pub workspace: Uuid,
    pub token: String,
}

impl RealAuth {
    pub async fn start(env: &TestInfra) -> RealAuth {
        let db = env.db(ServiceName::Auth, &MIGRATIONS).await;
        // Its subgraph verifies its own tokens, as every subgraph does through the JWKS.
        let jwks = Arc::new(DeferredJwks::default());
        let infra = flowfleet_host::Infra {
            verifier: Arc::new(TokenVerifier::new(jwks.clone(), "flowfleet", "flowfleet")),
            ..env.infra.clone()
        };
        let auth = build(&infra, db).await.expect("the auth service");
        jwks.set(auth.keys.clone());
        let channel = in_process(
            auth.parts.grpc.clone(),
            Some(env.infra.service_credentials(ServiceName::Workflow)),
        );
        let access = Access::new(channel.clone(), env.infra.cache.clone());
        RealAuth {
            auth,
            access,
            channel,
        }
    }

    /// Membership checks, answered by this auth service.
    pub fn access(&self) -> Access {
        self.access.clone()
    }

    /// Its gRPC server, as a fleet service reaches it.
    pub fn grpc(&self) -> flowfleet_runtime::grpc::GrpcChannel {
        self.channel.clone()
    }

    /// Its public keys, for a verifier of the tokens it issues.
    pub fn keys(&self) -> Arc<dyn flowfleet_security::identity::JwksSource> {
        self.auth.keys.clone()
    }

    async fn run(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        let mut headers = http::HeaderMap::new();
        if let Some(token) = token {
            let bearer = format!("Bearer {token}").parse().expect("a header value");
            headers.insert(http::header::AUTHORIZATION, bearer);
        }
        let body = GraphQLBody {
            query: query.into(),
            operation_name: None,
            variables: Some(variables),
        };
        let response = self.auth.parts.subgraph.execute(body, &headers).await;
        assert!(response["errors"].is_null(), "{query}: {response}");
        response["data"].clone()
    }

    /// Signs up a new user, who owns a new workspace.
    pub async fn user(&self, email: &str) -> TestUser {
        let data = self
            .run(
                "mutation($i: SignUpInput!) { signUp(input: $i) { accessToken user { id } } }",
                json!({"i": {"email": email, "password": "long enough password", "name": email}}),
                None,
            )
            .await;
        let token = data["signUp"]["accessToken"].as_str().unwrap().to_string();
        let me = self
            .run(
                "{ me { id memberships { workspace { id } } } }",
                json!({}),
                Some(&token),
            )
            .await;
        let id = |v: &Value| v.as_str().unwrap().parse::<Uuid>().unwrap();
        TestUser {
            id: id(&me["me"]["id"]),
            workspace: id(&me["me"]["memberships"][0]["workspace"]["id"]),
            token,
        }
    }

    /// A new user holding `role` in `owner`'s workspace: invited by the owner, accepted.
    pub async fn member(&self, owner: &TestUser, email: &str, role: Role) -> TestUser {
        let user = self.user(email).await;
        let invited = self
            .run(
                "mutation($w: ID!, $e: String!, $r: WorkspaceRole!) { inviteMember(workspaceId: $w, email: $e, role: $r) { token } }",
                json!({"w": owner.workspace.to_string(), "e": email, "r": role.as_str()}),
                Some(&owner.token),
            )
            .await;
        self.run(
            "mutation($t: String!) { acceptInvitation(token: $t) { role } }",
            json!({"t": invited["inviteMember"]["token"]}),
            Some(&user.token),
        )
        .await;
        user
    }
}
