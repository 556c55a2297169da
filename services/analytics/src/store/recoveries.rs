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

use super::Store;
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
        sqlx::query(
            "DELETE FROM recoveries WHERE workflow_id = $1 AND recovered_at > $2 \
             AND recovered_at <= $3",
        )
        .bind(&id)
        .bind(after)
        .bind(until)
        .execute(&mut **tx)
        .await?;
        for (failed_at, recovered_at) in recoveries(&runs) {
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
    Ok(())
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
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(recovered_at - failed_at), 0) AS BIGINT) AS total \
             FROM recoveries WHERE workspace_id = $1 AND recovered_at >= $2 AND recovered_at < $3",
        )
        .bind(workspace.to_string())
        .bind(from)
        .bind(to)
        .fetch_one(self.db().pool())
        .await?;
        let (n, total): (i64, i64) = (row.try_get("n")?, row.try_get("total")?);
        Ok(((n > 0).then(|| total as f64 / n as f64), n))
    }
}
