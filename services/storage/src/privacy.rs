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
        for key in self.store.delete_workspace_files(workspace).await? {
            // Still used by another workspace's file: kept. (An identical upload racing
            // with this check could find the blob present and then lose it; the content
            // would have to be uploaded again.)
            if !self.store.blob_in_use(&key).await? {
                self.delete_blob(&key).await?;
            }
        }
        Ok(())
    }
}
