//! The storage service's fields of the auth service's `Workspace` entity: its files,
//! what it stores against its quota, and its retention policy.

use async_graphql::{ComplexObject, Context, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use flowfleet_host::subgraph::caller;
use flowfleet_runtime::error::parse_id;

use super::{Ctx, FileNode};
use crate::domain::{FileFilter, RetentionPolicy};

/// A workspace of the auth service.
#[derive(SimpleObject)]
#[graphql(name = "Workspace", complex)]
pub struct WorkspaceRef {
    pub id: ID,
}

/// Shared with the other subgraphs' connections.
#[derive(SimpleObject)]
#[graphql(shareable)]
pub struct PageInfo {
    pub has_next_page: bool,
    /// Pass as `after` to read the next page; null on an empty page.
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct FileConnection {
    pub nodes: Vec<FileNode>,
    pub page_info: PageInfo,
    /// All files matching the filter, across pages.
    pub total_count: i64,
}

/// What a workspace stores, against its quota (`storage.quota_bytes`,
/// `storage.quota_files`). Bytes are `Float`s: they pass GraphQL's 32-bit `Int`.
#[derive(SimpleObject)]
pub struct StorageUsage {
    /// Bytes of all its files (identical files each count, though stored once).
    pub bytes: f64,
    pub files: i64,
    pub quota_bytes: f64,
    pub quota_files: i64,
    /// The largest file accepted.
    pub max_file_bytes: f64,
}

/// How long a workspace keeps workflow artifacts (files its executions stored);
/// uploads stay until deleted. The cleanup job applies it
/// (`storage.cleanup_interval_secs`).
#[derive(SimpleObject)]
pub struct FileRetention {
    /// Artifacts older than this many days are deleted; null keeps them.
    pub keep_days: Option<i64>,
    /// Only the artifacts of each workflow's newest this many executions are kept; null
    /// keeps all.
    pub keep_last: Option<i64>,
}

impl From<RetentionPolicy> for FileRetention {
    fn from(p: RetentionPolicy) -> Self {
        FileRetention {
            keep_days: p.keep_days,
            keep_last: p.keep_last,
        }
    }
}

#[ComplexObject]
impl WorkspaceRef {
    /// The workspace's files, newest first (VIEWER or above). `search` matches words
    /// of the name; `contentType` is a type (`image/png`) or a whole family
    /// (`image/*`); `createdAfter` is inclusive, `createdBefore` exclusive.
    #[allow(clippy::too_many_arguments)]
    async fn files(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
        search: Option<String>,
        content_type: Option<String>,
        created_after: Option<DateTime<Utc>>,
        created_before: Option<DateTime<Utc>>,
    ) -> Result<Option<FileConnection>> {
        // Nullable on purpose: a failure here (or this subgraph being down)
        // nulls only this field, not the parent object.
        let result: Result<FileConnection> = async {
            let me = caller(ctx).require()?;
            let c = ctx.data::<Ctx>()?;
            let workspace = parse_id("id", &self.id)?;
            let after = after.map(|a| parse_id("after", &a)).transpose()?;
            let filter = FileFilter::parse(
                search.as_deref(),
                content_type.as_deref(),
                created_after.map(|t| t.timestamp_millis()),
                created_before.map(|t| t.timestamp_millis()),
            )?;
            let page = c
                .files
                .list(me.into(), workspace, &filter, first, after)
                .await?;
            Ok(FileConnection {
                page_info: PageInfo {
                    has_next_page: page.has_next,
                    end_cursor: page.items.last().map(|f| f.id.to_string()),
                },
                total_count: page.total,
                nodes: page
                    .items
                    .into_iter()
                    .map(|f| FileNode::new(f, &c.files))
                    .collect(),
            })
        }
        .await;
        result.map(Some)
    }

    /// What the workspace stores against its quota (VIEWER or above).
    async fn storage_usage(&self, ctx: &Context<'_>) -> Result<Option<StorageUsage>> {
        let result: Result<StorageUsage> = async {
            let me = caller(ctx).require()?;
            let c = ctx.data::<Ctx>()?;
            let workspace = parse_id("id", &self.id)?;
            let usage = c.files.usage(me.into(), workspace).await?;
            let config = c.files.config();
            Ok(StorageUsage {
                bytes: usage.bytes as f64,
                files: usage.files,
                quota_bytes: config.quota.bytes as f64,
                quota_files: config.quota.files,
                max_file_bytes: config.max_bytes as f64,
            })
        }
        .await;
        result.map(Some)
    }

    /// The workspace's retention of workflow artifacts (VIEWER or above).
    async fn file_retention(&self, ctx: &Context<'_>) -> Result<Option<FileRetention>> {
        let result: Result<FileRetention> = async {
            let me = caller(ctx).require()?;
            let c = ctx.data::<Ctx>()?;
            let workspace = parse_id("id", &self.id)?;
            Ok(c.files.retention(me.into(), workspace).await?.into())
        }
        .await;
        result.map(Some)
    }
}
