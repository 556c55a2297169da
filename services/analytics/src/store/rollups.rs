//! Folding facts into rollups.
//!
//! [`Store::roll`] takes a batch of facts from the `unrolled_*` queues, adds them to the
//! rollups of their buckets, and deletes their queue rows, in one transaction: a fact
//! is counted once even if the roller stops half-way. On PostgreSQL the transaction
//! first takes an advisory lock, so rollers of several replicas take turns (each
//! rollup row is read, merged and written back; two rollers merging into one row at
//! once would lose an addition). SQLite has one writer anyway.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use flowfleet_runtime::db::Backend;
use flowfleet_runtime::error::ApiError;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use super::{key_text, param_rows, params, parse_uuid, recoveries, Store};
use crate::domain::buckets::Grain;
use crate::domain::rollup::{
    grains_for, Attempts, AttemptsKey, Deltas, Runs, RunsKey, RANKED_QUANTILE,
};
use crate::domain::sketch::Sketch;
use crate::domain::{AttemptStatus, ExecutionOutcome, RunStatus, StepOutcome};

/// The advisory lock of the rollers (any constant unique within the service's schema).
const ROLLER_LOCK: i64 = 0x666c_6f77_726f_6c6c;

impl Store {
    /// Rolls up to `limit` facts of each kind; returns how many were rolled (0 when
    /// nothing waits). Minute rollups are only written for facts that finished at or
    /// after `minutes_since` (older minutes are not kept).
    pub async fn roll(&self, limit: i64, minutes_since: i64) -> Result<usize, ApiError> {
        let mut tx = self.db().pool().begin().await?;
        if self.db().backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(ROLLER_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        let runs = sqlx::query(
            "SELECT f.execution_id, f.workspace_id, f.workflow_id, f.status, f.triggered_by, \
             f.finished_at, f.duration_ms FROM unrolled_executions u \
             JOIN execution_facts f ON f.execution_id = u.execution_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let steps = sqlx::query(
            "SELECT f.step_id, f.workspace_id, f.workflow_id, f.execution_id, f.node_id, \
             f.node_type, f.status, f.attempt, f.finished_at, f.duration_ms, f.queue_wait_ms \
             FROM unrolled_steps u JOIN step_facts f ON f.step_id = u.step_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut deltas = Deltas::default();
        let mut run_ids = Vec::with_capacity(runs.len());
        let mut touched = recoveries::Touched::new();
        for row in &runs {
            let o = execution_from(row)?;
            deltas.add_run(&o, grains_for(o.finished_at_ms, minutes_since));
            run_ids.push(o.execution_id.to_string());
            let span = touched.entry(o.workflow_id).or_insert((
                o.workspace_id,
                o.finished_at_ms,
                o.finished_at_ms,
            ));
            span.1 = span.1.min(o.finished_at_ms);
            span.2 = span.2.max(o.finished_at_ms);
        }
        let mut step_ids = Vec::with_capacity(steps.len());
        for row in &steps {
            let s = step_from(row)?;
            deltas.add_attempt(&s, grains_for(s.finished_at_ms, minutes_since));
            step_ids.push(s.step_id.to_string());
        }
        if deltas.is_empty() {
            return Ok(0);
        }
        add_all_runs(&mut tx, &deltas.runs).await?;
        add_all_attempts(&mut tx, &deltas.attempts).await?;
        recoveries::refresh(&mut tx, &touched).await?;
        extend_spans(&mut tx, &touched).await?;
        dequeue(&mut tx, "unrolled_executions", "execution_id", &run_ids).await?;
        dequeue(&mut tx, "unrolled_steps", "step_id", &step_ids).await?;
        tx.commit().await?;
        Ok(run_ids.len() + step_ids.len())
    }

    /// Facts waiting to be rolled up.
    pub async fn unrolled(&self) -> Result<i64, ApiError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM unrolled_executions) + \
             (SELECT COUNT(*) FROM unrolled_steps) AS n",
        )
        .fetch_one(self.db().pool())
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Drops the rollups of buckets from `from` on (every grain) and queues the facts
    /// that finished since the first of them for rolling again: the rebuild
    /// (`flowfleet analytics rebuild`). Returns how many facts were queued.
    pub async fn unroll_since(&self, from: i64) -> Result<i64, ApiError> {
        // Day buckets start before `from`: start from the whole day, so the day rollup
        // it drops is rebuilt in full.
        let from = Grain::Day.start(from);
        let mut tx = self.db().pool().begin().await?;
        if self.db().backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(ROLLER_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        for statement in [
            "DELETE FROM execution_rollups WHERE bucket_start >= $1",
            "DELETE FROM step_rollups WHERE bucket_start >= $1",
        ] {
            sqlx::query(statement).bind(from).execute(&mut *tx).await?;
        }
        let runs = sqlx::query(
            "INSERT INTO unrolled_executions (execution_id) \
             SELECT execution_id FROM execution_facts WHERE finished_at >= $1 \
             ON CONFLICT (execution_id) DO NOTHING",
        )
        .bind(from)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let steps = sqlx::query(
            "INSERT INTO unrolled_steps (step_id) SELECT step_id FROM step_facts \
             WHERE finished_at >= $1 ON CONFLICT (step_id) DO NOTHING",
        )
        .bind(from)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((runs + steps) as i64)
    }
}

fn execution_from(row: &AnyRow) -> Result<ExecutionOutcome, ApiError> {
    let status: String = row.try_get("status")?;
    Ok(ExecutionOutcome {
        execution_id: parse_uuid(&row.try_get::<String, _>("execution_id")?)?,
        workflow_id: parse_uuid(&row.try_get::<String, _>("workflow_id")?)?,
        workspace_id: parse_uuid(&row.try_get::<String, _>("workspace_id")?)?,
        status: RunStatus::parse(&status).ok_or_else(|| ApiError::internal(status.clone()))?,
        triggered_by: parse_uuid(&row.try_get::<String, _>("triggered_by")?)?,
        finished_at_ms: row.try_get("finished_at")?,
        duration_ms: row.try_get("duration_ms")?,
        error: None,
    })
}

fn step_from(row: &AnyRow) -> Result<StepOutcome, ApiError> {
    let status: String = row.try_get("status")?;
    Ok(StepOutcome {
        step_id: parse_uuid(&row.try_get::<String, _>("step_id")?)?,
        execution_id: parse_uuid(&row.try_get::<String, _>("execution_id")?)?,
        workflow_id: parse_uuid(&row.try_get::<String, _>("workflow_id")?)?,
        workspace_id: parse_uuid(&row.try_get::<String, _>("workspace_id")?)?,
        node_id: row.try_get("node_id")?,
        node_type: row.try_get("node_type")?,
        status: AttemptStatus::parse(&status).ok_or_else(|| ApiError::internal(status.clone()))?,
        attempt: row.try_get("attempt")?,
        finished_at_ms: row.try_get("finished_at")?,
        duration_ms: row.try_get("duration_ms")?,
        queue_wait_ms: row.try_get("queue_wait_ms")?,
    })
}

pub(crate) fn runs_from(row: &AnyRow) -> Result<Runs, ApiError> {
    Ok(Runs {
        runs: row.try_get("runs")?,
        succeeded: row.try_get("succeeded")?,
        failed: row.try_get("failed")?,
        cancelled: row.try_get("cancelled")?,
        timed_out: row.try_get("timed_out")?,
        total_duration_ms: row.try_get("total_duration_ms")?,
        durations: Sketch::decode(&row.try_get::<String, _>("durations")?)
            .map_err(ApiError::internal)?,
    })
}

/// Which sketches of a step rollup a read decodes: a ranking's scan orders by duration
/// only, and decoding sketches is most of what reading a rollup costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sketches {
    All,
    /// Queue waits are left empty (and not selected).
    DurationsOnly,
}

