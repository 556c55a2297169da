//! The storage subgraph: the `File` entity, `Execution.artifacts` (contributed to the
//! execution service's entity), the `Workspace` fields in [`workspace`] and the
//! mutations in [`mutations`]. A file is visible to members (VIEWER or above) of its
//! workspace only. Resolvers parse, call a use case of [`Files`] and map errors.

mod mutations;
mod workspace;

use async_graphql::{ComplexObject, Context, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::clock::to_datetime;
use flowfleet_runtime::error::parse_id;
use flowfleet_security::access::Target;
use flowfleet_security::identity::Role;

use crate::domain::StoredFile;
use crate::files::Files;

pub use mutations::Mutation;
pub use workspace::WorkspaceRef;

pub type StorageSchema = async_graphql::Schema<Query, Mutation, async_graphql::EmptySubscription>;

/// What resolvers need, placed in the schema's data.
pub struct Ctx {
    pub files: Files,
}

pub fn schema(ctx: Ctx) -> StorageSchema {
    async_graphql::Schema::build(Query, Mutation, async_graphql::EmptySubscription)
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
    /// What the file is served as: the type its bytes show (`sniffedContentType`)
    /// when they match a known signature, else the declared one.
    pub content_type: String,
    /// The type the uploader declared.
    pub declared_content_type: String,
    /// The type the first bytes show, when they match a known file signature (text
    /// formats have none).
    pub sniffed_content_type: Option<String>,
    /// The execution that produced it, for a workflow's artifact.
    pub execution_id: Option<ID>,
    /// The workflow whose run produced it, when the run said.
    pub workflow_id: Option<ID>,
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
            declared_content_type: file.declared_content_type,
            sniffed_content_type: file.sniffed_content_type,
            execution_id: file.execution_id.map(|e| ID(e.to_string())),
            workflow_id: file.workflow_id.map(|w| ID(w.to_string())),
            size: i32::try_from(file.size).unwrap_or(i32::MAX),
            sha256: file.sha256,
            created_at: to_datetime(file.created_at),
        }
    }
}

// The execution service's entity: its key, and its workspace, which the execution service
// resolves (after checking the caller may see the execution) and the gateway passes on for
// `artifacts`.
/// One run of a published workflow version.
#[derive(SimpleObject)]
#[graphql(name = "Execution", complex)]
pub struct ExecutionRef {
    pub id: ID,
    /// Empty when a request left it out (then `artifacts` refuses).
    #[graphql(external)]
    pub workspace_id: ID,
}

#[ComplexObject]
impl ExecutionRef {
    /// Files the execution produced, oldest first (VIEWER or above in its workspace).
    #[graphql(requires = "workspaceId")]
    async fn artifacts(&self, ctx: &Context<'_>) -> Result<Option<Vec<FileNode>>> {
        // Nullable on purpose: a failure here (or this subgraph being down)
        // nulls only this field, not the parent object.
        let result: Result<Vec<FileNode>> = async {
            let me = caller(ctx).require()?;
            let c = ctx.data::<Ctx>()?;
            let id = parse_id("id", &self.id)?;
            let workspace = parse_id("workspaceId", &self.workspace_id)?;
            // The workspace comes with the request, so it is checked like any other: an
            // outsider gets the execution service's answer for a missing execution, and
            // only files of that workspace are read, whatever the request claims.
            Ok(c.files
                .by_execution(
                    me.into(),
                    workspace,
                    id,
                    Target::Resource("no execution with this id"),
                )
                .await?
                .into_iter()
                .map(|file| FileNode::new(file, &c.files))
                .collect())
        }
        .await;
        result.map(Some)
    }
}

pub struct Query;

#[Object]
impl Query {
    /// A file, for members (VIEWER or above) of its workspace. Others cannot tell it
    /// from a missing one: `NOT_FOUND` either way.
    #[graphql(entity)]
    async fn find_file_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<FileNode> {
        let me = caller(ctx).require()?;
        let c = ctx.data::<Ctx>()?;
        let id = parse_id("id", &id)?;
        let file = c.files.file_by_id(me.into(), id, Role::Viewer).await?;
        Ok(FileNode::new(file, &c.files))
    }

    /// Resolves a `Workspace` reference without I/O: each field checks the caller.
    #[graphql(entity)]
    async fn find_workspace_by_id(&self, id: ID) -> WorkspaceRef {
        WorkspaceRef { id }
    }

    /// Resolves an `Execution` reference without I/O: `artifacts` checks the caller's
    /// access to the workspace the reference carries.
    #[graphql(entity)]
    async fn find_execution_by_id(
        &self,
        #[graphql(key)] id: ID,
        workspace_id: Option<ID>,
    ) -> ExecutionRef {
        ExecutionRef {
            id,
            workspace_id: workspace_id.unwrap_or_default(),
        }
    }
}
