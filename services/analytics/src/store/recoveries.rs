//! Recoveries of failing workflows (for the mean time to recovery), kept right under
//! late and out-of-order facts.
//!
//! A recovery is decided by the runs between two successes, so for each workflow a batch
//! touches, the roller recomputes the recoveries of the span from the last success before
//! the batch's first run (exclusive) to the first success after its last run (inclusive):
//! a late success splits the stretch it lands in, and the stretch after it ends at that
//! next success. Every stored recovery lies wholly inside the span or wholly outside it
//! (none spans a known success), so those inside are replaced and no other can change.

use std::collections::BTreeMap;

use flowfleet_runtime::error::ApiError;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use super::{param_rows, Store};
use crate::domain::buckets::{cover, Grain, QUARTER_MS};
use crate::domain::rollup::recoveries;
use crate::domain::RunStatus;

/// The finish times a batch brought for one workflow: (workspace, first, last).
pub(super) type Touched = BTreeMap<Uuid, (Uuid, i64, i64)>;

/// Recomputes the recoveries of every workflow in `touched`, inside the roller's
/// transaction.
pub(super) async fn refresh(
    tx: &mut Transaction<'_, Any>,
    touched: &Touched,
) -> Result<(), ApiError> {
    let mut sums = RecoverySums::default();
    for (workflow, (workspace, first, last)) in touched {
        let id = workflow.to_string();
        let after: Option<i64> = sqlx::query(
            "SELECT MAX(finished_at) AS at FROM execution_facts WHERE workflow_id = $1 \
             AND status = 'SUCCEEDED' AND finished_at < $2",
        )
        .bind(&id)
        .bind(first)
        .fetch_one(&mut **tx)
        .await?
        .try_get("at")?;
        let until: Option<i64> = sqlx::query(
            "SELECT MIN(finished_at) AS at FROM execution_facts WHERE workflow_id = $1 \
             AND status = 'SUCCEEDED' AND finished_at > $2",
        )
        .bind(&id)
        .bind(last)
        .fetch_one(&mut **tx)
        .await?
        .try_get("at")?;
        let (after, until) = (after.unwrap_or(i64::MIN), until.unwrap_or(i64::MAX));
        let rows = sqlx::query(
            "SELECT finished_at, status FROM execution_facts WHERE workflow_id = $1 \
             AND finished_at > $2 AND finished_at <= $3 ORDER BY finished_at, execution_id",
        )
        .bind(&id)
        .bind(after)
        .bind(until)
        .fetch_all(&mut **tx)
        .await?;
        let runs = rows
            .iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                let status = RunStatus::parse(&status).ok_or_else(|| ApiError::internal(status))?;
                Ok((r.try_get("finished_at")?, status))
            })
            .collect::<Result<Vec<(i64, RunStatus)>, ApiError>>()?;
        let replaced = sqlx::query(
            "DELETE FROM recoveries WHERE workflow_id = $1 AND recovered_at > $2 \
             AND recovered_at <= $3 RETURNING workspace_id, failed_at, recovered_at",
        )
        .bind(&id)
        .bind(after)
        .bind(until)
        .fetch_all(&mut **tx)
        .await?;
        for row in &replaced {
            let workspace: String = row.try_get("workspace_id")?;
            let (failed_at, recovered_at): (i64, i64) =
                (row.try_get("failed_at")?, row.try_get("recovered_at")?);
            sums.add(workspace, recovered_at, -1, -(recovered_at - failed_at));
        }
        let found = recoveries(&runs);
        for &(failed_at, recovered_at) in &found {
            sums.add(
                workspace.to_string(),
                recovered_at,
                1,
                recovered_at - failed_at,
            );
        }
        for (failed_at, recovered_at) in found {
            sqlx::query(
                "INSERT INTO recoveries (workflow_id, failed_at, workspace_id, recovered_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&id)
            .bind(failed_at)
            .bind(workspace.to_string())
            .bind(recovered_at)
            .execute(&mut **tx)
            .await?;
        }
    }
    sums.write(tx).await
}

/// How the recoveries a refresh replaced change the recovery rollups: (count, total
/// milliseconds) per (workspace, grain, bucket), added to the stored rows at the end.
#[derive(Default)]
struct RecoverySums(BTreeMap<(String, Grain, i64), (i64, i64)>);

impl RecoverySums {
    fn add(&mut self, workspace: String, recovered_at: i64, count: i64, total_ms: i64) {
        for grain in [Grain::Quarter, Grain::Day] {
            let sum = self
                .0
                .entry((workspace.clone(), grain, grain.start(recovered_at)))
                .or_default();
            sum.0 += count;
            sum.1 += total_ms;
        }
    }

    async fn write(self, tx: &mut Transaction<'_, Any>) -> Result<(), ApiError> {
        let changed: Vec<_> = self
            .0
            .into_iter()
            .filter(|(_, (count, total))| *count != 0 || *total != 0)
            .collect();
        for chunk in changed.chunks(400) {
            let sql = format!(
                "INSERT INTO recovery_rollups (workspace_id, grain, bucket_start, recoveries, \
                 total_ms) VALUES {} ON CONFLICT (workspace_id, grain, bucket_start) DO UPDATE \
                 SET recoveries = recovery_rollups.recoveries + excluded.recoveries, \
                 total_ms = recovery_rollups.total_ms + excluded.total_ms",
                param_rows(1, chunk.len(), 5)
            );
            let mut query = sqlx::query(&sql);
            for ((workspace, grain, start), (count, total)) in chunk {
                query = query
                    .bind(workspace.clone())
                    .bind(grain.as_str())
                    .bind(*start)
                    .bind(*count)
                    .bind(*total);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

impl Store {
    /// The mean time to recovery of the workspace's workflows over the recoveries that
    /// ended in `[from, to)`, and how many there were.
    pub async fn mean_time_to_recovery(
        &self,
        workspace: Uuid,
        from: i64,
        to: i64,
    ) -> Result<(Option<f64>, i64), ApiError> {
        let (mut n, mut total) = (0_i64, 0_i64);
        // Recoveries are rolled up per quarter-hour and day: the range is widened to
        // whole quarter-hours (dashboard ranges already are).
        let (from, to) = (
            Grain::Quarter.start(from),
            Grain::Quarter.start(to + QUARTER_MS - 1),
        );
        for piece in cover(from, to) {
            let row = sqlx::query(
                "SELECT CAST(COALESCE(SUM(recoveries), 0) AS BIGINT) AS n, \
                 CAST(COALESCE(SUM(total_ms), 0) AS BIGINT) AS total FROM recovery_rollups \
                 WHERE workspace_id = $1 AND grain = $2 AND bucket_start >= $3 \
                 AND bucket_start < $4",
            )
            .bind(workspace.to_string())
            .bind(piece.grain.as_str())
            .bind(piece.from)
            .bind(piece.to)
            .fetch_one(self.db().pool())
            .await?;
            n += row.try_get::<i64, _>("n")?;
            total += row.try_get::<i64, _>("total")?;
        }
        Ok(((n > 0).then(|| total as f64 / n as f64), n))
    }
}
