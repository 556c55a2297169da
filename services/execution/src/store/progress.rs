//! Moving an execution forward inside the transaction that records a change: lock it,
//! read where each step stands (its latest attempt), plan what that makes ready, and
//! record those steps (queued to dispatch, or skipped). Both what ends steps
//! ([`super::steps`]) and what ends executions ([`super::lifecycle`]) build on this;
//! it depends on neither.

use flowfleet_runtime::error::ApiError;
use serde_json::Value;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use super::{item_from, item_to};
use crate::domain::{self, Execution, Status, StepStatus};
use crate::plan::{self, Decision, NodeState, Place, States, StepKey};

/// A QUEUED step whose task must go on the queue: its row, which step it is, and how
/// its task is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedStep {
    pub id: Uuid,
    pub key: StepKey,
    pub priority: i64,
    pub due_at: i64,
}

/// A parent execution resumed because its child finished: its next steps are
/// queued in the same transition; when `completed`, the caller finishes it
/// with that output (storing its artifact first).
#[derive(Debug)]
pub struct Resumed {
    pub parent: Box<Execution>,
    pub completed: Option<Value>,
}

/// What recording a result changed.
#[derive(Debug, Default)]
pub struct Transition {
    /// Steps now queued, to dispatch.
    pub queued: Vec<QueuedStep>,
    /// Every node is settled: the execution is complete with this output (the
    /// caller stores the artifact, then [`Store::finish`]es it).
    pub completed: Option<Value>,
    /// The execution this transition ended, and how (its outcome event is recorded).
    pub ended: Option<Status>,
    /// Parents resumed by executions this transition ended (their next steps are
    /// in `queued`; a completed one must be finished by the caller).
    pub resumed: Vec<Resumed>,
}

impl Transition {
    pub(crate) fn absorb(&mut self, other: Transition) {
        self.queued.extend(other.queued);
        self.completed = self.completed.take().or(other.completed);
        self.ended = self.ended.or(other.ended);
        self.resumed.extend(other.resumed);
    }
}

pub(super) fn queued_from(row: &sqlx::any::AnyRow) -> Result<QueuedStep, ApiError> {
    Ok(QueuedStep {
        id: flowfleet_runtime::db::uuid_column(row, "id")?,
        key: StepKey {
            execution: flowfleet_runtime::db::uuid_column(row, "execution_id")?,
            place: Place {
                node: row.try_get("node_id")?,
                item: item_from(row.try_get("item")?),
            },
            attempt: row.try_get("attempt")?,
        },
        priority: row.try_get("priority")?,
        due_at: row.try_get("due_at")?,
    })
}

pub(super) const QUEUED_COLUMNS: &str =
    "id, execution_id, node_id, item, attempt, priority, due_at";

/// Locks the execution against concurrent transitions and returns its status.
pub(super) async fn lock(
    tx: &mut Transaction<'_, Any>,
    execution: Uuid,
) -> Result<Status, ApiError> {
    let row =
        sqlx::query("UPDATE executions SET steps_done = steps_done WHERE id = $1 RETURNING status")
            .bind(execution.to_string())
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| ApiError::internal(format!("execution {execution} vanished")))?;
    let status: String = row.try_get("status")?;
    Status::parse(&status).ok_or_else(|| ApiError::internal(format!("stored status `{status}`")))
}

