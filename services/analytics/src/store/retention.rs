//! Retention: raw facts are kept `analytics.fact_days`, minute rollups
//! `analytics.minute_rollup_days`, the other rollups, activity, recoveries and workflow spans
//! `analytics.rollup_days`. The cleanup of a period is claimed by one replica (a row per
//! period in `cleanup_runs`), so it runs once across replicas.

use flowfleet_runtime::error::ApiError;

use super::Store;
use crate::domain::buckets::DAY_MS;

/// How long each kind of row is kept, in days.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub fact_days: i64,
    pub minute_days: i64,
    pub rollup_days: i64,
}

impl Store {
    /// Claims the cleanup of `period` for this replica; false when another has it.
    pub async fn claim_cleanup(&self, period: i64, now_ms: i64) -> Result<bool, ApiError> {
        let claimed = sqlx::query(
            "INSERT INTO cleanup_runs (period, started_at) VALUES ($1, $2) \
             ON CONFLICT (period) DO NOTHING",
        )
        .bind(period)
        .bind(now_ms)
        .execute(self.db().pool())
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Deletes what `retention` no longer keeps at `now_ms`, and records the cleanup of
    /// `period` as done; returns how many rows went. Facts still waiting to be rolled up
    /// stay until they are.
    pub async fn clean_up(
        &self,
        period: i64,
        retention: Retention,
        now_ms: i64,
    ) -> Result<u64, ApiError> {
        let facts_before = now_ms - retention.fact_days * DAY_MS;
        let minutes_before = now_ms - retention.minute_days * DAY_MS;
        let rollups_before = now_ms - retention.rollup_days * DAY_MS;
        let statements: [(&str, i64); 14] = [
            ("DELETE FROM worker_samples WHERE at < $1", facts_before),
            (
                "DELETE FROM pool_rollups WHERE grain = 'MINUTE' AND bucket_start < $1",
                minutes_before,
            ),
            (
                "DELETE FROM pool_rollups WHERE bucket_start < $1",
                rollups_before,
            ),
            (
                "DELETE FROM execution_facts WHERE finished_at < $1 AND execution_id NOT IN \
                 (SELECT execution_id FROM unrolled_executions)",
                facts_before,
            ),
            (
                "DELETE FROM step_facts WHERE finished_at < $1 AND step_id NOT IN \
                 (SELECT step_id FROM unrolled_steps)",
                facts_before,
            ),
            (
                "DELETE FROM execution_rollups WHERE grain = 'MINUTE' AND bucket_start < $1",
                minutes_before,
            ),
            (
                "DELETE FROM step_rollups WHERE grain = 'MINUTE' AND bucket_start < $1",
                minutes_before,
            ),
            (
                "DELETE FROM execution_rollups WHERE bucket_start < $1",
                rollups_before,
            ),
            (
                "DELETE FROM step_rollups WHERE bucket_start < $1",
                rollups_before,
            ),
            (
                "DELETE FROM activity WHERE bucket_start < $1",
                rollups_before,
            ),
            ("DELETE FROM activity_days WHERE day < $1", rollups_before),
            (
                "DELETE FROM recoveries WHERE recovered_at < $1",
                rollups_before,
            ),
            (
                "DELETE FROM recovery_rollups WHERE bucket_start < $1",
                rollups_before,
            ),
            (
                "DELETE FROM workflow_spans WHERE last_run_at < $1",
                rollups_before,
            ),
        ];
        let mut deleted = 0;
        for (sql, before) in statements {
            deleted += sqlx::query(sql)
                .bind(before)
                .execute(self.db().pool())
                .await?
                .rows_affected();
        }
        sqlx::query("UPDATE cleanup_runs SET finished_at = $2, deleted = $3 WHERE period = $1")
            .bind(period)
            .bind(now_ms)
            .bind(deleted as i64)
            .execute(self.db().pool())
            .await?;
        Ok(deleted)
    }

    /// The oldest time whose facts are still kept (a rebuild cannot start earlier).
    pub fn facts_horizon(retention: Retention, now_ms: i64) -> i64 {
        now_ms - retention.fact_days * DAY_MS
    }
}
