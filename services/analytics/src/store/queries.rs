//! Reading rollups back for dashboards. Each function reads one level of one grain over
//! a span of bucket starts; assembling spans into a time zone's buckets is the
//! dashboards' work (`crate::dashboards`).

use std::collections::HashMap;

use flowfleet_runtime::error::ApiError;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row};
use uuid::Uuid;

pub use super::rollups::Sketches;
use super::rollups::{attempts_with, runs_from};
use super::{key_text, param_rows, parse_uuid, Store};
use crate::domain::buckets::{Grain, Piece, DAY_MS};
use crate::domain::rollup::{Attempts, Pool, Runs};

/// Which step rollups to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepLevel {
    /// Every step of the workspace.
    Workspace,
    /// Per node type.
    NodeType,
    /// Per node of every workflow (or of one).
    Node(Option<Uuid>),
}

/// A step rollup's subject: (workflow, node) for nodes, the node type for types.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StepSubject {
    pub workflow: Option<Uuid>,
    pub node: String,
    pub node_type: String,
}

impl Store {
    /// The execution rollups of the workspace (or of one workflow) in `piece`, by
    /// bucket start.
    pub async fn runs_in(
        &self,
        workspace: Uuid,
        workflow: Option<Uuid>,
        piece: Piece,
    ) -> Result<Vec<(i64, Runs)>, ApiError> {
        let rows = sqlx::query(
            "SELECT bucket_start, runs, succeeded, failed, cancelled, timed_out, \
             total_duration_ms, durations FROM execution_rollups WHERE workspace_id = $1 \
             AND grain = $2 AND workflow_id = $3 AND bucket_start >= $4 AND bucket_start < $5 \
             ORDER BY bucket_start",
        )
        .bind(workspace.to_string())
        .bind(piece.grain.as_str())
        .bind(key_text(workflow))
        .bind(piece.from)
        .bind(piece.to)
        .fetch_all(self.db().pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("bucket_start")?, runs_from(r)?)))
            .collect()
    }

    /// Per workflow: the counts of its runs in `piece` (sketches left out: rankings
    /// need counts only).
    pub async fn runs_by_workflow(
        &self,
        workspace: Uuid,
        piece: Piece,
    ) -> Result<Vec<(Uuid, Runs)>, ApiError> {
        let rows = sqlx::query(
            "SELECT workflow_id, CAST(SUM(runs) AS BIGINT) AS runs, \
             CAST(SUM(succeeded) AS BIGINT) AS succeeded, CAST(SUM(failed) AS BIGINT) AS failed, \
             CAST(SUM(cancelled) AS BIGINT) AS cancelled, CAST(SUM(timed_out) AS BIGINT) AS timed_out, \
             CAST(SUM(total_duration_ms) AS BIGINT) AS total_duration_ms \
             FROM execution_rollups WHERE workspace_id = $1 AND grain = $2 AND workflow_id <> '' \
             AND bucket_start >= $3 AND bucket_start < $4 GROUP BY workflow_id",
        )
        .bind(workspace.to_string())
        .bind(piece.grain.as_str())
        .bind(piece.from)
        .bind(piece.to)
        .fetch_all(self.db().pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse_uuid(&r.try_get::<String, _>("workflow_id")?)?,
                    Runs {
                        runs: r.try_get("runs")?,
                        succeeded: r.try_get("succeeded")?,
                        failed: r.try_get("failed")?,
                        cancelled: r.try_get("cancelled")?,
                        timed_out: r.try_get("timed_out")?,
                        total_duration_ms: r.try_get("total_duration_ms")?,
                        durations: Default::default(),
                    },
                ))
            })
            .collect()
    }

    /// Step rollups of `level` in `piece`: (subject, bucket start, attempts).
    pub async fn attempts_in(
        &self,
        workspace: Uuid,
        level: StepLevel,
        piece: Piece,
        sketches: Sketches,
    ) -> Result<Vec<(StepSubject, i64, Attempts)>, ApiError> {
        let filter = level_filter(level);
        let sql = format!(
            "SELECT workflow_id, node_id, node_type, bucket_start, attempts, failed, retries, \
             total_duration_ms, total_queue_wait_ms, {} FROM step_rollups \
             WHERE workspace_id = $1 AND grain = $2 AND bucket_start >= $3 AND bucket_start < $4 \
             AND {filter} ORDER BY bucket_start",
            sketches.columns()
        );
        let rows = level_query(&sql, workspace, level, piece)
            .fetch_all(self.db().pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    subject_from(r)?,
                    r.try_get("bucket_start")?,
                    attempts_with(r, sketches)?,
                ))
            })
            .collect()
    }

    /// The worker pools' rollups in `piece`, by bucket start.
    pub async fn pool_in(&self, piece: Piece) -> Result<Vec<(i64, Pool)>, ApiError> {
        let rows = sqlx::query(
            "SELECT bucket_start, samples, slot_ms, busy_ms, steps, backlog_sum, backlog_max \
             FROM pool_rollups WHERE grain = $1 AND bucket_start >= $2 AND bucket_start < $3 \
             ORDER BY bucket_start",
        )
        .bind(piece.grain.as_str())
        .bind(piece.from)
        .bind(piece.to)
        .fetch_all(self.db().pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("bucket_start")?,
                    Pool {
                        samples: r.try_get("samples")?,
                        slot_ms: r.try_get("slot_ms")?,
                        busy_ms: r.try_get("busy_ms")?,
                        steps: r.try_get("steps")?,
                        backlog_sum: r.try_get("backlog_sum")?,
                        backlog_max: r.try_get("backlog_max")?,
                    },
                ))
            })
            .collect()
    }

    /// The largest p95 ceiling of each subject's rollups of `level` in `piece`, computed
    /// by the database without reading a sketch: the first pass of a ranking.
    pub async fn p95_ceilings(
        &self,
        workspace: Uuid,
        level: StepLevel,
        piece: Piece,
    ) -> Result<Vec<(StepSubject, i64)>, ApiError> {
        let filter = level_filter(level);
        let sql = format!(
            "SELECT workflow_id, node_id, node_type, \
             CAST(MAX(p95_ceiling_ms) AS BIGINT) AS p95_ceiling_ms FROM step_rollups \
             WHERE workspace_id = $1 AND grain = $2 AND bucket_start >= $3 AND bucket_start < $4 \
             AND {filter} GROUP BY workflow_id, node_id, node_type"
        );
        let rows = level_query(&sql, workspace, level, piece)
            .fetch_all(self.db().pool())
            .await?;
        rows.iter()
            .map(|r| Ok((subject_from(r)?, r.try_get("p95_ceiling_ms")?)))
            .collect()
    }

    /// The step rollups in `piece` of the given subjects only, with their sketches.
    pub async fn attempts_of(
        &self,
        workspace: Uuid,
        piece: Piece,
        subjects: &[StepSubject],
        sketches: Sketches,
    ) -> Result<Vec<(StepSubject, Attempts)>, ApiError> {
        let mut out = Vec::new();
        for chunk in subjects.chunks(200) {
            let sql = format!(
                "SELECT workflow_id, node_id, node_type, attempts, failed, retries, \
                 total_duration_ms, total_queue_wait_ms, {} \
                 FROM step_rollups WHERE workspace_id = $1 AND grain = $2 AND bucket_start >= $3 \
                 AND bucket_start < $4 AND (workflow_id, node_id, node_type) IN ({})",
                sketches.columns(),
                param_rows(5, chunk.len(), 3)
            );
            let mut query = piece_query(&sql, workspace, piece);
            for subject in chunk {
                query = query
                    .bind(key_text(subject.workflow))
                    .bind(subject.node.clone())
                    .bind(subject.node_type.clone());
            }
            for r in query.fetch_all(self.db().pool()).await? {
                out.push((subject_from(&r)?, attempts_with(&r, sketches)?));
            }
        }
        Ok(out)
    }

    /// The latest error of each workflow's failed runs, with when it happened.
    pub async fn last_errors(
        &self,
        workflows: &[Uuid],
    ) -> Result<HashMap<Uuid, (Option<String>, i64)>, ApiError> {
        let mut out = HashMap::new();
        for workflow in workflows {
            let row = sqlx::query(
                "SELECT error, finished_at FROM execution_facts WHERE workflow_id = $1 \
                 AND status IN ('FAILED', 'TIMED_OUT') ORDER BY finished_at DESC LIMIT 1",
            )
            .bind(workflow.to_string())
            .fetch_optional(self.db().pool())
            .await?;
            if let Some(row) = row {
                out.insert(
                    *workflow,
                    (row.try_get("error")?, row.try_get("finished_at")?),
                );
            }
        }
        Ok(out)
    }

    /// The people active in the workspace in `[from, to)` (quarter-aligned): the distinct
    /// ones of the whole UTC days in the range and of the quarter-hours at its edges.
    pub async fn active_users(&self, workspace: Uuid, from: i64, to: i64) -> Result<i64, ApiError> {
        let day_from = Grain::Day.start(from + DAY_MS - 1);
        let day_to = Grain::Day.start(to).max(day_from);
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM (\
             SELECT user_id FROM activity_days WHERE workspace_id = $1 \
             AND day >= $2 AND day < $3 \
             UNION SELECT user_id FROM activity WHERE workspace_id = $1 \
             AND ((bucket_start >= $4 AND bucket_start < $2) \
             OR (bucket_start >= $3 AND bucket_start < $5))) AS people",
        )
        .bind(workspace.to_string())
        .bind(day_from.min(to))
        .bind(day_to.min(to))
        .bind(from)
        .bind(to)
        .fetch_one(self.db().pool())
        .await?;
        Ok(row.try_get("n")?)
    }

    /// When the workflow's latest run finished, if it ever did.
    pub async fn last_run_at(&self, workflow: Uuid) -> Result<Option<i64>, ApiError> {
        Ok(self.run_span(workflow).await?.map(|(_, last)| last))
    }

    /// The first and last finish time of the workflow's runs (all time, as rolled up).
    pub async fn run_span(&self, workflow: Uuid) -> Result<Option<(i64, i64)>, ApiError> {
        let row = sqlx::query(
            "SELECT MIN(first_run_at) AS first, MAX(last_run_at) AS last FROM workflow_spans \
             WHERE workflow_id = $1",
        )
        .bind(workflow.to_string())
        .fetch_one(self.db().pool())
        .await?;
        let first: Option<i64> = row.try_get("first")?;
        let last: Option<i64> = row.try_get("last")?;
        Ok(first.zip(last))
    }
}

