//! The storage subgraph: the `File` entity and `Execution.artifacts`, which it
//! contributes to the execution service's `Execution` entity. A file is visible
//! to members (Viewer or above) of its workspace only.

use std::collections::HashMap;

use async_graphql::{ComplexObject, Context, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_shared::access::Access;
use flowfleet_shared::auth::Role;
use flowfleet_shared::clock::to_datetime;
use flowfleet_shared::error::parse_id;
use flowfleet_shared::subgraph::caller;
use uuid::Uuid;

use crate::domain::StoredFile;
use crate::files::Files;

pub type StorageSchema =
    async_graphql::Schema<Query, async_graphql::EmptyMutation, async_graphql::EmptySubscription>;

/// What resolvers need, placed in the schema's data.
pub struct Ctx {
    pub files: Files,
    pub access: Access,
}

pub fn schema(ctx: Ctx) -> StorageSchema {
    async_graphql::Schema::build(
        Query,
        async_graphql::EmptyMutation,
        async_graphql::EmptySubscription,
    )
    .enable_federation()
    .data(ctx)
    .finish()
}

/// A stored file: a workflow's artifact or an upload.
#[derive(SimpleObject)]
#[graphql(name = "File")]
pub struct FileNode {
    pub id: ID,
    pub workspace_id: ID,
    pub name: String,
    pub content_type: String,
    /// Bytes. Uploads are capped by `storage.max_file_bytes`, which the service
    /// keeps within GraphQL's 32-bit `Int`.
    pub size: i32,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    /// A signed link to the content that expires (after
    /// `storage.url_ttl_secs`); it needs no other credentials.
    pub download_url: String,
}

impl FileNode {
    pub fn new(file: StoredFile, files: &Files) -> Self {
        FileNode {
            download_url: files.download_url(file.id),
            id: ID(file.id.to_string()),
            workspace_id: ID(file.workspace_id.to_string()),
            name: file.name,
            content_type: file.content_type,
            size: i32::try_from(file.size).unwrap_or(i32::MAX),
            sha256: file.sha256,
            created_at: to_datetime(file.created_at),
        }
    }
}

/// The execution service's entity, known here by its key only.
#[derive(SimpleObject)]
#[graphql(name = "Execution", complex)]
pub struct ExecutionRef {
    pub id: ID,
}

#[ComplexObject]
impl ExecutionRef {
    /// Files the execution produced, oldest first: those in workspaces where the
    /// caller is a member (Viewer or above).
    async fn artifacts(&self, ctx: &Context<'_>) -> Result<Option<Vec<FileNode>>> {
        // Nullable on purpose: a failure here (or this subgraph being down)
        // nulls only this field, not the parent object.
        let result: Result<Vec<FileNode>> = async {
            let me = caller(ctx).require()?;
            let c = ctx.data::<Ctx>()?;
            let id = parse_id("id", &self.id)?;
            let mut visible: HashMap<Uuid, bool> = HashMap::new();
            let mut out = Vec::new();
            for file in c.files.by_execution(id).await? {
                let allowed = match visible.get(&file.workspace_id) {
                    Some(v) => *v,
                    None => {
                        let v = c
                            .access
                            .role(me.user_id, file.workspace_id)
                            .await?
                            .is_some();
                        visible.insert(file.workspace_id, v);
                        v
                    }
                };
                if allowed {
                    out.push(FileNode::new(file, &c.files));
                }
            }
            Ok(out)
        }
        .await;
        result.map(Some)
    }
}

pub struct Query;

#[Object]
impl Query {
    /// A file, for members (Viewer or above) of its workspace; null when missing.
    #[graphql(entity)]
    async fn find_file_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<FileNode>> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &id)?;
        let Some(file) = c.files.file(id).await? else {
            return Ok(None);
        };
        c.access
            .require(me, file.workspace_id, Role::Viewer)
            .await?;
        Ok(Some(FileNode::new(file, &c.files)))
    }

    /// Resolves an `Execution` reference without I/O: `artifacts` filters by
    /// the caller's memberships.
    #[graphql(entity)]
    async fn find_execution_by_id(&self, id: ID) -> ExecutionRef {
        ExecutionRef { id }
    }
}
