//! What the workflow service holds about a user: the workflows they own, the versions they
//! published and the credentials they created (names, never values). All belong to a
//! workspace, so erasing a user anonymises them.

use async_trait::async_trait;
use flowfleet_host::privacy::{erase, export_rows, Column, UserDataHolder};
use flowfleet_runtime::error::ApiError;
use uuid::Uuid;

use super::Store;

#[async_trait]
impl UserDataHolder for Store {
    async fn export_user(&self, user: Uuid) -> Result<serde_json::Value, ApiError> {
        use Column::*;
        Ok(serde_json::json!({
            "workflowsOwned": export_rows(
                self.db(),
                "SELECT id, workspace_id, name, description, status, created_at, updated_at \
                 FROM workflows WHERE owner_id = $1 ORDER BY id",
                user,
                &[Text("id"), Text("workspace_id"), Text("name"), Text("description"), Text("status"), Int("created_at"), Int("updated_at")],
            ).await?,
            "credentialsCreated": export_rows(
                self.db(),
                "SELECT id, workspace_id, name, kind, created_at, updated_at FROM credentials \
                 WHERE created_by = $1 ORDER BY id",
                user,
                &[Text("id"), Text("workspace_id"), Text("name"), Text("kind"), Int("created_at"), Int("updated_at")],
            ).await?,
            "versionsPublished": export_rows(
                self.db(),
                "SELECT workflow_id, version, content_hash, created_at FROM workflow_versions \
                 WHERE published_by = $1 ORDER BY workflow_id, version",
                user,
                &[Text("workflow_id"), Int("version"), Text("content_hash"), Int("created_at")],
            ).await?,
        }))
    }

    async fn erase_user(&self, user: Uuid) -> Result<(), ApiError> {
        erase(
            self.db(),
            &[
                "UPDATE workflows SET owner_id = $2 WHERE owner_id = $1",
                "UPDATE workflow_versions SET published_by = $2 WHERE published_by = $1",
                "UPDATE credentials SET created_by = $2 WHERE created_by = $1",
            ],
            user,
        )
        .await
    }

    async fn erase_workspace(&self, workspace: Uuid) -> Result<(), ApiError> {
        // Followers of the trigger feed learn the workflows' triggers are gone.
        self.retire_triggers(workspace, self.now_ms()).await?;
        erase(
            self.db(),
            &[
                "DELETE FROM workflow_versions WHERE workflow_id IN \
                 (SELECT id FROM workflows WHERE workspace_id = $1)",
                "DELETE FROM workflow_tags WHERE workspace_id = $1",
                "DELETE FROM workflows WHERE workspace_id = $1",
                "DELETE FROM credentials WHERE workspace_id = $1",
            ],
            workspace,
        )
        .await
    }
}
