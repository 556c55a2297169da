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
        assert_eq!(status, 413, "{body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE",
            "{body}"
        );
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

/// The `store_file` node stores what its config says as an artifact of the run, and its
/// output names the file and a working link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_file_node_stores_its_input_as_an_artifact() {
    for backend in Backend::all() {
        let fleet = start_with(&backend, |_| {}).await;
        let (owner, wf) = support::engine::published(
            &fleet,
            "ada@example.com",
            json!({
                "nodes": [
                    {"id": "report", "type": "store_file", "config": {"name": "report.csv", "field": "/csv", "encoding": "text", "contentType": "text/csv"}},
                    {"id": "logo", "type": "store_file", "config": {"name": "logo.png", "field": "/png", "encoding": "base64"}},
                    {"id": "all", "type": "store_file", "config": {"name": "input.json"}}
                ],
                "edges": [],
                "triggers": [{"kind": "MANUAL"}]
            }),
        )
        .await;
        let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB";
        let input = json!({"csv": "id,total\n1,42\n", "png": png});
        let id = support::engine::start(&owner, &wf, input.clone()).await;
        let e = support::engine::finished(&owner, &id).await;
        assert_eq!(e["status"], "SUCCEEDED", "{e}");
        let output = |node: &str| support::engine::steps_of(&e, node)[0]["output"].clone();
        let report = output("report");
        assert_eq!(report["name"], "report.csv");
        assert_eq!(report["size"], 14);
        assert_eq!(report["contentType"], "text/csv");
        let content = reqwest::get(report["downloadUrl"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(content.status(), 200);
        assert_eq!(content.text().await.unwrap(), "id,total\n1,42\n");
        // Decoded from base64 and sniffed as what it is.
        assert_eq!(output("logo")["contentType"], "image/png", "{e}");
        let all = output("all");
        let stored: serde_json::Value = reqwest::get(all["downloadUrl"].as_str().unwrap())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stored, input);
        // Artifacts of the execution, with the run's output.json.
        let artifacts = owner
            .client
            .ok(
                "query($id: ID!) { execution(id: $id) { artifacts { name executionId } } }",
                json!({"id": id}),
            )
            .await;
        let mut names: Vec<String> = artifacts["execution"]["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["input.json", "logo.png", "output.json", "report.csv"]
        );

        // A value the encoding cannot take fails the step at once, with the reason.
        let (owner, bad) = support::engine::published(
            &fleet,
            "bob@example.com",
            json!({
                "nodes": [{"id": "bad", "type": "store_file", "config": {"name": "x.bin", "field": "/n", "encoding": "base64"}}],
                "edges": [],
                "triggers": [{"kind": "MANUAL"}]
            }),
        )
        .await;
        let id = support::engine::start(&owner, &bad, json!({"n": 5})).await;
        let e = support::engine::finished(&owner, &id).await;
        assert_eq!(e["status"], "FAILED");
        assert!(
            e["error"].as_str().unwrap().contains("base64"),
            "{}",
            e["error"]
        );
    }
}

/// Files larger than one gRPC message stream through `PutFile` and `GetFile` in chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_streams_files_in_chunks() {
    use flowfleet_runtime::config::ServiceName;
    use flowfleet_runtime::proto::storage::v1::storage_service_client::StorageServiceClient;
    use flowfleet_runtime::proto::storage::v1::NewFile;
    for backend in Backend::all() {
        let fleet = start_with(&backend, |c| c.storage.max_file_bytes = 8 * 1024 * 1024).await;
        let owner = fleet.sign_up("ada@example.com").await;
        let ws = support::engine::workspace(&owner)
            .await
            .as_str()
            .unwrap()
            .to_string();
        let content: Vec<u8> = (0..(5 * 1024 * 1024 + 17) as u32)
            .map(|i| (i % 241) as u8)
            .collect();
        let mut client = StorageServiceClient::new(fleet.channel(ServiceName::Storage));
        let token = owner.token().to_string();
        let stored = flowfleet_runtime::grpc::acting_for(
            Some(&token),
            flowfleet_runtime::files::put(
                &mut client,
                NewFile {
                    workspace_id: ws.clone(),
                    owner_id: owner.id.clone(),
                    name: "big.bin".into(),
                    ..NewFile::default()
                },
                content.clone().into(),
            ),
        )
        .await
        .unwrap();
        assert_eq!(stored.size, content.len() as i64);
        let (file, read) = flowfleet_runtime::grpc::acting_for(
            Some(&token),
            flowfleet_runtime::files::get(&mut client, &ws, &stored.id, u64::MAX),
        )
        .await
        .unwrap();
        assert_eq!(file.sha256, stored.sha256);
        assert!(read == content, "the content came back whole and in order");
        // A reader's limit refuses before the content is read.
        let refused = flowfleet_runtime::grpc::acting_for(
            Some(&token),
            flowfleet_runtime::files::get(&mut client, &ws, &stored.id, 1024),
        )
        .await
        .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    }
}

/// A step output over `worker.max_inline_output_bytes` is stored as a file: the step
/// records a reference, the next step reads the value back, and the execution database
/// holds only the reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_step_outputs_are_files_the_next_steps_read_back() {
    for backend in Backend::all() {
        let fleet = start_with(&backend, |c| c.worker.max_inline_output_bytes = 16 * 1024).await;
        let (owner, wf) = support::engine::published(
            &fleet,
            "ada@example.com",
            json!({
                "nodes": [
                    {"id": "big", "type": "transform", "config": {"expression": "{rows: [range(0; 3000) | {n: ., label: \"row \\(.)\"}]}"}},
                    {"id": "count", "type": "transform", "config": {"expression": "{count: (.rows | length), last: .rows[-1].label}"}}
                ],
                "edges": [{"source": "big", "target": "count"}],
                "triggers": [{"kind": "MANUAL"}]
            }),
        )
        .await;
        let id = support::engine::start(&owner, &wf, json!({})).await;
        let e = support::engine::finished(&owner, &id).await;
        assert_eq!(e["status"], "SUCCEEDED", "{e}");
        let big = support::engine::steps_of(&e, "big")[0];
        let reference = &big["output"]["$file"];
        assert_eq!(
            reference["name"], "step-big.output.json",
            "{}",
            big["output"]
        );
        assert!(reference["size"].as_i64().unwrap() > 16 * 1024);
        assert_eq!(
            support::engine::steps_of(&e, "count")[0]["output"],
            json!({"count": 3000, "last": "row 2999"}),
            "the next step read the stored value"
        );
        assert_eq!(e["output"], json!({"count": 3000, "last": "row 2999"}));
        // The stored value is the step's output, as an artifact of the run.
        let artifacts = owner
            .client
            .ok(
                "query($id: ID!) { execution(id: $id) { artifacts { id name downloadUrl } } }",
                json!({"id": id}),
            )
            .await;
        let stored = artifacts["execution"]["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "step-big.output.json")
            .expect("the stored output is an artifact");
        assert_eq!(stored["id"], reference["id"]);
        let value: serde_json::Value = reqwest::get(stored["downloadUrl"].as_str().unwrap())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(value["rows"].as_array().unwrap().len(), 3000);
    }
}
