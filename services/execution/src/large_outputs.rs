//! Large step outputs live in the storage service, not in the execution database.
//!
//! When a step's output is larger than `worker.max_inline_output_bytes` (as JSON), the
//! worker stores it as a file, an artifact of the execution named
//! `step-<node>[-<item>].output.json`, and records in its place a reference:
//!
//! ```json
//! {"$file": {"id": "…", "name": "step-fetch.output.json", "size": 1048576, "sha256": "…"}}
//! ```
//!
//! References travel like any value: they become the next steps' inputs, `merge` inputs
//! or the execution's output. Before a node runs, the worker replaces every reference in
//! its input with the value the file holds (up to `worker.max_output_file_bytes`), so
//! nodes never see one. Outputs the engine itself reads stay inline: a `foreach` step's
//! items (its loop is planned from them) and a `webhook_response` step's reply.

use flowfleet_runtime::grpc::GrpcChannel;
use flowfleet_runtime::proto::storage::v1::storage_service_client::StorageServiceClient;
use serde_json::{json, Value};

use crate::domain::{Execution, StepRun};
use crate::effects::artifact;
use crate::nodes::NodeError;

/// The key of a reference object.
pub const REFERENCE: &str = "$file";

#[derive(Clone)]
pub struct LargeOutputs {
    pub storage: StorageServiceClient<GrpcChannel>,
    pub max_inline_bytes: usize,
    pub max_file_bytes: u64,
}

/// The file id `value` refers to, if it is a reference.
pub fn reference(value: &Value) -> Option<&str> {
    let object = value.as_object()?;
    if object.len() != 1 {
        return None;
    }
    object.get(REFERENCE)?.get("id")?.as_str()
}

/// Whether a node type's output may be stored as a file.
pub fn may_spill(node_type: &str) -> bool {
    !matches!(node_type, "foreach" | "webhook_response")
}

impl LargeOutputs {
    /// What to record for `output`: a reference to a file holding it when it is too large
    /// to keep inline, else `None` (record it as it is).
    pub async fn spill(
        &self,
        e: &Execution,
        step: &StepRun,
        output: &Value,
    ) -> Result<Option<Value>, NodeError> {
        if !may_spill(&step.node_type) {
            return Ok(None);
        }
        let bytes = serde_json::to_vec(output)
            .map_err(|err| NodeError::permanent(format!("the output is not JSON: {err}")))?;
        if bytes.len() <= self.max_inline_bytes {
            return Ok(None);
        }
        let name = match step.item {
            Some(item) => format!("step-{}-{item}.output.json", step.node_id),
            None => format!("step-{}.output.json", step.node_id),
        };
        let file = flowfleet_runtime::files::put(
            &mut self.storage.clone(),
            artifact(e, &name, "application/json"),
            bytes.into(),
        )
        .await
        .map_err(|s| {
            let what = "storing the step's large output";
            NodeError::from_status(&s, what, what)
        })?;
        Ok(Some(json!({REFERENCE: {
            "id": file.id,
            "name": file.name,
            "size": file.size,
            "sha256": file.sha256,
        }})))
    }

    /// `value` with every reference in it replaced by the value its file holds.
    pub async fn resolve(&self, e: &Execution, value: Value) -> Result<Value, NodeError> {
        if !contains_reference(&value) {
            return Ok(value);
        }
        Box::pin(self.resolve_inner(e, value)).await
    }

    async fn resolve_inner(&self, e: &Execution, value: Value) -> Result<Value, NodeError> {
        if let Some(id) = reference(&value) {
            let (_, content) = flowfleet_runtime::files::get(
                &mut self.storage.clone(),
                &e.workspace_id.to_string(),
                id,
                self.max_file_bytes,
            )
            .await
            .map_err(|s| {
                let what = "reading a step's stored output";
                NodeError::from_status(&s, what, what)
            })?;
            return serde_json::from_slice(&content).map_err(|err| {
                NodeError::permanent(format!("the stored output {id} is not JSON: {err}"))
            });
        }
        Ok(match value {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(Box::pin(self.resolve(e, item)).await?);
                }
                Value::Array(out)
            }
            Value::Object(map) => {
                let mut out = serde_json::Map::with_capacity(map.len());
                for (key, item) in map {
                    out.insert(key, Box::pin(self.resolve(e, item)).await?);
                }
                Value::Object(out)
            }
            other => other,
        })
    }
}

fn contains_reference(value: &Value) -> bool {
    if reference(value).is_some() {
        return true;
    }
    match value {
        Value::Array(items) => items.iter().any(contains_reference),
        Value::Object(map) => map.values().any(contains_reference),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_one_key_objects_with_an_id() {
        let r = json!({"$file": {"id": "f1", "size": 3}});
        assert_eq!(reference(&r), Some("f1"));
        assert_eq!(reference(&json!({"$file": {"id": "f1"}, "x": 1})), None);
        assert_eq!(reference(&json!({"$file": "f1"})), None);
        assert!(contains_reference(&json!({"a": [1, {"b": r}]})));
        assert!(!contains_reference(&json!({"a": [1, {"b": 2}]})));
        assert!(!may_spill("foreach") && !may_spill("webhook_response") && may_spill("set"));
    }
}
