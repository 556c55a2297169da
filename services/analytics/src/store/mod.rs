//! The analytics service's tables (its own schema): facts, the queue of facts not yet
//! rolled up, and rollups. Facts are recorded by [`Store::record`], folded into
//! rollups by [`Store::roll`] ([`rollups`]), and read back by the dashboards
//! ([`queries`]). Sums are cast to BIGINT because PostgreSQL widens `SUM(bigint)` to
//! `numeric`, which the portable driver does not decode.

// What the service holds about a user, for export and erasure (see
// `flowfleet_host::privacy`).
mod bulk;
mod privacy;
pub mod queries;
mod recoveries;
pub mod retention;
mod rollups;

use flowfleet_runtime::db::Db;
use flowfleet_runtime::error::ApiError;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use crate::domain::buckets::Grain;
use crate::domain::{Activity, ExecutionOutcome, Fact, StepOutcome, WorkerSample};

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

    /// Records an event's facts in one transaction. A fact already recorded (a
    /// redelivered event, an outbox republish) changes nothing, so each is rolled up
    /// once. Returns how many facts were new.
    pub async fn record(&self, facts: &[Fact]) -> Result<usize, ApiError> {
        let mut tx = self.db.pool().begin().await?;
        let mut new = 0;
        for fact in facts {
            let inserted = match fact {
                Fact::Execution(o) => record_execution(&mut tx, o).await?,
                Fact::Step(s) => record_step(&mut tx, s).await?,
                Fact::Activity(a) => record_activity(&mut tx, a).await?,
                Fact::Worker(w) => record_worker(&mut tx, w).await?,
            };
            new += usize::from(inserted);
        }
        tx.commit().await?;
        Ok(new)
    }

    /// The workspaces the workflow's facts belong to (one, unless the execution
    /// service reported inconsistent data; callers must be a member of each).
    pub async fn workspaces_of(&self, workflow: Uuid) -> Result<Vec<Uuid>, ApiError> {
        let rows = sqlx::query("SELECT workspace_id FROM workflow_spans WHERE workflow_id = $1")
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
}

async fn record_execution(
    tx: &mut Transaction<'_, Any>,
    o: &ExecutionOutcome,
) -> Result<bool, ApiError> {
    let inserted = sqlx::query(
        "INSERT INTO execution_facts (execution_id, workspace_id, workflow_id, status, \
         triggered_by, finished_at, duration_ms, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (execution_id) DO NOTHING",
    )
    .bind(o.execution_id.to_string())
    .bind(o.workspace_id.to_string())
    .bind(o.workflow_id.to_string())
    .bind(o.status.as_str())
    .bind(o.triggered_by.to_string())
    .bind(o.finished_at_ms)
    .bind(o.duration_ms)
    .bind(o.error.as_deref())
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        sqlx::query("INSERT INTO unrolled_executions (execution_id) VALUES ($1)")
            .bind(o.execution_id.to_string())
            .execute(&mut **tx)
            .await?;
    }
    Ok(inserted)
}

async fn record_step(tx: &mut Transaction<'_, Any>, s: &StepOutcome) -> Result<bool, ApiError> {
    let inserted = sqlx::query(
        "INSERT INTO step_facts (step_id, workspace_id, workflow_id, execution_id, node_id, \
         node_type, status, attempt, finished_at, duration_ms, queue_wait_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (step_id) DO NOTHING",
    )
    .bind(s.step_id.to_string())
    .bind(s.workspace_id.to_string())
    .bind(s.workflow_id.to_string())
    .bind(s.execution_id.to_string())
    .bind(&s.node_id)
    .bind(&s.node_type)
    .bind(s.status.as_str())
    .bind(s.attempt)
    .bind(s.finished_at_ms)
    .bind(s.duration_ms)
    .bind(s.queue_wait_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        sqlx::query("INSERT INTO unrolled_steps (step_id) VALUES ($1)")
            .bind(s.step_id.to_string())
            .execute(&mut **tx)
            .await?;
    }
    Ok(inserted)
}

pub(super) async fn record_activity(
    tx: &mut Transaction<'_, Any>,
    a: &Activity,
) -> Result<bool, ApiError> {
    let inserted = sqlx::query(
        "INSERT INTO activity (workspace_id, bucket_start, user_id, kind) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (workspace_id, bucket_start, user_id, kind) DO NOTHING",
    )
    .bind(a.workspace_id.to_string())
    .bind(Grain::Quarter.start(a.at_ms))
    .bind(a.user_id.to_string())
    .bind(a.kind.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        sqlx::query(
            "INSERT INTO activity_days (workspace_id, day, user_id, kind) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (workspace_id, day, user_id, kind) DO NOTHING",
        )
        .bind(a.workspace_id.to_string())
        .bind(Grain::Day.start(a.at_ms))
        .bind(a.user_id.to_string())
        .bind(a.kind.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(inserted == 1)
}

/// Records a worker pool's report and, if new, adds it to the pool rollups.
pub(super) async fn record_worker(
    tx: &mut Transaction<'_, Any>,
    w: &WorkerSample,
) -> Result<bool, ApiError> {
    let new = sqlx::query(
        "INSERT INTO worker_samples (worker_id, at) VALUES ($1, $2) \
         ON CONFLICT (worker_id, at) DO NOTHING",
    )
    .bind(&w.worker_id)
    .bind(w.at_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if !new {
        return Ok(false);
    }
    for grain in Grain::ALL {
        sqlx::query(
            "INSERT INTO pool_rollups (grain, bucket_start, samples, slot_ms, busy_ms, steps, \
             backlog_sum, backlog_max) VALUES ($1, $2, 1, $3, $4, $5, $6, $7) \
             ON CONFLICT (grain, bucket_start) DO UPDATE SET \
             samples = pool_rollups.samples + 1, slot_ms = pool_rollups.slot_ms + excluded.slot_ms, \
             busy_ms = pool_rollups.busy_ms + excluded.busy_ms, \
             steps = pool_rollups.steps + excluded.steps, \
             backlog_sum = pool_rollups.backlog_sum + excluded.backlog_sum, \
             backlog_max = CASE WHEN excluded.backlog_max > pool_rollups.backlog_max \
               THEN excluded.backlog_max ELSE pool_rollups.backlog_max END",
        )
        .bind(grain.as_str())
        .bind(grain.start(w.at_ms))
        .bind(w.slot_ms)
        .bind(w.busy_ms)
        .bind(w.steps_finished)
        .bind(w.backlog)
        .bind(w.backlog_max.max(w.backlog))
        .execute(&mut **tx)
        .await?;
    }
    Ok(true)
}

/// `$first, $first+1, ...`: `n` parameters, for an `IN (...)` list.
pub(crate) fn params(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($first, ...), (...)`: `rows` tuples of `columns` parameters each, for multi-row
/// `VALUES` and row-value `IN` lists.
pub(crate) fn param_rows(first: usize, rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", params(first + r * columns, columns)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A UUID column, or '' for "all" in a rollup's key.
pub(crate) fn key_text(id: Option<Uuid>) -> String {
    id.map(|u| u.to_string()).unwrap_or_default()
}

pub(crate) fn parse_uuid(text: &str) -> Result<Uuid, ApiError> {
    text.parse().map_err(ApiError::internal)
}
