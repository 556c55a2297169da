//! Files as a product, on every backend: streaming uploads with sniffing, quotas that
//! refuse before storing, listing and search, rename and delete (and the delete that
//! races an identical upload), range requests and ETags, and the retention cleanup
//! that runs once across replicas.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use common::*;
use flowfleet_host::testing::Backend;
use flowfleet_security::identity::Role;
use flowfleet_storage::use_cases;
use serde_json::{json, Value};
use uuid::Uuid;

/// A PNG's signature and the start of its header chunk.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01";

fn put_request(
    token: &str,
    workspace: Uuid,
    name: &str,
    content_type: &str,
    body: Body,
) -> http::Request<Body> {
    http::Request::put(format!("/files?workspaceId={workspace}&name={name}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", content_type)
        .body(body)
        .unwrap()
}

async fn upload(f: &Fixture, token: &str, workspace: Uuid, name: &str, content: &[u8]) -> Value {
    let (status, _, body) = f
        .http(put_request(
            token,
            workspace,
            name,
            "text/plain",
            Body::from(content.to_vec()),
        ))
        .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

async fn file_rows(f: &Fixture) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM files")
        .fetch_one(f.db.pool())
        .await
        .unwrap()
}

const FILES: &str = "query($reps: [_Any!]!, $search: String, $type: String, $after: String, \
    $since: DateTime) { _entities(representations: $reps) { ... on Workspace { \
    files(first: 2, after: $after, search: $search, contentType: $type, createdAfter: $since) { \
    totalCount pageInfo { hasNextPage endCursor } nodes { id name contentType \
    declaredContentType sniffedContentType } } \
    storageUsage { bytes files quotaBytes quotaFiles maxFileBytes } } } }";

#[tokio::test]
async fn uploads_stream_are_sniffed_listed_renamed_and_deleted() {
    for backend in Backend::all() {
        uploads_stream_are_sniffed_listed_renamed_and_deleted_on(&backend).await;
    }
}

async fn uploads_stream_are_sniffed_listed_renamed_and_deleted_on(backend: &Backend) {
    let f = fixture(backend).await;
    let owner = f.auth.user("owner@example.com").await;
    let viewer = f
        .auth
        .member(&owner, "viewer@example.com", Role::Viewer)
        .await;
    let ws = owner.workspace;

    // Streamed in small chunks without a length; a PNG declared as text is sniffed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        PNG.chunks(3).map(|c| Ok(c.to_vec())).collect();
    let (status, _, body) = f
        .http(put_request(
            &owner.token,
            ws,
            "Q3%20chart.png",
            "text/plain",
            Body::from_stream(futures::stream::iter(chunks)),
        ))
        .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let png: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(png["contentType"], "image/png");
    assert_eq!(png["declaredContentType"], "text/plain");
    assert_eq!(png["sniffedContentType"], "image/png");
    assert_eq!(png["size"], PNG.len());
    // Text has no signature: it keeps its declared type.
    let csv = upload(&f, &owner.token, ws, "q3%20report.csv", b"a,b\n1,2\n").await;
    assert_eq!(csv["contentType"], "text/plain");
    assert_eq!(csv["sniffedContentType"], Value::Null);
    upload(&f, &owner.token, ws, "notes.txt", b"hello").await;
    f.clock.advance(10_000);
    upload(&f, &owner.token, ws, "later.txt", b"later").await;

    let reps = json!([{"__typename": "Workspace", "id": ws}]);
    let page = |vars: Value| {
        let mut v = vars;
        v["reps"] = reps.clone();
        f.graphql(as_user(viewer.id), FILES, v)
    };
    let all = page(json!({})).await;
    let files = &all["data"]["_entities"][0]["files"];
    assert_eq!(files["totalCount"], 4, "{all}");
    let names: Vec<&str> = files["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["later.txt", "notes.txt"],
        "newest first, two a page"
    );
    assert_eq!(files["pageInfo"]["hasNextPage"], true);
    let next = page(json!({"after": files["pageInfo"]["endCursor"]})).await;
    let names: Vec<Value> = next["data"]["_entities"][0]["files"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].clone())
        .collect();
    assert_eq!(names, [json!("q3 report.csv"), json!("Q3 chart.png")]);
    let q3 = page(json!({"search": "Q3"})).await;
    assert_eq!(q3["data"]["_entities"][0]["files"]["totalCount"], 2);
    let images = page(json!({"type": "image/*"})).await;
    assert_eq!(images["data"]["_entities"][0]["files"]["totalCount"], 1);
    let since = flowfleet_runtime::clock::to_datetime(START_MS + 5_000);
    let recent = page(json!({"since": since})).await;
    assert_eq!(recent["data"]["_entities"][0]["files"]["totalCount"], 1);
    let bad = page(json!({"type": "image"})).await;
    assert_eq!(bad["data"]["_entities"][0]["files"], Value::Null);
    assert_eq!(error_code(&bad), "BAD_USER_INPUT", "{bad}");
    let usage = &all["data"]["_entities"][0]["storageUsage"];
    let total = PNG.len() + 8 + 5 + 5;
    assert_eq!(usage["bytes"], total as f64);
    assert_eq!(usage["files"], 4);
    assert_eq!(usage["quotaBytes"], QUOTA_BYTES as f64);
    assert_eq!(usage["quotaFiles"], QUOTA_FILES);

    // Rename: EDITOR or above; a viewer is refused and the name stays.
    let rename = "mutation($ws: ID!, $id: ID!, $name: String!) { renameFile(workspaceId: $ws, \
        id: $id, name: $name) { name } }";
    let vars = json!({"ws": ws, "id": csv["id"], "name": "final.csv"});
    let r = f.graphql(as_user(viewer.id), rename, vars.clone()).await;
    assert_eq!(error_code(&r), "FORBIDDEN", "{r}");
    let r = f.graphql(as_user(owner.id), rename, vars).await;
    assert_eq!(r["data"]["renameFile"]["name"], "final.csv", "{r}");
    let r = f
        .graphql(
            as_user(owner.id),
            rename,
            json!({"ws": ws, "id": csv["id"], "name": " "}),
        )
        .await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT");

    // Delete: the blob goes with its last file, and links stop working.
    let twin = upload(&f, &owner.token, ws, "twin.txt", b"hello").await;
    assert_eq!(f.blob_count().await, 4);
    let delete = "mutation($ws: ID!, $id: ID!) { deleteFile(workspaceId: $ws, id: $id) }";
    let r = f
        .graphql(
            as_user(viewer.id),
            delete,
            json!({"ws": ws, "id": twin["id"]}),
        )
        .await;
    assert_eq!(error_code(&r), "FORBIDDEN");
    let r = f
        .graphql(
            as_user(owner.id),
            delete,
            json!({"ws": ws, "id": twin["id"]}),
        )
        .await;
    assert_eq!(r["data"]["deleteFile"], twin["id"], "{r}");
    assert_eq!(f.blob_count().await, 4, "notes.txt still has that content");
    let (status, _, _) = f.get(&local(twin["downloadUrl"].as_str().unwrap())).await;
    assert_eq!(status, 404);
    let r = f
        .graphql(
            as_user(owner.id),
            delete,
            json!({"ws": ws, "id": png["id"]}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(f.blob_count().await, 3, "the PNG's blob had no other file");
    let r = f
        .graphql(
            as_user(owner.id),
            delete,
            json!({"ws": ws, "id": png["id"]}),
        )
        .await;
    assert_eq!(error_code(&r), "NOT_FOUND", "deleted twice");
    let after = page(json!({})).await;
    let usage = &after["data"]["_entities"][0]["storageUsage"];
    assert_eq!(usage["files"], 3);
    assert_eq!(usage["bytes"], (8 + 5 + 5) as f64);
}

#[tokio::test]
async fn quotas_and_limits_refuse_before_anything_is_stored() {
    for backend in Backend::all() {
        quotas_and_limits_refuse_before_anything_is_stored_on(&backend).await;
    }
}

async fn quotas_and_limits_refuse_before_anything_is_stored_on(backend: &Backend) {
    let f = fixture(backend).await;
    let owner = f.auth.user("owner@example.com").await;
    let ws = owner.workspace;
    // Four files of MAX_BYTES fill the QUOTA_BYTES.
    for i in 0..4 {
        let content = vec![i as u8; MAX_BYTES as usize];
        upload(&f, &owner.token, ws, &format!("{i}.bin"), &content).await;
    }
    assert_eq!(file_rows(&f).await, 4);

    // Declared too large for the quota: refused before the body is read at all.
    let polled = Arc::new(AtomicBool::new(false));
    let seen = polled.clone();
    let body = futures::stream::once(async move {
        seen.store(true, Ordering::SeqCst);
        Ok::<_, std::io::Error>(vec![9u8; 10])
    });
    let mut request = put_request(
        &owner.token,
        ws,
        "more.bin",
        "text/plain",
        Body::from_stream(body),
    );
    request
        .headers_mut()
        .insert("content-length", "10".parse().unwrap());
    let (status, _, body) = f.http(request).await;
    assert_eq!(status, 403);
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["code"], "QUOTA_EXCEEDED", "{error}");
    assert!(!polled.load(Ordering::SeqCst), "the body was read");

    // Not declared: refused once the stream passes the room left.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![1u8; 4]), Ok(vec![2u8; 4])];
    let request = put_request(
        &owner.token,
        ws,
        "more.bin",
        "text/plain",
        Body::from_stream(futures::stream::iter(chunks)),
    );
    let (status, _, body) = f.http(request).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert_eq!(file_rows(&f).await, 4);
    assert_eq!(f.blob_count().await, 4);
    assert_eq!(f.staging_count().await, 0, "the refused bytes were deleted");

    // After a delete there is room again; the count quota refuses the 21st file.
    let other = f.auth.user("other@example.com").await;
    for i in 0..QUOTA_FILES {
        upload(&f, &other.token, other.workspace, &format!("{i}.txt"), b"x").await;
    }
    let (status, _, body) = f
        .http(put_request(
            &other.token,
            other.workspace,
            "one-more.txt",
            "text/plain",
            Body::from("x"),
        ))
        .await;
    assert_eq!(status, 403);
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["code"], "QUOTA_EXCEEDED");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("files"),
        "{error}"
    );
}

