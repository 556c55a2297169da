//! What the execution service holds about a user: the executions they started (with their
//! input and output). Executions belong to a workspace, so erasing a user anonymises them.

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
            "executionsStarted": export_rows(
                self.db(),
                "SELECT id, workspace_id, workflow_id, workflow_name, version, status, input, \
                 output, error, created_at, finished_at FROM executions WHERE triggered_by = $1 \
                 ORDER BY id",
                user,
                &[Text("id"), Text("workspace_id"), Text("workflow_id"), Text("workflow_name"), Int("version"), Text("status"), Json("input"), Json("output"), Text("error"), Int("created_at"), Int("finished_at")],
            ).await?,
        }))
    }

    async fn erase_user(&self, user: Uuid) -> Result<(), ApiError> {
        erase(
            self.db(),
            &["UPDATE executions SET triggered_by = $2 WHERE triggered_by = $1"],
            user,
        )
        .await
    }

    async fn erase_workspace(&self, workspace: Uuid) -> Result<(), ApiError> {
        erase(
            self.db(),
            &[
                "DELETE FROM step_runs WHERE execution_id IN \
                 (SELECT id FROM executions WHERE workspace_id = $1)",
                "DELETE FROM executions WHERE workspace_id = $1",
            ],
            workspace,
        )
        .await
    }
}
