//! The rows for the storage service's operations and `Workspace` fields: renaming and
//! deleting a file (EDITOR or above; another workspace's file is `NOT_FOUND`), the
//! retention policy (ADMIN sets it, VIEWER reads it), and listing files and usage
//! (VIEWER or above).

use serde_json::{json, Value};

use crate::graphql::graphql;
use crate::world::{needs, Caller, Outcome, Who, World, FORBIDDEN, NOT_FOUND};

/// A fresh file of the world's workspace, uploaded by its owner.
async fn upload(w: &World, name: &str) -> Value {
    let response = reqwest::Client::new()
        .put(&w.files_url)
        .query(&[("workspaceId", w.workspace.as_str()), ("name", name)])
        .bearer_auth(w.owner().token())
        .body("from the tenancy matrix")
        .send()
        .await
        .expect("the fleet answers");
    assert_eq!(response.status(), 201, "the owner uploads");
    let file: Value = response.json().await.unwrap();
    file["id"].clone()
}

/// The row of a storage operation, or `None` when `operation` is not one.
pub async fn row(operation: &str, w: &World, caller: Caller) -> Option<(Outcome, Option<String>)> {
    let me = &w.callers[&caller];
    let ws = &w.workspace;
    Some(match operation {
        // Through the gateway as a GraphQL multipart request.
        "uploadFile" => {
            let operations = json!({
                "query": "mutation($w: ID!, $f: Upload!) { uploadFile(workspaceId: $w, file: $f) { id } }",
                "variables": {"w": ws, "f": null},
            });
            let body = crate::support::files::multipart(
                &operations,
                &[("0", "variables.f", "matrix.txt", b"from the tenancy matrix")],
            );
            let url = w.files_url.replace("/files", "/graphql");
            let (_, answer) = crate::support::files::send_multipart(&url, me.token(), body).await;
            let outcome = match answer["errors"][0]["extensions"]["code"].as_str() {
                Some(code) => {
                    assert!(answer["data"]["uploadFile"].is_null(), "{answer}");
                    Err(code.to_string())
                }
                None => Ok(answer["data"]["uploadFile"].clone()),
            };
            (outcome, needs(Who::Editor, caller, FORBIDDEN))
        }
        "renameFile" => {
            let id = upload(w, &format!("rename-{}.txt", caller.slug())).await;
            (
                graphql(
                    me,
                    "mutation($w: ID!, $id: ID!) { renameFile(workspaceId: $w, id: $id, name: \"renamed.txt\") { id } }",
                    json!({"w": ws, "id": id}),
                    operation,
                )
                .await,
                needs(Who::Editor, caller, NOT_FOUND),
            )
        }
        "deleteFile" => {
            let id = upload(w, &format!("delete-{}.txt", caller.slug())).await;
            (
                graphql(
                    me,
                    "mutation($w: ID!, $id: ID!) { deleteFile(workspaceId: $w, id: $id) }",
                    json!({"w": ws, "id": id}),
                    operation,
                )
                .await,
                needs(Who::Editor, caller, NOT_FOUND),
            )
        }
        "setFileRetention" => (
            graphql(
                me,
                "mutation($w: ID!) { setFileRetention(workspaceId: $w, keepDays: 3650) { keepDays } }",
                json!({"w": ws}),
                operation,
            )
            .await,
            needs(Who::Admin, caller, FORBIDDEN),
        ),
        _ => return None,
    })
}

/// What to select for a storage field of an entity, if it is one.
pub fn selection(field: &str) -> Option<String> {
    Some(match field {
        "files" => "files { totalCount }".into(),
        "storageUsage" => "storageUsage { bytes }".into(),
        "fileRetention" => "fileRetention { keepDays }".into(),
        _ => return None,
    })
}

/// The expectation for a storage entity field, if it is one.
pub fn expected(ty: &str, field: &str, caller: Caller) -> Option<Option<String>> {
    Some(match (ty, field) {
        ("Workspace", "files" | "storageUsage" | "fileRetention") => {
            needs(Who::Viewer, caller, FORBIDDEN)
        }
        ("File", "declaredContentType" | "sniffedContentType" | "executionId" | "workflowId") => {
            needs(Who::Viewer, caller, NOT_FOUND)
        }
        _ => return None,
    })
}
