//! Recording many facts at once, in multi-row statements: a backlog of events the
//! consumer takes together, a backfill, or the analytics benchmark's load. The effect is
//! [`Store::record`]'s on each fact.

use flowfleet_runtime::error::ApiError;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row, Transaction};

use super::{param_rows, Store};
use crate::domain::Fact;

/// Rows per statement: 11 columns × 400 stays far below SQLite's 32 766 parameters.
const ROWS: usize = 400;

impl Store {
    /// Records `facts` in one transaction; returns how many were new.
    pub async fn record_many(&self, facts: &[Fact]) -> Result<usize, ApiError> {
        let mut tx = self.db().pool().begin().await?;
        let mut new = 0;
        let runs: Vec<_> = facts
            .iter()
            .filter_map(|f| match f {
                Fact::Execution(o) => Some(o),
                _ => None,
            })
            .collect();
        for chunk in runs.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO execution_facts (execution_id, workspace_id, workflow_id, status, \
                 triggered_by, finished_at, duration_ms, error) VALUES {} \
                 ON CONFLICT (execution_id) DO NOTHING RETURNING execution_id",
                param_rows(1, chunk.len(), 8)
            );
            let mut q = sqlx::query(&sql);
            for o in chunk {
                q = q
                    .bind(o.execution_id.to_string())
                    .bind(o.workspace_id.to_string())
                    .bind(o.workflow_id.to_string())
                    .bind(o.status.as_str())
                    .bind(o.triggered_by.to_string())
                    .bind(o.finished_at_ms)
                    .bind(o.duration_ms)
                    .bind(o.error.clone());
            }
            let ids = inserted_ids(&mut tx, q, "execution_id").await?;
            new += ids.len();
            queue(&mut tx, "unrolled_executions", "execution_id", &ids).await?;
        }
        let steps: Vec<_> = facts
            .iter()
            .filter_map(|f| match f {
                Fact::Step(s) => Some(s),
                _ => None,
            })
            .collect();
        for chunk in steps.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO step_facts (step_id, workspace_id, workflow_id, execution_id, \
                 node_id, node_type, status, attempt, finished_at, duration_ms, queue_wait_ms) \
                 VALUES {} ON CONFLICT (step_id) DO NOTHING RETURNING step_id",
                param_rows(1, chunk.len(), 11)
            );
            let mut q = sqlx::query(&sql);
            for s in chunk {
                q = q
                    .bind(s.step_id.to_string())
                    .bind(s.workspace_id.to_string())
                    .bind(s.workflow_id.to_string())
                    .bind(s.execution_id.to_string())
                    .bind(s.node_id.clone())
                    .bind(s.node_type.clone())
                    .bind(s.status.as_str())
                    .bind(s.attempt)
                    .bind(s.finished_at_ms)
                    .bind(s.duration_ms)
                    .bind(s.queue_wait_ms);
            }
            let ids = inserted_ids(&mut tx, q, "step_id").await?;
            new += ids.len();
            queue(&mut tx, "unrolled_steps", "step_id", &ids).await?;
        }
        for fact in facts {
            if let Fact::Worker(w) = fact {
                new += usize::from(super::record_worker(&mut tx, w).await?);
            }
            if let Fact::Activity(a) = fact {
                new += usize::from(super::record_activity(&mut tx, a).await?);
            }
        }
        tx.commit().await?;
        Ok(new)
    }
}

async fn inserted_ids<'q>(
    tx: &mut Transaction<'_, Any>,
    q: Query<'q, Any, AnyArguments<'q>>,
    column: &str,
) -> Result<Vec<String>, ApiError> {
    let rows = q.fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<String, _>(column)?))
        .collect()
}

/// Queues newly recorded facts for the roller.
async fn queue(
    tx: &mut Transaction<'_, Any>,
    table: &str,
    column: &str,
    ids: &[String],
) -> Result<(), ApiError> {
    for chunk in ids.chunks(ROWS * 8) {
        if chunk.is_empty() {
            continue;
        }
        let sql = format!(
            "INSERT INTO {table} ({column}) VALUES {}",
            param_rows(1, chunk.len(), 1)
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id.as_str());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}
