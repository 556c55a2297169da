//! Retention policies, the files they doom, and the cleanup job's claims on periods.

use flowfleet_runtime::db::uuid_column;
use flowfleet_runtime::error::ApiError;
use sqlx::Row;
use uuid::Uuid;

use super::Store;
use crate::domain::RetentionPolicy;

impl Store {
    pub async fn retention_policy(&self, workspace: Uuid) -> Result<RetentionPolicy, ApiError> {
        let row = sqlx::query(
            "SELECT keep_days, keep_last FROM retention_policies WHERE workspace_id = $1",
        )
        .bind(workspace.to_string())
        .fetch_optional(self.db().pool())
        .await?;
        Ok(match row {
            Some(r) => RetentionPolicy {
                keep_days: r.try_get("keep_days")?,
                keep_last: r.try_get("keep_last")?,
            },
            None => RetentionPolicy::default(),
        })
    }

    /// Sets (or, when it keeps everything, removes) the workspace's policy.
    pub async fn set_retention_policy(
        &self,
        workspace: Uuid,
        policy: RetentionPolicy,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        if policy == RetentionPolicy::default() {
            sqlx::query("DELETE FROM retention_policies WHERE workspace_id = $1")
                .bind(workspace.to_string())
                .execute(self.db().pool())
                .await?;
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO retention_policies (workspace_id, keep_days, keep_last, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (workspace_id) DO UPDATE SET \
             keep_days = excluded.keep_days, keep_last = excluded.keep_last, \
             updated_at = excluded.updated_at",
        )
        .bind(workspace.to_string())
        .bind(policy.keep_days)
        .bind(policy.keep_last)
        .bind(now_ms)
        .execute(self.db().pool())
        .await?;
        Ok(())
    }

    pub async fn retention_policies(&self) -> Result<Vec<(Uuid, RetentionPolicy)>, ApiError> {
        let rows = sqlx::query("SELECT workspace_id, keep_days, keep_last FROM retention_policies")
            .fetch_all(self.db().pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    uuid_column(r, "workspace_id")?,
                    RetentionPolicy {
                        keep_days: r.try_get("keep_days")?,
                        keep_last: r.try_get("keep_last")?,
                    },
                ))
            })
            .collect()
    }

    /// Up to `limit` artifacts of the workspace created before `cutoff_ms`.
    pub async fn artifacts_before(
        &self,
        workspace: Uuid,
        cutoff_ms: i64,
        limit: i64,
    ) -> Result<Vec<Uuid>, ApiError> {
        self.ids(
            sqlx::query(
                "SELECT id FROM files WHERE workspace_id = $1 AND execution_id IS NOT NULL \
                 AND created_at < $2 ORDER BY id LIMIT $3",
            )
            .bind(workspace.to_string())
            .bind(cutoff_ms)
            .bind(limit),
        )
        .await
    }

    /// Up to `limit` artifacts of the workspace's executions beyond the newest `keep`
    /// executions of their workflow (execution ids are UUIDv7s, so they sort by start;
    /// artifacts without a workflow form one group). A running execution is among the
    /// newest of its workflow, so its files stay while it runs.
    pub async fn artifacts_beyond(
        &self,
        workspace: Uuid,
        keep: i64,
        limit: i64,
    ) -> Result<Vec<Uuid>, ApiError> {
        self.ids(
            sqlx::query(
                "SELECT id FROM files WHERE workspace_id = $1 AND execution_id IN ( \
                 SELECT execution_id FROM (SELECT execution_id, ROW_NUMBER() OVER \
                 (PARTITION BY workflow_id ORDER BY execution_id DESC) AS newest \
                 FROM (SELECT DISTINCT workflow_id, execution_id FROM files \
                 WHERE workspace_id = $1 AND execution_id IS NOT NULL) runs) ranked \
                 WHERE newest > $2) ORDER BY id LIMIT $3",
            )
            .bind(workspace.to_string())
            .bind(keep)
            .bind(limit),
        )
        .await
    }

    pub async fn workspace_file_ids(&self, workspace: Uuid) -> Result<Vec<Uuid>, ApiError> {
        self.ids(
            sqlx::query("SELECT id FROM files WHERE workspace_id = $1 ORDER BY id")
                .bind(workspace.to_string()),
        )
        .await
    }

    async fn ids<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<Vec<Uuid>, ApiError> {
        query
            .fetch_all(self.db().pool())
            .await?
            .iter()
            .map(|r| uuid_column(r, "id"))
            .collect()
    }

    /// Claims the cleanup of `period` for `replica`; `false` if another replica has.
    pub async fn claim_cleanup(
        &self,
        period: i64,
        replica: &str,
        now_ms: i64,
    ) -> Result<bool, ApiError> {
        let done = sqlx::query(
            "INSERT INTO cleanup_runs (period, replica, started_at) VALUES ($1, $2, $3) \
             ON CONFLICT (period) DO NOTHING",
        )
        .bind(period)
        .bind(replica)
        .bind(now_ms)
        .execute(self.db().pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn finish_cleanup(
        &self,
        period: i64,
        deleted: u64,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        sqlx::query("UPDATE cleanup_runs SET finished_at = $2, deleted = $3 WHERE period = $1")
            .bind(period)
            .bind(now_ms)
            .bind(deleted as i64)
            .execute(self.db().pool())
            .await?;
        Ok(())
    }
}
