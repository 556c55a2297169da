//! The worker: takes `step.run` tasks from the queue and runs one step each.
//!
//! A task names an attempt (execution, node, and the task's `attempt`). Handling it:
//! 1. claim the attempt in the database (QUEUED → RUNNING under this worker's lease);
//!    a task whose attempt is settled, cancelled or unknown is acknowledged and
//!    ignored, and one whose step another worker holds alive is postponed until that
//!    lease would expire, so a redelivered task never runs a step twice at once;
//! 2. run the node under its timeout, renewing the lease meanwhile; losing the lease
//!    (taken over, or the execution cancelled) stops the node;
//! 3. record the result, which in the same transaction queues what it makes ready
//!    (or the next attempt, after a backoff, or fails the execution);
//! 4. put the new steps' tasks on the queue, and only then acknowledge the task.
//!
//! A crash anywhere leaves the task unacknowledged (redelivered) or the new steps
//! undispatched (the [`sweep`] sends them): steps are recorded once, never lost.

use std::sync::Arc;
use std::time::Duration;

use flowfleet_runtime::clock::Clock;
use flowfleet_runtime::config::WorkerConfig;
use flowfleet_runtime::error::ApiError;
use flowfleet_runtime::queue::{backoff, TaskDelivery};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::dispatch::{step_of, Dispatcher};
use crate::domain::{Execution, Status, StepRun};
use crate::effects::Effects;
use crate::large_outputs::{self, LargeOutputs};
use crate::nodes::{NodeError, Nodes, Ran};
use crate::plan::StepKey;
use crate::store::{Claim, Store};

pub struct Worker {
    pub store: Store,
    pub nodes: Nodes,
    /// Stores large outputs as files and reads them back for the steps after.
    pub large_outputs: LargeOutputs,
    pub dispatcher: Dispatcher,
    /// What the transitions it records set off (dispatch, relay, completion).
    pub effects: Effects,
    pub clock: Arc<dyn Clock>,
    pub name: String,
    pub settings: WorkerConfig,
    /// Running executions by id: their definition, input and priority never
    /// change, so later steps skip reading and parsing them again. Only RUNNING
    /// ones are kept (their start time is known); every transition still checks
    /// the stored status under the execution's lock.
    pub executions: moka::future::Cache<Uuid, Arc<Execution>>,
}

/// How many running executions a worker keeps parsed.
pub const EXECUTION_CACHE: u64 = 10_000;

/// How an attempt ended.
enum Ending {
    Done(Ran),
    Failed(NodeError),
    TimedOut(u64),
    /// The lease was lost: someone else owns the step now, or it was cancelled.
    Lost,
    /// The worker is shutting down and its grace ran out.
    GivenBack,
}

