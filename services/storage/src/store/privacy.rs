//! The storage tables' side of account export and erasure (see `flowfleet_host::privacy`):
//! the rows that name a user or a workspace. What erasing means for blobs is
//! [`crate::privacy`]'s.

use flowfleet_host::privacy::{erase, export_rows, Column};
use flowfleet_runtime::error::ApiError;
use uuid::Uuid;

use super::Store;

impl Store {
    /// The files `user` uploaded (or their runs produced), as exported.
    pub async fn export_owner(&self, user: Uuid) -> Result<serde_json::Value, ApiError> {
        use Column::*;
        Ok(serde_json::json!(export_rows(
            self.db(),
            "SELECT id, workspace_id, execution_id, name, content_type, size, sha256, created_at \
             FROM files WHERE owner_id = $1 ORDER BY id",
            user,
            &[Text("id"), Text("workspace_id"), Text("execution_id"), Text("name"), Text("content_type"), Int("size"), Text("sha256"), Int("created_at")],
        )
        .await?))
    }

    /// Files `user` owned are kept (they belong to a workspace) but name no one.
    pub async fn anonymise_owner(&self, user: Uuid) -> Result<(), ApiError> {
        erase(
            self.db(),
            &["UPDATE files SET owner_id = $2 WHERE owner_id = $1"],
            user,
        )
        .await
    }
}
