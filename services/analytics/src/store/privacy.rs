//! What the analytics service holds about a user: the facts of executions they started
//! and when they were active. Facts feed a workspace's statistics, so erasing a user
//! anonymises their executions and forgets their activity.

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
                 FROM execution_facts WHERE triggered_by = $1 ORDER BY execution_id",
                user,
                &[Text("execution_id"), Text("workflow_id"), Text("workspace_id"), Text("status"), Int("duration_ms"), Int("finished_at")],
            ).await?,
            "activity": export_rows(
                self.db(),
                "SELECT workspace_id, bucket_start, kind FROM activity WHERE user_id = $1 \
                 ORDER BY bucket_start, kind",
                user,
                &[Text("workspace_id"), Int("bucket_start"), Text("kind")],
            ).await?,
        }))
    }

    async fn erase_user(&self, user: Uuid) -> Result<(), ApiError> {
        erase(
            self.db(),
            &[
                "UPDATE execution_facts SET triggered_by = $2 WHERE triggered_by = $1",
                "DELETE FROM activity WHERE user_id = $1",
                "DELETE FROM activity_days WHERE user_id = $1",
            ],
            user,
        )
        .await
    }

    async fn erase_workspace(&self, workspace: Uuid) -> Result<(), ApiError> {
        erase(
            self.db(),
            &[
                "DELETE FROM unrolled_executions WHERE execution_id IN \
                 (SELECT execution_id FROM execution_facts WHERE workspace_id = $1)",
                "DELETE FROM unrolled_steps WHERE step_id IN \
                 (SELECT step_id FROM step_facts WHERE workspace_id = $1)",
                "DELETE FROM execution_facts WHERE workspace_id = $1",
                "DELETE FROM step_facts WHERE workspace_id = $1",
                "DELETE FROM activity WHERE workspace_id = $1",
                "DELETE FROM activity_days WHERE workspace_id = $1",
                "DELETE FROM recoveries WHERE workspace_id = $1",
                "DELETE FROM recovery_rollups WHERE workspace_id = $1",
                "DELETE FROM workflow_spans WHERE workspace_id = $1",
                "DELETE FROM execution_rollups WHERE workspace_id = $1",
                "DELETE FROM step_rollups WHERE workspace_id = $1",
            ],
            workspace,
        )
        .await
    }
}
