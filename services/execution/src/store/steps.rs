//! The engine's transitions over `step_runs`: claim a queued step, keep its lease
//! alive, record its result and schedule what that makes ready, all conditional
//! on the row's current state, so every transition is idempotent.
//!
//! Invariants:
//! - A row is one attempt of one node (of one item, inside a loop);
//!   `(execution, node, item, attempt)` is unique, so a step is queued once per
//!   attempt however many transitions race to queue it.
//! - Only the worker holding a RUNNING row (its `worker` and a fresh heartbeat) can
//!   settle it, and only once: a redelivered task, a second worker or a worker whose
//!   lease was taken over finds nothing to update and records nothing.
//! - Every transaction that reads an execution's steps to decide what comes next
//!   starts by writing the execution's row, which serialises them per execution (a
//!   row lock in PostgreSQL, the write lock in SQLite). Without it, two branches
//!   finishing at once could each see the other unfinished and neither start the join.

use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::events::outbox;
use serde_json::Value;
use sqlx::{Any, Row, Transaction};
use uuid::Uuid;

use super::lifecycle;
use super::progress::{
    advance, insert, lock, node_states, queued_from, QueuedStep, Transition, QUEUED_COLUMNS,
};
use super::{item_to, step_from, Store, STEP_COLUMNS};
use crate::domain::{Execution, Outcome, Status, StepRun, StepStatus};
use crate::plan::{self, Place, StepKey};

/// What a claim found.
#[derive(Debug)]
pub enum Claim {
    /// The step is ours to run.
    Mine(Box<StepRun>),
    /// Another worker holds it with a live lease until then (ms).
    Held { until: i64 },
    /// Settled, cancelled or unknown: nothing to do.
    Gone,
}