/// Stops the lease renewal however the step ends (including being aborted).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Worker {
    /// Handles one delivery to the end: it is settled when this returns. Its span
    /// continues the trace of whoever queued the step (W3C context in the task).
    pub async fn handle(&self, delivery: TaskDelivery, give_back: &CancellationToken) {
        let span = tracing::info_span!(
            "step task",
            worker = %self.name,
            task = %delivery.task.id,
            attempt = delivery.task.attempt
        );
        flowfleet_runtime::telemetry::set_parent_from_map(&span, &delivery.task.trace);
        tracing::Instrument::instrument(self.handle_in_span(delivery, give_back), span).await
    }

    async fn handle_in_span(&self, delivery: TaskDelivery, give_back: &CancellationToken) {
        let Some(key) = step_of(&delivery.task) else {
            tracing::error!(payload = %delivery.task.payload, "unreadable step task dead-lettered");
            let _ = delivery
                .dead_letter("the task does not name an execution and node")
                .await;
            return;
        };
        if let Err(e) = self.handle_step(&key, delivery, give_back).await {
            // The delivery was postponed before the error surfaced, or is dropped
            // unsettled here (and so redelivered).
            tracing::warn!(error = %e, execution = %key.execution, node = %key.place.node, "step task not finished; it will be redelivered");
        }
    }

    async fn handle_step(
        &self,
        key: &StepKey,
        delivery: TaskDelivery,
        give_back: &CancellationToken,
    ) -> anyhow::Result<()> {
        let loaded = match self.execution(key.execution).await {
            Ok(e) => e,
            Err(e) => return self.later(delivery, e).await,
        };
        let Some(execution) = loaded else {
            tracing::warn!("task for an unknown execution dropped");
            delivery.ack().await?;
            return Ok(());
        };
        let now = self.clock.now_ms();
        let claim = match self
            .store
            .claim(key, &self.name, now, self.settings.lease_ms as i64)
            .await
        {
            Ok(c) => c,
            Err(e) => return self.later(delivery, e).await,
        };
        match claim {
            Claim::Gone => {
                // Already settled (a redelivery). If this worker's predecessor died
                // between recording the last step and finishing the execution,
                // finish it now.
                if let Some(output) = self.store.pending_completion(&execution).await? {
                    self.effects.complete(&execution, output).await?;
                }
                delivery.ack().await?;
                Ok(())
            }
            Claim::Held { until } => {
                delivery.postpone(until).await?;
                Ok(())
            }
            Claim::Mine(step) if step.due_at > now => {
                // Early (a resent task of a delay or a retry's backoff): give it
                // back until it is due.
                self.store.release(step.id, &self.name).await?;
                delivery.postpone(step.due_at).await?;
                Ok(())
            }
            Claim::Mine(step) => self.run_step(&execution, *step, delivery, give_back).await,
        }
    }

    async fn execution(&self, id: Uuid) -> Result<Option<Arc<Execution>>, ApiError> {
        if let Some(e) = self.executions.get(&id).await {
            return Ok(Some(e));
        }
        let Some(e) = self.store.get(id).await? else {
            return Ok(None);
        };
        let e = Arc::new(e);
        if e.status == Status::Running {
            self.executions.insert(id, e.clone()).await;
        }
        Ok(Some(e))
    }

    /// The store is unreachable: try the task again in a second, without counting
    /// an attempt.
    async fn later(&self, delivery: TaskDelivery, e: ApiError) -> anyhow::Result<()> {
        delivery.postpone(self.clock.now_ms() + 1_000).await?;
        Err(e.into())
    }

    async fn run_step(
        &self,
        e: &Execution,
        step: StepRun,
        delivery: TaskDelivery,
        give_back: &CancellationToken,
    ) -> anyhow::Result<()> {
        let Some(node) = e.definition.node(&step.node_id).cloned() else {
            anyhow::bail!("node {} is not in the execution's definition", step.node_id);
        };
        let timeout_ms = node.timeout_ms(&e.definition.settings);
        let started = self.clock.now_ms();
        let mut logs = vec![format!(
            "attempt {} started on {} (timeout {} ms)",
            step.attempt, self.name, timeout_ms
        )];
        let lost = CancellationToken::new();
        let heartbeat = AbortOnDrop(tokio::spawn(keep_lease(
            self.store.clone(),
            self.clock.clone(),
            step.id,
            self.name.clone(),
            Duration::from_millis((self.settings.lease_ms / 3).max(100)),
            lost.clone(),
        )));
        let span = tracing::info_span!("step", node = %step.node_id, node_type = %step.node_type, attempt = step.attempt);
        let input = step.input.clone();
        let mut node_logs = Vec::new();
        // Large values arrive as file references and leave as them (see large_outputs).
        let run = async {
            let input = self.large_outputs.resolve(e, input).await?;
            match self
                .nodes
                .execute(e, &step, &node, input, &mut node_logs)
                .await?
            {
                Ran::Done(mut outcome) => {
                    if let Some(stored) =
                        self.large_outputs.spill(e, &step, &outcome.output).await?
                    {
                        node_logs.push(format!(
                            "the output is stored as the file {}",
                            stored[large_outputs::REFERENCE]["name"]
                        ));
                        outcome.output = stored;
                    }
                    Ok(Ran::Done(outcome))
                }
                waiting => Ok(waiting),
            }
        };
        let ending = tokio::select! {
            r = tokio::time::timeout(Duration::from_millis(timeout_ms), tracing::Instrument::instrument(run, span)) => match r {
                Ok(Ok(outcome)) => Ending::Done(outcome),
                Ok(Err(error)) => Ending::Failed(error),
                Err(_) => Ending::TimedOut(timeout_ms),
            },
            _ = lost.cancelled() => Ending::Lost,
            _ = give_back.cancelled() => Ending::GivenBack,
        };
        drop(heartbeat);
        logs.append(&mut node_logs);
        let now = self.clock.now_ms();
        logs.push(format!("finished after {} ms", now - started));
        if matches!(
            ending,
            Ending::Done(_) | Ending::Failed(_) | Ending::TimedOut(_)
        ) {
            metrics::histogram!("flowfleet_step_duration_seconds", "node_type" => step.node_type.clone())
                .record((now - started).max(0) as f64 / 1000.0);
        }
        match ending {
            Ending::GivenBack => {
                // Shutting down: release the step so the requeued task can be
                // claimed at once rather than after the lease.
                self.store.release(step.id, &self.name).await?;
                delivery.requeue().await?;
            }
            Ending::Lost => {
                tracing::warn!(node = %step.node_id, "lost the step's lease; dropping the attempt");
                delivery.ack().await?;
            }
            Ending::Done(Ran::Waiting) => {
                // A child execution runs for it; the child's end moves it on.
                delivery.ack().await?;
            }
            Ending::Done(Ran::Done(outcome)) => {
                metrics::counter!("flowfleet_steps_total", "status" => "SUCCEEDED").increment(1);
                let t = self
                    .store
                    .succeed(e, &step, &self.name, &outcome, &logs, now)
                    .await?;
                if let Some(t) = t {
                    self.effects.apply(e, t).await?;
                }
                delivery.ack().await?;
            }
            Ending::Failed(message) => {
                self.failed(e, &step, message, false, logs, delivery)
                    .await?;
            }
            Ending::TimedOut(ms) => {
                let error = NodeError::retryable(format!("timed out after {ms} ms"));
                self.failed(e, &step, error, true, logs, delivery).await?;
            }
        }
        Ok(())
    }

    /// Records a failed attempt: the next one after a backoff while retries
    /// remain and the error is worth retrying (through the queue's delayed
    /// redelivery), else the execution fails and the task goes to the dead-letter
    /// queue.
    async fn failed(
        &self,
        e: &Execution,
        step: &StepRun,
        error: NodeError,
        timed_out: bool,
        mut logs: Vec<String>,
        delivery: TaskDelivery,
    ) -> anyhow::Result<()> {
        let status = if timed_out { "TIMED_OUT" } else { "FAILED" };
        metrics::counter!("flowfleet_steps_total", "status" => status).increment(1);
        let max_retries = e
            .definition
            .node(&step.node_id)
            .map(|n| n.max_retries(&e.definition.settings))
            .unwrap_or(0) as i64;
        let now = self.clock.now_ms();
        let message = error.message;
        logs.push(message.clone());
        if error.retryable && step.attempt <= max_retries {
            let delay = backoff(
                step.attempt as u32,
                Duration::from_millis(self.settings.retry_base_ms),
                Duration::from_millis(self.settings.retry_cap_ms),
            );
            logs.push(format!("retrying in {} ms", delay.as_millis()));
            let t = self
                .store
                .fail(
                    e,
                    step,
                    &self.name,
                    &message,
                    timed_out,
                    Some(now + delay.as_millis() as i64),
                    &logs,
                    now,
                )
                .await?;
            match t {
                // The next attempt is recorded: its task is this one, redelivered later.
                Some(t) if !t.queued.is_empty() => {
                    delivery.retry(delay, &message).await?;
                    metrics::counter!("flowfleet_step_retries_total", "node_type" => step.node_type.clone())
                        .increment(1);
                    self.dispatcher.mark(&t.queued).await;
                }
                // Not ours any more, or the execution ended meanwhile (cancelled):
                // no attempt follows, so no task either.
                _ => delivery.ack().await?,
            }
        } else {
            if !error.retryable {
                logs.push("not retried: another attempt cannot succeed".into());
            }
            let t = self
                .store
                .fail(e, step, &self.name, &message, timed_out, None, &logs, now)
                .await?;
            // Ending it may have admitted a waiting execution.
            if let Some(t) = t {
                self.effects.apply(e, t).await?;
            }
            delivery.dead_letter(&message).await?;
        }
        Ok(())
    }
}

/// Renews the lease until aborted; cancels `lost` when the step is no longer
/// this worker's.
async fn keep_lease(
    store: Store,
    clock: Arc<dyn Clock>,
    step: Uuid,
    worker: String,
    every: Duration,
    lost: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        match store.heartbeat(step, &worker, clock.now_ms()).await {
            Ok(true) => {}
            Ok(false) => {
                lost.cancel();
                return;
            }
            // The database is unreachable: keep trying; the lease may lapse, in
            // which case the next renewal reports it lost.
            Err(e) => tracing::warn!(error = %e.message, "could not renew a step lease"),
        }
    }
}
