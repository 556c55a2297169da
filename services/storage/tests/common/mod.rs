//! The storage service's test fixture, on every backend of `Backend::all()`: embedded
//! (SQLite, the in-process bus and cache) and distributed (PostgreSQL, RabbitMQ, Redis),
//! with blobs on a temporary directory, and the real auth service for users, roles and
//! access tokens.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use flowfleet_auth::testing::RealAuth;
use flowfleet_host::testing::{Backend, TestInfra};
use flowfleet_host::{Infra, ServiceParts};
use flowfleet_runtime::blob::Blobs;
use flowfleet_runtime::clock::ManualClock;
use flowfleet_runtime::config::{Config, ServiceName};
use flowfleet_runtime::db::Db;
use flowfleet_runtime::proto::storage::v1::storage_service_client::StorageServiceClient;
use flowfleet_runtime::proto::storage::v1::PutFileRequest;
use flowfleet_security::access::Access;
pub use flowfleet_security::identity::Caller;
use flowfleet_security::identity::{Identity, TokenVerifier};
use flowfleet_storage::graphql::{schema, Ctx};
use flowfleet_storage::{build, use_cases, MIGRATIONS};
use serde_json::Value;
use tower::ServiceExt as _;
use uuid::Uuid;

pub const START_MS: i64 = 1_700_000_000_000;

pub struct Fixture {
    pub env: TestInfra,
    _dir: tempfile::TempDir,
    pub db: Db,
    pub clock: Arc<ManualClock>,
    /// The real auth service: users, workspaces, roles and tokens.
    pub auth: RealAuth,
    pub parts: ServiceParts,
    pub access: Access,
    pub files: flowfleet_storage::files::Files,
    pub infra: Infra,
    pub blobs: Blobs,
    pub blob_dir: std::path::PathBuf,
}

pub const MAX_BYTES: u64 = 1024;
/// The fixture's per-workspace quota.
pub const QUOTA_BYTES: u64 = 4096;
pub const QUOTA_FILES: u64 = 20;

pub async fn fixture(backend: &Backend) -> Fixture {
    let env = backend.start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.storage.max_file_bytes = MAX_BYTES;
    config.storage.quota_bytes = QUOTA_BYTES;
    config.storage.quota_files = QUOTA_FILES;
    config.storage.url_ttl_secs = 600;
    config.storage.public_url = "https://files.example.com/".into();
    let db = env.db(ServiceName::Storage, &MIGRATIONS).await;
    let blobs = Blobs::from_config(&config).unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let auth = RealAuth::start(&env).await;
    // The backend's bus and cache, with this test's clock and limits, verifying the auth
    // service's tokens.
    let infra = Infra {
        config: Arc::new(config),
        clock: clock.clone(),
        verifier: Arc::new(TokenVerifier::new(auth.keys(), "flowfleet", "flowfleet")),
        ..env.infra.clone()
    };
    let access = auth.access();
    let parts = build(&infra, db.clone(), access.clone(), blobs.clone())
        .await
        .unwrap();
    // The same use cases `build` serves, for executing the schema with a chosen caller.
    let (files, _) = use_cases(&infra, db.clone(), access.clone(), blobs.clone())
        .await
        .unwrap();
    Fixture {
        blob_dir: dir.path().join("blobs"),
        env,
        _dir: dir,
        infra,
        blobs,
        db,
        clock,
        auth,
        parts,
        access,
        files,
    }
}

impl Fixture {
    pub fn grpc(&self) -> StorageServiceClient<flowfleet_runtime::grpc::GrpcChannel> {
        // As the worker calls it: with the execution service's own credential.
        StorageServiceClient::new(flowfleet_runtime::grpc::in_process(
            self.parts.grpc.clone(),
            Some(
                self.env
                    .infra
                    .service_credentials(flowfleet_runtime::config::ServiceName::Execution),
            ),
        ))
    }

    pub async fn http(
        &self,
        request: http::Request<Body>,
    ) -> (http::StatusCode, http::HeaderMap, Vec<u8>) {
        let response = self.parts.http.clone().oneshot(request).await.unwrap();
        let (head, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (head.status, head.headers, bytes.to_vec())
    }

    pub async fn get(&self, path_and_query: &str) -> (http::StatusCode, http::HeaderMap, Vec<u8>) {
        self.http(
            http::Request::get(path_and_query)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn graphql(&self, caller: Caller, query: &str, vars: Value) -> Value {
        let schema = schema(Ctx {
            files: self.files.clone(),
        });
        let request = async_graphql::Request::new(query)
            .variables(async_graphql::Variables::from_json(vars))
            .data(caller);
        serde_json::to_value(schema.execute(request).await).unwrap()
    }

    /// Upload bytes not (yet) under a content address.
    pub fn staging_count(&self) -> usize {
        std::fs::read_dir(self.blob_dir.join("staging"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Blobs stored under their content address (staging blobs not counted).
    pub fn blob_count(&self) -> usize {
        std::fs::read_dir(self.blob_dir.join("sha256"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

pub fn put(workspace: Uuid, execution: Option<Uuid>, name: &str, content: &[u8]) -> PutFileRequest {
    PutFileRequest {
        workspace_id: workspace.to_string(),
        owner_id: Uuid::now_v7().to_string(),
        execution_id: execution.map(|e| e.to_string()).unwrap_or_default(),
        name: name.into(),
        content_type: "text/csv".into(),
        content: content.to_vec(),
        workflow_id: String::new(),
    }
}

pub fn as_user(user: Uuid) -> Caller {
    Caller::User(Identity {
        user_id: user,
        email: "ada@example.com".into(),
        api_key: None,
    })
}

pub fn error_code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

pub const FILE: &str = "query($reps: [_Any!]!) { _entities(representations: $reps) { \
    ... on File { id name contentType size sha256 workspaceId createdAt downloadUrl } } }";

/// The path and query of a download URL (its base is the configured public URL).
pub fn local(url: &str) -> String {
    url.strip_prefix("https://files.example.com")
        .unwrap_or_else(|| panic!("{url} is not under the public URL"))
        .to_string()
}
