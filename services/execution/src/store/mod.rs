//! The execution service's tables: executions (here) and step runs ([`steps`]:
//! the engine's transitions).

pub mod steps;

use flowfleet_shared::db::uuid_column;
use flowfleet_shared::db::{is_unique_violation, Db, Page};
use flowfleet_shared::error::ApiError;
use flowfleet_shared::events::{outbox, Event};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{Execution, Status, StepRun, StepStatus};
use crate::plan;
pub use steps::{Claim, QueuedStep, Transition};

#[derive(Clone)]
pub struct Store {
    db: Db,
}

fn json(row: &AnyRow, col: &str) -> Result<Option<serde_json::Value>, ApiError> {
    row.try_get::<Option<String>, _>(col)?
        .map(|s| serde_json::from_str(&s).map_err(ApiError::internal))
        .transpose()
}

const COLUMNS: &str =
    "id, workspace_id, workflow_id, workflow_name, version, definition, status, trigger_kind, \
    input, output, error, priority, idempotency_key, triggered_by, steps_total, steps_done, \
    artifact_file_id, created_at, started_at, finished_at";

fn execution_from(row: &AnyRow) -> Result<Execution, ApiError> {
    let status: String = row.try_get("status")?;
    let definition: String = row.try_get("definition")?;
    Ok(Execution {
        id: uuid_column(row, "id")?,
        workspace_id: uuid_column(row, "workspace_id")?,
        workflow_id: uuid_column(row, "workflow_id")?,
        workflow_name: row.try_get("workflow_name")?,
        version: row.try_get("version")?,
        definition: serde_json::from_str(&definition).map_err(ApiError::internal)?,
        status: Status::parse(&status)
            .ok_or_else(|| ApiError::internal(format!("stored status `{status}`")))?,
        trigger: row.try_get("trigger_kind")?,
        input: json(row, "input")?.unwrap_or_default(),
        output: json(row, "output")?,
        error: row.try_get("error")?,
        priority: row.try_get("priority")?,
        idempotency_key: row.try_get("idempotency_key")?,
        triggered_by: uuid_column(row, "triggered_by")?,
        steps_total: row.try_get("steps_total")?,
        steps_done: row.try_get("steps_done")?,
        artifact_file_id: row.try_get("artifact_file_id")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

pub(crate) const STEP_COLUMNS: &str =
    "id, execution_id, node_id, node_type, status, attempt, priority, input, output, branch, error, \
     logs, worker, queued_at, due_at, started_at, finished_at";

pub(crate) fn step_from(row: &AnyRow) -> Result<StepRun, ApiError> {
    let status: String = row.try_get("status")?;
    Ok(StepRun {
        id: uuid_column(row, "id")?,
        execution_id: uuid_column(row, "execution_id")?,
        node_id: row.try_get("node_id")?,
        node_type: row.try_get("node_type")?,
        status: StepStatus::parse(&status)
            .ok_or_else(|| ApiError::internal(format!("stored step status `{status}`")))?,
        attempt: row.try_get("attempt")?,
        priority: row.try_get("priority")?,
        input: json(row, "input")?.unwrap_or_default(),
        output: json(row, "output")?,
        branch: row.try_get("branch")?,
        error: row.try_get("error")?,
        logs: json(row, "logs")?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        worker: row.try_get("worker")?,
        queued_at: row.try_get("queued_at")?,
        due_at: row.try_get("due_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

/// The facts an execution's outcome event carries (consumed by analytics and
/// notification).
pub fn outcome_payload(e: &Execution) -> serde_json::Value {
    let started = e.started_at.unwrap_or(e.created_at);
    let finished = e.finished_at.unwrap_or(started);
    serde_json::json!({
        "executionId": e.id, "workflowId": e.workflow_id, "workspaceId": e.workspace_id,
        "version": e.version, "status": e.status.as_str(), "triggeredBy": e.triggered_by,
        "workflowName": e.workflow_name, "startedAtMs": started, "finishedAtMs": finished,
        "durationMs": finished - started, "error": e.error,
    })
}

impl Store {
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn new(db: Db) -> Self {
        Store { db }
    }

    /// Records a new QUEUED execution and its entry steps (QUEUED, not yet
    /// dispatched), in one transaction; the caller dispatches the returned steps.
    /// With an idempotency key already used for this workflow, the existing
    /// execution is returned instead, with nothing to dispatch.
    pub async fn create(
        &self,
        e: &Execution,
        now: i64,
    ) -> Result<(Execution, Vec<QueuedStep>), ApiError> {
        if let Some(key) = &e.idempotency_key {
            if let Some(existing) = self.by_idempotency_key(e.workflow_id, key).await? {
                return Ok((existing, Vec::new()));
            }
        }
        let mut tx = self.db.pool().begin().await?;
        if let Some(key) = &e.idempotency_key {
            let claimed = sqlx::query(
                "INSERT INTO execution_keys (workflow_id, idempotency_key, execution_id) \
                 VALUES ($1, $2, $3)",
            )
            .bind(e.workflow_id.to_string())
            .bind(key)
            .bind(e.id.to_string())
            .execute(&mut *tx)
            .await;
            if let Err(err) = claimed {
                drop(tx);
                // Lost a race on the same key: the winner's execution stands.
                if is_unique_violation(&err) {
                    if let Some(existing) = self.by_idempotency_key(e.workflow_id, key).await? {
                        return Ok((existing, Vec::new()));
                    }
                }
                return Err(err.into());
            }
        }
        sqlx::query(&format!(
            "INSERT INTO executions ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
        ))
        .bind(e.id.to_string())
        .bind(e.workspace_id.to_string())
        .bind(e.workflow_id.to_string())
        .bind(&e.workflow_name)
        .bind(e.version)
        .bind(serde_json::to_string(&e.definition).map_err(ApiError::internal)?)
        .bind(e.status.as_str())
        .bind(&e.trigger)
        .bind(e.input.to_string())
        .bind(None::<String>)
        .bind(None::<String>)
        .bind(e.priority)
        .bind(e.idempotency_key.clone())
        .bind(e.triggered_by.to_string())
        .bind(e.steps_total)
        .bind(0_i64)
        .bind(None::<String>)
        .bind(e.created_at)
        .bind(None::<i64>)
        .bind(None::<i64>)
        .execute(&mut *tx)
        .await?;
        let decisions = plan::next_steps(&e.definition, &e.input, &Default::default());
        let queued = steps::apply(&mut tx, e, &decisions, now).await?.0;
        tx.commit().await?;
        Ok((e.clone(), queued))
    }

    async fn by_idempotency_key(
        &self,
        workflow: Uuid,
        key: &str,
    ) -> Result<Option<Execution>, ApiError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM executions WHERE id = \
             (SELECT execution_id FROM execution_keys WHERE workflow_id = $1 AND idempotency_key = $2)"
        ))
        .bind(workflow.to_string())
        .bind(key)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(execution_from).transpose()
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Execution>, ApiError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM executions WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(execution_from).transpose()
    }

    /// The workflow's most recent execution (no count: this runs per workflow
    /// in every list that shows `lastExecution`).
    pub async fn latest_for_workflow(&self, workflow: Uuid) -> Result<Option<Execution>, ApiError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM executions WHERE workflow_id = $1 ORDER BY id DESC LIMIT 1"
        ))
        .bind(workflow.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(execution_from).transpose()
    }

    /// A page of a workflow's executions, newest first.
    pub async fn list_for_workflow(
        &self,
        workflow: Uuid,
        first: i64,
        after: Option<Uuid>,
    ) -> Result<Page<Execution>, ApiError> {
        self.db
            .page_newest_first(
                "executions",
                COLUMNS,
                "workflow_id",
                workflow,
                first,
                after,
                execution_from,
            )
            .await
    }

    /// Every attempt of every step, in the order they were queued.
    pub async fn steps(&self, execution: Uuid) -> Result<Vec<StepRun>, ApiError> {
        let rows = sqlx::query(&format!(
            "SELECT {STEP_COLUMNS} FROM step_runs WHERE execution_id = $1 ORDER BY queued_at, id"
        ))
        .bind(execution.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(step_from).collect()
    }

    pub async fn set_artifact(&self, id: Uuid, file_id: &str) -> Result<(), ApiError> {
        sqlx::query("UPDATE executions SET artifact_file_id = $1 WHERE id = $2")
            .bind(file_id)
            .bind(id.to_string())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// RUNNING → SUCCEEDED or FAILED with the outcome event, in one transaction.
    /// Returns false when the execution had already finished (nothing recorded).
    pub async fn finish(&self, e: &Execution) -> Result<bool, ApiError> {
        let mut tx = self.db.pool().begin().await?;
        let updated = sqlx::query(
            "UPDATE executions SET status = $1, output = $2, error = $3, finished_at = $4 \
             WHERE id = $5 AND status IN ('QUEUED', 'RUNNING')",
        )
        .bind(e.status.as_str())
        .bind(e.output.as_ref().map(|o| o.to_string()))
        .bind(e.error.clone())
        .bind(e.finished_at)
        .bind(e.id.to_string())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Ok(false);
        }
        let kind = if e.status == Status::Succeeded {
            "execution.succeeded"
        } else {
            "execution.failed"
        };
        outbox::record(
            &mut tx,
            &Event::new(kind, e.finished_at.unwrap_or_default(), outcome_payload(e)),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
