//! The workflow service's domain: workflows, their lifecycle and versions, and
//! the rules their fields obey. No I/O here.
//!
//! Lifecycle: a workflow is created as DRAFT. Publishing freezes its draft as
//! an immutable version and makes it ACTIVE (its triggers go live). Archiving
//! takes it out of service; restoring brings it back to ACTIVE when it has a
//! published version, else to DRAFT. Only a DRAFT or ARCHIVED workflow may be
//! deleted, so a live one is never removed by one click.

use flowfleet_definitions::definition::Definition;
use flowfleet_definitions::validation::{self, Problem};
use flowfleet_runtime::error::ApiError;
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

/// What a user may ask of a workflow, as far as its status decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Edit,
    Publish,
    RollBack,
    Archive,
    Restore,
    Delete,
}

impl Workflow {
    /// The lifecycle rules: an ARCHIVED workflow is restored before it is edited,
    /// published or rolled back, and only it can be restored; an ACTIVE one is archived
    /// before it is deleted.
    pub fn allows(&self, change: Change) -> Result<(), ApiError> {
        let refusal = match (self.status, change) {
            (Status::Archived, Change::Edit) => {
                "an archived workflow cannot be edited; restore it first"
            }
            (Status::Archived, Change::Publish) => {
                "an archived workflow cannot be published; restore it first"
            }
            (Status::Archived, Change::RollBack) => {
                "an archived workflow cannot be rolled back; restore it first"
            }
            (Status::Archived, Change::Archive) => "the workflow is already archived",
            (Status::Draft | Status::Active, Change::Restore) => {
                "only an archived workflow can be restored"
            }
            (Status::Active, Change::Delete) => {
                "an active workflow cannot be deleted; archive it first"
            }
            _ => return Ok(()),
        };
        Err(ApiError::conflict(refusal))
    }
}

#[derive(Debug, Clone)]
pub struct Workflow {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub status: Status,
    pub definition: Definition,
    /// Bumped by every change to the workflow (optimistic concurrency).
    pub revision: i64,
    pub published_version: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Workflow {
    /// What search matches against: name and description, lowercased.
    pub fn search_text(&self) -> String {
        format!("{} {}", self.name, self.description).to_lowercase()
    }
}

#[derive(Debug, Clone)]
pub struct Version {
    pub workflow_id: Uuid,
    pub version: i64,
    pub definition: Definition,
    pub content_hash: String,
    pub published_by: Uuid,
    /// Set when this version re-published an older one (a rollback).
    pub rolled_back_from: Option<i64>,
    pub created_at: i64,
}

/// What a workflow that does not exist, or that the caller may not see, answers.
pub const NO_WORKFLOW: &str = "no workflow with this id";

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

pub const MAX_TAGS: usize = 20;

/// Tags: up to 20, each 1 to 40 characters after trimming, lowercased (so
/// `Billing` and `billing` are one tag), duplicates dropped, order kept.
pub fn parse_tags(raw: &[String]) -> Result<Vec<String>, ApiError> {
    let mut tags: Vec<String> = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        let t = t.trim().to_lowercase();
        if t.is_empty() || t.chars().count() > 40 {
            return Err(ApiError::bad_input(format!(
                "`tags[{i}]` must be 1 to 40 characters"
            )));
        }
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(ApiError::bad_input(format!(
            "a workflow may have at most {MAX_TAGS} tags"
        )));
    }
    Ok(tags)
}

/// Parses a definition submitted by a client. A draft may still have problems
/// (reported by validation); only its shape must be right, and a wrong shape
/// is refused with the path of the offending value.
pub fn parse_definition(value: &serde_json::Value) -> Result<Definition, ApiError> {
    Definition::from_json(value).map_err(|m| {
        ApiError::bad_input(format!(
            "the definition is malformed at `{}`: {}",
            m.path, m.message
        ))
        .with_detail("path", serde_json::Value::String(m.path))
    })
}