/// The rows of a step level (`$5` is the workflow for one workflow's nodes).
fn level_filter(level: StepLevel) -> &'static str {
    match level {
        StepLevel::Workspace => "workflow_id = '' AND node_id = '' AND node_type = ''",
        StepLevel::NodeType => "workflow_id = '' AND node_id = '' AND node_type <> ''",
        StepLevel::Node(None) => "workflow_id <> ''",
        StepLevel::Node(Some(_)) => "workflow_id = $5",
    }
}

fn subject_from(r: &sqlx::any::AnyRow) -> Result<StepSubject, ApiError> {
    let workflow: String = r.try_get("workflow_id")?;
    Ok(StepSubject {
        workflow: (!workflow.is_empty())
            .then(|| parse_uuid(&workflow))
            .transpose()?,
        node: r.try_get("node_id")?,
        node_type: r.try_get("node_type")?,
    })
}

/// `sql` with its first four parameters bound: the workspace, and the piece's grain and
/// span of bucket starts.
fn piece_query(sql: &str, workspace: Uuid, piece: Piece) -> Query<'_, Any, AnyArguments<'_>> {
    sqlx::query(sql)
        .bind(workspace.to_string())
        .bind(piece.grain.as_str())
        .bind(piece.from)
        .bind(piece.to)
}

/// [`piece_query`], and the workflow (`$5`) when `level` names one.
fn level_query(
    sql: &str,
    workspace: Uuid,
    level: StepLevel,
    piece: Piece,
) -> Query<'_, Any, AnyArguments<'_>> {
    let query = piece_query(sql, workspace, piece);
    match level {
        StepLevel::Node(Some(workflow)) => query.bind(workflow.to_string()),
        _ => query,
    }
}
