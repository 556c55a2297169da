//! The RabbitMQ task queue (distributed mode), on `lapin`.
//!
//! - Every queue is durable and declared with `x-max-priority` 9, and every task is
//!   a persistent message; `enqueue` returns only after the broker's publisher
//!   confirm, so an acknowledged enqueue survives a broker restart.
//! - Delays need no plugin. A task due later goes to a delay queue whose every
//!   message has the same TTL (`x-message-ttl`), so messages expire in arrival order,
//!   and whose dead-letter route is the target queue. TTLs come from a fixed ladder
//!   (four significant bits, rounded down), which keeps the number of delay queues
//!   small; a task that arrives early (the rounding, or a delay longer than the
//!   ladder) is sent round again for what remains, and the last few milliseconds are
//!   waited out by the consumer. Delay queues delete themselves (`x-expires`) once
//!   unused.
//! - Consumers use a bounded prefetch (`basic.qos`) and reconnect with jittered,
//!   exponential backoff when the broker goes away; what they held unacknowledged
//!   is redelivered by the broker.
//!
//! Queue names are namespaced (`<namespace>.<queue>`, the namespace being the
//! configured exchange) so that two fleets or test runs sharing a vhost never share
//! a queue.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use rand::Rng;
use tokio::sync::{mpsc, Mutex};

use super::{QueueError, Settle, Task, TaskConsumer, TaskDelivery, TaskQueue, MAX_PRIORITY};

/// Below this a wait is not worth a trip through a delay queue.
const SHORT_WAIT: Duration = Duration::from_millis(16);
/// The longest single TTL (about 12 days); longer delays take several trips.
const LONGEST_TTL_MS: u64 = 1 << 30;

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

async fn connect(url: &str) -> Result<Connection, QueueError> {
    crate::events::amqp::open_connection(url)
        .await
        .map_err(unavailable)
}

/// The TTL ladder: the largest rung not above `ms` (its top four bits), or `None`
/// when `ms` is short enough to wait out in the consumer.
pub fn delay_rung(ms: u64) -> Option<u64> {
    if ms < SHORT_WAIT.as_millis() as u64 {
        return None;
    }
    let ms = ms.min(LONGEST_TTL_MS);
    let shift = (63 - ms.leading_zeros()).saturating_sub(3);
    Some((ms >> shift) << shift)
}

fn int(v: u64) -> AMQPValue {
    AMQPValue::LongInt(v.min(i32::MAX as u64) as i32)
}

fn work_queue_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-max-priority".into(), int(MAX_PRIORITY as u64));
    args
}

fn delay_queue_args(target: &str, ttl_ms: u64) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), int(ttl_ms));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from("")),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(LongString::from(target)),
    );
    // Unused for a minute past its TTL: nothing can still be waiting in it.
    args.insert("x-expires".into(), int(ttl_ms + 60_000));
    args
}

async fn declare(channel: &Channel, name: &str, args: FieldTable) -> Result<u32, QueueError> {
    let q = channel
        .queue_declare(
            name,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .map_err(unavailable)?;
    Ok(q.message_count())
}

struct Publisher {
    conn: Connection,
    channel: Channel,
    /// Work queues declared on this connection (delay queues are declared on every
    /// use, which also renews their `x-expires`).
    declared: HashSet<String>,
}

struct Inner {
    url: String,
    namespace: String,
    publisher: Mutex<Option<Publisher>>,
}

/// Task queues on one RabbitMQ vhost.
#[derive(Clone)]
pub struct AmqpQueue {
    inner: Arc<Inner>,
}

impl AmqpQueue {
    /// Connects once to check the broker is there.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, QueueError> {
        let queue = AmqpQueue {
            inner: Arc::new(Inner {
                url: url.to_string(),
                namespace: namespace.to_string(),
                publisher: Mutex::new(None),
            }),
        };
        *queue.inner.publisher.lock().await = Some(queue.inner.open_publisher().await?);
        Ok(queue)
    }

    fn full_name(&self, queue: &str) -> String {
        format!("{}.{queue}", self.inner.namespace)
    }
}

impl Inner {
    async fn open_publisher(&self) -> Result<Publisher, QueueError> {
        let conn = connect(&self.url).await?;
        let channel = conn.create_channel().await.map_err(unavailable)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        Ok(Publisher {
            conn,
            channel,
            declared: HashSet::new(),
        })
    }

