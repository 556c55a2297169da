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
//!   is redelivered by the broker. The connection, the publisher's channel
//!   handling, that reconnect policy and the acknowledgements are the process's one
//!   client's ([`crate::amqp`]).
//!
//! Queue names are namespaced (`<namespace>.<queue>`, the namespace being the
//! configured exchange) so that two fleets or test runs sharing a vhost never share
//! a queue.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};
use tokio::sync::mpsc;

use super::{QueueError, Settle, Task, TaskConsumer, TaskDelivery, TaskQueue, MAX_PRIORITY};
use crate::amqp::{self, AmqpAck, AmqpClient, Next, Publisher};

/// Below this a wait is not worth a trip through a delay queue.
const SHORT_WAIT: std::time::Duration = std::time::Duration::from_millis(16);
/// The longest single TTL (about 12 days); longer delays take several trips.
const LONGEST_TTL_MS: u64 = 1 << 30;

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

impl From<lapin::Error> for QueueError {
    fn from(e: lapin::Error) -> Self {
        unavailable(e)
    }
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

async fn declare(channel: &Channel, name: &str, args: FieldTable) -> Result<u32, lapin::Error> {
    let q = channel
        .queue_declare(
            name,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;
    Ok(q.message_count())
}

/// Task queues on one RabbitMQ vhost.
#[derive(Clone)]
pub struct AmqpQueue {
    client: AmqpClient,
    namespace: String,
    publisher: Arc<Publisher>,
    /// The work queues declared on the publisher's channel of the generation kept with
    /// them (delay queues are declared on every use, which also renews their `x-expires`).
    declared: Arc<std::sync::Mutex<(u64, HashSet<String>)>>,
}

impl AmqpQueue {
    /// Task queues on `client`'s connection, their names under `namespace`.
    pub fn new(client: AmqpClient, namespace: &str) -> Self {
        AmqpQueue {
            publisher: Arc::new(Publisher::new(client.clone())),
            declared: Arc::default(),
            client,
            namespace: namespace.to_string(),
        }
    }

    fn full_name(&self, queue: &str) -> String {
        format!("{}.{queue}", self.namespace)
    }

    /// Whether `target` still needs declaring on the publisher's channel `generation`.
    fn needs_declaring(&self, generation: u64, target: &str) -> bool {
        let mut declared = self.declared.lock().unwrap_or_else(|e| e.into_inner());
        if declared.0 != generation {
            *declared = (generation, HashSet::new());
        }
        !declared.1.contains(target)
    }

    fn declared_on(&self, generation: u64, target: &str) {
        let mut declared = self.declared.lock().unwrap_or_else(|e| e.into_inner());
        if declared.0 == generation {
            declared.1.insert(target.to_string());
        }
    }

    /// Hands `task` to the queue (or delay queue) it is due in.
    async fn hand_over(
        &self,
        channel: Channel,
        generation: u64,
        target: &str,
        task: &Task,
        body: &[u8],
    ) -> Result<PublisherConfirm, QueueError> {
        let routing_key = match delay_rung(task.wait().as_millis() as u64) {
            Some(ttl) => {
                let delay_queue = format!("{target}.delay.{ttl}");
                declare(&channel, &delay_queue, delay_queue_args(target, ttl)).await?;
                delay_queue
            }
            None => {
                if self.needs_declaring(generation, target) {
                    declare(&channel, target, work_queue_args()).await?;
                    self.declared_on(generation, target);
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
        Ok(channel
            .basic_publish(
                "",
                &routing_key,
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await?)
    }
}

#[async_trait]
impl TaskQueue for AmqpQueue {
    #[tracing::instrument(skip_all, fields(queue = %queue, task_id = %task.id, kind = %task.kind))]
    async fn enqueue(&self, queue: &str, task: &Task) -> Result<(), QueueError> {
        let target = self.full_name(queue);
        let body = serde_json::to_vec(task).map_err(|e| QueueError::Codec(e.to_string()))?;
        let confirm = self
            .publisher
            .publish(|channel, generation| {
                self.hand_over(channel, generation, &target, task, &body)
            })
            .await?;
        match confirm {
            Confirmation::Nack(_) => Err(QueueError::Unavailable(
                "the broker refused the task (negative publisher confirm)".into(),
            )),
            _ => Ok(()),
        }
    }

    async fn consume(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn TaskConsumer>, QueueError> {
        crate::series::register_queue(queue);
        let prefetch = prefetch.max(1);
        let (tx, rx) = mpsc::channel(prefetch as usize);
        let target = self.full_name(queue);
        let declare = {
            let target = target.clone();
            move |channel: Channel| {
                let target = target.clone();
                async move {
                    declare(&channel, &target, work_queue_args())
                        .await
                        .map(|_| ())
                }
            }
        };
        // Open the first channel here so that a broker that is down now is reported
        // to the caller, not only retried in the background.
        let first = amqp::open_consumer_channel(&self.client, prefetch, &declare).await?;
        let producer = Arc::new(self.clone());
        let queue = queue.to_string();
        let closed = tx.clone();
        let handle = {
            let (producer, target) = (producer.clone(), target.clone());
            move |delivery: lapin::message::Delivery| {
                let (tx, producer, queue, target) =
                    (tx.clone(), producer.clone(), queue.clone(), target.clone());
                async move {
                    let task: Task = match serde_json::from_slice(&delivery.data) {
                        Ok(t) => t,
                        Err(e) => {
                            amqp::reject(&target, &delivery, e).await;
                            return Next::More;
                        }
                    };
                    let settle = AmqpAck::new(delivery.acker);
                    let wait = task.wait();
                    if !wait.is_zero() {
                        if delay_rung(wait.as_millis() as u64).is_some() {
                            // Early (a rounded-down rung, or a delay longer than the
                            // ladder): round again for the rest, then let this copy go (or
                            // return it to the queue if the broker would not take the rest).
                            let _ = match producer.enqueue(&queue, &task).await {
                                Ok(()) => settle.ack().await,
                                Err(e) => {
                                    tracing::warn!(queue = %target, error = %e, "cannot send an early task round again; requeueing it");
                                    settle.nack(true).await
                                }
                            };
                            return Next::More;
                        }
                        tokio::time::sleep(wait).await;
                    }
                    let delivery = TaskDelivery::new(
                        task,
                        delivery.redelivered,
                        queue,
                        producer,
                        Box::new(settle),
                    );
                    match tx.send(delivery).await {
                        Ok(()) => Next::More,
                        // The consumer is gone; unacked deliveries return to the queue.
                        Err(_) => Next::Stop,
                    }
                }
            }
        };
        tokio::spawn(amqp::consume(
            self.client.clone(),
            target,
            prefetch,
            first,
            declare,
            handle,
            async move { closed.closed().await },
        ));
        Ok(Box::new(AmqpConsumer { rx }))
    }

    fn durable(&self) -> bool {
        true
    }

    async fn depth(&self, queue: &str) -> Result<u64, QueueError> {
        let target = self.full_name(queue);
        // A channel of its own: declaring must not disturb the publisher's.
        let channel = self.client.channel().await?;
        let count = declare(&channel, &target, work_queue_args()).await?;
        let _ = channel.close(200, "depth read").await;
        Ok(count as u64)
    }
}

#[async_trait]
impl Settle for AmqpAck {
    async fn ack(&self) -> Result<(), QueueError> {
        AmqpAck::ack(self).await.map_err(QueueError::from)
    }

    async fn requeue(&self) -> Result<(), QueueError> {
        AmqpAck::nack(self, true).await.map_err(QueueError::from)
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
