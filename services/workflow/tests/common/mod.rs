//! The workflow service started for real on a backend, with the real auth
//! service behind its tokens and memberships.

#![allow(dead_code)] // each test file uses its part

use std::sync::Arc;

use flowfleet_auth::testing::{RealAuth, TestUser};
use flowfleet_host::subgraph::{GraphQLBody, Subgraph};
use flowfleet_host::testing::{Backend, TestInfra};
use flowfleet_host::{Infra, ServiceParts};
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::grpc::GrpcChannel;
use flowfleet_runtime::proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use flowfleet_security::identity::{Role, TokenVerifier};
use flowfleet_workflow::{build, MIGRATIONS};
use serde_json::{json, Value};

pub struct Service {
    pub env: TestInfra,
    pub infra: Infra,
    pub auth: RealAuth,
    pub parts: ServiceParts,
    pub db: flowfleet_runtime::db::Db,
    pub owner: TestUser,
    pub editor: TestUser,
    pub viewer: TestUser,
    pub outsider: TestUser,
}

impl Service {
    pub async fn start(backend: &Backend) -> Service {
        let env = backend.start().await;
        let auth = RealAuth::start(&env).await;
        let owner = auth.user("owner@example.com").await;
        let editor = auth
            .member(&owner, "editor@example.com", Role::Editor)
            .await;
        let viewer = auth
            .member(&owner, "viewer@example.com", Role::Viewer)
            .await;
        let outsider = auth.user("outsider@example.com").await;
        let infra = Infra {
            verifier: Arc::new(TokenVerifier::new(auth.keys(), "flowfleet", "flowfleet")),
            ..env.infra.clone()
        };
        let db = env.db(ServiceName::Workflow, &MIGRATIONS).await;
        let parts = build(&infra, db.clone(), auth.access()).await.unwrap();
        Service {
            env,
            infra,
            auth,
            parts,
            db,
            owner,
            editor,
            viewer,
            outsider,
        }
    }

    pub fn ws(&self) -> String {
        self.owner.workspace.to_string()
    }

    pub fn subgraph(&self) -> &Subgraph {
        &self.parts.subgraph
    }

    /// A gRPC client calling as the execution service.
    pub fn engine(&self) -> WorkflowServiceClient<GrpcChannel> {
        WorkflowServiceClient::new(flowfleet_runtime::grpc::in_process(
            self.parts.grpc.clone(),
            Some(self.infra.service_credentials(ServiceName::Execution)),
        ))
    }

    /// A gRPC client without credentials of its own: requests carry what
    /// [`as_user`] puts on them.
    pub fn client(&self) -> WorkflowServiceClient<GrpcChannel> {
        WorkflowServiceClient::new(flowfleet_runtime::grpc::in_process(
            self.parts.grpc.clone(),
            None,
        ))
    }

    /// Creates a workflow as `who` and returns it.
    pub async fn create(&self, who: &TestUser, input: Value) -> Value {
        let mut i = json!({"workspaceId": self.ws(), "name": "W"});
        for (k, v) in input.as_object().unwrap() {
            i[k] = v.clone();
        }
        let r = call(self.subgraph(), who, &format!("mutation($i: CreateWorkflowInput!) {{ createWorkflow(input: $i) {{ {WORKFLOW} }} }}"), json!({"i": i})).await;
        assert!(r["errors"].is_null(), "{r}");
        r["data"]["createWorkflow"].clone()
    }

    /// Creates a SECRET credential (a webhook's secret) and returns its id.
    pub async fn secret(&self, value: &str) -> String {
        let r = call(self.subgraph(), &self.editor, "mutation($i: CreateCredentialInput!) { createCredential(input: $i) { id } }",
            json!({"i": {"workspaceId": self.ws(), "name": "hook secret", "kind": "SECRET", "value": {"value": value}}})).await;
        assert!(r["errors"].is_null(), "{r}");
        r["data"]["createCredential"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// The fields tests read back.
pub const WORKFLOW: &str = "id name description tags status revision version definition \
    problems { severity code path nodeId edgeIndex message } publishable";

pub async fn call(subgraph: &Subgraph, who: &TestUser, query: &str, variables: Value) -> Value {
    let mut headers = http::HeaderMap::new();
    let bearer = format!("Bearer {}", who.token).parse().unwrap();
    headers.insert(http::header::AUTHORIZATION, bearer);
    let body = GraphQLBody {
        query: query.into(),
        operation_name: None,
        variables: Some(variables),
    };
    subgraph.execute(body, &headers).await
}

pub fn code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

/// A valid definition: `set` then `passthrough`, started by hand.
pub fn valid_definition() -> Value {
    json!({
        "nodes": [
            {"id": "a", "type": "set", "config": {"value": {"n": 1}}, "position": {"x": 0, "y": 0}},
            {"id": "b", "type": "passthrough", "position": {"x": 200, "y": 0}}
        ],
        "edges": [{"source": "a", "target": "b"}],
        "triggers": [{"kind": "MANUAL"}]
    })
}

/// A definition as the service returns it: parsed, with every default filled.
pub fn normalized(definition: Value) -> Value {
    let parsed = flowfleet_definitions::definition::Definition::from_json(&definition).unwrap();
    serde_json::to_value(parsed).unwrap()
}

/// A gRPC request made with a user's token.
pub fn as_user<T>(message: T, who: &TestUser) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", who.token).parse().unwrap(),
    );
    request
}
