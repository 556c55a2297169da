//! The execution service's tables: executions (here), step runs ([`steps`]: the
//! engine's transitions) and what ends executions ([`lifecycle`]: failing,
//! finishing, children resuming their parents, concurrency slots).

// What the service holds about a user, for export and erasure (see
// `flowfleet_host::privacy`).
mod privacy;

pub mod lifecycle;
pub mod list;
pub mod partitions;
pub mod progress;
pub mod schedule;
pub mod steps;

use flowfleet_runtime::db::Db;
use flowfleet_runtime::db::{optional_uuid_column, uuid_column};
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::events::{outbox, Event};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use crate::domain::{Execution, ParentStep, Status, StepRun, StepStatus, TriggerKind};
pub use progress::{QueuedStep, Transition};
pub use steps::Claim;

/// What recording a new execution did.
pub enum Created {
    /// Recorded, with its entry steps to dispatch (none while it waits for a
    /// concurrency slot).
    New(Vec<QueuedStep>),
    /// The idempotency key was used already: this is its execution.
    Existing(Box<Execution>),
}

#[derive(Clone)]
pub struct Store {
    db: Db,
    /// Whether settling an attempt records `step.finished` (`worker.step_events`).
    step_events: bool,
}

fn json(row: &AnyRow, col: &str) -> Result<Option<serde_json::Value>, ApiError> {
    row.try_get::<Option<String>, _>(col)?
        .map(|s| serde_json::from_str(&s).map_err(ApiError::internal))
        .transpose()
}

const COLUMNS: &str =
    "id, workspace_id, workflow_id, workflow_name, version, definition, status, trigger_kind, \
    input, output, error, priority, idempotency_key, triggered_by, steps_total, steps_done, \
    artifact_file_id, created_at, started_at, finished_at, parent_execution_id, parent_step_id, \
    depth, retry_of, workflow_owner_id";

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
        trigger: {
            let kind: String = row.try_get("trigger_kind")?;
            TriggerKind::parse(&kind)
                .ok_or_else(|| ApiError::internal(format!("stored trigger kind `{kind}`")))?
        },
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
        parent: match optional_uuid_column(row, "parent_execution_id")? {
            Some(execution) => Some(ParentStep {
                execution,
                step: uuid_column(row, "parent_step_id")?,
            }),
            None => None,
        },
        depth: row.try_get("depth")?,
        retry_of: optional_uuid_column(row, "retry_of")?,
        workflow_owner: optional_uuid_column(row, "workflow_owner_id")?,
    })
}

/// One execution, through the pool or inside a transaction.
async fn by_id<'e>(
    db: impl sqlx::Executor<'e, Database = Any>,
    id: Uuid,
) -> Result<Option<Execution>, ApiError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM executions WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(db)
        .await?;
    row.as_ref().map(execution_from).transpose()
}

async fn by_idempotency_key<'e>(
    db: impl sqlx::Executor<'e, Database = Any>,
    workflow: Uuid,
    key: &str,
) -> Result<Option<Execution>, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM executions WHERE id = \
         (SELECT execution_id FROM execution_keys WHERE workflow_id = $1 AND idempotency_key = $2)"
    ))
    .bind(workflow.to_string())
    .bind(key)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(execution_from).transpose()
}

pub(crate) const STEP_COLUMNS: &str =
    "id, execution_id, node_id, item, node_type, status, attempt, priority, input, output, branch, \
     error, logs, worker, queued_at, due_at, started_at, finished_at, child_execution_id";

pub(crate) fn step_from(row: &AnyRow) -> Result<StepRun, ApiError> {
    let status: String = row.try_get("status")?;
    Ok(StepRun {
        id: uuid_column(row, "id")?,
        execution_id: uuid_column(row, "execution_id")?,
        node_id: row.try_get("node_id")?,
        item: item_from(row.try_get("item")?),
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
        child_execution_id: optional_uuid_column(row, "child_execution_id")?,
    })
}

/// Steps outside loops store item -1.
pub(crate) fn item_from(stored: i64) -> Option<u32> {
    u32::try_from(stored).ok()
}

pub(crate) fn item_to(item: Option<u32>) -> i64 {
    item.map(i64::from).unwrap_or(-1)
}

impl Store {
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn new(db: Db) -> Self {
        Store {
            db,
            step_events: true,
        }
    }