/// Each step's state from its latest attempt.
pub(super) async fn node_states<'e>(
    db: impl sqlx::Executor<'e, Database = Any>,
    execution: Uuid,
) -> Result<States, ApiError> {
    let rows = sqlx::query(
        "SELECT node_id, item, attempt, status, output, branch FROM step_runs WHERE execution_id = $1",
    )
    .bind(execution.to_string())
    .fetch_all(db)
    .await?;
    let attempts = rows
        .iter()
        .map(|row| {
            let place = Place {
                node: row.try_get("node_id")?,
                item: item_from(row.try_get("item")?),
            };
            let status: String = row.try_get("status")?;
            let status = StepStatus::parse(&status)
                .ok_or_else(|| ApiError::internal(format!("stored step status `{status}`")))?;
            let output = row
                .try_get::<Option<String>, _>("output")?
                .and_then(|o| serde_json::from_str(&o).ok());
            let state = NodeState::of(status, output, row.try_get("branch")?);
            Ok((place, row.try_get::<i64, _>("attempt")?, state))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(crate::plan::latest_attempts(attempts))
}

/// Inserts the decided steps: QUEUED ones to dispatch, SKIPPED ones settled.
/// Returns the queued steps and how many were skipped. A `delay` step is due
/// when its wait ends, which is what makes the wait durable: the row (and the
/// queue's delayed task) hold it, not a worker.
pub(super) async fn apply(
    tx: &mut Transaction<'_, Any>,
    e: &Execution,
    decisions: &[Decision],
    now: i64,
) -> Result<(Vec<QueuedStep>, i64), ApiError> {
    let mut queued = Vec::new();
    let mut skipped = 0;
    for d in decisions {
        let node = e.definition.node(d.node());
        let node_type = node.map(|n| n.node_type.clone()).unwrap_or_default();
        let (status, input) = match d {
            Decision::Run { input, .. } => (StepStatus::Queued, input.clone()),
            Decision::Skip { .. } => (StepStatus::Skipped, Value::Null),
        };
        let due_at = match node {
            Some(n) if status == StepStatus::Queued => domain::due_at(n, &input, now),
            _ => now,
        };
        let step = QueuedStep {
            id: Uuid::now_v7(),
            key: StepKey {
                execution: e.id,
                place: d.place().clone(),
                attempt: 1,
            },
            priority: e.priority,
            due_at,
        };
        insert(tx, &step, &node_type, status, &input, now).await?;
        match status {
            StepStatus::Skipped => skipped += 1,
            _ => queued.push(step),
        }
    }
    Ok((queued, skipped))
}

/// Records an admitted execution's entry steps (after any reused results).
pub(super) async fn start(
    tx: &mut Transaction<'_, Any>,
    e: &Execution,
    now: i64,
) -> Result<Vec<QueuedStep>, ApiError> {
    Ok(advance(tx, e, 0, 0, now).await?.queued)
}

/// Decides and records what the execution's current states make ready, counts
/// `settled` more steps done and `announced` more in total, and reports whether
/// the execution is complete.
pub(super) async fn advance(
    tx: &mut Transaction<'_, Any>,
    e: &Execution,
    settled: i64,
    announced: i64,
    now: i64,
) -> Result<Transition, ApiError> {
    let mut states = node_states(&mut **tx, e.id).await?;
    let decisions = plan::next_steps(&e.definition, &e.input, &states);
    let (queued, skipped) = apply(tx, e, &decisions, now).await?;
    for d in &decisions {
        let state = match d {
            Decision::Run { .. } => NodeState::Open,
            Decision::Skip { .. } => NodeState::Skipped,
        };
        states.insert(d.place().clone(), state);
    }
    if settled + skipped + announced != 0 {
        sqlx::query(
            "UPDATE executions SET steps_done = steps_done + $1, steps_total = steps_total + $2 \
             WHERE id = $3",
        )
        .bind(settled + skipped)
        .bind(announced)
        .bind(e.id.to_string())
        .execute(&mut **tx)
        .await?;
    }
    Ok(Transition {
        queued,
        completed: plan::completion(&e.definition, &states),
        ..Default::default()
    })
}

pub(super) async fn insert(
    tx: &mut Transaction<'_, Any>,
    step: &QueuedStep,
    node_type: &str,
    status: StepStatus,
    input: &Value,
    now: i64,
) -> Result<(), ApiError> {
    let finished = (status == StepStatus::Skipped).then_some(now);
    sqlx::query(
        "INSERT INTO step_runs (id, execution_id, node_id, item, node_type, status, attempt, priority, \
         input, queued_at, due_at, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(step.id.to_string())
    .bind(step.key.execution.to_string())
    .bind(&step.key.place.node)
    .bind(item_to(step.key.place.item))
    .bind(node_type)
    .bind(status.as_str())
    .bind(step.key.attempt)
    .bind(step.priority)
    .bind(input.to_string())
    .bind(now)
    .bind(step.due_at)
    .bind(finished)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
