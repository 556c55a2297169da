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
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::db::Db;
use flowfleet_runtime::proto::storage::v1::storage_service_client::StorageServiceClient;
use flowfleet_runtime::proto::storage::v1::{File, GetFileRequest, NewFile};
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
}

pub const MAX_BYTES: u64 = 1024;
/// The fixture's per-workspace quota.
pub const QUOTA_BYTES: u64 = 4096;
pub const QUOTA_FILES: u64 = 20;

pub async fn fixture(backend: &Backend) -> Fixture {
    let env = backend.start().await;
    let dir = tempfile::tempdir().unwrap();
    // The backend's blob store: a directory for embedded, the S3 bucket for distributed.
    let mut config = (*env.infra.config).clone();
    config.data_dir = dir.path().to_path_buf();
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
    pub fn grpc(&self) -> Grpc {
        // As the worker calls it: with the execution service's own credential.
        Grpc(StorageServiceClient::new(
            flowfleet_runtime::grpc::in_process(
                self.parts.grpc.clone(),
                Some(
                    self.env
                        .infra
                        .service_credentials(flowfleet_runtime::config::ServiceName::Execution),
                ),
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
    pub async fn staging_count(&self) -> usize {
        self.blobs
            .older_than("staging", i64::MAX)
            .await
            .unwrap()
            .len()
    }

    /// Blobs stored under their content address (staging blobs not counted).
    pub async fn blob_count(&self) -> usize {
        self.blobs
            .older_than("sha256", i64::MAX)
            .await
            .unwrap()
            .len()
    }
}

/// A file to store over gRPC.
pub struct Put {
    pub meta: NewFile,
    pub content: Vec<u8>,
}

pub fn put(workspace: Uuid, execution: Option<Uuid>, name: &str, content: &[u8]) -> Put {
    Put {
        meta: NewFile {
            workspace_id: workspace.to_string(),
            owner_id: Uuid::now_v7().to_string(),
            execution_id: execution.map(|e| e.to_string()).unwrap_or_default(),
            name: name.into(),
            content_type: "text/csv".into(),
            ..NewFile::default()
        },
        content: content.to_vec(),
    }
}

/// A file read back over gRPC.
#[derive(Debug)]
pub struct Got {
    pub file: Option<File>,
    pub content: Vec<u8>,
}

/// The storage service's gRPC client as the worker uses it (streams of chunks).
pub struct Grpc(StorageServiceClient<flowfleet_runtime::grpc::GrpcChannel>);

impl Grpc {
    pub async fn put_file(&mut self, p: Put) -> Result<tonic::Response<File>, tonic::Status> {
        flowfleet_runtime::files::put(&mut self.0, p.meta, p.content.into())
            .await
            .map(tonic::Response::new)
    }

    pub async fn get_file(
        &mut self,
        r: GetFileRequest,
    ) -> Result<tonic::Response<Got>, tonic::Status> {
        let (file, content) =
            flowfleet_runtime::files::get(&mut self.0, &r.workspace_id, &r.file_id, u64::MAX)
                .await?;
        Ok(tonic::Response::new(Got {
            file: Some(file),
            content,
        }))
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
