//! The cron scheduler's state: when each schedule last fired, and the lease
//! that lets one replica at a time be the scheduler.

use flowfleet_runtime::error::ApiError;
use sqlx::Row;
use uuid::Uuid;

use super::Store;

impl Store {
    /// Takes or renews the lease `name` for `holder` until `expires_at`; true
    /// when `holder` has it (it was free, expired, or already its own).
    pub async fn lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, ApiError> {
        let row = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = $2, expires_at = $3 \
             WHERE leases.holder = $2 OR leases.expires_at < $4 RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(expires_at)
        .bind(now)
        .fetch_optional(self.db().pool())
        .await?;
        Ok(row.is_some())
    }

    /// Gives the lease up (a replica shutting down), so another takes over at once.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), ApiError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(self.db().pool())
            .await?;
        Ok(())
    }

    /// The time a schedule last fired for (ms), if it ever was seen.
    pub async fn last_fire(&self, workflow: Uuid, key: &str) -> Result<Option<i64>, ApiError> {
        let row = sqlx::query(
            "SELECT fired_for FROM cron_fires WHERE workflow_id = $1 AND trigger_key = $2",
        )
        .bind(workflow.to_string())
        .bind(key)
        .fetch_optional(self.db().pool())
        .await?;
        Ok(row.map(|r| r.try_get("fired_for")).transpose()?)
    }

    /// Records that a schedule fired for `at` (or was first seen then).
    pub async fn set_last_fire(&self, workflow: Uuid, key: &str, at: i64) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO cron_fires (workflow_id, trigger_key, fired_for) VALUES ($1, $2, $3) \
             ON CONFLICT (workflow_id, trigger_key) DO UPDATE SET fired_for = $3",
        )
        .bind(workflow.to_string())
        .bind(key)
        .bind(at)
        .execute(self.db().pool())
        .await?;
        Ok(())
    }
}

impl Store {
    /// What a webhook waiting on an execution needs: its status, the reply a
    /// `webhook_response` step recorded (if any), and its output once finished.
    pub async fn reply_of(
        &self,
        execution: Uuid,
    ) -> Result<
        Option<(
            crate::domain::Status,
            Option<serde_json::Value>,
            Option<serde_json::Value>,
        )>,
        ApiError,
    > {
        let Some(row) = sqlx::query("SELECT status, reply, output FROM executions WHERE id = $1")
            .bind(execution.to_string())
            .fetch_optional(self.db().pool())
            .await?
        else {
            return Ok(None);
        };
        let status: String = row.try_get("status")?;
        let status = crate::domain::Status::parse(&status)
            .ok_or_else(|| ApiError::internal(format!("stored status `{status}`")))?;
        let json = |col: &str| -> Result<Option<serde_json::Value>, ApiError> {
            row.try_get::<Option<String>, _>(col)?
                .map(|s| serde_json::from_str(&s).map_err(ApiError::internal))
                .transpose()
        };
        Ok(Some((status, json("reply")?, json("output")?)))
    }
}
