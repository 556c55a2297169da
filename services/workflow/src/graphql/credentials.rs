//! Workspace credentials through GraphQL: created, renamed, replaced and deleted by editors;
//! listed (names and kinds, never values) by every member. A value is sealed before it is
//! stored and never returned.

use async_graphql::{Context, InputObject, Json, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::clock::to_datetime;
use flowfleet_runtime::error::{parse_id, ApiError};
use flowfleet_security::access::Target;
use flowfleet_security::identity::Role;
use uuid::Uuid;

use super::{Ctx, UserRef};
use crate::credentials::{self, Credential, CredentialKind, CredentialValue};

/// A workspace credential, for nodes to use by id. Its value is never returned.
#[derive(SimpleObject)]
#[graphql(name = "Credential")]
pub struct CredentialNode {
    pub id: ID,
    pub workspace_id: ID,
    pub name: String,
    pub kind: CredentialKind,
    pub created_by: UserRef,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Credential> for CredentialNode {
    fn from(c: Credential) -> Self {
        CredentialNode {
            id: ID(c.id.to_string()),
            workspace_id: ID(c.workspace_id.to_string()),
            name: c.name,
            kind: c.kind,
            created_by: UserRef {
                id: ID(c.created_by.to_string()),
            },
            created_at: to_datetime(c.created_at),
            updated_at: to_datetime(c.updated_at),
        }
    }
}

#[derive(InputObject)]
pub struct CreateCredentialInput {
    pub workspace_id: ID,
    pub name: String,
    pub kind: CredentialKind,
    /// The secret fields for `kind` (see `CredentialKind`); write-only.
    pub value: Json<serde_json::Value>,
}

/// The workspace's credentials, by name (VIEWER or above).
pub(super) async fn list(ctx: &Context<'_>, workspace: Uuid) -> Result<Vec<CredentialNode>> {
    let me = caller(ctx).require()?;
    let c = ctx.data::<Ctx>()?;
    c.access
        .authorize(me, workspace, Role::Viewer, Target::Workspace)
        .await?;
    Ok(c.store
        .credentials(workspace)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

impl Ctx {
    fn seal(&self, id: Uuid, value: &CredentialValue) -> Result<String, ApiError> {
        self.secrets
            .seal(&value.to_bytes(), &credentials::seal_context(id))
            .map_err(ApiError::internal)
    }

    /// The credential, if the caller is an EDITOR or above of its workspace; others cannot
    /// tell it from a missing one.
    async fn editable(&self, ctx: &Context<'_>, id: &ID) -> Result<Credential, ApiError> {
        let me = caller(ctx).require()?;
        let id = parse_id("id", id)?;
        const MISSING: &str = "no such credential";
        let credential = self
            .store
            .credential(id)
            .await?
            .ok_or_else(|| ApiError::not_found(MISSING))?;
        self.access
            .authorize(
                me,
                credential.workspace_id,
                Role::Editor,
                Target::Resource(MISSING),
            )
            .await?;
        Ok(credential)
    }
}

#[derive(Default)]
pub struct CredentialMutation;

#[Object]
impl CredentialMutation {
    /// Stores a credential for the workspace's nodes (EDITOR or above). The value is sealed
    /// and never returned; nodes refer to the credential by id.
    #[tracing::instrument(skip_all)]
    async fn create_credential(
        &self,
        ctx: &Context<'_>,
        input: CreateCredentialInput,
    ) -> Result<CredentialNode> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let workspace = parse_id("workspaceId", &input.workspace_id)?;
        c.access
            .authorize(me, workspace, Role::Editor, Target::Workspace)
            .await?;
        let name = credentials::parse_name(&input.name)?;
        let value = CredentialValue::parse(input.kind, &input.value.0)?;
        let now = c.clock.now_ms();
        let credential = Credential {
            id: Uuid::now_v7(),
            workspace_id: workspace,
            name,
            kind: input.kind,
            created_by: me.user_id,
            created_at: now,
            updated_at: now,
        };
        let sealed = c.seal(credential.id, &value)?;
        c.store.create_credential(&credential, &sealed).await?;
        Ok(credential.into())
    }

    /// Renames a credential and/or replaces its value (of the same kind). EDITOR or above.
    #[tracing::instrument(skip_all)]
    async fn update_credential(
        &self,
        ctx: &Context<'_>,
        id: ID,
        name: Option<String>,
        value: Option<Json<serde_json::Value>>,
    ) -> Result<CredentialNode> {
        let c = ctx.data::<Ctx>()?;
        let credential = c.editable(ctx, &id).await?;
        let name = name.as_deref().map(credentials::parse_name).transpose()?;
        let sealed = value
            .map(|v| {
                let value = CredentialValue::parse(credential.kind, &v.0)?;
                c.seal(credential.id, &value)
            })
            .transpose()?;
        let now = c.clock.now_ms();
        if !c
            .store
            .update_credential(credential.id, name.as_deref(), sealed.as_deref(), now)
            .await?
        {
            return Err(ApiError::not_found("no such credential").into());
        }
        Ok(Credential {
            name: name.unwrap_or(credential.name),
            updated_at: now,
            ..credential
        }
        .into())
    }

    /// Deletes a credential. EDITOR or above. Nodes that refer to it fail validation.
    #[tracing::instrument(skip_all)]
    async fn delete_credential(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let c = ctx.data::<Ctx>()?;
        let credential = c.editable(ctx, &id).await?;
        Ok(c.store.delete_credential(credential.id).await?)
    }
}
