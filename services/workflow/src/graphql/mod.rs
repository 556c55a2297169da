//! The workflow subgraph: the `Workflow` entity, `Workspace.workflows`, the
//! node catalog, and the create and publish operations; workspace credentials in
//! [`credentials`].

mod credentials;

use std::sync::Arc;

use async_graphql::{
    ComplexObject, Context, InputObject, Json, MergedObject, Object, Result, SimpleObject, ID,
};
use chrono::{DateTime, Utc};
use flowfleet_shared::access::Access;
use flowfleet_shared::auth::Role;
use flowfleet_shared::catalog;
use flowfleet_shared::clock::{to_datetime, Clock};
use flowfleet_shared::error::{parse_id, ApiError};
use flowfleet_shared::subgraph::caller;
use uuid::Uuid;

use crate::domain::{self, Status, Workflow};
use crate::store::Store;

pub type WorkflowSchema = async_graphql::Schema<Query, Mutation, async_graphql::EmptySubscription>;

pub struct Ctx {
    pub store: Store,
    pub access: Access,
    pub clock: Arc<dyn Clock>,
    pub relay: flowfleet_shared::events::outbox::Relay,
    /// Seals credential values.
    pub secrets: Arc<flowfleet_shared::secrets::SecretKeyRing>,
}

/// Every mutation of the subgraph.
#[derive(MergedObject, Default)]
pub struct Mutation(WorkflowMutation, credentials::CredentialMutation);

pub fn schema(ctx: Ctx) -> WorkflowSchema {
    async_graphql::Schema::build(Query, Mutation::default(), async_graphql::EmptySubscription)
        .enable_federation()
        .data(ctx)
        .finish()
}

/// A reference to a user (owned by the auth subgraph).
#[derive(SimpleObject)]
#[graphql(name = "User")]
pub struct UserRef {
    pub id: ID,
}

/// A workspace (owned by the auth subgraph); this subgraph adds its workflows.
#[derive(SimpleObject)]
#[graphql(name = "Workspace", complex)]
pub struct WorkspaceRef {
    pub id: ID,
}

#[ComplexObject]
impl WorkspaceRef {
    /// The workspace's credentials by name (never their values). VIEWER or above.
    async fn credentials(&self, ctx: &Context<'_>) -> Result<Vec<credentials::CredentialNode>> {
        credentials::list(ctx, parse_id("id", &self.id)?).await
    }

    /// The workspace's workflows, newest first.
    async fn workflows(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<Option<WorkflowConnection>> {
        // Nullable on purpose: a failure here (or this subgraph being down)
        // nulls only this field, not the parent object.
        let result: Result<WorkflowConnection> = async {
            let me = caller(ctx).require()?;
            let c = ctx.data::<Ctx>()?;
            let ws = parse_id("id", &self.id)?;
            c.access.require(me, ws, Role::Viewer).await?;
            if !(1..=100).contains(&first) {
                return Err(ApiError::bad_input("`first` must be between 1 and 100").into());
            }
            let after = after.map(|a| parse_id("after", &a)).transpose()?;
            let page = c.store.list(ws, first as i64, after).await?;
            Ok(WorkflowConnection {
                page_info: PageInfo {
                    has_next_page: page.has_next,
                    end_cursor: page.items.last().map(|w| w.id.to_string()),
                },
                total_count: page.total,
                nodes: page.items.into_iter().map(WorkflowNode).collect(),
            })
        }
        .await;
        result.map(Some)
    }
}

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

/// A workflow: a graph of nodes a user draws, publishes and runs.
pub struct WorkflowNode(pub Workflow);

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
    /// The draft's revision, for optimistic concurrency.
    async fn revision(&self) -> i64 {
        self.0.revision
    }
    /// The newest published version number, if any.
    async fn version(&self) -> Option<i64> {
        self.0.published_version
    }
    async fn created_at(&self) -> DateTime<Utc> {
        to_datetime(self.0.created_at)
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        to_datetime(self.0.updated_at)
    }
}

#[derive(SimpleObject)]
pub struct WorkflowVersion {
    pub version: i64,
    pub content_hash: String,
    pub created_at: DateTime<Utc>,
    pub workflow: WorkflowNode,
}

#[derive(SimpleObject)]
pub struct NodeTypeInfo {
    pub name: String,
    pub description: String,
    /// JSON Schema of the node's config.
    pub config_schema: Json<serde_json::Value>,
}