impl Sketches {
    /// The sketch columns to select.
    pub(crate) fn columns(self) -> &'static str {
        match self {
            Sketches::All => "durations, queue_waits",
            Sketches::DurationsOnly => "durations",
        }
    }
}

pub(crate) fn attempts_from(row: &AnyRow) -> Result<Attempts, ApiError> {
    attempts_with(row, Sketches::All)
}

pub(crate) fn attempts_with(row: &AnyRow, sketches: Sketches) -> Result<Attempts, ApiError> {
    let queue_waits = match sketches {
        Sketches::All => {
            Sketch::decode(&row.try_get::<String, _>("queue_waits")?).map_err(ApiError::internal)?
        }
        Sketches::DurationsOnly => Sketch::default(),
    };
    Ok(Attempts {
        queue_waits,
        attempts: row.try_get("attempts")?,
        failed: row.try_get("failed")?,
        retries: row.try_get("retries")?,
        total_duration_ms: row.try_get("total_duration_ms")?,
        total_queue_wait_ms: row.try_get("total_queue_wait_ms")?,
        durations: Sketch::decode(&row.try_get::<String, _>("durations")?)
            .map_err(ApiError::internal)?,
    })
}

/// Rows per multi-row statement (13 columns × 300 stays far below SQLite's limit).
const ROWS: usize = 300;

