//! The task queue: how the execution engine hands step tasks to workers.
//!
//! Unlike the event bus (facts fanned out to every interested service), a task queue
//! has competing consumers, and a task is work that must be done once: it carries a
//! priority (0–9, 9 served first), may wait until a time (`not_before`: retries with
//! backoff, `delay` nodes), and ends in one of four ways, chosen by whoever holds it:
//!
//! - [`TaskDelivery::ack`]: done; the result is durably recorded (callers ack only then).
//! - [`TaskDelivery::requeue`]: give it back untouched (a worker shutting down).
//! - [`TaskDelivery::retry`]: try again later, as the next attempt.
//! - [`TaskDelivery::dead_letter`]: give up; it goes to the queue's dead-letter queue
//!   ([`dead_letter_queue`]) with the reason, for people to look at.
//!
//! A delivery dropped without any of these (its worker died) goes back to the queue
//! marked `redelivered`, so nothing held by a dead consumer is lost.
//!
//! Two implementations pass one contract suite (`tests/queue_contract.rs`):
//! [`memory::MemoryQueue`] for embedded mode, and [`amqp::AmqpQueue`] on RabbitMQ, with
//! durable queues, persistent messages, publisher confirms, priority queues, delays built
//! from TTL queues (no broker plugin), bounded prefetch and reconnection with backoff.

pub mod amqp;
pub mod memory;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The highest priority; 0 is the lowest.
pub const MAX_PRIORITY: u8 = 9;

/// One unit of work on a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// Unique per enqueue (a retry is a new message with a new id).
    pub id: Uuid,
    /// What the task asks for (`step.run`); consumers dispatch on it.
    pub kind: String,
    pub payload: serde_json::Value,
    /// 0–9, higher first; larger values are clamped to 9.
    pub priority: u8,
    /// 1 for the first try, counted up by [`TaskDelivery::retry`].
    pub attempt: u32,
    /// Milliseconds since the epoch before which the task is not delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<i64>,
    /// Why the previous attempt failed (set by `retry` and `dead_letter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// W3C trace context of whoever enqueued it.
    #[serde(default)]
    pub trace: HashMap<String, String>,
}

impl Task {
    pub fn new(kind: impl Into<String>, payload: serde_json::Value, priority: u8) -> Task {
        Task {
            id: Uuid::now_v7(),
            kind: kind.into(),
            payload,
            priority: priority.min(MAX_PRIORITY),
            attempt: 1,
            not_before_ms: None,
            last_error: None,
            trace: crate::telemetry::current_context_map(),
        }
    }

    /// The same task, not delivered before `not_before_ms`.
    pub fn not_before(mut self, not_before_ms: i64) -> Task {
        self.not_before_ms = Some(not_before_ms);
        self
    }

    /// How long from now until it may be delivered (zero when it is due).
    pub fn wait(&self) -> Duration {
        let remaining = self.not_before_ms.unwrap_or(0) - now_ms();
        Duration::from_millis(remaining.max(0) as u64)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the task queue is unavailable: {0}")]
    Unavailable(String),
    #[error("a task could not be encoded: {0}")]
    Codec(String),
}

/// Where a queue's dead letters go.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

/// Wall-clock milliseconds, shared by producers and brokers' consumers (`not_before`
/// is an absolute time, so producers and consumers on different machines agree on it
/// to within their clock skew).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The wait before attempt `attempt + 1` after `attempt` failed: exponential from
/// `base`, capped at `cap`, with "equal jitter" (half fixed, half random) so that
/// tasks failing together do not retry together.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let full = exp.min(cap);
    let half = full / 2;
    let jitter = rand::thread_rng().gen_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter)
}

#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    /// Adds a task to `queue` (declared on first use). Returns once the task is
    /// durably accepted: for RabbitMQ, after the broker's publisher confirm. A task
    /// with a future `not_before_ms` is delivered no earlier than that.
    async fn enqueue(&self, queue: &str, task: &Task) -> Result<(), QueueError>;

    /// Starts consuming `queue`, holding at most `prefetch` unsettled deliveries.
    async fn consume(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn TaskConsumer>, QueueError>;

    /// Tasks ready for delivery and not yet delivered (the backlog a pool scales on).
    async fn depth(&self, queue: &str) -> Result<u64, QueueError>;

    /// Whether enqueued tasks survive a restart of this process (RabbitMQ: yes; the
    /// in-process queue: no, so its owners re-enqueue from their own records).
    fn durable(&self) -> bool;
}