#[derive(InputObject)]
pub struct CreateWorkflowInput {
    pub workspace_id: ID,
    pub name: String,
    #[graphql(default)]
    pub description: String,
    /// `{nodes, edges, triggers, settings}`; may be incomplete while a draft.
    pub definition: Option<Json<serde_json::Value>>,
}

impl Ctx {
    /// Loads a workflow the caller may act on with at least `min`.
    async fn authorized(
        &self,
        ctx: &Context<'_>,
        id: &ID,
        min: Role,
    ) -> Result<Workflow, ApiError> {
        let me = caller(ctx).require()?;
        let id = parse_id("id", id)?;
        let w = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| ApiError::not_found("no workflow with this id"))?;
        // A non-member gets the same answer as for a missing workflow.
        match self.access.role(me.user_id, w.workspace_id).await? {
            None => Err(ApiError::not_found("no workflow with this id")),
            Some(r) if r < min => Err(ApiError::forbidden(format!(
                "your role in this workspace is {}; this needs {} or above",
                r.as_str(),
                min.as_str()
            ))),
            Some(_) => Ok(w),
        }
    }
}

pub struct Query;

#[Object]
impl Query {
    async fn workflow(&self, ctx: &Context<'_>, id: ID) -> Result<WorkflowNode> {
        let c = ctx.data::<Ctx>()?;
        Ok(WorkflowNode(c.authorized(ctx, &id, Role::Viewer).await?))
    }

    /// The node types a definition may use.
    async fn node_types(&self) -> Vec<NodeTypeInfo> {
        catalog::CATALOG
            .iter()
            .map(|t| NodeTypeInfo {
                name: t.name.into(),
                description: t.description.into(),
                config_schema: Json(serde_json::from_str(t.config_schema).unwrap_or_default()),
            })
            .collect()
    }

    #[graphql(entity)]
    async fn find_workflow_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<WorkflowNode> {
        let c = ctx.data::<Ctx>()?;
        Ok(WorkflowNode(c.authorized(ctx, &id, Role::Viewer).await?))
    }

    /// A user reference (owners); its fields live in the auth subgraph.
    #[graphql(entity)]
    async fn find_user_by_id(&self, id: ID) -> UserRef {
        UserRef { id }
    }

    /// Resolving a workspace reference does no I/O: access is checked by the
    /// fields that read the workspace's data.
    #[graphql(entity)]
    async fn find_workspace_by_id(&self, id: ID) -> WorkspaceRef {
        WorkspaceRef { id }
    }
}

#[derive(Default)]
pub struct WorkflowMutation;

#[Object]
impl WorkflowMutation {
    /// Creates a draft workflow in a workspace (EDITOR or above).
    #[tracing::instrument(skip_all)]
    async fn create_workflow(
        &self,
        ctx: &Context<'_>,
        input: CreateWorkflowInput,
    ) -> Result<WorkflowNode> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let ws = parse_id("workspaceId", &input.workspace_id)?;
        c.access.require(me, ws, Role::Editor).await?;
        let definition = match input.definition {
            Some(Json(v)) => domain::parse_definition(&v)?,
            None => Default::default(),
        };
        let now = c.clock.now_ms();
        let w = Workflow {
            id: Uuid::now_v7(),
            workspace_id: ws,
            owner_id: me.user_id,
            name: domain::parse_name(&input.name)?,
            description: domain::parse_description(&input.description)?,
            status: Status::Draft,
            definition,
            revision: 1,
            published_version: None,
            created_at: now,
            updated_at: now,
        };
        c.store.insert(&w).await?;
        Ok(WorkflowNode(w))
    }

    /// Validates the draft and freezes it as a new immutable version
    /// (EDITOR or above). Emits `workflow.published`.
    #[tracing::instrument(skip_all)]
    async fn publish_workflow(&self, ctx: &Context<'_>, id: ID) -> Result<WorkflowVersion> {
        let c = ctx.data::<Ctx>()?;
        let me = caller(ctx).require()?.clone();
        let w = c.authorized(ctx, &id, Role::Editor).await?;
        if w.status == Status::Archived {
            return Err(ApiError::conflict(
                "an archived workflow cannot be published; restore it first",
            )
            .into());
        }
        domain::check_publishable(&w.definition)?;
        let now = c.clock.now_ms();
        let v = c.store.publish(&w, me.user_id, now).await?;
        c.relay.wake();
        let mut published = w;
        published.status = Status::Active;
        published.published_version = Some(v.version);
        published.updated_at = now;
        Ok(WorkflowVersion {
            version: v.version,
            content_hash: v.content_hash,
            created_at: to_datetime(v.created_at),
            workflow: WorkflowNode(published),
        })
    }
}
