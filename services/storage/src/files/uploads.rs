//! Storing a file as its content streams in, whatever its size, in bounded memory.
//!
//! The bytes go to a staging blob (`staging/<uuid>`) as a multipart upload while they
//! are hashed, counted and their first bytes kept for sniffing; the per-file limit and
//! the room left in the workspace's quota stop the stream as soon as it passes either,
//! and a declared size over either is refused before a byte is read. Only then, in one
//! transaction, are the quota reserved, the content-addressed blob claimed (and the
//! staging blob moved there if no identical content is stored yet) and the file row
//! written. A refusal or a failure deletes the staging blob: nothing is kept.

use bytes::Bytes;
use flowfleet_runtime::blob::{BlobError, BlobWriter};
use flowfleet_runtime::error::ApiError;
use flowfleet_security::access::{Principal, Target};
use flowfleet_security::identity::Role;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Files;
use crate::domain::{
    address_of, effective_content_type, quota_error, sniff, too_large, ContentType, FileName,
    StoredFile, SNIFF_BYTES, STAGING_PREFIX,
};

/// What a new file is, besides its content.
pub struct NewFile {
    pub workspace_id: Uuid,
    pub owner_id: Uuid,
    pub execution_id: Option<Uuid>,
    pub workflow_id: Option<Uuid>,
    pub name: FileName,
    /// What the uploader says it is.
    pub content_type: ContentType,
}

/// Content that arrived in full.
struct Received {
    staging_key: String,
    size: u64,
    sha256: String,
    blob_key: String,
    sniffed: Option<&'static str>,
}

impl Files {
    /// Stores a file (EDITOR or above in its workspace) from `content` as it streams
    /// in. `declared_size` (a `Content-Length`) lets an upload that cannot fit be
    /// refused before any byte is read.
    #[tracing::instrument(skip_all, fields(workspace_id = %new.workspace_id))]
    pub async fn upload<S, E>(
        &self,
        who: Principal<'_>,
        new: NewFile,
        declared_size: Option<u64>,
        content: S,
    ) -> Result<StoredFile, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        self.access
            .authorize(who, new.workspace_id, Role::Editor, Target::Workspace)
            .await?;
        self.store_content(new, declared_size, content).await
    }

    /// [`upload`](Self::upload) for a caller already authorized.
    pub(crate) async fn store_content<S, E>(
        &self,
        new: NewFile,
        declared_size: Option<u64>,
        content: S,
    ) -> Result<StoredFile, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let usage = self.store.usage(new.workspace_id).await?;
        let room = self.config.quota.room(usage)?;
        let over_quota = || {
            quota_error(format!(
                "the workspace stores {} of its {} bytes; this file does not fit. Delete \
                 files (or shorten the retention policy) to make room",
                usage.bytes, self.config.quota.bytes
            ))
        };
        let limit = self.config.max_bytes.min(room as u64);
        if let Some(size) = declared_size {
            if size > self.config.max_bytes {
                return Err(too_large(self.config.max_bytes));
            }
            if size > room as u64 {
                return Err(over_quota());
            }
        }
        let received = match self.receive(content, limit).await {
            Ok(r) => r,
            Err(Refusal::OverLimit) if limit == self.config.max_bytes => {
                return Err(too_large(self.config.max_bytes))
            }
            Err(Refusal::OverLimit) => return Err(over_quota()),
            Err(Refusal::Other(e)) => return Err(e),
        };
        let result = self.commit(&new, &received).await;
        if !matches!(result, Ok((_, true))) {
            // Not moved into place (an identical blob existed, or the commit failed).
            self.delete_staging(&received.staging_key).await;
        }
        let (file, _) = result?;
        self.relay.wake();
        Ok(file)
    }

    /// Streams `content` into a staging blob, refusing it once past `limit` bytes.
    async fn receive<S, E>(&self, content: S, limit: u64) -> Result<Received, Refusal>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let staging_key = format!("{STAGING_PREFIX}/{}", Uuid::now_v7());
        let mut writer = self
            .blobs
            .writer(&staging_key)
            .await
            .map_err(|e| Refusal::Other(ApiError::internal(e)))?;
        let mut hasher = Sha256::new();
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        let mut size = 0u64;
        let mut content = std::pin::pin!(content);
        let outcome: Result<(), Refusal> = async {
            while let Some(chunk) = content.next().await {
                let chunk = chunk.map_err(|e| {
                    Refusal::Other(ApiError::bad_input(format!(
                        "the upload was interrupted: {e}"
                    )))
                })?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(Refusal::OverLimit);
                }
                hasher.update(&chunk);
                if head.len() < SNIFF_BYTES {
                    let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                }
                write(&mut writer, chunk).await?;
            }
            Ok(())
        }
        .await;
        if let Err(refusal) = outcome {
            if let Err(e) = writer.abort().await {
                tracing::warn!(error = %e, "aborting a refused upload failed");
            }
            return Err(refusal);
        }
        writer
            .finish()
            .await
            .map_err(|e| Refusal::Other(ApiError::internal(e)))?;
        let (sha256, blob_key) = address_of(hasher);
        Ok(Received {
            staging_key,
            size,
            sha256,
            blob_key,
            sniffed: sniff(&head),
        })
    }

    /// Reserves the quota, claims the blob (moving the staging blob there if the
    /// content is new) and writes the row, in one transaction. `true` when the staging
    /// blob was moved.
    async fn commit(
        &self,
        new: &NewFile,
        received: &Received,
    ) -> Result<(StoredFile, bool), ApiError> {
        let size = i64::try_from(received.size).map_err(ApiError::internal)?;
        let file = StoredFile {
            id: Uuid::now_v7(),
            workspace_id: new.workspace_id,
            owner_id: new.owner_id,
            execution_id: new.execution_id,
            workflow_id: new.workflow_id,
            name: new.name.as_str().to_string(),
            content_type: effective_content_type(&new.content_type, received.sniffed),
            declared_content_type: new.content_type.as_str().to_string(),
            sniffed_content_type: received.sniffed.map(str::to_string),
            size,
            sha256: received.sha256.clone(),
            blob_key: received.blob_key.clone(),
            created_at: self.now_ms(),
        };
        let mut change = self.store.begin().await?;
        if !change
            .reserve(new.workspace_id, size, self.config.quota)
            .await?
        {
            // A concurrent upload took the room this one saw.
            return Err(quota_error(
                "the workspace's storage quota is used up; delete files to make room".into(),
            ));
        }
        change.claim_blob(&file.blob_key, size).await?;
        let moved = if self
            .blobs
            .exists(&file.blob_key)
            .await
            .map_err(ApiError::internal)?
        {
            false
        } else {
            self.blobs
                .rename(&received.staging_key, &file.blob_key)
                .await
                .map_err(ApiError::internal)?;
            true
        };
        change.insert_file(&file).await?;
        change.commit().await?;
        Ok((file, moved))
    }

    async fn delete_staging(&self, key: &str) {
        if let Err(e) = self.blobs.delete(key).await {
            // The cleanup job sweeps staging blobs left behind.
            tracing::warn!(error = %e, key, "deleting a staging blob failed");
        }
    }
}

/// Why content was not received.
enum Refusal {
    /// Past the limit it was read against.
    OverLimit,
    Other(ApiError),
}

async fn write(writer: &mut BlobWriter, chunk: Bytes) -> Result<(), Refusal> {
    writer
        .write(chunk)
        .await
        .map_err(|e: BlobError| Refusal::Other(ApiError::internal(e)))
}
