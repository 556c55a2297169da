//! What ends executions, and what their end sets off: failing (or cancelling)
//! one cancels its open steps and children and fails the parent step waiting
//! for it; finishing one resumes that parent step with its output; and either
//! frees its slot under the workflow's concurrency limit for the oldest waiting
//! execution. All of it happens in the transaction that records the end, so a
//! crash leaves either none of it or all of it.
//!
//! Lock order: each transaction locks the execution it ends first, then walks
//! to children or the parent. A parent cancelled while its child finishes can
//! deadlock in PostgreSQL; the database aborts one of the two, whose work is
//! redone (a worker's task is redelivered; a cancel reports an error to retry).

use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::events::{outbox, Event};
use futures::future::BoxFuture;
use serde_json::Value;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use super::progress::{advance, lock, QueuedStep, Resumed, Transition};
use super::{by_id, execution_from, step_from, Store, COLUMNS, STEP_COLUMNS};
use crate::domain::{Execution, ParentStep, Status, StepRun, StepStatus};

/// Takes a slot under the workflow's concurrency limit (always granted without
/// one); false when every slot is taken. The slot row's lock serialises
/// concurrent admissions for one workflow.
pub(super) async fn take_slot(
    tx: &mut Transaction<'_, Any>,
    e: &Execution,
) -> Result<bool, ApiError> {
    let limit = e.definition.settings.concurrency_limit;
    if limit == 0 {
        return Ok(true);
    }
    sqlx::query(
        "INSERT INTO workflow_slots (workflow_id, running) VALUES ($1, 0) ON CONFLICT (workflow_id) DO NOTHING",
    )
    .bind(e.workflow_id.to_string())
    .execute(&mut **tx)
    .await?;
    let taken = sqlx::query(
        "UPDATE workflow_slots SET running = running + 1 WHERE workflow_id = $1 AND running < $2 RETURNING running",
    )
    .bind(e.workflow_id.to_string())
    .bind(i64::from(limit))
    .fetch_optional(&mut **tx)
    .await?;
    Ok(taken.is_some())
}

/// Gives back the slot an ending execution held, and admits the workflow's
/// waiting executions (highest priority, then oldest, first) while slots are free.
async fn release_slot(
    tx: &mut Transaction<'_, Any>,
    e: &Execution,
    now: i64,
) -> Result<Vec<QueuedStep>, ApiError> {
    if e.definition.settings.concurrency_limit == 0 {
        return Ok(Vec::new());
    }
    sqlx::query(
        "UPDATE workflow_slots SET running = running - 1 WHERE workflow_id = $1 AND running > 0",
    )
    .bind(e.workflow_id.to_string())
    .execute(&mut **tx)
    .await?;
    let mut queued = Vec::new();
    loop {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM executions WHERE workflow_id = $1 AND admitted = 0 AND status = 'QUEUED' \
             ORDER BY priority DESC, created_at, id LIMIT 1"
        ))
        .bind(e.workflow_id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        let Some(waiting) = row.as_ref().map(execution_from).transpose()? else {
            break;
        };
        if !take_slot(tx, &waiting).await? {
            break;
        }
        sqlx::query("UPDATE executions SET admitted = 1 WHERE id = $1")
            .bind(waiting.id.to_string())
            .execute(&mut **tx)
            .await?;
        queued.extend(super::progress::start(tx, &waiting, now).await?);
    }
    Ok(queued)
}

/// Ends an open execution as FAILED, CANCELLED or TIMED_OUT with its outcome
/// event. Its queued, running and waiting steps are cancelled (a running step's
/// worker loses its lease and stops), its open children are cancelled, the
/// parent step waiting for it fails (and with it the parent), and its
/// concurrency slot goes to the next waiting execution. `None` when it had
/// ended already.
pub(crate) fn fail_execution<'a>(
    tx: &'a mut Transaction<'_, Any>,
    e: &'a Execution,
    status: Status,
    error: &'a str,
    now: i64,
) -> BoxFuture<'a, Result<Option<Transition>, ApiError>> {
    Box::pin(async move {
        let ended = sqlx::query(
            "UPDATE executions SET status = $1, error = $2, finished_at = $3 \
             WHERE id = $4 AND status IN ('QUEUED', 'RUNNING') RETURNING admitted",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(now)
        .bind(e.id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        let Some(ended) = ended else {
            return Ok(None);
        };
        let admitted: i64 = ended.try_get("admitted")?;
        sqlx::query(
            "UPDATE step_runs SET status = 'CANCELLED', error = $1, finished_at = $2 \
             WHERE execution_id = $3 AND status IN ('QUEUED', 'RUNNING', 'WAITING')",
        )
        .bind(error)
        .bind(now)
        .bind(e.id.to_string())
        .execute(&mut **tx)
        .await?;
        let mut failed = e.clone();
        failed.status = status;
        failed.error = Some(error.to_string());
        failed.finished_at = Some(now);
        let kind = failed.status.outcome_event();
        outbox::record(tx, &Event::new(kind, now, failed.outcome_payload())).await?;
        let mut t = Transition {
            ended: Some(status),
            ..Default::default()
        };
        let children = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM executions WHERE parent_execution_id = $1 AND status IN ('QUEUED', 'RUNNING')"
        ))
        .bind(e.id.to_string())
        .fetch_all(&mut **tx)
        .await?;
        for row in &children {
            let child = execution_from(row)?;
            let reason = format!("its parent execution {} ended: {error}", e.id);
            if let Some(ct) = fail_execution(tx, &child, Status::Cancelled, &reason, now).await? {
                t.queued.extend(ct.queued);
                t.resumed.extend(ct.resumed);
            }
        }
        if admitted == 1 {
            t.queued.extend(release_slot(tx, e, now).await?);
        }
        if let Some(parent) = e.parent {
            let message = format!(
                "child execution {} ended {}: {error}",
                e.id,
                status.as_str()
            );
            if let Some(pt) = fail_parent_step(tx, parent, &message, now).await? {
                t.queued.extend(pt.queued);
                t.resumed.extend(pt.resumed);
            }
        }
        Ok(Some(t))
    })
}

