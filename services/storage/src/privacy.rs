//! What the storage service holds about a user: the files they uploaded (or their runs
//! produced). Files belong to a workspace, so erasing a user anonymises them; erasing a
//! workspace deletes its files and every blob no other file shares (blobs are
//! content-addressed, so identical content is stored once across workspaces).

use async_trait::async_trait;
use flowfleet_host::privacy::{erase, export_rows, Column, UserDataHolder};
use flowfleet_runtime::error::ApiError;
use sqlx::Row;
use uuid::Uuid;

use crate::files::Files;

#[async_trait]
impl UserDataHolder for Files {
    async fn export_user(&self, user: Uuid) -> Result<serde_json::Value, ApiError> {
        use Column::*;
        Ok(serde_json::json!({
            "files": export_rows(
                self.store.db(),
                "SELECT id, workspace_id, execution_id, name, content_type, size, sha256, created_at \
                 FROM files WHERE owner_id = $1 ORDER BY id",
                user,
                &[Text("id"), Text("workspace_id"), Text("execution_id"), Text("name"), Text("content_type"), Int("size"), Text("sha256"), Int("created_at")],
            ).await?,
        }))
    }

    async fn erase_user(&self, user: Uuid) -> Result<(), ApiError> {
        erase(
            self.store.db(),
            &["UPDATE files SET owner_id = $2 WHERE owner_id = $1"],
            user,
        )
        .await
    }

    async fn erase_workspace(&self, workspace: Uuid) -> Result<(), ApiError> {
        let db = self.store.db();
        let keys: Vec<String> =
            sqlx::query("SELECT DISTINCT blob_key FROM files WHERE workspace_id = $1")
                .bind(workspace.to_string())
                .fetch_all(db.pool())
                .await?
                .iter()
                .map(|r| r.try_get("blob_key"))
                .collect::<Result<_, _>>()?;
        erase(
            db,
            &["DELETE FROM files WHERE workspace_id = $1"],
            workspace,
        )
        .await?;
        for key in keys {
            // Still used by another workspace's file: kept. (An identical upload racing
            // with this check could find the blob present and then lose it; the content
            // would have to be uploaded again.)
            let shared = sqlx::query("SELECT 1 AS one FROM files WHERE blob_key = $1 LIMIT 1")
                .bind(&key)
                .fetch_optional(db.pool())
                .await?
                .is_some();
            if !shared {
                self.delete_blob(&key).await?;
            }
        }
        Ok(())
    }
}
