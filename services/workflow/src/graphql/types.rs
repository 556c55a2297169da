//! The subgraph's object types: workflows, versions, node types and
//! validation problems.

use async_graphql::{Context, Json, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_definitions::catalog::{Handles, NodeType};
use flowfleet_definitions::validation::{self, Problem, ProblemCode, Severity};
use flowfleet_runtime::clock::to_datetime;
use flowfleet_runtime::error::ApiError;
use flowfleet_security::access::Target;
use flowfleet_security::identity::Role;
use tokio::sync::OnceCell;

use super::{Ctx, UserRef, WorkspaceRef};
use crate::domain::{Status, Version, Workflow};
use crate::interchange::{Document, Source};

/// Shared with the other subgraphs' connections.
#[derive(SimpleObject)]
#[graphql(shareable)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct WorkflowConnection {
    pub nodes: Vec<WorkflowNode>,
    pub page_info: PageInfo,
    pub total_count: i64,
}

#[derive(SimpleObject)]
pub struct WorkflowVersionConnection {
    pub nodes: Vec<WorkflowVersion>,
    pub page_info: PageInfo,
    pub total_count: i64,
}

/// One problem validation found in a definition.
#[derive(SimpleObject)]
#[graphql(name = "ValidationProblem")]
pub struct ProblemNode {
    /// ERROR blocks publishing; WARNING never does.
    pub severity: Severity,
    pub code: ProblemCode,
    /// Where: `nodes[2].config.field`, `edges[0].sourceHandle`, `triggers[1].timezone`.
    pub path: String,
    /// The node concerned, if any.
    pub node_id: Option<String>,
    /// The edge concerned (its index in `edges`), if any.
    pub edge_index: Option<i32>,
    pub message: String,
}

impl From<Problem> for ProblemNode {
    fn from(p: Problem) -> Self {
        ProblemNode {
            severity: p.severity,
            code: p.code,
            path: p.path,
            node_id: p.node_id,
            edge_index: p.edge_index.map(|i| i as i32),
            message: p.message,
        }
    }
}

/// A workflow: a graph of nodes a user draws, publishes and runs. Its
/// problems are computed at most once per response, however many of
/// `problems` and `publishable` a query asks for.
pub struct WorkflowNode(pub Workflow, OnceCell<Vec<Problem>>);

impl From<Workflow> for WorkflowNode {
    fn from(w: Workflow) -> Self {
        WorkflowNode(w, OnceCell::new())
    }
}

impl WorkflowNode {
    async fn draft_problems(&self, ctx: &Context<'_>) -> Result<&[Problem]> {
        let c = ctx.data::<Ctx>()?;
        let problems = self
            .1
            .get_or_try_init(|| c.store.validate(self.0.workspace_id, &self.0.definition))
            .await?;
        Ok(problems)
    }
}

#[Object(name = "Workflow")]
impl WorkflowNode {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Lowercase labels for finding and grouping workflows.
    async fn tags(&self) -> &[String] {
        &self.0.tags
    }
    async fn status(&self) -> Status {
        self.0.status
    }
    async fn workspace(&self) -> WorkspaceRef {
        WorkspaceRef {
            id: ID(self.0.workspace_id.to_string()),
        }
    }
    async fn owner(&self) -> UserRef {
        UserRef {
            id: ID(self.0.owner_id.to_string()),
        }
    }
    /// The draft definition (nodes, edges, triggers, settings) as JSON.
    async fn definition(&self) -> Json<serde_json::Value> {
        Json(serde_json::to_value(&self.0.definition).unwrap_or_default())
    }
    /// The draft's problems: errors block publishing, warnings do not.
    async fn problems(&self, ctx: &Context<'_>) -> Result<Vec<ProblemNode>> {
        Ok(self
            .draft_problems(ctx)
            .await?
            .iter()
            .cloned()
            .map(Into::into)
            .collect())
    }
    /// Whether the draft would publish: no problem is an error.
    async fn publishable(&self, ctx: &Context<'_>) -> Result<bool> {
        Ok(validation::errors(self.draft_problems(ctx).await?)
            .next()
            .is_none())
    }
    /// Bumped by every change; pass it back as `expectedRevision`.
    async fn revision(&self) -> i64 {
        self.0.revision
    }
    /// The newest published version number, if any.
    async fn version(&self) -> Option<i64> {
        self.0.published_version
    }
    /// The newest published version.
    async fn published_version(&self, ctx: &Context<'_>) -> Result<Option<WorkflowVersion>> {
        let c = ctx.data::<Ctx>()?;
        let Some(n) = self.0.published_version else {
            return Ok(None);
        };
        Ok(c.store
            .version_of(self.0.id, n)
            .await?
            .map(|v| WorkflowVersion::new(self.0.clone(), v)))
    }
    /// Published versions, newest first.
    async fn versions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<WorkflowVersionConnection> {
        let c = ctx.data::<Ctx>()?;
        if !(1..=100).contains(&first) {
            return Err(ApiError::bad_input("`first` must be between 1 and 100").into());
        }
        let after = after
            .map(|a| {
                a.parse::<i64>().map_err(|_| {
                    ApiError::bad_input("`after` must be an `endCursor` from this list")
                })
            })
            .transpose()?;
        let page = c.store.versions(self.0.id, first as i64, after).await?;
        Ok(WorkflowVersionConnection {
            page_info: PageInfo {
                has_next_page: page.has_next,
                end_cursor: page.items.last().map(|v| v.version.to_string()),
            },
            total_count: page.total,
            nodes: page
                .items
                .into_iter()
                .map(|v| WorkflowVersion::new(self.0.clone(), v))
                .collect(),
        })
    }
    /// The workflow as an interchange document (see docs/workflows.md): the
    /// draft, or published `version`. EDITOR or above, since a document can
    /// be imported anywhere.
    async fn export(
        &self,
        ctx: &Context<'_>,
        version: Option<i64>,
    ) -> Result<Json<serde_json::Value>> {
        let c = ctx.data::<Ctx>()?;
        let me = flowfleet_host::subgraph::caller(ctx).require()?;
        c.access
            .authorize(
                me,
                self.0.workspace_id,
                Role::Editor,
                Target::Resource(crate::domain::NO_WORKFLOW),
            )
            .await?;
        let definition = match version {
            None => self.0.definition.clone(),
            Some(n) => {
                c.store
                    .version_of(self.0.id, n)
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("no version {n}")))?
                    .definition
            }
        };
        let doc = Document::new(
            &self.0.name,
            &self.0.description,
            &self.0.tags,
            &definition,
            to_datetime(c.clock.now_ms()).to_rfc3339(),
            Source {
                workflow_id: self.0.id.to_string(),
                version,
            },
        );
        Ok(Json(serde_json::to_value(doc).map_err(ApiError::internal)?))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        to_datetime(self.0.created_at)
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        to_datetime(self.0.updated_at)
    }
}