#[tokio::test]
async fn downloads_serve_ranges_and_etags() {
    for backend in Backend::all() {
        downloads_serve_ranges_and_etags_on(&backend).await;
    }
}

async fn downloads_serve_ranges_and_etags_on(backend: &Backend) {
    let f = fixture(backend).await;
    let owner = f.auth.user("owner@example.com").await;
    let file = upload(
        &f,
        &owner.token,
        owner.workspace,
        "digits.txt",
        b"0123456789",
    )
    .await;
    let url = local(file["downloadUrl"].as_str().unwrap());
    let etag = format!("\"{}\"", file["sha256"].as_str().unwrap());
    let get = |headers: Vec<(&'static str, String)>| {
        let mut request = http::Request::get(url.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        f.http(request.body(Body::empty()).unwrap())
    };

    let (status, headers, body) = get(vec![]).await;
    assert_eq!(
        (status.as_u16(), body.as_slice()),
        (200, b"0123456789".as_slice())
    );
    assert_eq!(headers["etag"], etag.as_str());
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"digits.txt\"; filename*=UTF-8''digits.txt"
    );

    let (status, headers, body) = get(vec![("range", "bytes=2-4".into())]).await;
    assert_eq!((status.as_u16(), body.as_slice()), (206, b"234".as_slice()));
    assert_eq!(headers["content-range"], "bytes 2-4/10");
    assert_eq!(headers["content-length"], "3");
    let (status, _, body) = get(vec![("range", "bytes=-3".into())]).await;
    assert_eq!((status.as_u16(), body.as_slice()), (206, b"789".as_slice()));
    let (status, headers, _) = get(vec![("range", "bytes=10-".into())]).await;
    assert_eq!(status, 416);
    assert_eq!(headers["content-range"], "bytes */10");
    // If-Range with a stale validator: the whole content.
    let (status, _, body) = get(vec![
        ("range", "bytes=2-4".into()),
        ("if-range", "\"stale\"".into()),
    ])
    .await;
    assert_eq!((status.as_u16(), body.len()), (200, 10));
    let (status, _, body) = get(vec![
        ("range", "bytes=2-4".into()),
        ("if-range", etag.clone()),
    ])
    .await;
    assert_eq!((status.as_u16(), body.as_slice()), (206, b"234".as_slice()));
    // A cached copy that is still current.
    let (status, headers, body) = get(vec![("if-none-match", etag.clone())]).await;
    assert_eq!((status.as_u16(), body.len()), (304, 0));
    assert_eq!(headers["etag"], etag.as_str());
    let (status, _, _) = get(vec![("if-none-match", "\"other\"".into())]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn deleting_a_file_never_takes_the_content_of_a_racing_identical_upload() {
    for backend in Backend::all() {
        deleting_races_on(&backend).await;
    }
}

/// The backend's real blob store, with deletes that take a while: a deletion then holds
/// its blob for long enough that an identical upload started meanwhile reaches the
/// point where it decides whether to write the blob.
#[derive(Debug)]
struct SlowDeletes(Arc<dyn object_store::ObjectStore>);

impl std::fmt::Display for SlowDeletes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SlowDeletes({})", self.0)
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for SlowDeletes {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.0.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.0.get_opts(location, options).await
    }
    async fn delete(&self, location: &object_store::path::Path) -> object_store::Result<()> {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        self.0.delete(location).await
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.0.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.0.list_with_delimiter(prefix).await
    }
    async fn copy(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
    ) -> object_store::Result<()> {
        self.0.copy(from, to).await
    }
    async fn rename(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
    ) -> object_store::Result<()> {
        self.0.rename(from, to).await
    }
    async fn copy_if_not_exists(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
    ) -> object_store::Result<()> {
        self.0.copy_if_not_exists(from, to).await
    }
}

async fn deleting_races_on(backend: &Backend) {
    let f = fixture(backend).await;
    let slow =
        flowfleet_runtime::blob::Blobs::from_store(Arc::new(SlowDeletes(f.blobs.object_store())));
    let (files, _) = use_cases(&f.infra, f.db.clone(), f.access.clone(), slow)
        .await
        .unwrap();
    let owner = f.auth.user("owner@example.com").await;
    let ws = owner.workspace;
    let me = flowfleet_security::identity::Identity {
        user_id: owner.id,
        email: "owner@example.com".into(),
        api_key: None,
    };
    for round in 0..5u32 {
        let content = format!("round {round}").into_bytes();
        let first = upload(&f, &owner.token, ws, "a.txt", &content).await;
        let first_id: Uuid = first["id"].as_str().unwrap().parse().unwrap();
        let new = || flowfleet_storage::files::uploads::NewFile {
            workspace_id: ws,
            owner_id: owner.id,
            execution_id: None,
            workflow_id: None,
            name: flowfleet_storage::domain::FileName::parse("b.txt").unwrap(),
            content_type: flowfleet_storage::domain::ContentType::parse("text/plain").unwrap(),
        };
        let body =
            futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(content.clone()))]);
        // The upload starts while the deletion is under way.
        let (deleted, second) = tokio::join!(files.delete((&me).into(), ws, first_id), async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            files.upload((&me).into(), new(), None, body).await
        });
        deleted.unwrap();
        let second = second.unwrap();
        let mut stream = files.read(&second, None).await.unwrap_or_else(|e| {
            panic!(
                "round {round}: the identical upload lost its content: {}",
                e.message
            )
        });
        let mut read = Vec::new();
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            read.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(read, content, "round {round}");
        files.delete((&me).into(), ws, second.id).await.unwrap();
    }
    assert_eq!(
        f.blob_count().await,
        0,
        "every blob went with its last file"
    );
}

