//! The interchange format: a workflow as one JSON document, to export, keep in
//! version control, and import into any workspace. Documented in
//! `docs/workflows.md`. No I/O here.
//!
//! ```json
//! {"format": "flowfleet.workflow", "formatVersion": 1,
//!  "name": "…", "description": "…", "tags": ["…"],
//!  "definition": {"nodes": […], "edges": […], "triggers": […], "settings": {…}},
//!  "contentHash": "<sha-256 of the definition>", "exportedAt": "<RFC 3339>",
//!  "source": {"workflowId": "…", "version": 3}}
//! ```
//!
//! `contentHash`, `exportedAt` and `source` are informative and optional on
//! import; a `contentHash` that is present must match the definition, so a
//! damaged or hand-edited document is caught rather than imported silently.

use flowfleet_definitions::definition::Definition;
use flowfleet_runtime::error::ApiError;
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "flowfleet.workflow";
/// The newest format version this server writes and reads.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Document {
    pub format: String,
    pub format_version: u32,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub definition: Definition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// Where an exported document came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    pub workflow_id: String,
    /// The published version exported; absent for the draft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

impl Document {
    pub fn new(
        name: &str,
        description: &str,
        tags: &[String],
        definition: &Definition,
        exported_at: String,
        source: Source,
    ) -> Document {
        Document {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            name: name.into(),
            description: description.into(),
            tags: tags.to_vec(),
            definition: definition.clone(),
            content_hash: Some(definition.content_hash()),
            exported_at: Some(exported_at),
            source: Some(source),
        }
    }

    /// Reads a document, refusing it with the path of the first thing wrong.
    pub fn parse(value: &serde_json::Value) -> Result<Document, ApiError> {
        let refuse = |path: &str, message: String| {
            ApiError::bad_input(format!("the document is invalid at `{path}`: {message}"))
                .with_detail("path", serde_json::Value::String(path.into()))
        };
        let format = value.get("format").and_then(|f| f.as_str());
        if format != Some(FORMAT) {
            return Err(refuse(
                "format",
                format!("expected \"{FORMAT}\"; this is not an exported Flowfleet workflow"),
            ));
        }
        match value.get("formatVersion").and_then(|v| v.as_u64()) {
            Some(v) if v >= 1 && v <= FORMAT_VERSION as u64 => {}
            Some(v) if v > FORMAT_VERSION as u64 => {
                return Err(refuse(
                    "formatVersion",
                    format!("version {v} is newer than this server reads ({FORMAT_VERSION}); upgrade Flowfleet to import it"),
                ))
            }
            _ => {
                return Err(refuse(
                    "formatVersion",
                    format!("expected a format version from 1 to {FORMAT_VERSION}"),
                ))
            }
        }
        let doc: Document = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = match e.path().to_string() {
                p if p == "." => "document".to_string(),
                p => p,
            };
            refuse(&path, e.into_inner().to_string())
        })?;
        if let Some(hash) = &doc.content_hash {
            if *hash != doc.definition.content_hash() {
                return Err(refuse(
                    "contentHash",
                    "does not match the definition; the document was changed or damaged after export (remove `contentHash` to import an edited document)".into(),
                ));
            }
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exported() -> serde_json::Value {
        let def = Definition::from_json(&json!({
            "nodes": [{"id": "a", "type": "set", "config": {"value": 1}}],
            "triggers": [{"kind": "MANUAL"}]
        }))
        .unwrap();
        serde_json::to_value(Document::new(
            "N",
            "",
            &[],
            &def,
            "2026-01-01T00:00:00Z".into(),
            Source {
                workflow_id: "w".into(),
                version: None,
            },
        ))
        .unwrap()
    }

    fn refusal(doc: serde_json::Value) -> String {
        let e = Document::parse(&doc).unwrap_err();
        e.detail("path").unwrap().as_str().unwrap().to_string()
    }

    #[test]
    fn round_trip() {
        let doc = Document::parse(&exported()).unwrap();
        assert_eq!(serde_json::to_value(&doc).unwrap(), exported());
    }

    #[test]
    fn refusals_are_located() {
        let mut d = exported();
        d["format"] = json!("n8n");
        assert_eq!(refusal(d), "format");
        let mut d = exported();
        d["formatVersion"] = json!(2);
        assert_eq!(refusal(d), "formatVersion");
        let mut d = exported();
        d["definition"]["nodes"][0]["position"] = json!({"x": "far"});
        d.as_object_mut().unwrap().remove("contentHash");
        assert_eq!(refusal(d), "definition.nodes[0].position.x");
        let mut d = exported();
        d["definition"]["nodes"][0]["config"]["value"] = json!(2);
        assert_eq!(refusal(d), "contentHash");
        let mut d = exported();
        d["extra"] = json!(1);
        assert_eq!(refusal(d), "extra");
    }
}
