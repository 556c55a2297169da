//! File uploads (GraphQL multipart request spec) through the gateway to a real subgraph that
//! takes `Upload` arguments (async-graphql over HTTP).

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, Object, Schema, SimpleObject, Upload};
use common::{start_gateway, subgraph_sdl};
use flowfleet_gateway::{compose, Gateway, GatewayConfig, SubgraphSource, UploadLimits};
use serde_json::{json, Value};

/// A position-sensitive checksum, computed the same way by the subgraph and the test.
fn checksum(bytes: &[u8]) -> String {
    let mut sum: u64 = 0xcbf29ce484222325;
    for b in bytes {
        sum = (sum ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    format!("{sum:016x}")
}

#[derive(SimpleObject)]
struct FileInfo {
    name: String,
    content_type: Option<String>,
    size: u64,
    checksum: String,
}

struct Query;
#[Object]
impl Query {
    async fn completed_uploads(&self, ctx: &Context<'_>) -> usize {
        ctx.data_unchecked::<Arc<AtomicUsize>>()
            .load(Ordering::SeqCst)
    }
}

fn info(ctx: &Context<'_>, file: &Upload) -> async_graphql::Result<FileInfo> {
    let value = file.value(ctx)?;
    let mut content = Vec::new();
    value.into_read().read_to_end(&mut content)?;
    Ok(FileInfo {
        name: file.value(ctx).map(|v| v.filename).unwrap_or_default(),
        content_type: file.value(ctx).ok().and_then(|v| v.content_type),
        size: content.len() as u64,
        checksum: checksum(&content),
    })
}

struct Mutation;
#[Object]
impl Mutation {
    async fn upload(&self, ctx: &Context<'_>, file: Upload) -> async_graphql::Result<FileInfo> {
        let out = info(ctx, &file)?;
        ctx.data_unchecked::<Arc<AtomicUsize>>()
            .fetch_add(1, Ordering::SeqCst);
        Ok(out)
    }

    async fn upload_many(
        &self,
        ctx: &Context<'_>,
        files: Vec<Upload>,
    ) -> async_graphql::Result<Vec<FileInfo>> {
        let out = files
            .iter()
            .map(|f| info(ctx, f))
            .collect::<Result<Vec<_>, _>>()?;
        ctx.data_unchecked::<Arc<AtomicUsize>>()
            .fetch_add(out.len(), Ordering::SeqCst);
        Ok(out)
    }
}

async fn setup(limits: UploadLimits) -> String {
    let schema = Schema::build(Query, Mutation, EmptySubscription)
        .data(Arc::new(AtomicUsize::new(0)))
        .enable_federation()
        .finish();
    let app = axum::Router::new().route(
        "/graphql",
        axum::routing::post_service(async_graphql_axum::GraphQL::new(schema)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/graphql", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let supergraph = compose(&[SubgraphSource {
        name: "files".into(),
        sdl: subgraph_sdl(&url).await,
        url,
    }])
    .expect("composition");
    let config = GatewayConfig {
        uploads: limits,
        ..GatewayConfig::default()
    };
    let gateway = Gateway::new(&supergraph, config, HashMap::new()).expect("gateway");
    start_gateway(&gateway).await
}

const BOUNDARY: &str = "test-boundary-4b1d";

/// A multipart request body: `operations`, `map`, then `(field name, file name, bytes)`.
fn multipart(operations: &Value, map: &Value, files: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut text = |s: String| body.extend_from_slice(s.as_bytes());
    text(format!(
        "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"operations\"\r\n\r\n{operations}\r\n"
    ));
    text(format!(
        "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"map\"\r\n\r\n{map}\r\n"
    ));
    for (field, name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"{field}\"; \
                 filename=\"{name}\"\r\ncontent-type: text/plain\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn send(base: &str, body: Vec<u8>, preflight: bool) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .header("accept", "application/graphql-response+json")
        .body(body);
    if preflight {
        request = request.header("graphql-require-preflight", "1");
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

async fn completed(base: &str) -> u64 {
    let (_, body) = common::post(base, json!({"query": "{ completedUploads }"})).await;
    body["data"]["completedUploads"].as_u64().expect("count")
}

#[tokio::test]
async fn files_reach_the_subgraph_intact() {
    let base = setup(UploadLimits::default()).await;
    // Large enough to cross many chunks on the way through.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let operations = json!({
        "query": "mutation($file: Upload!) { upload(file: $file) { name contentType size checksum } }",
        "variables": {"file": null}
    });
    let body = multipart(
        &operations,
        &json!({"0": ["variables.file"]}),
        &[("0", "big.bin", &big)],
    );
    let (status, response) = send(&base, body, true).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        response["data"]["upload"],
        json!({"name": "big.bin", "contentType": "text/plain", "size": big.len(), "checksum": checksum(&big)})
    );

    let operations = json!({
        "query": "mutation($files: [Upload!]!) { uploadMany(files: $files) { name size checksum } }",
        "variables": {"files": [null, null]}
    });
    let map = json!({"a": ["variables.files.0"], "b": ["variables.files.1"]});
    let body = multipart(
        &operations,
        &map,
        &[("a", "one.txt", b"first file"), ("b", "two.txt", b"second")],
    );
    let (status, response) = send(&base, body, true).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        response["data"]["uploadMany"],
        json!([
            {"name": "one.txt", "size": 10, "checksum": checksum(b"first file")},
            {"name": "two.txt", "size": 6, "checksum": checksum(b"second")}
        ])
    );
    assert_eq!(completed(&base).await, 3);
}

