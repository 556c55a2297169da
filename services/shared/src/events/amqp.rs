//! The RabbitMQ bus (distributed mode), on `lapin`.
//!
//! Events go to one durable topic exchange as persistent messages, and
//! `publish` returns only after the broker's publisher confirm. Subscriptions
//! declare durable queues, consume with a bounded prefetch and reconnect with
//! backoff when the connection drops; unacknowledged messages are redelivered
//! by the broker, so a consumer that dies mid-message loses nothing.
//! The W3C trace context also travels in the AMQP headers.
//!
//! Queue names are namespaced by the exchange (`<exchange>.<queue>`): a queue is
//! global to its vhost, so two fleets (or two test runs) sharing one vhost with
//! different exchanges must never share a queue and steal each other's messages.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{mpsc, Mutex};

use super::{Acker, BusError, Delivery, Event, EventBus, Subscription};

#[derive(Clone)]
pub struct AmqpBus {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    exchange: String,
    prefetch: u16,
    publisher: Mutex<Option<(Connection, Channel)>>,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// A connection driven by the current tokio runtime (shared with the task queue).
pub(crate) async fn open_connection(url: &str) -> Result<Connection, lapin::Error> {
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    Connection::connect(url, props).await
}

async fn connect(url: &str) -> Result<Connection, BusError> {
    open_connection(url).await.map_err(unavailable)
}

async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), BusError> {
    channel
        .exchange_declare(
            exchange,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)
}

impl AmqpBus {
    /// Connects once to check the broker is there and declares the exchange.
    pub async fn connect(url: &str, exchange: &str, prefetch: u16) -> Result<Self, BusError> {
        let bus = AmqpBus {
            inner: Arc::new(Inner {
                url: url.to_string(),
                exchange: exchange.to_string(),
                prefetch: prefetch.max(1),
                publisher: Mutex::new(None),
            }),
        };
        let mut guard = bus.inner.publisher.lock().await;
        *guard = Some(bus.inner.open_publisher().await?);
        drop(guard);
        Ok(bus)
    }
}

impl Inner {
    async fn open_publisher(&self) -> Result<(Connection, Channel), BusError> {
        let conn = connect(&self.url).await?;
        let channel = conn.create_channel().await.map_err(unavailable)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        declare_exchange(&channel, &self.exchange).await?;
        Ok((conn, channel))
    }

