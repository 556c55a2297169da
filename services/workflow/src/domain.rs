//! The workflow service's domain: workflows, their lifecycle and versions.
//! No I/O here.

use flowfleet_shared::definition::Definition;
use flowfleet_shared::error::ApiError;
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
#[graphql(name = "WorkflowStatus")]
pub enum Status {
    Draft,
    Active,
    Archived,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "DRAFT",
            Status::Active => "ACTIVE",
            Status::Archived => "ARCHIVED",
        }
    }
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "DRAFT" => Some(Status::Draft),
            "ACTIVE" => Some(Status::Active),
            "ARCHIVED" => Some(Status::Archived),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Workflow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: String,
    pub status: Status,
    pub definition: Definition,
    /// Bumped by every change to the draft (optimistic concurrency).
    pub revision: i64,
    pub published_version: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct Version {
    pub workflow_id: Uuid,
    pub version: i64,
    pub definition: Definition,
    pub content_hash: String,
    pub created_at: i64,
}

/// A workflow name: 1 to 200 characters, trimmed.
pub fn parse_name(raw: &str) -> Result<String, ApiError> {
    let s = raw.trim();
    if s.is_empty() || s.chars().count() > 200 {
        return Err(ApiError::bad_input("`name` must be 1 to 200 characters"));
    }
    Ok(s.to_string())
}

pub fn parse_description(raw: &str) -> Result<String, ApiError> {
    if raw.chars().count() > 5000 {
        return Err(ApiError::bad_input(
            "`description` must be at most 5000 characters",
        ));
    }
    Ok(raw.to_string())
}

/// Parses a definition submitted by a client (a draft may still have problems;
/// only its shape must be right).
pub fn parse_definition(value: &serde_json::Value) -> Result<Definition, ApiError> {
    Definition::from_json(value)
        .map_err(|p| ApiError::bad_input(format!("the definition is malformed: {}", p.message)))
}

/// Checks that a definition can be published: every problem is reported, each
/// with its location.
pub fn check_publishable(d: &Definition) -> Result<(), ApiError> {
    let problems = d.problems();
    if problems.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    Err(ApiError::bad_input(format!(
        "the workflow cannot be published: {}",
        list.join("; ")
    )))
}

/// SHA-256 of the canonical JSON of a definition.
pub fn content_hash(d: &Definition) -> String {
    let json = serde_json::to_vec(d).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}
