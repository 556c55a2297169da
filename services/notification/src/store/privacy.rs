//! What the notification service holds about a user: their notifications, the messages
//! sent to them (deliveries and their attempts) and their preferences. They exist only for
//! the user, so erasing the user deletes them. A workspace's erasure takes its settings
//! (channels, rules, templates) and everything sent in it.

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
            "deliveries": export_rows(
                self.db(),
                "SELECT id, workspace_id, channel, destination, event_kind, subject, status, attempts, created_at, finished_at \
                 FROM deliveries WHERE recipient_id = $1 ORDER BY id",
                user,
                &[Text("id"), Text("workspace_id"), Text("channel"), Text("destination"), Text("event_kind"), Text("subject"), Text("status"), Int("attempts"), Int("created_at"), Int("finished_at")],
            ).await?,
            "preferences": export_rows(
                self.db(),
                "SELECT preferences, updated_at FROM preferences WHERE user_id = $1",
                user,
                &[Json("preferences"), Int("updated_at")],
            ).await?,
        }))
    }

    async fn erase_user(&self, user: Uuid) -> Result<(), ApiError> {
        erase(
            self.db(),
            &[
                "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE recipient_id = $1)",
                "DELETE FROM deliveries WHERE recipient_id = $1",
                "DELETE FROM notifications WHERE recipient_id = $1",
                "DELETE FROM preferences WHERE user_id = $1",
            ],
            user,
        )
        .await
    }

    async fn erase_workspace(&self, workspace: Uuid) -> Result<(), ApiError> {
        erase(
            self.db(),
            &[
                "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE workspace_id = $1)",
                "DELETE FROM deliveries WHERE workspace_id = $1",
                "DELETE FROM digests WHERE workspace_id = $1",
                "DELETE FROM notifications WHERE workspace_id = $1",
                "DELETE FROM channels WHERE workspace_id = $1",
                "DELETE FROM rules WHERE workspace_id = $1",
                "DELETE FROM templates WHERE workspace_id = $1",
            ],
            workspace,
        )
        .await
    }
}
