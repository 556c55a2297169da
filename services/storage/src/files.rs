//! The storage service's use cases: what GraphQL, gRPC and HTTP share. Each operation
//! authorizes its caller, loads, decides, writes and publishes; [`uploads`] stores
//! content as it streams in, [`removal`] deletes files and runs the retention cleanup.
//!
//! Invariants: a file row is written only after its blob exists, so every row's
//! content can be read; blobs are content-addressed (`sha256/<hex>`), so identical
//! uploads share one (see [`crate::store::changes`] for why deletion cannot take a
//! blob a racing upload just claimed).

pub mod removal;
pub mod uploads;

use std::ops::Range;
use std::sync::Arc;

use flowfleet_runtime::blob::{BlobError, BlobStream, Blobs};
use flowfleet_runtime::clock::Clock;
use flowfleet_runtime::db::Page;
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::events::outbox::Relay;
use flowfleet_security::access::{Access, Principal, Target};
use flowfleet_security::identity::Role;
use uuid::Uuid;

use crate::domain::{
    download_url, FileFilter, FileName, LinkError, Quota, RetentionPolicy, SigningKey, StoredFile,
    Usage,
};
use crate::store::Store;

/// What a missing file, or one of another workspace, is answered with.
pub const MISSING: &str = "no file with this id";

#[derive(Clone)]
pub struct Files {
    pub(crate) store: Store,
    blobs: Blobs,
    relay: Relay,
    clock: Arc<dyn Clock>,
    access: Access,
    key: Arc<SigningKey>,
    config: Arc<FilesConfig>,
}

/// How [`Files`] is set up.
#[derive(Debug, Clone)]
pub struct FilesConfig {
    /// The largest file, in bytes.
    pub max_bytes: u64,
    /// What each workspace may store.
    pub quota: Quota,
    /// Where clients reach `/files/...` (no trailing slash needed).
    pub url_base: String,
    pub url_ttl_secs: u64,
    /// This replica's name in the cleanup job's record.
    pub replica: String,
    /// How often the cleanup job runs (once per period across replicas), in ms.
    pub cleanup_interval_ms: i64,
}

impl Files {
    pub fn new(
        store: Store,
        blobs: Blobs,
        relay: Relay,
        clock: Arc<dyn Clock>,
        access: Access,
        key: SigningKey,
        config: FilesConfig,
    ) -> Self {
        Files {
            store,
            blobs,
            relay,
            clock,
            access,
            key: Arc::new(key),
            config: Arc::new(config),
        }
    }

