//! What the storage service holds about a user: the files they uploaded (or their runs
//! produced). Files belong to a workspace, so erasing a user anonymises them; erasing a
//! workspace deletes its files and every blob no other file shares (blobs are
//! content-addressed, so identical content is stored once across workspaces).

use async_trait::async_trait;
use flowfleet_host::privacy::UserDataHolder;
use flowfleet_runtime::error::ApiError;
use uuid::Uuid;

use crate::files::Files;

#[async_trait]
impl UserDataHolder for Files {
    async fn export_user(&self, user: Uuid) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({ "files": self.store.export_owner(user).await? }))
    }

    async fn erase_user(&self, user: Uuid) -> Result<(), ApiError> {
        self.store.anonymise_owner(user).await
    }

    async fn erase_workspace(&self, workspace: Uuid) -> Result<(), ApiError> {
        // Each file goes with its share of its blob: a blob another workspace's file
        // shares stays (see `crate::store::changes`).
        self.erase_workspace_files(workspace).await
    }
}
