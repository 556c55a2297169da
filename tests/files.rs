//! Files through the fleet's one endpoint in the embedded runtime (the gateway's
//! in-process transport carries GraphQL multipart uploads to the storage subgraph), on
//! every backend; `tests/distributed.rs` runs the same checks across processes.

mod support;

use flowfleet_host::testing::Backend;
use serde_json::json;
use support::files::{
    assert_files_through_the_gateway, file_count, multipart, send_multipart, UPLOAD,
};
use support::in_process::start_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_downloads_go_through_the_gateway() {
    for backend in Backend::all() {
        // The gateway's own per-file limit, lower than the storage service's.
        let fleet = start_with(&backend, |c| c.gateway.upload_max_file_bytes = 512 * 1024).await;
        let owner = fleet.sign_up("ada@example.com").await;
        let ws = support::engine::workspace(&owner)
            .await
            .as_str()
            .unwrap()
            .to_string();
        assert_files_through_the_gateway(&fleet.url, &owner.client, &ws).await;

        // Over the gateway's limit: refused, and nothing is stored.
        let before = file_count(&owner.client).await;
        let too_big = vec![1u8; 600 * 1024];
        let operations = json!({"query": UPLOAD, "variables": {"w": ws, "f": null}});
        let (status, body) = send_multipart(
            &fleet.url,
            owner.token(),
            multipart(&operations, &[("0", "variables.f", "big.bin", &too_big)]),
        )
        .await;
        assert!(body["data"]["uploadFile"].is_null(), "{status} {body}");
        assert_eq!(file_count(&owner.client).await, before, "{body}");

        // Someone outside the workspace may not upload to it.
        let outsider = fleet.sign_up("outsider@example.com").await;
        let (_, body) = send_multipart(
            &fleet.url,
            outsider.token(),
            multipart(&operations, &[("0", "variables.f", "x.txt", b"x")]),
        )
        .await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "FORBIDDEN",
            "{body}"
        );
    }
}