    pub fn config(&self) -> &FilesConfig {
        &self.config
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A file of `workspace` the caller may see with `min` (`target` says how an
    /// outsider is answered); another workspace's file is `NOT_FOUND`, as a missing one.
    pub async fn file_in(
        &self,
        who: Principal<'_>,
        workspace: Uuid,
        id: Uuid,
        min: Role,
        target: Target,
    ) -> Result<StoredFile, ApiError> {
        self.access.authorize(who, workspace, min, target).await?;
        self.store
            .file(id)
            .await?
            .filter(|f| f.workspace_id == workspace)
            .ok_or_else(|| ApiError::not_found(MISSING))
    }

    /// A file by id alone (the entity resolver): the caller needs `min` in its workspace.
    pub async fn file_by_id(
        &self,
        who: Principal<'_>,
        id: Uuid,
        min: Role,
    ) -> Result<StoredFile, ApiError> {
        let file = self
            .store
            .file(id)
            .await?
            .ok_or_else(|| ApiError::not_found(MISSING))?;
        self.access
            .authorize(who, file.workspace_id, min, Target::Resource(MISSING))
            .await?;
        Ok(file)
    }

    /// A page of the workspace's files (VIEWER or above).
    pub async fn list(
        &self,
        who: Principal<'_>,
        workspace: Uuid,
        filter: &FileFilter,
        first: i32,
        after: Option<Uuid>,
    ) -> Result<Page<StoredFile>, ApiError> {
        self.access
            .authorize(who, workspace, Role::Viewer, Target::Workspace)
            .await?;
        if !(1..=100).contains(&first) {
            return Err(ApiError::bad_input("`first` must be between 1 and 100")
                .with_detail("path", serde_json::json!(["first"])));
        }
        self.store
            .list(workspace, filter, first.into(), after)
            .await
    }

    /// The files an execution produced, oldest first (VIEWER or above; `target` says
    /// how an outsider is answered).
    pub async fn by_execution(
        &self,
        who: Principal<'_>,
        workspace: Uuid,
        execution: Uuid,
        target: Target,
    ) -> Result<Vec<StoredFile>, ApiError> {
        self.access
            .authorize(who, workspace, Role::Viewer, target)
            .await?;
        self.store.by_execution(workspace, execution).await
    }

    /// Renames a file (EDITOR or above).
    pub async fn rename(
        &self,
        who: Principal<'_>,
        workspace: Uuid,
        id: Uuid,
        name: FileName,
    ) -> Result<StoredFile, ApiError> {
        self.access
            .authorize(who, workspace, Role::Editor, Target::Resource(MISSING))
            .await?;
        self.store
            .rename(workspace, id, name.as_str())
            .await?
            .ok_or_else(|| ApiError::not_found(MISSING))
    }

    /// What the workspace stores, and its quota (VIEWER or above).
    pub async fn usage(&self, who: Principal<'_>, workspace: Uuid) -> Result<Usage, ApiError> {
        self.access
            .authorize(who, workspace, Role::Viewer, Target::Workspace)
            .await?;
        self.store.usage(workspace).await
    }

    /// The workspace's retention policy (VIEWER or above).
    pub async fn retention(
        &self,
        who: Principal<'_>,
        workspace: Uuid,
    ) -> Result<RetentionPolicy, ApiError> {
        self.access
            .authorize(who, workspace, Role::Viewer, Target::Workspace)
            .await?;
        self.store.retention_policy(workspace).await
    }

    /// Sets the workspace's retention policy (ADMIN or above); the next cleanup applies it.
    pub async fn set_retention(
        &self,
        who: Principal<'_>,
        workspace: Uuid,
        policy: RetentionPolicy,
    ) -> Result<RetentionPolicy, ApiError> {
        self.access
            .authorize(who, workspace, Role::Admin, Target::Workspace)
            .await?;
        self.store
            .set_retention_policy(workspace, policy, self.now_ms())
            .await?;
        Ok(policy)
    }

    /// Streams the file's content, or the bytes `range` of it. A row without its blob
    /// breaks this module's invariant, so it is an internal error, not a `NOT_FOUND`.
    pub async fn read(
        &self,
        file: &StoredFile,
        range: Option<Range<u64>>,
    ) -> Result<BlobStream, ApiError> {
        match self.blobs.read(&file.blob_key, range).await {
            Ok(stream) => Ok(stream),
            Err(BlobError::NotFound) => Err(ApiError::internal(format!(
                "blob {} of file {} is missing",
                file.blob_key, file.id
            ))),
            Err(e) => Err(ApiError::internal(e)),
        }
    }

    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1_000)
    }

    /// A signed link to the file's content, valid for `storage.url_ttl_secs`.
    pub fn download_url(&self, file_id: Uuid) -> String {
        let ttl = i64::try_from(self.config.url_ttl_secs).unwrap_or(i64::MAX / 2);
        let expires = self.now_secs().saturating_add(ttl);
        download_url(
            &self.config.url_base,
            file_id,
            expires,
            &self.key.sign(file_id, expires),
        )
    }

    /// Checks a download link's parameters as received.
    pub fn verify_link(
        &self,
        file_id: &str,
        expires: Option<&str>,
        signature: Option<&str>,
    ) -> Result<(), LinkError> {
        self.key
            .verify(file_id, expires, signature, self.now_secs())
    }

    /// The file a verified link names, if it still exists.
    pub async fn linked_file(&self, id: Uuid) -> Result<Option<StoredFile>, ApiError> {
        self.store.file(id).await
    }
}