/// Every stored row (of the table `select` reads) of the buckets `touched` names, as
/// (workspace, grain, bucket start), with its grain: all rows of those buckets are read
/// in a few statements, whatever workflow or node they belong to.
async fn rows_of_buckets(
    tx: &mut Transaction<'_, Any>,
    select: &str,
    touched: impl Iterator<Item = (Uuid, Grain, i64)>,
) -> Result<Vec<(Grain, AnyRow)>, ApiError> {
    let mut buckets: BTreeMap<(Uuid, Grain), BTreeSet<i64>> = BTreeMap::new();
    for (workspace, grain, start) in touched {
        buckets.entry((workspace, grain)).or_default().insert(start);
    }
    let mut rows = Vec::new();
    for ((workspace, grain), starts) in &buckets {
        let starts: Vec<i64> = starts.iter().copied().collect();
        for chunk in starts.chunks(ROWS) {
            let sql = format!(
                "{select} WHERE workspace_id = $1 AND grain = $2 AND bucket_start IN ({})",
                params(3, chunk.len())
            );
            let mut q = sqlx::query(&sql)
                .bind(workspace.to_string())
                .bind(grain.as_str());
            for start in chunk {
                q = q.bind(*start);
            }
            rows.extend(
                q.fetch_all(&mut **tx)
                    .await?
                    .into_iter()
                    .map(|r| (*grain, r)),
            );
        }
    }
    Ok(rows)
}