/// An immutable published version of a workflow; executions run one of these.
pub struct WorkflowVersion {
    pub workflow: Workflow,
    pub version: Version,
}

impl WorkflowVersion {
    pub fn new(workflow: Workflow, version: Version) -> Self {
        WorkflowVersion { workflow, version }
    }
}

#[Object]
impl WorkflowVersion {
    async fn version(&self) -> i64 {
        self.version.version
    }
    /// SHA-256 of the definition's canonical JSON.
    async fn content_hash(&self) -> &str {
        &self.version.content_hash
    }
    /// The frozen definition.
    async fn definition(&self) -> Json<serde_json::Value> {
        Json(serde_json::to_value(&self.version.definition).unwrap_or_default())
    }
    async fn published_by(&self) -> UserRef {
        UserRef {
            id: ID(self.version.published_by.to_string()),
        }
    }
    /// The older version this one re-published, for a rollback.
    async fn rolled_back_from(&self) -> Option<i64> {
        self.version.rolled_back_from
    }
    async fn created_at(&self) -> DateTime<Utc> {
        to_datetime(self.version.created_at)
    }
    async fn workflow(&self) -> WorkflowNode {
        WorkflowNode::from(self.workflow.clone())
    }
}

/// A node type from the catalog.
#[derive(SimpleObject)]
pub struct NodeTypeInfo {
    pub name: String,
    pub description: String,
    /// JSON Schema of the node's config.
    pub config_schema: Json<serde_json::Value>,
    /// What the node receives.
    pub input: String,
    /// What the node produces.
    pub output: String,
    /// Whether edges from this node name a branch (`sourceHandle`).
    pub branching: bool,
    /// The fixed branch names, if any.
    pub handles: Vec<String>,
    /// For branches named by the config: the JSON pointer of the list whose
    /// elements name them, the field naming each, and the fallback branch.
    pub handles_from_config: Option<HandlesFromConfig>,
    /// Config fields holding a credential id, and the kinds each accepts.
    pub credential_fields: Vec<CredentialField>,
}

#[derive(SimpleObject)]
pub struct HandlesFromConfig {
    pub list: String,
    pub field: String,
    pub fallback: String,
}

#[derive(SimpleObject)]
pub struct CredentialField {
    /// JSON pointer into the config.
    pub pointer: String,
    pub kinds: Vec<String>,
}

impl From<&NodeType> for NodeTypeInfo {
    fn from(t: &NodeType) -> Self {
        let (branching, handles, handles_from_config) = match t.handles {
            Handles::Single => (false, vec![], None),
            Handles::Fixed(names) => (true, names.iter().map(|s| s.to_string()).collect(), None),
            Handles::FromConfig {
                list,
                field,
                fallback,
            } => (
                true,
                vec![],
                Some(HandlesFromConfig {
                    list: list.into(),
                    field: field.into(),
                    fallback: fallback.into(),
                }),
            ),
        };
        NodeTypeInfo {
            name: t.name.into(),
            description: t.description.into(),
            config_schema: Json(t.schema()),
            input: t.input.into(),
            output: t.output.into(),
            branching,
            handles,
            handles_from_config,
            credential_fields: t
                .credentials
                .iter()
                .map(|s| CredentialField {
                    pointer: s.pointer.into(),
                    kinds: s.kinds.iter().map(|k| k.to_string()).collect(),
                })
                .collect(),
        }
    }
}
