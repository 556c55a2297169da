//! The storage service's original contract: content-addressed files over gRPC, signed
//! download links, the `File` entity and `Execution.artifacts`, on every backend.

mod common;

use std::sync::Arc;

use axum::body::Body;
use common::*;
use flowfleet_auth::testing::RealAuth;
use flowfleet_host::testing::Backend;
use flowfleet_host::Infra;
use flowfleet_runtime::blob::Blobs;
use flowfleet_runtime::config::ServiceName;
use flowfleet_runtime::proto::storage::v1::GetFileRequest;
use flowfleet_security::identity::Role;
use flowfleet_storage::{build, MIGRATIONS};
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test]
async fn identical_contents_share_one_blob() {
    for backend in Backend::all() {
        identical_contents_share_one_blob_on(&backend).await;
    }
}

async fn identical_contents_share_one_blob_on(backend: &Backend) {
    let f = fixture(backend).await;
    let workspace = Uuid::now_v7();
    let mut grpc = f.grpc();
    let a = grpc
        .put_file(put(workspace, None, "a.csv", b"id,total\n1,42\n"))
        .await
        .unwrap()
        .into_inner();
    let b = grpc
        .put_file(put(workspace, None, "b.csv", b"id,total\n1,42\n"))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(a.id, b.id, "two files");
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(a.size, 14);
    assert_eq!(f.blob_count().await, 1, "one blob");
    grpc.put_file(put(workspace, None, "c.csv", b"other"))
        .await
        .unwrap();
    assert_eq!(f.blob_count().await, 2);
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM files")
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert_eq!(rows, 3);

    // Read back, only within the file's own workspace.
    let got = grpc
        .get_file(GetFileRequest {
            file_id: a.id.clone(),
            workspace_id: workspace.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.content, b"id,total\n1,42\n");
    assert_eq!(got.file.unwrap().name, "a.csv");
    let e = grpc
        .get_file(GetFileRequest {
            file_id: a.id,
            workspace_id: Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn put_file_enforces_size_and_name() {
    for backend in Backend::all() {
        put_file_enforces_size_and_name_on(&backend).await;
    }
}

async fn put_file_enforces_size_and_name_on(backend: &Backend) {
    let f = fixture(backend).await;
    let workspace = Uuid::now_v7();
    let mut grpc = f.grpc();
    let at_limit = vec![7u8; MAX_BYTES as usize];
    grpc.put_file(put(workspace, None, "full.bin", &at_limit))
        .await
        .unwrap();
    let over = vec![7u8; MAX_BYTES as usize + 1];
    let e = grpc
        .put_file(put(workspace, None, "big.bin", &over))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        flowfleet_runtime::error::ApiError::from(e.clone())
            .code
            .as_str(),
        "PAYLOAD_TOO_LARGE"
    );
    assert!(e.message().contains("limit"), "{}", e.message());
    let e = grpc
        .put_file(put(workspace, None, "  ", b"x"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let mut bad_type = put(workspace, None, "x.txt", b"x");
    bad_type.meta.content_type = "not a type".into();
    assert_eq!(
        grpc.put_file(bad_type).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(f.blob_count().await, 1, "refused uploads store nothing");
}

#[tokio::test]
async fn signed_links_download_until_they_expire() {
    for backend in Backend::all() {
        signed_links_download_until_they_expire_on(&backend).await;
    }
}

async fn signed_links_download_until_they_expire_on(backend: &Backend) {
    let f = fixture(backend).await;
    let owner = f.auth.user("owner@example.com").await;
    let ada = f
        .auth
        .member(&owner, "ada@example.com", Role::Viewer)
        .await
        .id;
    let workspace = owner.workspace;
    let file = f
        .grpc()
        .put_file(put(workspace, None, "résumé \"v2\".csv", b"a,b\n"))
        .await
        .unwrap()
        .into_inner();
    let reps = json!({"reps": [{"__typename": "File", "id": file.id}]});
    let r = f.graphql(as_user(ada), FILE, reps.clone()).await;
    let node = &r["data"]["_entities"][0];
    assert_eq!(node["size"], 4, "{r}");
    assert_eq!(node["contentType"], "text/csv");
    assert_eq!(node["workspaceId"], workspace.to_string());
    let url = node["downloadUrl"].as_str().unwrap().to_string();
    let expected_expiry = START_MS / 1000 + 600;
    assert!(
        url.starts_with(&format!(
            "https://files.example.com/files/{}/content?expires={expected_expiry}&signature=",
            file.id
        )),
        "{url}"
    );

    let (status, headers, body) = f.get(&local(&url)).await;
    assert_eq!(status, 200);
    assert_eq!(body, b"a,b\n");
    assert_eq!(headers["content-type"], "text/csv");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"r_sum_ _v2_.csv\""),
        "{disposition}"
    );

    // Tampering with any part of the link invalidates it.
    let tampered_sig = {
        let (head, sig) = url.rsplit_once('=').unwrap();
        let flipped = if sig.starts_with('0') { "1" } else { "0" };
        format!("{head}={flipped}{}", &sig[1..])
    };
    let later = url.replace(
        &format!("expires={expected_expiry}"),
        &format!("expires={}", expected_expiry + 3600),
    );
    let other_file = url.replace(&file.id, &Uuid::now_v7().to_string());
    let unsigned = url.split_once("&signature").unwrap().0.to_string();
    for bad in [tampered_sig, later, other_file, unsigned] {
        let (status, _, body) = f.get(&local(&bad)).await;
        assert_eq!(status, 403, "{bad}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "FORBIDDEN");
        assert_eq!(body["error"]["message"], "invalid download link");
    }

    // Valid until its expiry second, refused after.
    f.clock.advance(600 * 1000);
    assert_eq!(f.get(&local(&url)).await.0, 200);
    f.clock.advance(1000);
    let (status, _, body) = f.get(&local(&url)).await;
    assert_eq!(status, 403);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));

    // A valid link to a file that is gone.
    let fresh = f.graphql(as_user(ada), FILE, reps).await["data"]["_entities"][0]["downloadUrl"]
        .as_str()
        .unwrap()
        .to_string();
    sqlx::query("DELETE FROM files WHERE id = $1")
        .bind(&file.id)
        .execute(f.db.pool())
        .await
        .unwrap();
    assert_eq!(f.get(&local(&fresh)).await.0, 404);
}

#[tokio::test]
async fn files_and_artifacts_are_visible_to_members_only() {
    for backend in Backend::all() {
        files_and_artifacts_are_visible_to_members_only_on(&backend).await;
    }
}

async fn files_and_artifacts_are_visible_to_members_only_on(backend: &Backend) {
    let f = fixture(backend).await;
    // Ada views one workspace; Bob owns another.
    let owner = f.auth.user("owner@example.com").await;
    let ada = f
        .auth
        .member(&owner, "ada@example.com", Role::Viewer)
        .await
        .id;
    let bob = f.auth.user("bob@example.com").await;
    let (ours, theirs, bob) = (owner.workspace, bob.workspace, bob.id);
    let stranger = f.auth.user("stranger@example.com").await.id;
    let execution = Uuid::now_v7();
    let mut grpc = f.grpc();
    let mine = grpc
        .put_file(put(ours, Some(execution), "out.json", b"{}"))
        .await
        .unwrap()
        .into_inner();
    // An artifact in another workspace under the same execution id.
    grpc.put_file(put(theirs, Some(execution), "secret.json", b"[]"))
        .await
        .unwrap();

    // Another workspace's file looks exactly like a missing one.
    let reps = json!({"reps": [{"__typename": "File", "id": mine.id}]});
    let r = f.graphql(as_user(bob), FILE, reps.clone()).await;
    assert_eq!(error_code(&r), "NOT_FOUND", "{r}");
    let not_member = r["errors"][0]["message"].clone();
    let r = f.graphql(Caller::Anonymous, FILE, reps).await;
    assert_eq!(error_code(&r), "UNAUTHENTICATED", "{r}");
    let missing = json!({"reps": [{"__typename": "File", "id": Uuid::now_v7()}]});
    let r = f.graphql(as_user(ada), FILE, missing).await;
    assert_eq!(error_code(&r), "NOT_FOUND", "{r}");
    assert_eq!(r["errors"][0]["message"], not_member, "{r}");

    // `artifacts` reads the files of the workspace the reference names (the execution
    // service's answer, passed on by the gateway), for members of that workspace only.
    let artifacts = "query($reps: [_Any!]!) { _entities(representations: $reps) { \
        ... on Execution { id artifacts { id name } } } }";
    let reps = |workspace: Uuid| json!({"reps": [{"__typename": "Execution", "id": execution, "workspaceId": workspace}]});
    let r = f.graphql(as_user(ada), artifacts, reps(ours)).await;
    assert_eq!(
        r["data"]["_entities"][0]["artifacts"],
        json!([{"id": mine.id, "name": "out.json"}]),
        "{r}"
    );
    // Bob's own workspace holds a file under the same execution id: claiming it shows
    // his file, never ours.
    let r = f.graphql(as_user(bob), artifacts, reps(theirs)).await;
    assert_eq!(
        r["data"]["_entities"][0]["artifacts"],
        json!([{"id": r["data"]["_entities"][0]["artifacts"][0]["id"], "name": "secret.json"}]),
        "{r}"
    );
    for outsider in [bob, stranger] {
        let r = f.graphql(as_user(outsider), artifacts, reps(ours)).await;
        assert_eq!(error_code(&r), "NOT_FOUND", "{r}");
        assert!(r["data"]["_entities"][0]["artifacts"].is_null(), "{r}");
    }
    // Without the workspace the reference is incomplete.
    let bare = json!({"reps": [{"__typename": "Execution", "id": execution}]});
    let r = f.graphql(as_user(ada), artifacts, bare).await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
}

fn upload(
    token: Option<&str>,
    query: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> http::Request<Body> {
    let mut b = http::Request::post(format!("/files?{query}"));
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn http_upload_needs_an_editor_and_respects_the_limit() {
    for backend in Backend::all() {
        http_upload_needs_an_editor_and_respects_the_limit_on(&backend).await;
    }
}

async fn http_upload_needs_an_editor_and_respects_the_limit_on(backend: &Backend) {
    let f = fixture(backend).await;
    let owner = f.auth.user("owner@example.com").await;
    let editor = f
        .auth
        .member(&owner, "editor@example.com", Role::Editor)
        .await;
    let viewer = f
        .auth
        .member(&owner, "viewer@example.com", Role::Viewer)
        .await;
    let stranger = f.auth.user("stranger@example.com").await;
    let workspace = owner.workspace;
    let q = format!("workspaceId={workspace}&name=notes.txt");
    let token = editor.token.clone();

    let (status, _, body) = f
        .http(upload(
            Some(&token),
            &q,
            Some("text/plain"),
            b"hello".to_vec(),
        ))
        .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let file: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(file["name"], "notes.txt");
    assert_eq!(file["contentType"], "text/plain");
    assert_eq!(file["size"], 5);
    assert_eq!(
        file["sha256"],
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    let (status, _, content) = f.get(&local(file["downloadUrl"].as_str().unwrap())).await;
    assert_eq!(
        (status.as_u16(), content.as_slice()),
        (200, b"hello".as_slice())
    );

    // No Content-Type: stored as octet-stream.
    let (status, _, body) = f
        .http(upload(Some(&token), &q, None, b"raw".to_vec()))
        .await;
    assert_eq!(status, 201);
    let file: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(file["contentType"], "application/octet-stream");

    // Over the limit: 413, whether declared up front or discovered while reading.
    let over = vec![0u8; MAX_BYTES as usize + 1];
    let (status, _, body) = f.http(upload(Some(&token), &q, None, over.clone())).await;
    assert_eq!(status, 413);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        over.chunks(100).map(|c| Ok(c.to_vec())).collect();
    let streamed = http::Request::post(format!("/files?{q}"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    assert_eq!(f.http(streamed).await.0, 413);

    // Who may upload.
    let (status, _, _) = f
        .http(upload(Some(&viewer.token), &q, None, b"x".to_vec()))
        .await;
    assert_eq!(status, 403, "a viewer cannot upload");
    let (status, _, _) = f
        .http(upload(Some(&stranger.token), &q, None, b"x".to_vec()))
        .await;
    assert_eq!(status, 403, "a stranger cannot upload");
    let (status, _, _) = f.http(upload(None, &q, None, b"x".to_vec())).await;
    assert_eq!(status, 401);
    let (status, _, _) = f
        .http(upload(Some("not-a-token"), &q, None, b"x".to_vec()))
        .await;
    assert_eq!(status, 401);

    // Bad input.
    let (status, _, _) = f
        .http(upload(
            Some(&token),
            &format!("workspaceId={workspace}"),
            None,
            b"x".to_vec(),
        ))
        .await;
    assert_eq!(status, 400, "a name is required");
    let (status, _, _) = f
        .http(upload(
            Some(&token),
            "name=a.txt&workspaceId=nope",
            None,
            b"x".to_vec(),
        ))
        .await;
    assert_eq!(status, 400);
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM files")
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert_eq!(rows, 2, "only the accepted uploads are stored");
    assert_eq!(f.blob_count().await, 2);
    assert_eq!(
        f.staging_count().await,
        0,
        "refused uploads leave no staging blob"
    );
}

#[tokio::test]
async fn the_signing_key_is_generated_once() {
    for backend in Backend::all() {
        the_signing_key_is_generated_once_on(&backend).await;
    }
}

async fn the_signing_key_is_generated_once_on(backend: &Backend) {
    let f = fixture(backend).await;
    let store = flowfleet_storage::store::Store::new(f.db.clone());
    let first = store.signing_key().await.unwrap().to_hex();
    let again = store.signing_key().await.unwrap().to_hex();
    assert_eq!(first, again);
    assert_eq!(first.len(), 64);
}

#[tokio::test]
async fn sizes_above_graphql_int_are_refused_at_start() {
    let env = Backend::Embedded.start().await;
    let mut config = (*env.infra.config).clone();
    config.storage.max_file_bytes = 4 * 1024 * 1024 * 1024;
    let db = env.db(ServiceName::Storage, &MIGRATIONS).await;
    let blobs = Blobs::from_config(&config).unwrap();
    let infra = Infra {
        config: Arc::new(config),
        ..env.infra.clone()
    };
    let access = RealAuth::start(&env).await.access();
    let err = build(&infra, db, access, blobs).await.err().unwrap();
    assert!(err.to_string().contains("max_file_bytes"), "{err}");
}

#[tokio::test]
async fn the_subgraph_declares_file_and_extends_execution() {
    for backend in Backend::all() {
        the_subgraph_declares_file_and_extends_execution_on(&backend).await;
    }
}

async fn the_subgraph_declares_file_and_extends_execution_on(backend: &Backend) {
    let f = fixture(backend).await;
    let sdl = f.parts.subgraph.sdl();
    assert!(sdl.contains("type File @key(fields: \"id\")"), "{sdl}");
    assert!(sdl.contains("size: Int!"), "{sdl}");
    assert!(sdl.contains("downloadUrl: String!"), "{sdl}");
    assert!(sdl.contains("type Execution @key(fields: \"id\")"), "{sdl}");
    // Nullable on purpose: a failure nulls only this field, not the execution. It needs
    // the execution's workspace, which the execution service resolves.
    assert!(sdl.contains("workspaceId: ID! @external"), "{sdl}");
    assert!(
        sdl.contains("artifacts: [File!] @requires(fields: \"workspaceId\")\n"),
        "{sdl}"
    );
}
