//! Files through the fleet's one address, as a client sends them: a GraphQL multipart
//! request to `/graphql` and a streaming `PUT /files`, then downloads through the signed
//! link. The same checks run against the in-process fleet (the gateway's in-process
//! transport) and the distributed processes (its HTTP transport and the gateway's
//! `/files` pass-through).

use serde_json::{json, Value};

use super::Client;

const BOUNDARY: &str = "ff-test-boundary-1b2c3d";

/// A GraphQL multipart request body: `operations`, `map`, then each file.
pub fn multipart(operations: &Value, files: &[(&str, &str, &str, &[u8])]) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    let mut body = Vec::new();
    let mut part = |headers: String, content: &[u8]| {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n{headers}\r\n\r\n").as_bytes());
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    };
    for (field, path, _, _) in files {
        map.insert(field.to_string(), json!([path]));
    }
    part(
        "content-disposition: form-data; name=\"operations\"".into(),
        operations.to_string().as_bytes(),
    );
    part(
        "content-disposition: form-data; name=\"map\"".into(),
        Value::Object(map).to_string().as_bytes(),
    );
    for (field, _, file_name, content) in files {
        part(
            format!(
                "content-disposition: form-data; name=\"{field}\"; filename=\"{file_name}\"\r\n\
                 content-type: application/octet-stream"
            ),
            content,
        );
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Sends a multipart GraphQL request with `token`; returns the status and JSON body.
pub async fn send_multipart(url: &str, token: &str, body: Vec<u8>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .header("graphql-require-preflight", "true")
        .body(body)
        .send()
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

pub const UPLOAD: &str = "mutation($w: ID!, $f: Upload!, $n: String) { \
    uploadFile(workspaceId: $w, file: $f, name: $n) { id name size sha256 contentType \
    declaredContentType downloadUrl } }";

/// Uploads `content` over GraphQL multipart; returns the `uploadFile` answer.
pub async fn upload_file(url: &str, token: &str, ws: &str, name: &str, content: &[u8]) -> Value {
    let operations = json!({"query": UPLOAD, "variables": {"w": ws, "f": null, "n": null}});
    let (status, body) = send_multipart(
        url,
        token,
        multipart(&operations, &[("0", "variables.f", name, content)]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["uploadFile"].clone()
}

/// The checks: both upload paths, sniffing, listing, and ranged downloads, all through
/// the gateway at `url` (`…/graphql`) as the owner `c` of workspace `ws`.
pub async fn assert_files_through_the_gateway(url: &str, c: &Client, ws: &str) {
    let token = c.token.as_deref().expect("signed in");
    // A 300 KiB file over GraphQL multipart, in many parts of the stream.
    let big: Vec<u8> = (0..300 * 1024u32).map(|i| (i % 251) as u8).collect();
    let file = upload_file(url, token, ws, "big.bin", &big).await;
    assert_eq!(file["name"], "big.bin");
    assert_eq!(file["size"], big.len());
    assert_eq!(file["declaredContentType"], "application/octet-stream");
    let download = reqwest::Client::new()
        .get(file["downloadUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200, "the link goes through the gateway");
    assert_eq!(download.bytes().await.unwrap().as_ref(), big.as_slice());

    // A name given with the request wins over the part's file name; a PNG is sniffed.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01";
    let operations = json!({"query": UPLOAD, "variables": {"w": ws, "f": null, "n": "logo.png"}});
    let (_, body) = send_multipart(
        url,
        token,
        multipart(&operations, &[("0", "variables.f", "upload.dat", png)]),
    )
    .await;
    let logo = &body["data"]["uploadFile"];
    assert_eq!(logo["name"], "logo.png", "{body}");
    assert_eq!(logo["contentType"], "image/png");

    // A streaming PUT through the gateway process, without a declared length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(7000).map(|c| Ok(c.to_vec())).collect();
    let put = reqwest::Client::new()
        .put(url.replace("/graphql", "/files"))
        .query(&[("workspaceId", ws), ("name", "streamed.bin")])
        .bearer_auth(token)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let streamed: Value = put.json().await.unwrap();
    assert_eq!(streamed["sha256"], file["sha256"], "the same content");
    let part = reqwest::Client::new()
        .get(streamed["downloadUrl"].as_str().unwrap())
        .header("range", "bytes=1000-1009")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap().as_ref(), &big[1000..1010]);

    let listed = c
        .ok(
            "{ me { memberships { workspace { id files(search: \"bin\") { totalCount nodes { name } } storageUsage { files } } } } }",
            json!({}),
        )
        .await;
    let workspace = listed["me"]["memberships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["workspace"])
        .find(|w| w["id"] == ws)
        .expect("the workspace is among the caller's");
    assert_eq!(workspace["files"]["totalCount"], 2, "{listed}");
    assert!(workspace["storageUsage"]["files"].as_i64().unwrap() >= 3);

    // A request without the preflight header is refused before anything is stored.
    let refused = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(multipart(
            &json!({"query": UPLOAD, "variables": {"w": ws, "f": null}}),
            &[("0", "variables.f", "csrf.txt", b"x")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}

/// How many files the caller's first workspace has.
pub async fn file_count(c: &Client) -> i64 {
    c.ok(
        "{ me { memberships { workspace { storageUsage { files } } } } }",
        json!({}),
    )
    .await["me"]["memberships"][0]["workspace"]["storageUsage"]["files"]
        .as_i64()
        .unwrap()
}
