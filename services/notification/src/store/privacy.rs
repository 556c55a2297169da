//! What the notification service holds about a user: their notifications. They exist only
//! for the user, so erasing the user deletes them.

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
            "notifications": export_rows(
                self.db(),
                "SELECT id, workspace_id, channel, subject, body, status, created_at, read_at \
                 FROM notifications WHERE recipient_id = $1 ORDER BY id",
                user,
                &[Text("id"), Text("workspace_id"), Text("channel"), Text("subject"), Text("body"), Text("status"), Int("created_at"), Int("read_at")],
            ).await?,
        }))
    }

    async fn erase_user(&self, user: Uuid) -> Result<(), ApiError> {
        erase(
            self.db(),
            &["DELETE FROM notifications WHERE recipient_id = $1"],
            user,
        )
        .await
    }

    async fn erase_workspace(&self, workspace: Uuid) -> Result<(), ApiError> {
        erase(
            self.db(),
            &["DELETE FROM notifications WHERE workspace_id = $1"],
            workspace,
        )
        .await
    }
}
