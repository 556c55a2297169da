//! Storing and reading files: what GraphQL, gRPC and HTTP share.
//!
//! Invariants: a file row is written only after its blob exists, so every row's
//! content can be read; blobs are content-addressed (`sha256/<hex>`), so an
//! existing blob is never written again and identical uploads share it.

use std::sync::Arc;

use bytes::Bytes;
use flowfleet_runtime::blob::{BlobError, Blobs};
use flowfleet_runtime::clock::Clock;
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::events::outbox::Relay;
use uuid::Uuid;

use crate::domain::{
    content_address, download_url, ContentType, FileName, LinkError, SigningKey, StoredFile,
};
use crate::store::Store;

/// What a new file is, besides its content.
pub struct NewFile {
    pub workspace_id: Uuid,
    pub owner_id: Uuid,
    pub execution_id: Option<Uuid>,
    pub name: FileName,
    pub content_type: ContentType,
}

/// The content is larger than `storage.max_file_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    pub limit: u64,
}

impl TooLarge {
    pub fn message(&self) -> String {
        format!("the file is larger than the limit of {} bytes", self.limit)
    }
}

#[derive(Clone)]
pub struct Files {
    pub(crate) store: Store,
    blobs: Blobs,
    relay: Relay,
    clock: Arc<dyn Clock>,
    key: Arc<SigningKey>,
    max_bytes: u64,
    url_base: String,
    url_ttl_secs: i64,
}

/// How [`Files`] is set up.
pub struct FilesConfig {
    pub max_bytes: u64,
    /// Where clients reach `/files/...` (no trailing slash needed).
    pub url_base: String,
    pub url_ttl_secs: u64,
}

impl Files {
    pub fn new(
        store: Store,
        blobs: Blobs,
        relay: Relay,
        clock: Arc<dyn Clock>,
        key: SigningKey,
        config: FilesConfig,
    ) -> Self {
        Files {
            store,
            blobs,
            relay,
            clock,
            key: Arc::new(key),
            max_bytes: config.max_bytes,
            url_base: config.url_base,
            url_ttl_secs: i64::try_from(config.url_ttl_secs).unwrap_or(i64::MAX / 2),
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Refuses sizes above the limit.
    pub fn check_size(&self, len: u64) -> Result<(), TooLarge> {
        if len > self.max_bytes {
            Err(TooLarge {
                limit: self.max_bytes,
            })
        } else {
            Ok(())
        }
    }

    /// Stores `content` (deduplicated by its SHA-256) and the file's metadata.
    #[tracing::instrument(skip_all, fields(workspace_id = %new.workspace_id, size = content.len()))]
    pub async fn put(&self, new: NewFile, content: Bytes) -> Result<StoredFile, ApiError> {
        self.check_size(content.len() as u64)
            .map_err(|e| ApiError::bad_input(e.message()))?;
        let (sha256, blob_key) = content_address(&content);
        let size = content.len() as i64;
        if !self
            .blobs
            .exists(&blob_key)
            .await
            .map_err(ApiError::internal)?
        {
            self.blobs
                .put(&blob_key, content)
                .await
                .map_err(ApiError::internal)?;
        }
        let file = StoredFile {
            id: Uuid::now_v7(),
            workspace_id: new.workspace_id,
            owner_id: new.owner_id,
            execution_id: new.execution_id,
            name: new.name.as_str().to_string(),
            content_type: new.content_type.as_str().to_string(),
            size,
            sha256,
            blob_key,
            created_at: self.clock.now_ms(),
        };
        self.store.insert(&file).await?;
        self.relay.wake();
        Ok(file)
    }

    pub(crate) async fn delete_blob(&self, key: &str) -> Result<(), ApiError> {
        self.blobs.delete(key).await.map_err(ApiError::internal)
    }

    pub async fn file(&self, id: Uuid) -> Result<Option<StoredFile>, ApiError> {
        self.store.file(id).await
    }

    pub async fn by_execution(
        &self,
        workspace: Uuid,
        execution: Uuid,
    ) -> Result<Vec<StoredFile>, ApiError> {
        self.store.by_execution(workspace, execution).await
    }

    /// The file's content. A row without its blob breaks this module's
    /// invariant, so it is an internal error, not a `NOT_FOUND`.
    pub async fn content(&self, file: &StoredFile) -> Result<Bytes, ApiError> {
        match self.blobs.get(&file.blob_key).await {
            Ok(b) => Ok(b),
            Err(BlobError::NotFound) => Err(ApiError::internal(format!(
                "blob {} of file {} is missing",
                file.blob_key, file.id
            ))),
            Err(e) => Err(ApiError::internal(e)),
        }
    }

    fn now_secs(&self) -> i64 {
        self.clock.now_ms().div_euclid(1_000)
    }

    /// A signed link to the file's content, valid for `storage.url_ttl_secs`.
    pub fn download_url(&self, file_id: Uuid) -> String {
        let expires = self.now_secs().saturating_add(self.url_ttl_secs);
        download_url(
            &self.url_base,
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
}
