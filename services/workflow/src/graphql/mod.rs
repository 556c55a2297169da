//! The workflow subgraph: the `Workflow` entity and `Workspace.workflows`, the
//! node catalog; the workflow operations in [`workflows`], publishing and
//! rollback in [`versions`], workspace credentials in [`credentials`], and
//! the object types in [`types`].

mod credentials;
mod types;
mod versions;
mod workflows;

use std::sync::Arc;

use async_graphql::{ComplexObject, Context, MergedObject, Object, Result, SimpleObject, ID};
use flowfleet_definitions::catalog;
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::clock::Clock;
use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_security::access::{Access, Target};
use flowfleet_security::identity::Role;

use crate::domain::{ListFilter, Status, Workflow, NO_WORKFLOW};
use crate::store::Store;

pub use types::{NodeTypeInfo, PageInfo, WorkflowConnection, WorkflowNode, WorkflowVersion};

pub type WorkflowSchema = async_graphql::Schema<Query, Mutation, async_graphql::EmptySubscription>;

pub struct Ctx {
    pub store: Store,
    pub access: Access,
    pub clock: Arc<dyn Clock>,
    pub relay: flowfleet_runtime::events::outbox::Relay,
    /// Seals credential values.
    pub secrets: Arc<flowfleet_security::secrets::SecretKeyRing>,
}

/// Every mutation of the subgraph.
#[derive(MergedObject, Default)]
pub struct Mutation(
    workflows::WorkflowMutation,
    versions::VersionMutation,
    credentials::CredentialMutation,
);

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

    /// The workspace's workflows, newest first. `search` matches every word
    /// in the name or description, ignoring case; `status` and `tag` narrow
    /// the list; `totalCount` counts every match.
    async fn workflows(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
        search: Option<String>,
        status: Option<Status>,
        tag: Option<String>,
    ) -> Result<Option<WorkflowConnection>> {
        // Nullable on purpose: a failure here (or this subgraph being down)
        // nulls only this field, not the parent object.
        let result: Result<WorkflowConnection> = async {
            let me = caller(ctx).require()?;
            let c = ctx.data::<Ctx>()?;
            let ws = parse_id("id", &self.id)?;
            c.access
                .authorize(me, ws, Role::Viewer, Target::Workspace)
                .await?;
            if !(1..=100).contains(&first) {
                return Err(ApiError::bad_input("`first` must be between 1 and 100").into());
            }
            let after = after.map(|a| parse_id("after", &a)).transpose()?;
            let filter = ListFilter::parse(search.as_deref(), status, tag.as_deref())?;
            let page = c.store.list(ws, &filter, first as i64, after).await?;
            Ok(WorkflowConnection {
                page_info: PageInfo {
                    has_next_page: page.has_next,
                    end_cursor: page.items.last().map(|w| w.id.to_string()),
                },
                total_count: page.total,
                nodes: page.items.into_iter().map(WorkflowNode::from).collect(),
            })
        }
        .await;
        result.map(Some)
    }
}

impl Ctx {
    /// Loads a workflow the caller may act on with at least `min`. A caller
    /// outside its workspace gets the same answer as for a missing workflow.
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
            .ok_or_else(|| ApiError::not_found(NO_WORKFLOW))?;
        self.access
            .authorize(me, w.workspace_id, min, Target::Resource(NO_WORKFLOW))
            .await?;
        Ok(w)
    }

    /// Refuses a change whose caller read another revision than the stored one.
    fn check_revision(w: &Workflow, expected: Option<i64>) -> Result<(), ApiError> {
        match expected {
            Some(r) if r != w.revision => Err(crate::domain::stale(w.revision)),
            _ => Ok(()),
        }
    }
}

pub struct Query;

#[Object]
impl Query {
    /// A workflow (VIEWER or above in its workspace).
    async fn workflow(&self, ctx: &Context<'_>, id: ID) -> Result<WorkflowNode> {
        let c = ctx.data::<Ctx>()?;
        Ok(WorkflowNode::from(
            c.authorized(ctx, &id, Role::Viewer).await?,
        ))
    }

    /// The node types a definition may use, with the JSON Schema of each
    /// type's config, its input, output and branches.
    async fn node_types(&self) -> Vec<NodeTypeInfo> {
        catalog::CATALOG.iter().map(NodeTypeInfo::from).collect()
    }

    #[graphql(entity)]
    async fn find_workflow_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<WorkflowNode> {
        let c = ctx.data::<Ctx>()?;
        Ok(WorkflowNode::from(
            c.authorized(ctx, &id, Role::Viewer).await?,
        ))
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
