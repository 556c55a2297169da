//! The `store_file` node: turns its input (or a field of it) into bytes as its config
//! says and stores them as an artifact of the execution through the storage service's
//! streaming `PutFile`; its output names the file and a signed link to it.

use base64::Engine as _;
use flowfleet_definitions::definition::Node;
use flowfleet_runtime::grpc::GrpcChannel;
use flowfleet_runtime::proto::storage::v1::storage_service_client::StorageServiceClient;
use serde_json::{json, Value};

use super::NodeError;
use crate::domain::Execution;
use crate::effects::artifact;

#[derive(Clone)]
pub struct StoreFileNode {
    pub storage: StorageServiceClient<GrpcChannel>,
}

/// The bytes to store and their default content type, from the step's input.
pub fn content(config: &Value, input: &Value) -> Result<(Vec<u8>, &'static str), String> {
    let field = config.get("field").and_then(Value::as_str).unwrap_or("");
    let value = input
        .pointer(field)
        .ok_or_else(|| format!("the input has nothing at `{field}`"))?;
    match config
        .get("encoding")
        .and_then(Value::as_str)
        .unwrap_or("json")
    {
        "json" => Ok((
            serde_json::to_vec_pretty(value).map_err(|e| e.to_string())?,
            "application/json",
        )),
        "text" => value
            .as_str()
            .map(|s| (s.as_bytes().to_vec(), "text/plain; charset=utf-8"))
            .ok_or_else(|| format!("`text` encoding needs a string at `{field}`")),
        "base64" => {
            let text = value
                .as_str()
                .ok_or_else(|| format!("`base64` encoding needs a string at `{field}`"))?;
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map(|bytes| (bytes, "application/octet-stream"))
                .map_err(|e| format!("the value at `{field}` is not base64: {e}"))
        }
        other => Err(format!("unknown encoding `{other}`")),
    }
}

impl StoreFileNode {
    pub async fn run(
        &self,
        e: &Execution,
        node: &Node,
        input: Value,
        logs: &mut Vec<String>,
    ) -> Result<Value, NodeError> {
        let (bytes, default_type) = content(&node.config, &input).map_err(NodeError::permanent)?;
        let name = node
            .config
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| NodeError::permanent("`config.name` is missing"))?;
        let content_type = node
            .config
            .get("contentType")
            .and_then(Value::as_str)
            .unwrap_or(default_type);
        let size = bytes.len();
        let file = flowfleet_runtime::files::put(
            &mut self.storage.clone(),
            artifact(e, name, content_type),
            bytes.into(),
        )
        .await
        .map_err(|s| {
            NodeError::from_status(&s, "the storage service", "storing the file was refused")
        })?;
        logs.push(format!("stored {name} ({size} bytes)"));
        Ok(json!({
            "fileId": file.id,
            "name": file.name,
            "size": file.size,
            "sha256": file.sha256,
            "contentType": file.content_type,
            "downloadUrl": file.download_url,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_turn_values_into_bytes() {
        let input = json!({"report": "a,b\n", "blob": "aGk=", "n": 1});
        assert_eq!(
            content(&json!({"name": "x"}), &input).unwrap().1,
            "application/json"
        );
        assert_eq!(
            content(&json!({"field": "/report", "encoding": "text"}), &input).unwrap(),
            (b"a,b\n".to_vec(), "text/plain; charset=utf-8")
        );
        assert_eq!(
            content(&json!({"field": "/blob", "encoding": "base64"}), &input)
                .unwrap()
                .0,
            b"hi"
        );
        assert!(content(&json!({"field": "/n", "encoding": "text"}), &input).is_err());
        assert!(content(&json!({"field": "/report", "encoding": "base64"}), &input).is_err());
        assert!(content(&json!({"field": "/missing"}), &input).is_err());
    }
}
