//! The transactions that add and remove files, with the blob reference counts and the
//! workspace usage they move.
//!
//! Invariant: a `blobs` row with `refs > 0` has its object in the blob store. Both
//! directions hold the blob's row lock while they touch its object: an upload claims
//! the row (the upsert locks it) before it checks for the object and writes it if
//! missing; a deletion releases it (the update locks it) and deletes the object only when
//! no file is left, before committing. So an identical upload racing a deletion either
//! claims first (and the deletion leaves the object) or waits for the deletion to
//! commit (and writes the object again): neither ends with a file whose content is gone.

use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::events::{outbox, Event};
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use super::{file_from, Store, COLUMNS};
use crate::domain::{Quota, StoredFile};

/// One open change; dropped without [`commit`](Self::commit), it rolls back.
pub struct Change {
    tx: Transaction<'static, Any>,
}

impl Store {
    pub async fn begin(&self) -> Result<Change, ApiError> {
        Ok(Change {
            tx: self.db().pool().begin().await?,
        })
    }
}

impl Change {
    /// Counts a new file of `size` bytes in the workspace's usage if that stays within
    /// `quota`; `false` (and nothing counted) when it would not.
    pub async fn reserve(
        &mut self,
        workspace: Uuid,
        size: i64,
        quota: Quota,
    ) -> Result<bool, ApiError> {
        sqlx::query(
            "INSERT INTO workspace_usage (workspace_id, bytes, files) VALUES ($1, 0, 0) \
             ON CONFLICT (workspace_id) DO NOTHING",
        )
        .bind(workspace.to_string())
        .execute(&mut *self.tx)
        .await?;
        let done = sqlx::query(
            "UPDATE workspace_usage SET bytes = bytes + $2, files = files + 1 \
             WHERE workspace_id = $1 AND bytes + $2 <= $3 AND files + 1 <= $4",
        )
        .bind(workspace.to_string())
        .bind(size)
        .bind(quota.bytes)
        .bind(quota.files)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// One more file uses the blob `key`, whose row this transaction now locks. The
    /// caller makes sure the object exists before committing.
    pub async fn claim_blob(&mut self, key: &str, size: i64) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO blobs (blob_key, refs, size) VALUES ($1, 1, $2) \
             ON CONFLICT (blob_key) DO UPDATE SET refs = blobs.refs + 1",
        )
        .bind(key)
        .bind(size)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// The file's row and its `file.created` event.
    pub async fn insert_file(&mut self, f: &StoredFile) -> Result<(), ApiError> {
        sqlx::query(&format!(
            "INSERT INTO files ({COLUMNS}, search_name) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(f.id.to_string())
        .bind(f.workspace_id.to_string())
        .bind(f.owner_id.to_string())
        .bind(f.execution_id.map(|e| e.to_string()))
        .bind(f.workflow_id.map(|w| w.to_string()))
        .bind(&f.name)
        .bind(&f.content_type)
        .bind(&f.declared_content_type)
        .bind(f.sniffed_content_type.clone())
        .bind(f.size)
        .bind(&f.sha256)
        .bind(&f.blob_key)
        .bind(f.created_at)
        .bind(f.name.to_lowercase())
        .execute(&mut *self.tx)
        .await?;
        outbox::record(
            &mut self.tx,
            &Event::new(
                "file.created",
                f.created_at,
                serde_json::json!({
                    "fileId": f.id,
                    "workspaceId": f.workspace_id,
                    "ownerId": f.owner_id,
                    "executionId": f.execution_id,
                    "workflowId": f.workflow_id,
                    "name": f.name,
                    "contentType": f.content_type,
                    "size": f.size,
                    "sha256": f.sha256,
                }),
            ),
        )
        .await?;
        Ok(())
    }

    /// Removes a file of `workspace` (its row, its share of the usage) and records
    /// `file.deleted` with `reason`; `None` if there is no such file there.
    pub async fn remove_file(
        &mut self,
        workspace: Uuid,
        id: Uuid,
        reason: &str,
        now_ms: i64,
    ) -> Result<Option<StoredFile>, ApiError> {
        let row = sqlx::query(&format!(
            "DELETE FROM files WHERE id = $1 AND workspace_id = $2 RETURNING {COLUMNS}"
        ))
        .bind(id.to_string())
        .bind(workspace.to_string())
        .fetch_optional(&mut *self.tx)
        .await?;
        let Some(file) = row.as_ref().map(file_from).transpose()? else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE workspace_usage SET bytes = bytes - $2, files = files - 1 \
             WHERE workspace_id = $1",
        )
        .bind(workspace.to_string())
        .bind(file.size)
        .execute(&mut *self.tx)
        .await?;
        outbox::record(
            &mut self.tx,
            &Event::new(
                "file.deleted",
                now_ms,
                serde_json::json!({
                    "fileId": file.id,
                    "workspaceId": file.workspace_id,
                    "executionId": file.execution_id,
                    "size": file.size,
                    "reason": reason,
                }),
            ),
        )
        .await?;
        Ok(Some(file))
    }

    /// One file fewer uses the blob `key` (whose row this transaction now locks);
    /// `true` when none does any more: the row is gone and the caller deletes the
    /// object before committing.
    pub async fn release_blob(&mut self, key: &str) -> Result<bool, ApiError> {
        let refs: Option<i64> =
            sqlx::query("UPDATE blobs SET refs = refs - 1 WHERE blob_key = $1 RETURNING refs")
                .bind(key)
                .fetch_optional(&mut *self.tx)
                .await?
                .map(|r| r.try_get("refs"))
                .transpose()?;
        match refs {
            Some(n) if n <= 0 => {
                sqlx::query("DELETE FROM blobs WHERE blob_key = $1")
                    .bind(key)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(true)
            }
            Some(_) => Ok(false),
            // No row: nothing counts on the object (a file stored before counts existed
            // always has one, so this is only reached by a second release).
            None => Ok(false),
        }
    }

    pub async fn commit(self) -> Result<(), ApiError> {
        self.tx.commit().await?;
        Ok(())
    }
}