/// Copies an earlier execution's results (a retry from the failed step):
/// each reused step is recorded as it ended, so planning goes on after it.
pub(super) async fn reuse(
    tx: &mut Transaction<'_, Any>,
    e: &Execution,
    reused: &[StepRun],
    now: i64,
) -> Result<(), ApiError> {
    for r in reused {
        sqlx::query(
            "INSERT INTO step_runs (id, execution_id, node_id, item, node_type, status, attempt, \
             priority, input, output, branch, logs, queued_at, due_at, started_at, finished_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, $10, $11, $12, $12, $12, $12)",
        )
        .bind(Uuid::now_v7().to_string())
        .bind(e.id.to_string())
        .bind(&r.node_id)
        .bind(item_to(r.item))
        .bind(&r.node_type)
        .bind(r.status.as_str())
        .bind(e.priority)
        .bind(r.input.to_string())
        .bind(r.output.as_ref().map(Value::to_string))
        .bind(r.branch.clone())
        .bind(
            serde_json::to_string(&[format!("reused from execution {}", r.execution_id)])
                .map_err(ApiError::internal)?,
        )
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    if !reused.is_empty() {
        sqlx::query("UPDATE executions SET steps_done = $1 WHERE id = $2")
            .bind(reused.len() as i64)
            .bind(e.id.to_string())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// How a held step ends.
struct Settlement<'a> {
    status: StepStatus,
    output: Option<&'a Value>,
    branch: Option<&'a str>,
    error: Option<&'a str>,
    logs: &'a [String],
}

/// Settles a RUNNING step held by `worker`; false (nothing written) when it does not
/// hold it: the step was settled already, taken over, or cancelled.
async fn settle(
    tx: &mut Transaction<'_, Any>,
    step: Uuid,
    worker: &str,
    s: Settlement<'_>,
    now: i64,
) -> Result<bool, ApiError> {
    let updated = sqlx::query(
        "UPDATE step_runs SET status = $1, output = $2, branch = $3, error = $4, logs = $5, \
         finished_at = $6 WHERE id = $7 AND status = 'RUNNING' AND worker = $8",
    )
    .bind(s.status.as_str())
    .bind(s.output.map(Value::to_string))
    .bind(s.branch)
    .bind(s.error)
    .bind(serde_json::to_string(s.logs).map_err(ApiError::internal)?)
    .bind(now)
    .bind(step.to_string())
    .bind(worker)
    .execute(&mut **tx)
    .await?;
    Ok(updated.rows_affected() == 1)
}

impl Store {
    /// QUEUED → RUNNING for `worker`, or takes over a RUNNING step whose lease
    /// expired (its worker stopped heartbeating).
    pub async fn claim(
        &self,
        at: &StepKey,
        worker: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<Claim, ApiError> {
        let pool = self.db().pool();
        let claimed = sqlx::query(&format!(
            "UPDATE step_runs SET status = 'RUNNING', worker = $1, started_at = $2, heartbeat_at = $2 \
             WHERE execution_id = $3 AND node_id = $4 AND item = $5 AND attempt = $6 \
             AND status = 'QUEUED' RETURNING {STEP_COLUMNS}"
        ))
        .bind(worker)
        .bind(now)
        .bind(at.execution.to_string())
        .bind(&at.place.node)
        .bind(item_to(at.place.item))
        .bind(at.attempt)
        .fetch_optional(pool)
        .await?;
        if let Some(row) = claimed {
            sqlx::query(
                "UPDATE executions SET status = 'RUNNING', started_at = $1 WHERE id = $2 AND status = 'QUEUED'",
            )
            .bind(now)
            .bind(at.execution.to_string())
            .execute(pool)
            .await?;
            return Ok(Claim::Mine(Box::new(step_from(&row)?)));
        }
        let Some(row) = sqlx::query(
            "SELECT status, heartbeat_at FROM step_runs \
             WHERE execution_id = $1 AND node_id = $2 AND item = $3 AND attempt = $4",
        )
        .bind(at.execution.to_string())
        .bind(&at.place.node)
        .bind(item_to(at.place.item))
        .bind(at.attempt)
        .fetch_optional(pool)
        .await?
        else {
            return Ok(Claim::Gone);
        };
        let status: String = row.try_get("status")?;
        let heartbeat: Option<i64> = row.try_get("heartbeat_at")?;
        if status != "RUNNING" {
            return Ok(Claim::Gone);
        }
        let heartbeat = heartbeat.unwrap_or(0);
        if heartbeat + lease_ms > now {
            return Ok(Claim::Held {
                until: heartbeat + lease_ms,
            });
        }
        let taken = sqlx::query(&format!(
            "UPDATE step_runs SET worker = $1, started_at = $2, heartbeat_at = $2 \
             WHERE execution_id = $3 AND node_id = $4 AND item = $5 AND attempt = $6 \
             AND status = 'RUNNING' AND heartbeat_at = $7 RETURNING {STEP_COLUMNS}"
        ))
        .bind(worker)
        .bind(now)
        .bind(at.execution.to_string())
        .bind(&at.place.node)
        .bind(item_to(at.place.item))
        .bind(at.attempt)
        .bind(heartbeat)
        .fetch_optional(pool)
        .await?;
        match taken {
            Some(row) => {
                tracing::warn!(
                    node = %at.place.node,
                    attempt = at.attempt,
                    "took over a step whose worker stopped heartbeating"
                );
                Ok(Claim::Mine(Box::new(step_from(&row)?)))
            }
            None => Ok(Claim::Held {
                until: now + lease_ms,
            }),
        }
    }

    /// Renews `worker`'s lease; false when it no longer holds the step (taken
    /// over, cancelled, or waiting for a child), and it should stop.
    pub async fn heartbeat(&self, step: Uuid, worker: &str, now: i64) -> Result<bool, ApiError> {
        let n = sqlx::query(
            "UPDATE step_runs SET heartbeat_at = $1 WHERE id = $2 AND status = 'RUNNING' AND worker = $3",
        )
        .bind(now)
        .bind(step.to_string())
        .bind(worker)
        .execute(self.db().pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Gives a running step back (QUEUED, same attempt), for a worker shutting
    /// down, or one that got a step before it was due.
    pub async fn release(&self, step: Uuid, worker: &str) -> Result<(), ApiError> {
        sqlx::query(
            "UPDATE step_runs SET status = 'QUEUED', worker = NULL, heartbeat_at = NULL \
             WHERE id = $1 AND status = 'RUNNING' AND worker = $2",
        )
        .bind(step.to_string())
        .bind(worker)
        .execute(self.db().pool())
        .await?;
        Ok(())
    }

    /// Records a success and queues (or skips) what it makes ready. `None` when
    /// `worker` does not hold the step (nothing recorded). A `webhook_response`
    /// step's output is also the execution's reply, if it has none yet.
    pub async fn succeed(
        &self,
        e: &Execution,
        step: &StepRun,
        worker: &str,
        outcome: &Outcome,
        logs: &[String],
        now: i64,
    ) -> Result<Option<Transition>, ApiError> {
        let mut tx = self.db().pool().begin().await?;
        let status = lock(&mut tx, e.id).await?;
        let settled = Settlement {
            status: StepStatus::Succeeded,
            output: Some(&outcome.output),
            branch: outcome.branch.as_deref(),
            error: None,
            logs,
        };
        if !settle(&mut tx, step.id, worker, settled, now).await? {
            return Ok(None);
        }
        if self.step_events {
            let finished = step.finished_event(e, StepStatus::Succeeded, None, now);
            outbox::record(&mut tx, &finished).await?;
        }
        if step.replies_to_webhook() {
            sqlx::query("UPDATE executions SET reply = $1 WHERE id = $2 AND reply IS NULL")
                .bind(outcome.output.to_string())
                .bind(e.id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        let mut transition = Transition::default();
        if !status.is_terminal() {
            let announced = match step.item {
                None => plan::announced_steps(&e.definition, &step.node_id, &outcome.output),
                Some(_) => 0,
            };
            transition = advance(&mut tx, e, 1, announced, now).await?;
        }
        tx.commit().await?;
        Ok(Some(transition))
    }

    /// Records a failed (or timed-out) attempt. With `retry_at`, queues the next
    /// attempt due then; without, fails the execution. `None` when `worker` does
    /// not hold the step.
    #[allow(clippy::too_many_arguments)]
    pub async fn fail(
        &self,
        e: &Execution,
        step: &StepRun,
        worker: &str,
        error: &str,
        timed_out: bool,
        retry_at: Option<i64>,
        logs: &[String],
        now: i64,
    ) -> Result<Option<Transition>, ApiError> {
        let mut tx = self.db().pool().begin().await?;
        let status = lock(&mut tx, e.id).await?;
        let step_status = if timed_out {
            StepStatus::TimedOut
        } else {
            StepStatus::Failed
        };
        let settled = Settlement {
            status: step_status,
            output: None,
            branch: None,
            error: Some(error),
            logs,
        };
        if !settle(&mut tx, step.id, worker, settled, now).await? {
            return Ok(None);
        }
        if self.step_events {
            let finished = step.finished_event(e, step_status, Some(error), now);
            outbox::record(&mut tx, &finished).await?;
        }
        let mut transition = Transition::default();
        if !status.is_terminal() {
            match retry_at {
                Some(due_at) => {
                    let next = QueuedStep {
                        id: Uuid::now_v7(),
                        key: StepKey {
                            execution: e.id,
                            place: Place::of(step),
                            attempt: step.attempt + 1,
                        },
                        priority: step.priority,
                        due_at,
                    };
                    insert(
                        &mut tx,
                        &next,
                        &step.node_type,
                        StepStatus::Queued,
                        &step.input,
                        now,
                    )
                    .await?;
                    transition.queued.push(next);
                }
                None => {
                    let message = step.exhausted(error);
                    if let Some(t) =
                        lifecycle::fail_execution(&mut tx, e, Status::Failed, &message, now).await?
                    {
                        transition.absorb(t);
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(Some(transition))
    }

    /// A sub_workflow step held by `worker` starts waiting for its child, which is
    /// recorded in the same transaction (so a redelivered task finds the step
    /// WAITING and starts no second child). `None` when `worker` does not hold
    /// the step; else the child's execution and its entry steps to dispatch.
    pub async fn wait_for_child(
        &self,
        step: &StepRun,
        worker: &str,
        child: &Execution,
        now: i64,
    ) -> Result<Option<(Execution, Vec<QueuedStep>)>, ApiError> {
        let mut tx = self.db().pool().begin().await?;
        lock(&mut tx, step.execution_id).await?;
        let waiting = sqlx::query(
            "UPDATE step_runs SET status = 'WAITING', child_execution_id = $1, heartbeat_at = $2 \
             WHERE id = $3 AND status = 'RUNNING' AND worker = $4",
        )
        .bind(child.id.to_string())
        .bind(now)
        .bind(step.id.to_string())
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        if waiting.rows_affected() != 1 {
            return Ok(None);
        }
        let created = match self.create_in(&mut tx, child, &[], now).await? {
            super::Created::New(queued) => (child.clone(), queued),
            // The key is the parent step's: the child exists already.
            super::Created::Existing(existing) => (*existing, Vec::new()),
        };
        tx.commit().await?;
        Ok(Some(created))
    }

    /// Cancels an open execution: no queued step starts, running steps are taken
    /// from their workers (whose next lease renewal fails, which stops the node),
    /// and its open child executions are cancelled too. `None` when the execution
    /// had finished already (nothing changes); else what the cancellation made
    /// ready elsewhere (an execution admitted to the freed concurrency slot).
    pub async fn cancel(
        &self,
        e: &Execution,
        reason: &str,
        now: i64,
    ) -> Result<Option<Transition>, ApiError> {
        let mut tx = self.db().pool().begin().await?;
        if lock(&mut tx, e.id).await?.is_terminal() {
            return Ok(None);
        }
        let t = lifecycle::fail_execution(&mut tx, e, Status::Cancelled, reason, now).await?;
        tx.commit().await?;
        Ok(t)
    }

    /// Marks steps as on the queue.
    pub async fn dispatched(&self, steps: &[QueuedStep], now: i64) -> Result<(), ApiError> {
        for chunk in steps.chunks(100) {
            let placeholders: Vec<String> =
                (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "UPDATE step_runs SET dispatched_at = $1 WHERE id IN ({})",
                placeholders.join(", ")
            );
            let mut q = sqlx::query(&sql).bind(now);
            for s in chunk {
                q = q.bind(s.id.to_string());
            }
            q.execute(self.db().pool()).await?;
        }
        Ok(())
    }

    /// How many steps wait for a worker, per priority (read through `step_runs_queued`).
    pub async fn queued_by_priority(&self) -> Result<Vec<(i64, i64)>, ApiError> {
        let rows = sqlx::query(
            "SELECT priority, COUNT(*) AS queued FROM step_runs WHERE status = 'QUEUED' \
             GROUP BY priority",
        )
        .fetch_all(self.db().pool())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("priority")?, row.try_get("queued")?)))
            .collect()
    }

    /// Queued steps whose task never reached the queue (their dispatcher died
    /// between commit and enqueue), queued before `before`.
    pub async fn undispatched(&self, before: i64, limit: i64) -> Result<Vec<QueuedStep>, ApiError> {
        let rows = sqlx::query(&format!(
            "SELECT {QUEUED_COLUMNS} FROM step_runs \
             WHERE status = 'QUEUED' AND dispatched_at IS NULL AND queued_at < $1 \
             ORDER BY queued_at LIMIT $2"
        ))
        .bind(before)
        .bind(limit)
        .fetch_all(self.db().pool())
        .await?;
        rows.iter().map(queued_from).collect()
    }

    /// Running steps whose worker stopped heartbeating before `stale_before`, put
    /// back to QUEUED (same attempt) for the sweeper to dispatch again.
    pub async fn requeue_abandoned(&self, stale_before: i64) -> Result<Vec<QueuedStep>, ApiError> {
        let rows = sqlx::query(&format!(
            "UPDATE step_runs SET status = 'QUEUED', worker = NULL, dispatched_at = NULL \
             WHERE status = 'RUNNING' AND heartbeat_at < $1 RETURNING {QUEUED_COLUMNS}"
        ))
        .bind(stale_before)
        .fetch_all(self.db().pool())
        .await?;
        rows.iter().map(queued_from).collect()
    }

    /// After a restart with a queue that keeps nothing (embedded mode): every
    /// queued step's task is gone, so all must be dispatched again.
    pub async fn forget_dispatches(&self) -> Result<u64, ApiError> {
        Ok(
            sqlx::query("UPDATE step_runs SET dispatched_at = NULL WHERE status = 'QUEUED'")
                .execute(self.db().pool())
                .await?
                .rows_affected(),
        )
    }

    /// Finishes an execution whose every step is settled but which is still open
    /// (its completing worker died before finishing it). Returns the output to
    /// finish with, when that is the case.
    pub async fn pending_completion(&self, e: &Execution) -> Result<Option<Value>, ApiError> {
        if e.status.is_terminal() {
            return Ok(None);
        }
        let states = node_states(self.db().pool(), e.id).await?;
        Ok(plan::completion(&e.definition, &states))
    }
}
