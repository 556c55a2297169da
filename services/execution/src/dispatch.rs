//! Getting queued steps onto the task queue.
//!
//! A step is first recorded QUEUED (in the transaction that made it ready), then
//! its task is enqueued, then it is marked dispatched. A process that dies between
//! the commit and the enqueue leaves the step undispatched; [`sweep`] finds such
//! steps, and steps whose worker stopped renewing its lease, and sends them again.
//! In embedded mode the queue lives in memory, so after a restart every queued
//! step is sent again (durable delays and retries come from the database).

use std::sync::Arc;
use std::time::Duration;

use flowfleet_runtime::clock::Clock;
use flowfleet_runtime::config::WorkerConfig;
use flowfleet_runtime::queue::{Task, TaskQueue};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::plan::{Place, StepKey};
use crate::store::{QueuedStep, Store};

/// The queue step tasks go through, and their kind.
pub const STEP_QUEUE: &str = "steps";
pub const STEP_TASK: &str = "step.run";

/// Steps are resent when still undispatched this long after being queued.
const DISPATCH_GRACE_MS: i64 = 5_000;

/// The step a task is for (its attempt is the task's `attempt`), or `None` for a task
/// that does not name one.
pub fn step_of(task: &Task) -> Option<StepKey> {
    if task.kind != STEP_TASK {
        return None;
    }
    Some(StepKey {
        execution: task.payload.get("executionId")?.as_str()?.parse().ok()?,
        place: Place {
            node: task.payload.get("nodeId")?.as_str()?.to_string(),
            item: match task.payload.get("item") {
                None | Some(serde_json::Value::Null) => None,
                Some(i) => Some(u32::try_from(i.as_u64()?).ok()?),
            },
        },
        attempt: i64::from(task.attempt),
    })
}

/// The task for a queued step.
pub fn step_task(step: &QueuedStep) -> Task {
    let mut task = Task::new(
        STEP_TASK,
        json!({
            "executionId": step.key.execution,
            "nodeId": step.key.place.node,
            "item": step.key.place.item,
        }),
        step.priority.clamp(0, 9) as u8,
    );
    task.attempt = step.key.attempt.max(1) as u32;
    task.not_before(step.due_at)
}

#[derive(Clone)]
pub struct Dispatcher {
    pub store: Store,
    pub queue: Arc<dyn TaskQueue>,
    pub clock: Arc<dyn Clock>,
}

impl Dispatcher {
    /// Enqueues each step's task and marks it dispatched; returns how many went.
    /// A failure is logged and left to the sweeper: the steps are recorded already.
    pub async fn dispatch(&self, steps: &[QueuedStep]) -> usize {
        if steps.is_empty() {
            return 0;
        }
        // Enqueued together: RabbitMQ's publisher confirms for a fan-out then arrive
        // in one round trip rather than one after another.
        let tasks: Vec<Task> = steps.iter().map(step_task).collect();
        let results = futures::future::join_all(
            tasks
                .iter()
                .map(|task| self.queue.enqueue(STEP_QUEUE, task)),
        )
        .await;
        let mut sent = Vec::with_capacity(steps.len());
        for (step, result) in steps.iter().zip(results) {
            match result {
                Ok(()) => sent.push(step.clone()),
                Err(e) => {
                    tracing::warn!(error = %e, node = %step.key.place.node, "could not enqueue a step; the sweeper will resend it");
                }
            }
        }
        self.mark(&sent).await;
        sent.len()
    }

    /// Marks steps whose task is on the queue already.
    pub async fn mark(&self, steps: &[QueuedStep]) {
        if steps.is_empty() {
            return;
        }
        if let Err(e) = self.store.dispatched(steps, self.clock.now_ms()).await {
            tracing::warn!(error = %e.message, "could not mark steps dispatched; they may be sent twice");
        }
    }
}

/// Resends lost step tasks every `sweep_interval_ms` until `shutdown`. With a queue
/// that keeps nothing across restarts, everything queued is resent first, and
/// running steps (whose worker was this process before it restarted) are requeued.
pub async fn sweep(dispatcher: Dispatcher, settings: WorkerConfig, shutdown: CancellationToken) {
    if !dispatcher.queue.durable() {
        let now = dispatcher.clock.now_ms();
        match dispatcher.store.forget_dispatches().await {
            Ok(n) if n > 0 => tracing::info!(steps = n, "resending queued steps after a restart"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.message, "could not read queued steps"),
        }
        if let Ok(steps) = dispatcher.store.requeue_abandoned(now + 1).await {
            dispatcher.dispatch(&steps).await;
        }
        resend(&dispatcher, now + 1).await;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(settings.sweep_interval_ms.max(50)));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = dispatcher.clock.now_ms();
        match dispatcher
            .store
            .requeue_abandoned(now - settings.lease_ms as i64)
            .await
        {
            Ok(steps) if !steps.is_empty() => {
                tracing::warn!(
                    steps = steps.len(),
                    "requeueing steps whose worker stopped renewing its lease"
                );
                dispatcher.dispatch(&steps).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.message, "sweep failed"),
        }
        resend(&dispatcher, now - DISPATCH_GRACE_MS).await;
    }
}

async fn resend(dispatcher: &Dispatcher, queued_before: i64) {
    loop {
        match dispatcher.store.undispatched(queued_before, 500).await {
            Ok(steps) if !steps.is_empty() => {
                tracing::info!(
                    steps = steps.len(),
                    "sending steps whose task never reached the queue"
                );
                let page = steps.len();
                let sent = dispatcher.dispatch(&steps).await;
                // Stop at a short page, or when the queue refuses (the next tick
                // tries again).
                if page < 500 || sent < page {
                    return;
                }
            }
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e.message, "sweep failed");
                return;
            }
        }
    }
}
