//! What the analytics service holds about a user: the facts of executions they started.
//! Facts feed a workspace's statistics, so erasing a user anonymises them.

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
            "executionFacts": export_rows(
                self.db(),
                "SELECT execution_id, workflow_id, workspace_id, status, duration_ms, finished_at \
                 FROM facts WHERE triggered_by = $1 ORDER BY execution_id",
                user,
                &[Text("execution_id"), Text("workflow_id"), Text("workspace_id"), Text("status"), Int("duration_ms"), Int("finished_at")],
            ).await?,
        }))
    }

    async fn erase_user(&self, user: Uuid) -> Result<(), ApiError> {
        erase(
            self.db(),
            &["UPDATE facts SET triggered_by = $2 WHERE triggered_by = $1"],
            user,
        )
        .await
    }

    async fn erase_workspace(&self, workspace: Uuid) -> Result<(), ApiError> {
        erase(
            self.db(),
            &[
                "DELETE FROM facts WHERE workspace_id = $1",
                "DELETE FROM hourly_rollups WHERE workspace_id = $1",
            ],
            workspace,
        )
        .await
    }
}
