//! The storage mutations: uploading (GraphQL multipart requests; large files also go
//! over `PUT /files`, see [`crate::http`]), renaming and deleting files, and the
//! retention policy.

use async_graphql::{Context, Object, Result, ID};
use flowfleet_host::subgraph::caller;
use flowfleet_host::uploads::{Upload, Uploads};
use flowfleet_runtime::error::{parse_id, ApiError};

use super::workspace::FileRetention;
use super::{Ctx, FileNode};
use crate::domain::{ContentType, FileName, RetentionPolicy};
use crate::files::uploads::NewFile;

#[derive(Default)]
pub struct Mutation;

#[Object]
impl Mutation {
    /// Stores a file sent with the request (a GraphQL multipart request: send the
    /// `GraphQL-Require-Preflight` header), EDITOR or above. `name` defaults to the
    /// part's file name. The content streams to the blob store; its size is bounded by
    /// `storage.max_file_bytes` and the workspace's quota (`PAYLOAD_TOO_LARGE`,
    /// `QUOTA_EXCEEDED`), and through the gateway by `gateway.upload_max_file_bytes`.
    async fn upload_file(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        file: Upload,
        name: Option<String>,
    ) -> Result<FileNode> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let workspace = parse_id("workspaceId", &workspace_id)?;
        let uploads = ctx.data_opt::<Uploads>().ok_or_else(|| {
            ApiError::bad_input(
                "send the file as a multipart request (GraphQL multipart request spec)",
            )
        })?;
        let part = uploads.take(&file).await?;
        let name = FileName::parse(
            name.as_deref()
                .or(part.file_name.as_deref())
                .unwrap_or_default(),
        )
        .map_err(|e| e.with_detail("path", serde_json::json!(["name"])))?;
        let content_type = ContentType::parse(part.content_type.as_deref().unwrap_or_default())?;
        let new = NewFile {
            workspace_id: workspace,
            owner_id: me.user_id,
            execution_id: None,
            workflow_id: None,
            name,
            content_type,
        };
        let file = c.files.upload(me.into(), new, None, part.content).await?;
        Ok(FileNode::new(file, &c.files))
    }

    /// Renames a file (EDITOR or above).
    async fn rename_file(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        id: ID,
        name: String,
    ) -> Result<FileNode> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let workspace = parse_id("workspaceId", &workspace_id)?;
        let id = parse_id("id", &id)?;
        let name = FileName::parse(&name)?;
        let file = c.files.rename(me.into(), workspace, id, name).await?;
        Ok(FileNode::new(file, &c.files))
    }

    /// Deletes a file (EDITOR or above) and returns its id. Its content goes too unless
    /// another file has the same content; links to it stop working.
    async fn delete_file(&self, ctx: &Context<'_>, workspace_id: ID, id: ID) -> Result<ID> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let workspace = parse_id("workspaceId", &workspace_id)?;
        let id = parse_id("id", &id)?;
        let file = c.files.delete(me.into(), workspace, id).await?;
        Ok(ID(file.id.to_string()))
    }

    /// Sets how long the workspace keeps workflow artifacts (ADMIN or above): null
    /// keeps them (both null: until deleted). The next cleanup applies it.
    async fn set_file_retention(
        &self,
        ctx: &Context<'_>,
        workspace_id: ID,
        keep_days: Option<i32>,
        keep_last: Option<i32>,
    ) -> Result<FileRetention> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let workspace = parse_id("workspaceId", &workspace_id)?;
        let policy = RetentionPolicy::parse(keep_days, keep_last)?;
        Ok(c.files
            .set_retention(me.into(), workspace, policy)
            .await?
            .into())
    }
}