#[tokio::test]
async fn limits_and_malformed_uploads_are_refused_with_clear_errors() {
    let base = setup(UploadLimits {
        max_files: 2,
        max_file_bytes: 1024,
    })
    .await;
    let one = json!({
        "query": "mutation($file: Upload!) { upload(file: $file) { size } }",
        "variables": {"file": null}
    });
    let map = json!({"0": ["variables.file"]});

    // Over the size limit: 413, and the subgraph never completed an upload.
    let body = multipart(&one, &map, &[("0", "big.bin", &[7u8; 4096])]);
    let (status, response) = send(&base, body, true).await;
    assert_eq!(status, 413, "{response}");
    assert_eq!(
        response["errors"][0]["extensions"]["code"],
        "PAYLOAD_TOO_LARGE"
    );
    assert!(response.get("data").is_none());
    assert_eq!(completed(&base).await, 0);

    // Too many files.
    let many = json!({
        "query": "mutation($files: [Upload!]!) { uploadMany(files: $files) { size } }",
        "variables": {"files": [null, null, null]}
    });
    let map3 =
        json!({"0": ["variables.files.0"], "1": ["variables.files.1"], "2": ["variables.files.2"]});
    let body = multipart(
        &many,
        &map3,
        &[("0", "a", b"a"), ("1", "b", b"b"), ("2", "c", b"c")],
    );
    let (status, response) = send(&base, body, true).await;
    assert_eq!(status, 413, "{response}");

    // No preflight header: refused before anything runs (CSRF protection).
    let body = multipart(&one, &map, &[("0", "a.txt", b"a")]);
    let (status, response) = send(&base, body, false).await;
    assert_eq!(status, 400, "{response}");
    assert_eq!(
        response["errors"][0]["extensions"]["code"],
        "CSRF_PREVENTED"
    );
    assert!(response["errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .contains("Preflight"));

    // A map pointing at something that is not a null placeholder.
    let body = multipart(
        &one,
        &json!({"0": ["variables.nope"]}),
        &[("0", "a.txt", b"a")],
    );
    let (status, response) = send(&base, body, true).await;
    assert_eq!(status, 400, "{response}");
    assert_eq!(response["errors"][0]["extensions"]["code"], "BAD_REQUEST");

    // `operations` must come first.
    let (status, _) = send(
        &base,
        format!("--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"map\"\r\n\r\n{{}}\r\n--{BOUNDARY}--\r\n")
            .into_bytes(),
        true,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(completed(&base).await, 0);

    // Within limits, the same request works.
    let body = multipart(&one, &map, &[("0", "ok.txt", b"fits")]);
    let (status, response) = send(&base, body, true).await;
    assert_eq!(
        (status, &response["data"]["upload"]["size"]),
        (200, &json!(4)),
        "{response}"
    );
}