    /// The same store, recording `step.finished` or not (`worker.step_events`).
    pub fn with_step_events(mut self, on: bool) -> Self {
        self.step_events = on;
        self
    }

    /// Records a new QUEUED execution and its entry steps (QUEUED, not yet
    /// dispatched), in one transaction; the caller dispatches the returned steps.
    /// With an idempotency key already used for this workflow, the existing
    /// execution is returned instead, with nothing to dispatch. `reused` are
    /// results carried over from an earlier execution (a retry from the failed
    /// step): recorded as they were, so only what comes after them runs. Under
    /// the workflow's concurrency limit with every slot taken, the execution
    /// waits (QUEUED, without steps) until one frees up.
    pub async fn create(
        &self,
        e: &Execution,
        reused: &[StepRun],
        now: i64,
    ) -> Result<(Execution, Vec<QueuedStep>), ApiError> {
        let mut tx = self.db.pool().begin().await?;
        let created = self.create_in(&mut tx, e, reused, now).await?;
        match created {
            Created::New(queued) => {
                tx.commit().await?;
                Ok((e.clone(), queued))
            }
            Created::Existing(existing) => Ok((*existing, Vec::new())),
        }
    }

    /// [`Store::create`] inside a transaction of the caller's (a sub_workflow
    /// step records its child and starts waiting in one).
    pub(crate) async fn create_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        e: &Execution,
        reused: &[StepRun],
        now: i64,
    ) -> Result<Created, ApiError> {
        if let Some(key) = &e.idempotency_key {
            let claimed = sqlx::query(
                "INSERT INTO execution_keys (workflow_id, idempotency_key, execution_id) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(e.workflow_id.to_string())
            .bind(key)
            .bind(e.id.to_string())
            .execute(&mut **tx)
            .await?;
            if claimed.rows_affected() == 0 {
                // Used already, or lost a race on it: the insert waited for the
                // winner to commit, so its execution is visible now.
                return match by_idempotency_key(&mut **tx, e.workflow_id, key).await? {
                    Some(existing) => Ok(Created::Existing(Box::new(existing))),
                    None => Err(ApiError::internal(format!(
                        "idempotency key of workflow {} names no execution",
                        e.workflow_id
                    ))),
                };
            }
        }
        let admitted = lifecycle::take_slot(tx, e).await?;
        sqlx::query(&format!(
            "INSERT INTO executions ({COLUMNS}, admitted) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
              $20, $21, $22, $23, $24, $25, $26)"
        ))
        .bind(e.id.to_string())
        .bind(e.workspace_id.to_string())
        .bind(e.workflow_id.to_string())
        .bind(&e.workflow_name)
        .bind(e.version)
        .bind(serde_json::to_string(&e.definition).map_err(ApiError::internal)?)
        .bind(e.status.as_str())
        .bind(e.trigger.as_str())
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
        .bind(e.parent.map(|p| p.execution.to_string()))
        .bind(e.parent.map(|p| p.step.to_string()))
        .bind(e.depth)
        .bind(e.retry_of.map(|r| r.to_string()))
        .bind(e.workflow_owner.map(|o| o.to_string()))
        .bind(i64::from(admitted))
        .execute(&mut **tx)
        .await?;
        steps::reuse(tx, e, reused, now).await?;
        if !admitted {
            return Ok(Created::New(Vec::new()));
        }
        let queued = progress::start(tx, e, now).await?;
        Ok(Created::New(queued))
    }
    pub async fn get(&self, id: Uuid) -> Result<Option<Execution>, ApiError> {
        by_id(self.db.pool(), id).await
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

    /// One attempt of a step, by id.
    pub async fn step(&self, id: Uuid) -> Result<Option<StepRun>, ApiError> {
        let row = sqlx::query(&format!(
            "SELECT {STEP_COLUMNS} FROM step_runs WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(step_from).transpose()
    }

    /// Records an event that changes nothing here (a custom event) in the outbox.
    pub async fn record_event(&self, event: &Event) -> Result<(), ApiError> {
        let mut conn = self.db.pool().acquire().await?;
        outbox::record(&mut conn, event).await?;
        Ok(())
    }

    pub async fn set_artifact(&self, id: Uuid, file_id: &str) -> Result<(), ApiError> {
        sqlx::query("UPDATE executions SET artifact_file_id = $1 WHERE id = $2")
            .bind(file_id)
            .bind(id.to_string())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}
