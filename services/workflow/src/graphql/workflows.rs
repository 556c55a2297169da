//! Creating, editing, copying, archiving, deleting and importing workflows.
//! Every change but creation is conditional on the revision the caller read
//! (`expectedRevision`; a stale one gets `CONFLICT`). Saving never blocks on
//! validation: the result's `problems` tell what publishing would refuse.

use async_graphql::{Context, InputObject, Json, Object, Result, ID};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_security::access::Target;
use flowfleet_security::identity::Role;

use super::{Ctx, WorkflowNode};
use crate::domain::{self, Change, NewWorkflow, Status};
use crate::interchange::Document;

#[derive(InputObject)]
pub struct CreateWorkflowInput {
    pub workspace_id: ID,
    pub name: String,
    #[graphql(default)]
    pub description: String,
    #[graphql(default)]
    pub tags: Vec<String>,
    /// `{nodes, edges, triggers, settings}`; may be incomplete while a draft.
    pub definition: Option<Json<serde_json::Value>>,
}

/// The fields to change; those left out keep their value.
#[derive(InputObject)]
pub struct UpdateWorkflowInput {
    pub name: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub definition: Option<Json<serde_json::Value>>,
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
        c.access
            .authorize(me, ws, Role::Editor, Target::Workspace)
            .await?;
        let definition = match input.definition {
            Some(Json(v)) => domain::parse_definition(&v)?,
            None => Default::default(),
        };
        let w = NewWorkflow {
            workspace_id: ws,
            owner_id: me.user_id,
            name: domain::parse_name(&input.name)?,
            description: domain::parse_description(&input.description)?,
            tags: domain::parse_tags(&input.tags)?,
            definition,
        }
        .draft(c.clock.now_ms());
        c.store.insert(&w).await?;
        Ok(WorkflowNode::from(w))
    }

    /// Changes a workflow's name, description, tags or draft definition
    /// (EDITOR or above), if it is still at `expectedRevision`. An ARCHIVED
    /// workflow must be restored first.
    #[tracing::instrument(skip_all)]
    async fn update_workflow(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_revision: i64,
        input: UpdateWorkflowInput,
    ) -> Result<WorkflowNode> {
        let c = ctx.data::<Ctx>()?;
        let me = caller(ctx).require()?.user_id;
        let current = c.authorized(ctx, &id, Role::Editor).await?;
        Ctx::check_revision(&current, Some(expected_revision))?;
        current.allows(Change::Edit)?;
        if input.name.is_none()
            && input.description.is_none()
            && input.tags.is_none()
            && input.definition.is_none()
        {
            return Err(ApiError::bad_input(
                "nothing to change: give at least one of name, description, tags, definition",
            )
            .into());
        }
        let mut w = current;
        if let Some(name) = &input.name {
            w.name = domain::parse_name(name)?;
        }
        if let Some(description) = &input.description {
            w.description = domain::parse_description(description)?;
        }
        if let Some(tags) = &input.tags {
            w.tags = domain::parse_tags(tags)?;
        }
        if let Some(Json(definition)) = &input.definition {
            w.definition = domain::parse_definition(definition)?;
        }
        w.updated_at = c.clock.now_ms();
        Ok(WorkflowNode::from(
            c.store.update(&w, expected_revision, me).await?,
        ))
    }

    /// Copies a workflow's draft, description and tags into a new DRAFT owned
    /// by the caller (EDITOR or above); `name` defaults to `<name> (copy)`.
    #[tracing::instrument(skip_all)]
    async fn duplicate_workflow(
        &self,
        ctx: &Context<'_>,
        id: ID,
        name: Option<String>,
    ) -> Result<WorkflowNode> {
        let c = ctx.data::<Ctx>()?;
        let me = caller(ctx).require()?;
        let source = c.authorized(ctx, &id, Role::Editor).await?;
        let name = match name {
            Some(n) => domain::parse_name(&n)?,
            None => domain::copy_name(&source.name),
        };
        let copy = domain::duplicate(&source, name, me.user_id, c.clock.now_ms());
        c.store.insert(&copy).await?;
        Ok(WorkflowNode::from(copy))
    }

    /// Takes a workflow out of service (EDITOR or above): its triggers stop,
    /// it cannot be published or edited, and it can be restored.
    #[tracing::instrument(skip_all)]
    async fn archive_workflow(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_revision: Option<i64>,
    ) -> Result<WorkflowNode> {
        let c = ctx.data::<Ctx>()?;
        let w = c.authorized(ctx, &id, Role::Editor).await?;
        Ctx::check_revision(&w, expected_revision)?;
        w.allows(Change::Archive)?;
        let now = c.clock.now_ms();
        Ok(WorkflowNode::from(
            c.store.set_status(&w, Status::Archived, now).await?,
        ))
    }

    /// Brings an archived workflow back (EDITOR or above): ACTIVE with its
    /// published version's triggers live again, or DRAFT if never published.
    #[tracing::instrument(skip_all)]
    async fn restore_workflow(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_revision: Option<i64>,
    ) -> Result<WorkflowNode> {
        let c = ctx.data::<Ctx>()?;
        let w = c.authorized(ctx, &id, Role::Editor).await?;
        Ctx::check_revision(&w, expected_revision)?;
        w.allows(Change::Restore)?;
        let status = domain::restored_status(&w);
        let now = c.clock.now_ms();
        Ok(WorkflowNode::from(
            c.store.set_status(&w, status, now).await?,
        ))
    }

    /// Deletes a DRAFT or ARCHIVED workflow and its versions (ADMIN or
    /// above); archive an ACTIVE one first. Executions keep the versions they
    /// ran. Returns the deleted id.
    #[tracing::instrument(skip_all)]
    async fn delete_workflow(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_revision: Option<i64>,
    ) -> Result<ID> {
        let c = ctx.data::<Ctx>()?;
        let w = c.authorized(ctx, &id, Role::Admin).await?;
        Ctx::check_revision(&w, expected_revision)?;
        w.allows(Change::Delete)?;
        c.store.delete(&w, c.clock.now_ms()).await?;
        Ok(ID(w.id.to_string()))
    }

    /// Creates a DRAFT from an interchange document (EDITOR or above), named
    /// `name` or as in the document. A document that does not parse is
    /// refused with the path of the fault (`extensions.path`); one that parses
    /// is imported, and its `problems` tell what to fix before publishing
    /// (credential ids from another workspace, say).
    #[tracing::instrument(skip_all)]
    async fn import_workflow(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        document: Json<serde_json::Value>,
        name: Option<String>,
    ) -> Result<WorkflowNode> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let ws = parse_id("workspaceId", &workspace_id)?;
        c.access
            .authorize(me, ws, Role::Editor, Target::Workspace)
            .await?;
        let doc = Document::parse(&document.0)?;
        let w = NewWorkflow {
            workspace_id: ws,
            owner_id: me.user_id,
            name: domain::parse_name(name.as_deref().unwrap_or(&doc.name))?,
            description: domain::parse_description(&doc.description)?,
            tags: domain::parse_tags(&doc.tags)?,
            definition: doc.definition,
        }
        .draft(c.clock.now_ms());
        c.store.insert(&w).await?;
        Ok(WorkflowNode::from(w))
    }
}