/// The parent step waiting for a child that failed fails for good (the child
/// had its own retries), and so does the parent execution.
async fn fail_parent_step(
    tx: &mut Transaction<'_, Any>,
    parent: ParentStep,
    message: &str,
    now: i64,
) -> Result<Option<Transition>, ApiError> {
    let status = lock(tx, parent.execution).await?;
    let failed = sqlx::query(&format!(
        "UPDATE step_runs SET status = 'FAILED', error = $1, finished_at = $2 WHERE id = $3 AND status = 'WAITING' \
         RETURNING {STEP_COLUMNS}"
    ))
    .bind(message)
    .bind(now)
    .bind(parent.step.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = failed else {
        return Ok(None);
    };
    let step = step_from(&row)?;
    let Some(p) = by_id(&mut **tx, parent.execution).await? else {
        return Ok(None);
    };
    let finished = step.finished_event(&p, StepStatus::Failed, Some(message), now);
    outbox::record(tx, &finished).await?;
    if status.is_terminal() {
        return Ok(None);
    }
    let reason = format!("node `{}` failed: {message}", step.node_id);
    fail_execution(tx, &p, Status::Failed, &reason, now).await
}

impl Store {
    /// RUNNING → SUCCEEDED (or FAILED) with the outcome event, in one
    /// transaction that also frees the execution's concurrency slot and, for a
    /// child, resumes the parent step waiting for it. `None` when the execution
    /// had already finished (nothing recorded); else what that set off.
    pub async fn finish(&self, e: &Execution) -> Result<Option<Transition>, ApiError> {
        let mut tx = self.db().pool().begin().await?;
        let ended = sqlx::query(
            "UPDATE executions SET status = $1, output = $2, error = $3, finished_at = $4 \
             WHERE id = $5 AND status IN ('QUEUED', 'RUNNING') RETURNING admitted",
        )
        .bind(e.status.as_str())
        .bind(e.output.as_ref().map(|o| o.to_string()))
        .bind(e.error.clone())
        .bind(e.finished_at)
        .bind(e.id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(ended) = ended else {
            return Ok(None);
        };
        let admitted: i64 = ended.try_get("admitted")?;
        let now = e.finished_at.unwrap_or_default();
        let event = Event::new(e.status.outcome_event(), now, e.outcome_payload());
        outbox::record(&mut tx, &event).await?;
        let mut t = Transition {
            ended: Some(e.status),
            ..Transition::default()
        };
        if admitted == 1 {
            t.queued.extend(release_slot(&mut tx, e, now).await?);
        }
        if let Some(parent) = e.parent {
            let output = e.output.clone().unwrap_or(Value::Null);
            t.absorb(resume_parent(&mut tx, parent, e.id, &output, now).await?);
        }
        tx.commit().await?;
        Ok(Some(t))
    }
}

/// The parent step waiting for a child that succeeded succeeds with the child's
/// output, and the parent goes on from there.
async fn resume_parent(
    tx: &mut Transaction<'_, Any>,
    parent: ParentStep,
    child: Uuid,
    output: &Value,
    now: i64,
) -> Result<Transition, ApiError> {
    let status = lock(tx, parent.execution).await?;
    // Returns the step's identity and times only: its output is what was just written.
    let resumed = sqlx::query(
        "UPDATE step_runs SET status = 'SUCCEEDED', output = $1, finished_at = $2 \
         WHERE id = $3 AND status = 'WAITING' AND child_execution_id = $4 RETURNING id",
    )
    .bind(output.to_string())
    .bind(now)
    .bind(parent.step.to_string())
    .bind(child.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    if resumed.is_none() {
        return Ok(Transition::default());
    }
    let Some(p) = by_id(&mut **tx, parent.execution).await? else {
        return Ok(Transition::default());
    };
    let step = step_by_id(tx, parent.step).await?;
    let finished = step.finished_event(&p, StepStatus::Succeeded, None, now);
    outbox::record(tx, &finished).await?;
    if status.is_terminal() {
        return Ok(Transition::default());
    }
    let mut t = advance(tx, &p, 1, 0, now).await?;
    let completed = t.completed.take();
    t.resumed.push(Resumed {
        parent: Box::new(p),
        completed,
    });
    Ok(t)
}

/// A step as stored, by its id (it exists: the caller just updated it).
async fn step_by_id(tx: &mut Transaction<'_, Any>, id: Uuid) -> Result<StepRun, ApiError> {
    let row = sqlx::query(&format!(
        "SELECT {STEP_COLUMNS} FROM step_runs WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_one(&mut **tx)
    .await?;
    step_from(&row)
}
