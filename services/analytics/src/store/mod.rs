//! The analytics service's tables: execution facts and hourly rollups (its own
//! schema). Sums are cast to BIGINT because PostgreSQL widens `SUM(bigint)` to
//! `numeric`, which the portable driver does not decode.

// What the service holds about a user, for export and erasure (see
// `flowfleet_host::privacy`).
mod privacy;

use flowfleet_runtime::db::Db;
use flowfleet_runtime::error::ApiError;
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{hour_start, nearest_rank, ExecutionOutcome, RunStatus, WorkflowStats};

#[derive(Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn new(db: Db) -> Self {
        Store { db }
    }

    /// Records the outcome as a fact and adds it to its hour's rollup, in one
    /// transaction. Returns whether the fact was new: a repeated outcome (same
    /// execution id) changes nothing, so the rollup counts each execution once.
    pub async fn record(&self, o: &ExecutionOutcome) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.pool().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO facts (execution_id, workflow_id, workspace_id, status, duration_ms, finished_at, triggered_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (execution_id) DO NOTHING",
        )
        .bind(o.execution_id.to_string())
        .bind(o.workflow_id.to_string())
        .bind(o.workspace_id.to_string())
        .bind(o.status.as_str())
        .bind(o.duration_ms)
        .bind(o.finished_at_ms)
        .bind(o.triggered_by.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            tx.rollback().await?;
            return Ok(false);
        }
        let (succeeded, failed) = match o.status {
            RunStatus::Succeeded => (1_i64, 0_i64),
            RunStatus::Failed => (0, 1),
        };
        sqlx::query(
            "INSERT INTO hourly_rollups (workflow_id, hour_start, workspace_id, runs, succeeded, failed, total_duration_ms) \
             VALUES ($1, $2, $3, 1, $4, $5, $6) \
             ON CONFLICT (workflow_id, hour_start) DO UPDATE SET \
               runs = hourly_rollups.runs + 1, \
               succeeded = hourly_rollups.succeeded + excluded.succeeded, \
               failed = hourly_rollups.failed + excluded.failed, \
               total_duration_ms = hourly_rollups.total_duration_ms + excluded.total_duration_ms",
        )
        .bind(o.workflow_id.to_string())
        .bind(hour_start(o.finished_at_ms))
        .bind(o.workspace_id.to_string())
        .bind(succeeded)
        .bind(failed)
        .bind(o.duration_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The workspaces the workflow's facts belong to (one, unless the execution
    /// service reported inconsistent data; callers must be a member of each).
    pub async fn workspaces_of(&self, workflow: Uuid) -> Result<Vec<Uuid>, ApiError> {
        let rows = sqlx::query("SELECT DISTINCT workspace_id FROM facts WHERE workflow_id = $1")
            .bind(workflow.to_string())
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| {
                r.try_get::<String, _>("workspace_id")?
                    .parse()
                    .map_err(ApiError::internal)
            })
            .collect()
    }

    /// Counts and durations from the rollups, percentiles and the last run from
    /// the facts. Both are written in one transaction, so they agree.
    pub async fn stats(&self, workflow: Uuid) -> Result<WorkflowStats, ApiError> {
        let id = workflow.to_string();
        let totals = sqlx::query(
            "SELECT CAST(COALESCE(SUM(runs), 0) AS BIGINT) AS runs, \
                    CAST(COALESCE(SUM(succeeded), 0) AS BIGINT) AS succeeded, \
                    CAST(COALESCE(SUM(failed), 0) AS BIGINT) AS failed, \
                    CAST(COALESCE(SUM(total_duration_ms), 0) AS BIGINT) AS total_duration_ms \
             FROM hourly_rollups WHERE workflow_id = $1",
        )
        .bind(&id)
        .fetch_one(self.db.pool())
        .await?;
        let runs: i64 = totals.try_get("runs")?;
        let last_run_at_ms: Option<i64> =
            sqlx::query("SELECT MAX(finished_at) AS last FROM facts WHERE workflow_id = $1")
                .bind(&id)
                .fetch_one(self.db.pool())
                .await?
                .try_get("last")?;
        Ok(WorkflowStats {
            workflow_id: workflow,
            runs,
            succeeded: totals.try_get("succeeded")?,
            failed: totals.try_get("failed")?,
            total_duration_ms: totals.try_get("total_duration_ms")?,
            p50_duration_ms: self.percentile(&id, 50.0, runs).await?,
            p95_duration_ms: self.percentile(&id, 95.0, runs).await?,
            p99_duration_ms: self.percentile(&id, 99.0, runs).await?,
            last_run_at_ms,
        })
    }

    /// The nearest-rank percentile of the workflow's durations, read in index
    /// order (`facts_by_workflow_duration`) without loading every duration.
    async fn percentile(&self, workflow: &str, p: f64, n: i64) -> Result<Option<i64>, ApiError> {
        let Some(rank) = nearest_rank(p, n) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT duration_ms FROM facts WHERE workflow_id = $1 \
             ORDER BY duration_ms LIMIT 1 OFFSET $2",
        )
        .bind(workflow)
        .bind(rank - 1)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(|r| r.try_get("duration_ms")).transpose()?)
    }
}