    async fn publish_once(&self, event: &Event, body: &[u8]) -> Result<(), BusError> {
        let mut guard = self.publisher.lock().await;
        let usable =
            matches!(&*guard, Some((c, ch)) if c.status().connected() && ch.status().connected());
        if !usable {
            *guard = Some(self.open_publisher().await?);
        }
        let (_, channel) = guard.as_ref().ok_or(BusError::Closed)?;
        let mut headers = FieldTable::default();
        for (k, v) in &event.trace {
            headers.insert(
                ShortString::from(k.clone()),
                AMQPValue::LongString(LongString::from(v.clone())),
            );
        }
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"))
            .with_message_id(ShortString::from(event.id.to_string()))
            .with_type(ShortString::from(event.kind.clone()))
            .with_headers(headers);
        let confirm = channel
            .basic_publish(
                &self.exchange,
                &event.kind,
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        match confirm {
            Confirmation::Nack(_) => Err(BusError::Unavailable(
                "the broker refused the message (negative publisher confirm)".into(),
            )),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl EventBus for AmqpBus {
    #[tracing::instrument(skip_all, fields(kind = %event.kind, event_id = %event.id))]
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        let body = serde_json::to_vec(event).map_err(|e| BusError::Codec(e.to_string()))?;
        match self.inner.publish_once(event, &body).await {
            Ok(()) => Ok(()),
            Err(first) => {
                // The connection may have dropped since the last publish: one retry
                // on a fresh connection before reporting the broker unavailable.
                tracing::warn!(error = %first, "publish failed; reconnecting once");
                *self.inner.publisher.lock().await = None;
                self.inner.publish_once(event, &body).await
            }
        }
    }

    async fn subscribe(
        &self,
        queue: &str,
        bindings: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        let (tx, rx) = mpsc::channel(self.inner.prefetch as usize);
        let inner = self.inner.clone();
        let queue = format!("{}.{queue}", inner.exchange);
        let bindings: Vec<String> = bindings.iter().map(|b| b.to_string()).collect();
        // Declare once up front so that events published right after `subscribe`
        // returns are routed to the queue.
        let conn = connect(&inner.url).await?;
        let channel = conn.create_channel().await.map_err(unavailable)?;
        declare_queue(&channel, &inner.exchange, &queue, &bindings).await?;
        tokio::spawn(async move {
            let mut first = Some((conn, channel));
            let mut backoff = Duration::from_millis(100);
            while !tx.is_closed() {
                let attempt = match first.take() {
                    Some(open) => Ok(open),
                    None => open_consumer_channel(&inner, &queue, &bindings).await,
                };
                match attempt {
                    Ok((conn, channel)) => {
                        backoff = Duration::from_millis(100);
                        if let Err(e) = consume(&channel, &inner, &queue, &tx).await {
                            tracing::warn!(queue = %queue, error = %e, "consumer stopped; reconnecting");
                        }
                        let _ = conn.close(200, "consumer done").await;
                    }
                    Err(e) => {
                        tracing::warn!(queue = %queue, error = %e, "cannot reach the broker; retrying");
                    }
                }
                if tx.is_closed() {
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        });
        Ok(Box::new(AmqpSubscription { rx }))
    }
}

async fn declare_queue(
    channel: &Channel,
    exchange: &str,
    queue: &str,
    bindings: &[String],
) -> Result<(), BusError> {
    declare_exchange(channel, exchange).await?;
    channel
        .queue_declare(
            queue,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    for b in bindings {
        channel
            .queue_bind(
                queue,
                exchange,
                b,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

async fn open_consumer_channel(
    inner: &Inner,
    queue: &str,
    bindings: &[String],
) -> Result<(Connection, Channel), BusError> {
    let conn = connect(&inner.url).await?;
    let channel = conn.create_channel().await.map_err(unavailable)?;
    declare_queue(&channel, &inner.exchange, queue, bindings).await?;
    Ok((conn, channel))
}

async fn consume(
    channel: &Channel,
    inner: &Inner,
    queue: &str,
    tx: &mpsc::Sender<Delivery>,
) -> Result<(), BusError> {
    channel
        .basic_qos(inner.prefetch, BasicQosOptions::default())
        .await
        .map_err(unavailable)?;
    let mut consumer = channel
        .basic_consume(
            queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
    while let Some(item) = consumer.next().await {
        let delivery = item.map_err(unavailable)?;
        let event: Event = match serde_json::from_slice(&delivery.data) {
            Ok(e) => e,
            Err(e) => {
                // A message we cannot read would be redelivered forever: reject it.
                tracing::error!(queue = %queue, error = %e, "undecodable message rejected");
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
        let redelivered = delivery.redelivered;
        let acker = AmqpAcker {
            acker: delivery.acker,
        };
        if tx
            .send(Delivery::new(event, redelivered, Box::new(acker)))
            .await
            .is_err()
        {
            break; // subscriber gone; unacked messages return to the queue on close
        }
    }
    Ok(())
}

struct AmqpAcker {
    acker: lapin::acker::Acker,
}

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(unavailable)
    }
    async fn nack(&self, requeue: bool) -> Result<(), BusError> {
        self.acker
            .nack(BasicNackOptions {
                requeue,
                ..Default::default()
            })
            .await
            .map_err(unavailable)
    }
}

struct AmqpSubscription {
    rx: mpsc::Receiver<Delivery>,
}

#[async_trait]
impl Subscription for AmqpSubscription {
    async fn next(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }
}