#[async_trait]
pub trait TaskConsumer: Send {
    /// The next task; `None` once the consumer is closed for good.
    async fn next(&mut self) -> Option<TaskDelivery>;
}

/// How an implementation settles a delivery with its broker.
#[async_trait]
pub trait Settle: Send + Sync {
    async fn ack(&self) -> Result<(), QueueError>;
    async fn requeue(&self) -> Result<(), QueueError>;
}

/// A delivered task and the duty to settle it.
pub struct TaskDelivery {
    pub task: Task,
    /// Set when the task was delivered before and not settled (its consumer died or
    /// gave it back).
    pub redelivered: bool,
    queue: String,
    producer: std::sync::Arc<dyn TaskQueue>,
    settle: Box<dyn Settle>,
}

impl TaskDelivery {
    pub fn new(
        task: Task,
        redelivered: bool,
        queue: String,
        producer: std::sync::Arc<dyn TaskQueue>,
        settle: Box<dyn Settle>,
    ) -> Self {
        TaskDelivery {
            task,
            redelivered,
            queue,
            producer,
            settle,
        }
    }

    /// The queue it came from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Done with it for good.
    pub async fn ack(self) -> Result<(), QueueError> {
        self.settle.ack().await
    }

    /// Back to the queue as it is, for another consumer.
    pub async fn requeue(self) -> Result<(), QueueError> {
        self.settle.requeue().await
    }

    /// Enqueues the next attempt, due after `delay`, then acknowledges this one.
    pub async fn retry(self, delay: Duration, error: &str) -> Result<(), QueueError> {
        let next = Task {
            id: Uuid::now_v7(),
            attempt: self.task.attempt + 1,
            not_before_ms: Some(now_ms() + delay.as_millis() as i64),
            last_error: Some(error.to_string()),
            ..self.task.clone()
        };
        let queue = self.queue.clone();
        self.replace_with(&queue, next).await?;
        metrics::counter!("flowfleet_tasks_retried_total", "queue" => queue).increment(1);
        Ok(())
    }

    /// Puts the same attempt back, not to be delivered before `not_before_ms` (it
    /// could not be handled yet: another worker holds its step), then acknowledges
    /// this delivery.
    pub async fn postpone(self, not_before_ms: i64) -> Result<(), QueueError> {
        let later = Task {
            id: Uuid::now_v7(),
            not_before_ms: Some(not_before_ms),
            ..self.task.clone()
        };
        let queue = self.queue.clone();
        self.replace_with(&queue, later).await
    }

    /// Moves the task to the dead-letter queue with `error`, then acknowledges it.
    pub async fn dead_letter(self, error: &str) -> Result<(), QueueError> {
        let dead = Task {
            not_before_ms: None,
            last_error: Some(error.to_string()),
            ..self.task.clone()
        };
        let (from, queue) = (self.queue.clone(), dead_letter_queue(&self.queue));
        self.replace_with(&queue, dead).await?;
        metrics::counter!("flowfleet_tasks_dead_lettered_total", "queue" => from).increment(1);
        Ok(())
    }

    /// Enqueues `task` on `queue`, then acknowledges this delivery. The order
    /// matters: a crash between the two leaves a duplicate (which idempotent
    /// consumers ignore), never a loss.
    async fn replace_with(self, queue: &str, task: Task) -> Result<(), QueueError> {
        self.producer.enqueue(queue, &task).await?;
        self.settle.ack().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_cap() {
        let base = Duration::from_millis(1000);
        let cap = Duration::from_secs(60);
        for _ in 0..100 {
            let first = backoff(1, base, cap);
            assert!(
                first >= Duration::from_millis(500) && first <= base,
                "{first:?}"
            );
            let third = backoff(3, base, cap);
            assert!(
                third >= Duration::from_millis(2000) && third <= Duration::from_millis(4000),
                "{third:?}"
            );
            let late = backoff(30, base, cap);
            assert!(late >= cap / 2 && late <= cap, "{late:?}");
        }
    }

    #[test]
    fn tasks_clamp_priority_and_wait_until_due() {
        let t = Task::new("k", serde_json::json!({}), 42);
        assert_eq!(t.priority, MAX_PRIORITY);
        assert_eq!(t.wait(), Duration::ZERO);
        let later = t.clone().not_before(now_ms() + 60_000);
        assert!(later.wait() > Duration::from_secs(50));
        let past = t.not_before(now_ms() - 5);
        assert_eq!(past.wait(), Duration::ZERO);
    }
}