#[tokio::test]
async fn retention_deletes_old_and_surplus_artifacts_once_across_replicas() {
    for backend in Backend::all() {
        retention_on(&backend).await;
    }
}

async fn retention_on(backend: &Backend) {
    let f = fixture(backend).await;
    let owner = f.auth.user("owner@example.com").await;
    let admin = f
        .auth
        .member(&owner, "admin@example.com", Role::Admin)
        .await;
    let editor = f
        .auth
        .member(&owner, "editor@example.com", Role::Editor)
        .await;
    let ws = owner.workspace;
    let (flow_a, flow_b) = (Uuid::now_v7(), Uuid::now_v7());
    let mut grpc = f.grpc();
    let artifact = |workflow: Uuid, name: &str| {
        let mut request = put(ws, Some(Uuid::now_v7()), name, name.as_bytes());
        request.meta.workflow_id = workflow.to_string();
        request
    };
    // Day 0: three artifacts of flow A, one of flow B, and an upload.
    for name in ["a1", "a2", "a3"] {
        grpc.put_file(artifact(flow_a, name)).await.unwrap();
    }
    grpc.put_file(artifact(flow_b, "b1")).await.unwrap();
    upload(&f, &owner.token, ws, "kept-upload.txt", b"mine").await;
    f.clock.advance(3 * 86_400_000);
    // Day 3: one more of flow B.
    grpc.put_file(artifact(flow_b, "b2")).await.unwrap();

    let set = "mutation($ws: ID!, $days: Int, $last: Int) { setFileRetention(workspaceId: $ws, \
        keepDays: $days, keepLast: $last) { keepDays keepLast } }";
    let r = f
        .graphql(
            as_user(editor.id),
            set,
            json!({"ws": ws, "days": 2, "last": 2}),
        )
        .await;
    assert_eq!(
        error_code(&r),
        "FORBIDDEN",
        "an editor cannot set retention"
    );
    let r = f
        .graphql(as_user(admin.id), set, json!({"ws": ws, "days": 0}))
        .await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT");
    let r = f
        .graphql(
            as_user(admin.id),
            set,
            json!({"ws": ws, "days": 2, "last": 2}),
        )
        .await;
    assert_eq!(
        r["data"]["setFileRetention"],
        json!({"keepDays": 2, "keepLast": 2}),
        "{r}"
    );

    // Two replicas (two sets of use cases over one database) run the same period.
    let (replica, _) = use_cases(&f.infra, f.db.clone(), f.access.clone(), f.blobs.clone())
        .await
        .unwrap();
    let (one, two) = tokio::join!(f.files.cleanup(), replica.cleanup());
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(
        [one.ran, two.ran].iter().filter(|r| **r).count(),
        1,
        "exactly one replica ran the period: {one:?} {two:?}"
    );
    // Flow A's day-0 artifacts are all older than two days; so is b1. b2 stays, and
    // the upload is not an artifact.
    assert_eq!(one.deleted_files + two.deleted_files, 4);
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM files ORDER BY name")
        .fetch_all(f.db.pool())
        .await
        .unwrap();
    assert_eq!(names, ["b2", "kept-upload.txt"]);
    let again = f.files.cleanup().await.unwrap();
    assert!(!again.ran, "the period was already run");

    // keepLast alone: the files of each workflow's newest execution stay.
    let r = f
        .graphql(as_user(admin.id), set, json!({"ws": ws, "last": 1}))
        .await;
    assert!(r["errors"].is_null(), "{r}");
    for name in ["b3", "b4"] {
        f.clock.advance(1);
        grpc.put_file(artifact(flow_b, name)).await.unwrap();
    }
    // A second file of b4's execution: kept with it.
    let mut b4x = artifact(flow_b, "b4x");
    let b4_execution: String =
        sqlx::query_scalar("SELECT execution_id FROM files WHERE name = 'b4'")
            .fetch_one(f.db.pool())
            .await
            .unwrap();
    b4x.meta.execution_id = b4_execution;
    grpc.put_file(b4x).await.unwrap();
    f.clock.advance(3_600_000);
    let report = f.files.cleanup().await.unwrap();
    assert!(report.ran);
    assert_eq!(report.deleted_files, 2);
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM files ORDER BY name")
        .fetch_all(f.db.pool())
        .await
        .unwrap();
    assert_eq!(names, ["b4", "b4x", "kept-upload.txt"]);
    let policy = f
        .graphql(
            as_user(editor.id),
            "query($reps: [_Any!]!) { _entities(representations: $reps) { ... on Workspace { \
             fileRetention { keepDays keepLast } } } }",
            json!({"reps": [{"__typename": "Workspace", "id": ws}]}),
        )
        .await;
    assert_eq!(
        policy["data"]["_entities"][0]["fileRetention"],
        json!({"keepDays": null, "keepLast": 1})
    );
}