    /// Publishes to the queue (or delay queue) `task` is due in, and returns the
    /// pending confirm, so the lock is held only while handing the message over.
    async fn publish(&self, target: &str, task: &Task) -> Result<PublisherConfirm, QueueError> {
        let body = serde_json::to_vec(task).map_err(|e| QueueError::Codec(e.to_string()))?;
        let mut guard = self.publisher.lock().await;
        let usable = matches!(&*guard, Some(p) if p.conn.status().connected() && p.channel.status().connected());
        if !usable {
            *guard = Some(self.open_publisher().await?);
        }
        let publisher = guard
            .as_mut()
            .ok_or(QueueError::Unavailable("closed".into()))?;
        let routing_key = match delay_rung(task.wait().as_millis() as u64) {
            Some(ttl) => {
                let delay_queue = format!("{target}.delay.{ttl}");
                declare(
                    &publisher.channel,
                    &delay_queue,
                    delay_queue_args(target, ttl),
                )
                .await?;
                delay_queue
            }
            None => {
                if !publisher.declared.contains(target) {
                    declare(&publisher.channel, target, work_queue_args()).await?;
                    publisher.declared.insert(target.to_string());
                }
                target.to_string()
            }
        };
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_priority(task.priority.min(MAX_PRIORITY))
            .with_content_type(ShortString::from("application/json"))
            .with_message_id(ShortString::from(task.id.to_string()))
            .with_type(ShortString::from(task.kind.clone()));
        publisher
            .channel
            .basic_publish(
                "",
                &routing_key,
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await
            .map_err(unavailable)
    }

    async fn publish_confirmed(&self, target: &str, task: &Task) -> Result<(), QueueError> {
        let confirm = self.publish(target, task).await?;
        match confirm.await.map_err(unavailable)? {
            Confirmation::Nack(_) => Err(QueueError::Unavailable(
                "the broker refused the task (negative publisher confirm)".into(),
            )),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl TaskQueue for AmqpQueue {
    #[tracing::instrument(skip_all, fields(queue = %queue, task_id = %task.id, kind = %task.kind))]
    async fn enqueue(&self, queue: &str, task: &Task) -> Result<(), QueueError> {
        let target = self.full_name(queue);
        match self.inner.publish_confirmed(&target, task).await {
            Ok(()) => Ok(()),
            Err(first) => {
                // The connection may have dropped since the last publish: one retry on
                // a fresh connection before reporting the broker unavailable.
                tracing::warn!(error = %first, "enqueue failed; reconnecting once");
                *self.inner.publisher.lock().await = None;
                self.inner.publish_confirmed(&target, task).await
            }
        }
    }

    async fn consume(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn TaskConsumer>, QueueError> {
        let prefetch = prefetch.max(1);
        let (tx, rx) = mpsc::channel(prefetch as usize);
        let target = self.full_name(queue);
        // Open the first channel here so that a broker that is down now is reported
        // to the caller, not only retried in the background.
        let first = open_consumer(&self.inner.url, &target, prefetch).await?;
        let worker = ConsumerLoop {
            url: self.inner.url.clone(),
            queue: queue.to_string(),
            target,
            prefetch,
            producer: Arc::new(self.clone()),
            tx,
        };
        tokio::spawn(worker.run(first));
        Ok(Box::new(AmqpConsumer { rx }))
    }

    fn durable(&self) -> bool {
        true
    }

    async fn depth(&self, queue: &str) -> Result<u64, QueueError> {
        let target = self.full_name(queue);
        // A channel of its own: declaring must not disturb the confirm channel.
        let channel = {
            let mut guard = self.inner.publisher.lock().await;
            let usable = matches!(&*guard, Some(p) if p.conn.status().connected());
            if !usable {
                *guard = Some(self.inner.open_publisher().await?);
            }
            let publisher = guard
                .as_ref()
                .ok_or(QueueError::Unavailable("closed".into()))?;
            publisher.conn.create_channel().await.map_err(unavailable)?
        };
        let count = declare(&channel, &target, work_queue_args()).await?;
        let _ = channel.close(200, "depth read").await;
        Ok(count as u64)
    }
}

async fn open_consumer(
    url: &str,
    target: &str,
    prefetch: u16,
) -> Result<(Connection, Channel), QueueError> {
    let conn = connect(url).await?;
    let channel = conn.create_channel().await.map_err(unavailable)?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(unavailable)?;
    declare(&channel, target, work_queue_args()).await?;
    Ok((conn, channel))
}

struct ConsumerLoop {
    url: String,
    queue: String,
    target: String,
    prefetch: u16,
    producer: Arc<AmqpQueue>,
    tx: mpsc::Sender<TaskDelivery>,
}

impl ConsumerLoop {
    /// Consumes until the receiving side is dropped, reconnecting with backoff.
    async fn run(self, first: (Connection, Channel)) {
        let mut open = Some(first);
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = match open.take() {
                Some(o) => Ok(o),
                None => open_consumer(&self.url, &self.target, self.prefetch).await,
            };
            match attempt {
                Ok((conn, channel)) => {
                    backoff = Duration::from_millis(100);
                    match self.consume(&channel).await {
                        Ok(()) => {
                            let _ = conn.close(200, "consumer closed").await;
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(queue = %self.target, error = %e, "task consumer lost the broker; reconnecting");
                            let _ = conn.close(200, "reconnecting").await;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(queue = %self.target, error = %e, "cannot reach the broker; retrying");
                }
            }
            let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 2);
            tokio::select! {
                _ = self.tx.closed() => return,
                _ = tokio::time::sleep(backoff + Duration::from_millis(jitter)) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    /// `Ok` when the receiver went away; `Err` when the broker did.
    async fn consume(&self, channel: &Channel) -> Result<(), QueueError> {
        let mut consumer = channel
            .basic_consume(
                &self.target,
                "",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        loop {
            let item = tokio::select! {
                _ = self.tx.closed() => return Ok(()),
                item = consumer.next() => item,
            };
            let Some(item) = item else {
                return Err(QueueError::Unavailable("the consumer was cancelled".into()));
            };
            let delivery = item.map_err(unavailable)?;
            let task: Task = match serde_json::from_slice(&delivery.data) {
                Ok(t) => t,
                Err(e) => {
                    // Unreadable: redelivering it could never help.
                    tracing::error!(queue = %self.target, error = %e, "undecodable task rejected");
                    let _ = delivery
                        .acker
                        .nack(BasicNackOptions {
                            requeue: false,
                            ..Default::default()
                        })
                        .await;
                    continue;
                }
            };
            let wait = task.wait();
            if !wait.is_zero() {
                if delay_rung(wait.as_millis() as u64).is_some() {
                    // Early (a rounded-down rung, or a delay longer than the ladder):
                    // round again for the rest, then let this copy go.
                    self.producer.enqueue(&self.queue, &task).await?;
                    let _ = delivery.acker.ack(BasicAckOptions::default()).await;
                    continue;
                }
                tokio::time::sleep(wait).await;
            }
            let settle = AmqpSettle {
                acker: delivery.acker,
            };
            let delivery = TaskDelivery::new(
                task,
                delivery.redelivered,
                self.queue.clone(),
                self.producer.clone(),
                Box::new(settle),
            );
            if self.tx.send(delivery).await.is_err() {
                return Ok(()); // unacked deliveries return to the queue on close
            }
        }
    }
}

struct AmqpSettle {
    acker: lapin::acker::Acker,
}

#[async_trait]
impl Settle for AmqpSettle {
    async fn ack(&self) -> Result<(), QueueError> {
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(unavailable)
    }

    async fn requeue(&self) -> Result<(), QueueError> {
        self.acker
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .map_err(unavailable)
    }
}

struct AmqpConsumer {
    rx: mpsc::Receiver<TaskDelivery>,
}

#[async_trait]
impl TaskConsumer for AmqpConsumer {
    async fn next(&mut self) -> Option<TaskDelivery> {
        self.rx.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_rounds_down_to_four_significant_bits() {
        assert_eq!(delay_rung(0), None);
        assert_eq!(delay_rung(15), None);
        assert_eq!(delay_rung(16), Some(16));
        assert_eq!(delay_rung(17), Some(16));
        assert_eq!(delay_rung(1000), Some(960));
        assert_eq!(delay_rung(1023), Some(960));
        assert_eq!(delay_rung(1024), Some(1024));
        assert_eq!(delay_rung(u64::MAX), Some(LONGEST_TTL_MS));
        // Never late, at most 1/8 early, and few distinct rungs.
        let rungs: HashSet<u64> = (16..200_000u64).filter_map(delay_rung).collect();
        for ms in [16u64, 99, 1234, 65_432, 199_999] {
            let r = delay_rung(ms).unwrap();
            assert!(r <= ms && ms - r <= ms / 8, "{ms} -> {r}");
        }
        assert!(rungs.len() < 120, "{} rungs", rungs.len());
    }
}