/// Adds every execution delta of a batch: reads the touched buckets' rows in a few
/// statements, merges in memory, and writes them back in multi-row upserts.
async fn add_all_runs(
    tx: &mut Transaction<'_, Any>,
    deltas: &BTreeMap<RunsKey, Runs>,
) -> Result<(), ApiError> {
    let touched = deltas
        .keys()
        .map(|k| (k.workspace, k.grain, k.bucket_start));
    let mut existing: HashMap<(Grain, String, i64), Runs> = HashMap::new();
    let select = "SELECT workflow_id, bucket_start, runs, succeeded, failed, cancelled, \
                  timed_out, total_duration_ms, durations FROM execution_rollups";
    for (grain, row) in rows_of_buckets(tx, select, touched).await? {
        let key = (
            grain,
            row.try_get("workflow_id")?,
            row.try_get("bucket_start")?,
        );
        existing.insert(key, runs_from(&row)?);
    }
    let merged: Vec<(&RunsKey, Runs)> = deltas
        .iter()
        .map(|(key, delta)| {
            let stored = (key.grain, key_text(key.workflow), key.bucket_start);
            let mut total = existing.remove(&stored).unwrap_or_default();
            total.merge(delta);
            (key, total)
        })
        .collect();
    for chunk in merged.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO execution_rollups (workspace_id, grain, workflow_id, bucket_start, runs, \
             succeeded, failed, cancelled, timed_out, total_duration_ms, durations) VALUES {} \
             ON CONFLICT (workspace_id, grain, workflow_id, bucket_start) DO UPDATE SET \
             runs = excluded.runs, succeeded = excluded.succeeded, failed = excluded.failed, \
             cancelled = excluded.cancelled, timed_out = excluded.timed_out, \
             total_duration_ms = excluded.total_duration_ms, durations = excluded.durations",
            param_rows(1, chunk.len(), 11)
        );
        let mut q = sqlx::query(&sql);
        for (key, total) in chunk {
            q = q
                .bind(key.workspace.to_string())
                .bind(key.grain.as_str())
                .bind(key_text(key.workflow))
                .bind(key.bucket_start)
                .bind(total.runs)
                .bind(total.succeeded)
                .bind(total.failed)
                .bind(total.cancelled)
                .bind(total.timed_out)
                .bind(total.total_duration_ms)
                .bind(total.durations.encode());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Adds every step delta of a batch, as [`add_all_runs`] does.
async fn add_all_attempts(
    tx: &mut Transaction<'_, Any>,
    deltas: &BTreeMap<AttemptsKey, Attempts>,
) -> Result<(), ApiError> {
    type Stored = (Grain, String, String, String, i64);
    let touched = deltas
        .keys()
        .map(|k| (k.workspace, k.grain, k.bucket_start));
    let mut existing: HashMap<Stored, Attempts> = HashMap::new();
    let select = "SELECT workflow_id, node_id, node_type, bucket_start, attempts, failed, \
                  retries, total_duration_ms, total_queue_wait_ms, durations, queue_waits \
                  FROM step_rollups";
    for (grain, row) in rows_of_buckets(tx, select, touched).await? {
        let key = (
            grain,
            row.try_get("workflow_id")?,
            row.try_get("node_id")?,
            row.try_get("node_type")?,
            row.try_get("bucket_start")?,
        );
        existing.insert(key, attempts_from(&row)?);
    }
    let stored_key = |key: &AttemptsKey| -> Stored {
        let (workflow, node) = match &key.node {
            Some((workflow, node)) => (workflow.to_string(), node.clone()),
            None => (String::new(), String::new()),
        };
        (
            key.grain,
            workflow,
            node,
            key.node_type.clone().unwrap_or_default(),
            key.bucket_start,
        )
    };
    let merged: Vec<(Stored, Uuid, Attempts)> = deltas
        .iter()
        .map(|(key, delta)| {
            let stored = stored_key(key);
            let mut total = existing.remove(&stored).unwrap_or_default();
            total.merge(delta);
            (stored, key.workspace, total)
        })
        .collect();
    for chunk in merged.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO step_rollups (workspace_id, grain, workflow_id, node_id, node_type, \
             bucket_start, attempts, failed, retries, total_duration_ms, total_queue_wait_ms, \
             p95_ceiling_ms, durations, queue_waits) VALUES {} \
             ON CONFLICT (workspace_id, grain, workflow_id, node_id, node_type, bucket_start) \
             DO UPDATE SET attempts = excluded.attempts, failed = excluded.failed, \
             retries = excluded.retries, total_duration_ms = excluded.total_duration_ms, \
             total_queue_wait_ms = excluded.total_queue_wait_ms, \
             p95_ceiling_ms = excluded.p95_ceiling_ms, durations = excluded.durations, \
             queue_waits = excluded.queue_waits",
            param_rows(1, chunk.len(), 14)
        );
        let mut q = sqlx::query(&sql);
        for ((grain, workflow, node, node_type, start), workspace, total) in chunk {
            q = q
                .bind(workspace.to_string())
                .bind(grain.as_str())
                .bind(workflow.clone())
                .bind(node.clone())
                .bind(node_type.clone())
                .bind(*start)
                .bind(total.attempts)
                .bind(total.failed)
                .bind(total.retries)
                .bind(total.total_duration_ms)
                .bind(total.total_queue_wait_ms)
                .bind(
                    total
                        .durations
                        .quantile_ceiling(RANKED_QUANTILE)
                        .unwrap_or(0),
                )
                .bind(total.durations.encode())
                .bind(total.queue_waits.encode());
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Widens the span of each workflow's runs (and records its workspace) to take in the
/// runs of a batch.
async fn extend_spans(
    tx: &mut Transaction<'_, Any>,
    touched: &recoveries::Touched,
) -> Result<(), ApiError> {
    let spans: Vec<_> = touched.iter().collect();
    for chunk in spans.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO workflow_spans (workflow_id, workspace_id, first_run_at, last_run_at) \
             VALUES {} ON CONFLICT (workflow_id, workspace_id) DO UPDATE SET \
             first_run_at = CASE WHEN excluded.first_run_at < workflow_spans.first_run_at \
             THEN excluded.first_run_at ELSE workflow_spans.first_run_at END, \
             last_run_at = CASE WHEN excluded.last_run_at > workflow_spans.last_run_at \
             THEN excluded.last_run_at ELSE workflow_spans.last_run_at END",
            param_rows(1, chunk.len(), 4)
        );
        let mut query = sqlx::query(&sql);
        for (workflow, (workspace, first, last)) in chunk {
            query = query
                .bind(workflow.to_string())
                .bind(workspace.to_string())
                .bind(*first)
                .bind(*last);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Deletes the queue rows of rolled facts.
async fn dequeue(
    tx: &mut Transaction<'_, Any>,
    table: &str,
    column: &str,
    ids: &[String],
) -> Result<(), ApiError> {
    let unique: BTreeSet<&String> = ids.iter().collect();
    for chunk in unique.into_iter().collect::<Vec<_>>().chunks(500) {
        let sql = format!(
            "DELETE FROM {table} WHERE {column} IN ({})",
            params(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}