/// Refuses publishing while any problem is an error; the error carries every
/// problem (errors and warnings) as `extensions.problems`.
pub fn check_publishable(problems: &[Problem]) -> Result<(), ApiError> {
    let errors: Vec<String> = validation::errors(problems)
        .map(|p| p.to_string())
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_input(format!(
        "the workflow cannot be published: {}",
        errors.join("; ")
    ))
    .with_detail(
        "problems",
        serde_json::to_value(problems).unwrap_or_default(),
    ))
}

/// What a list of workflows is narrowed to.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Lowercased words that must all appear in the name or description.
    pub words: Vec<String>,
    pub status: Option<Status>,
    pub tag: Option<String>,
}

impl ListFilter {
    pub fn parse(
        search: Option<&str>,
        status: Option<Status>,
        tag: Option<&str>,
    ) -> Result<ListFilter, ApiError> {
        let search = search.unwrap_or("");
        if search.chars().count() > 200 {
            return Err(ApiError::bad_input(
                "`search` must be at most 200 characters",
            ));
        }
        let words: Vec<String> = search
            .to_lowercase()
            .split_whitespace()
            .take(10)
            .map(str::to_string)
            .collect();
        let tag = tag
            .map(|t| t.trim().to_lowercase())
            .filter(|t| !t.is_empty());
        Ok(ListFilter { words, status, tag })
    }
}

/// The name of a copy: `<name> (copy)`, cut to fit the name limit.
pub fn copy_name(name: &str) -> String {
    let suffix = " (copy)";
    let keep = 200 - suffix.len();
    let base: String = name.chars().take(keep).collect();
    format!("{base}{suffix}")
}

/// What a new workflow is made of; its fields already parsed.
pub struct NewWorkflow {
    pub workspace_id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub definition: Definition,
}

impl NewWorkflow {
    /// A DRAFT at revision 1 (created, imported or duplicated).
    pub fn draft(self, now: i64) -> Workflow {
        Workflow {
            id: Uuid::now_v7(),
            workspace_id: self.workspace_id,
            owner_id: self.owner_id,
            name: self.name,
            description: self.description,
            tags: self.tags,
            status: Status::Draft,
            definition: self.definition,
            revision: 1,
            published_version: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// A new draft copying `source`'s draft, tags and description.
pub fn duplicate(source: &Workflow, name: String, owner: Uuid, now: i64) -> Workflow {
    NewWorkflow {
        workspace_id: source.workspace_id,
        owner_id: owner,
        name,
        description: source.description.clone(),
        tags: source.tags.clone(),
        definition: source.definition.clone(),
    }
    .draft(now)
}

/// The answer to a change made from a revision that is no longer current.
pub fn stale(current: i64) -> ApiError {
    ApiError::conflict(format!(
        "the workflow was changed meanwhile (it is at revision {current} now); reload it and apply your change again"
    ))
}

/// The status a restored workflow returns to.
pub fn restored_status(w: &Workflow) -> Status {
    if w.published_version.is_some() {
        Status::Active
    } else {
        Status::Draft
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_trimmed_lowercased_and_deduplicated() {
        let raw = vec![" Billing ".to_string(), "billing".into(), "EU".into()];
        assert_eq!(parse_tags(&raw).unwrap(), vec!["billing", "eu"]);
        assert!(parse_tags(&["".into()]).is_err());
        assert!(parse_tags(&["x".repeat(41)]).is_err());
        let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
        assert!(parse_tags(&many).is_err());
    }

    #[test]
    fn copy_names_fit() {
        assert_eq!(copy_name("Nightly"), "Nightly (copy)");
        assert_eq!(copy_name(&"n".repeat(200)).chars().count(), 200);
    }

    #[test]
    fn search_words_are_lowercased() {
        let f = ListFilter::parse(Some("  Invoice  EU "), None, Some(" Billing ")).unwrap();
        assert_eq!(f.words, vec!["invoice", "eu"]);
        assert_eq!(f.tag.as_deref(), Some("billing"));
    }
}
