//! The RabbitMQ bus (distributed mode), on `lapin`.
//!
//! Events go to one durable topic exchange as persistent messages, and
//! `publish` returns only after the broker's publisher confirm. Subscriptions
//! declare durable queues, consume with a bounded prefetch and reconnect with
//! backoff when the connection drops; unacknowledged messages are redelivered
//! by the broker, so a consumer that dies mid-message loses nothing. The
//! connection, the publisher's channel handling, the reconnect policy and the
//! acknowledgements are the process's one client's ([`crate::amqp`]).
//! The W3C trace context also travels in the AMQP headers.
//!
//! Queue names are namespaced by the exchange (`<exchange>.<queue>`): a queue is
//! global to its vhost, so two fleets (or two test runs) sharing one vhost with
//! different exchanges must never share a queue and steal each other's messages.

use async_trait::async_trait;
use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use tokio::sync::mpsc;

use super::{Acker, BusError, Delivery, Event, EventBus, Subscription};
use crate::amqp::{self, AmqpAck, AmqpClient, Next, Publisher};

#[derive(Clone)]
pub struct AmqpBus {
    client: AmqpClient,
    exchange: String,
    prefetch: u16,
    publisher: std::sync::Arc<Publisher>,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl From<lapin::Error> for BusError {
    fn from(e: lapin::Error) -> Self {
        unavailable(e)
    }
}

async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), lapin::Error> {
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
}

/// The body and properties of `event`'s message: persistent JSON, with the event's id,
/// kind and trace context.
fn message(event: &Event) -> Result<(Vec<u8>, BasicProperties), BusError> {
    let body = serde_json::to_vec(event).map_err(|e| BusError::Codec(e.to_string()))?;
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
    Ok((body, props))
}

/// A publisher confirm as a result: a negative one is the broker refusing the message.
fn accepted(confirm: Confirmation) -> Result<(), BusError> {
    match confirm {
        Confirmation::Nack(_) => Err(BusError::Unavailable(
            "the broker refused the message (negative publisher confirm)".into(),
        )),
        _ => Ok(()),
    }
}

impl AmqpBus {
    /// A bus on `client`'s connection; declares the exchange now, so that a broker
    /// that refuses it is reported at start-up.
    pub async fn new(client: AmqpClient, exchange: &str, prefetch: u16) -> Result<Self, BusError> {
        let channel = client.channel().await?;
        declare_exchange(&channel, exchange).await?;
        let _ = channel.close(200, "exchange declared").await;
        Ok(AmqpBus {
            publisher: std::sync::Arc::new(Publisher::new(client.clone())),
            client,
            exchange: exchange.to_string(),
            prefetch: prefetch.max(1),
        })
    }
}

#[async_trait]
impl EventBus for AmqpBus {
    #[tracing::instrument(skip_all, fields(kind = %event.kind, event_id = %event.id))]
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        self.publish_all(std::slice::from_ref(event)).await
    }

    #[tracing::instrument(skip_all, fields(events = events.len()))]
    async fn publish_all(&self, events: &[Event]) -> Result<(), BusError> {
        let messages = events.iter().map(message).collect::<Result<Vec<_>, _>>()?;
        let confirms = self
            .publisher
            .publish_all(events.len(), |i, channel, _| {
                let (body, props) = (&messages[i].0, messages[i].1.clone());
                async move {
                    channel
                        .basic_publish(
                            &self.exchange,
                            &events[i].kind,
                            BasicPublishOptions::default(),
                            body,
                            props,
                        )
                        .await
                        .map_err(BusError::from)
                }
            })
            .await?;
        confirms.into_iter().try_for_each(accepted)
    }

    async fn subscribe(
        &self,
        queue: &str,
        bindings: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.consume(
            format!("{}.{queue}", self.exchange),
            bindings,
            QueueKind::Work,
        )
        .await
    }

    async fn listen(&self, bindings: &[&str]) -> Result<Box<dyn Subscription>, BusError> {
        let queue = format!("{}.live.{}", self.exchange, uuid::Uuid::new_v4());
        self.consume(queue, bindings, QueueKind::Live).await
    }
}

/// Durable work queues, or a listener's own queue.
#[derive(Clone, Copy)]
enum QueueKind {
    Work,
    /// Not durable; deleted when its consumer goes (auto-delete) and, should the process
    /// die without cancelling, after a minute unused (`x-expires`).
    Live,
}

impl AmqpBus {
    async fn consume(
        &self,
        queue: String,
        bindings: &[&str],
        kind: QueueKind,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let (tx, rx) = mpsc::channel(self.prefetch as usize);
        let exchange = self.exchange.clone();
        let bindings: Vec<String> = bindings.iter().map(|b| b.to_string()).collect();
        let declare = {
            let queue = queue.clone();
            move |channel: Channel| {
                let (exchange, queue, bindings) =
                    (exchange.clone(), queue.clone(), bindings.clone());
                async move { declare_queue(&channel, &exchange, &queue, &bindings, kind).await }
            }
        };
        // Declare once up front so that events published right after `subscribe`
        // returns are routed to the queue.
        let first = amqp::open_consumer_channel(&self.client, self.prefetch, &declare).await?;
        let client = self.client.clone();
        let prefetch = self.prefetch;
        tokio::spawn(async move {
            let handle = |delivery: lapin::message::Delivery| {
                let (tx, queue) = (tx.clone(), queue.clone());
                async move {
                    let event: Event = match serde_json::from_slice(&delivery.data) {
                        Ok(e) => e,
                        Err(e) => {
                            // A message we cannot read would be redelivered forever.
                            amqp::reject(&queue, &delivery, e).await;
                            return Next::More;
                        }
                    };
                    let acker = AmqpAck::new(delivery.acker);
                    match tx
                        .send(Delivery::new(event, delivery.redelivered, Box::new(acker)))
                        .await
                    {
                        Ok(()) => Next::More,
                        // The subscriber is gone; unacked messages return to the queue.
                        Err(_) => Next::Stop,
                    }
                }
            };
            let closed = tx.clone();
            amqp::consume(
                client,
                queue.clone(),
                prefetch,
                first,
                declare,
                handle,
                async move { closed.closed().await },
            )
            .await;
        });
        Ok(Box::new(AmqpSubscription { rx }))
    }
}

async fn declare_queue(
    channel: &Channel,
    exchange: &str,
    queue: &str,
    bindings: &[String],
    kind: QueueKind,
) -> Result<(), lapin::Error> {
    declare_exchange(channel, exchange).await?;
    let (options, arguments) = match kind {
        QueueKind::Work => (
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
        QueueKind::Live => {
            let mut arguments = FieldTable::default();
            arguments.insert("x-expires".into(), AMQPValue::LongUInt(60_000));
            (
                QueueDeclareOptions {
                    durable: false,
                    auto_delete: true,
                    ..Default::default()
                },
                arguments,
            )
        }
    };
    channel.queue_declare(queue, options, arguments).await?;
    for b in bindings {
        channel
            .queue_bind(
                queue,
                exchange,
                b,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

#[async_trait]
impl Acker for AmqpAck {
    async fn ack(&self) -> Result<(), BusError> {
        AmqpAck::ack(self).await.map_err(BusError::from)
    }
    async fn nack(&self, requeue: bool) -> Result<(), BusError> {
        AmqpAck::nack(self, requeue).await.map_err(BusError::from)
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

    fn try_next(&mut self) -> Option<Delivery> {
        self.rx.try_recv().ok()
    }
}
