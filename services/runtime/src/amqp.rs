//! The one RabbitMQ client of a process (distributed mode), on `lapin`: the event bus
//! ([`crate::events::amqp`]) and the task queue ([`crate::queue::amqp`]) both use it.
//!
//! - **One connection, a channel per use.** [`AmqpClient`] holds the process's
//!   connection; the bus's publisher, the queue's publisher and every consumer open a
//!   channel of their own on it. When the connection drops, the next user to ask for a
//!   channel reconnects (one at a time, under a lock) and the others reuse that.
//! - **Publishing with confirms.** A [`Publisher`] is a confirm-mode channel that is
//!   reopened when found closed; a publish that fails on a stale channel is tried once
//!   more on a fresh one before the broker is reported unavailable.
//! - **Consuming forever.** [`consume`] runs a consumer until its receiver goes away:
//!   on each (re)connection it opens a channel, sets the prefetch, lets the caller
//!   declare what it needs, and hands each delivery over; when the broker goes away it
//!   waits by the one [`Backoff`] policy and starts again. What a consumer held
//!   unacknowledged is redelivered by the broker.
//! - **One acknowledgement adapter.** [`AmqpAck`] settles a delivery for both the bus
//!   and the queue.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use rand::Rng;
use tokio::sync::Mutex;

/// The process's connection to RabbitMQ, shared by everything that talks to it.
#[derive(Clone)]
pub struct AmqpClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    url: String,
    connection: Mutex<Option<Connection>>,
}

impl std::fmt::Debug for AmqpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpClient").finish_non_exhaustive()
    }
}

impl AmqpClient {
    /// Connects now, so that a broker that is not there is reported at start-up.
    pub async fn connect(url: &str) -> Result<AmqpClient, lapin::Error> {
        let connection = open_connection(url).await?;
        Ok(AmqpClient {
            inner: Arc::new(ClientInner {
                url: url.to_string(),
                connection: Mutex::new(Some(connection)),
            }),
        })
    }

    /// A new channel on the shared connection, reconnecting first if it has dropped.
    pub async fn channel(&self) -> Result<Channel, lapin::Error> {
        let mut connection = self.inner.connection.lock().await;
        if let Some(c) = connection.as_ref() {
            if c.status().connected() {
                if let Ok(channel) = c.create_channel().await {
                    return Ok(channel);
                }
            }
        }
        let fresh = open_connection(&self.inner.url).await?;
        let channel = fresh.create_channel().await?;
        *connection = Some(fresh);
        Ok(channel)
    }
}

/// A connection driven by the current tokio runtime.
async fn open_connection(url: &str) -> Result<Connection, lapin::Error> {
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    Connection::connect(url, props).await
}

/// A confirm-mode channel for publishing, reopened when it is found closed. Each
/// channel it opens has a new generation number, so that what a user keeps per channel
/// (the queues declared on it, say) can tell a fresh channel from the one it knew.
pub struct Publisher {
    client: AmqpClient,
    open: Mutex<Option<(Channel, u64)>>,
    generations: AtomicU64,
}

impl Publisher {
    pub fn new(client: AmqpClient) -> Self {
        Publisher {
            client,
            open: Mutex::new(None),
            generations: AtomicU64::new(0),
        }
    }

    /// The confirm channel and its generation, opening one if there is none or it has
    /// closed. Publishing on it needs no lock: lapin channels are shared.
    async fn channel(&self) -> Result<(Channel, u64), lapin::Error> {
        let mut open = self.open.lock().await;
        if let Some((channel, generation)) = open.as_ref() {
            if channel.status().connected() {
                return Ok((channel.clone(), *generation));
            }
        }
        let channel = self.client.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        *open = Some((channel.clone(), generation));
        Ok((channel, generation))
    }

    /// Forgets the channel of `generation` (if another caller has not already replaced it).
    async fn forget(&self, generation: u64) {
        let mut open = self.open.lock().await;
        if matches!(&*open, Some((_, g)) if *g == generation) {
            *open = None;
        }
    }

    /// Hands a message over with `hand_over` (given the channel and its generation) and
    /// waits for the broker's confirm. If either fails, the channel is forgotten and the
    /// whole is tried once more on a fresh one: the connection may have dropped since
    /// the last use.
    pub async fn publish<E, F, Fut>(&self, mut hand_over: F) -> Result<Confirmation, E>
    where
        E: From<lapin::Error> + std::fmt::Display,
        F: FnMut(Channel, u64) -> Fut,
        Fut: Future<Output = Result<PublisherConfirm, E>>,
    {
        let mut retried = false;
        loop {
            let (channel, generation) = self.channel().await?;
            let outcome = match hand_over(channel, generation).await {
                Ok(confirm) => confirm.await.map_err(E::from),
                Err(e) => Err(e),
            };
            match outcome {
                Err(e) if !retried => {
                    tracing::warn!(error = %e, "publish failed; retrying once on a fresh channel");
                    self.forget(generation).await;
                    retried = true;
                }
                outcome => return outcome,
            }
        }
    }

    /// Hands `n` messages over in order on one channel (`hand_over` is given each one's
    /// index), then waits for their confirms together: one wait for the broker per
    /// batch instead of one per message. If anything fails, the batch is published
    /// again one message at a time with [`Publisher::publish`]'s retry; a message may
    /// then reach the broker twice, as after any retry (consumers are idempotent).
    pub async fn publish_all<E, F, Fut>(
        &self,
        n: usize,
        mut hand_over: F,
    ) -> Result<Vec<Confirmation>, E>
    where
        E: From<lapin::Error> + std::fmt::Display,
        F: FnMut(usize, Channel, u64) -> Fut,
        Fut: Future<Output = Result<PublisherConfirm, E>>,
    {
        let (channel, generation) = self.channel().await?;
        let pipelined = async {
            let mut confirms = Vec::with_capacity(n);
            for i in 0..n {
                confirms.push(hand_over(i, channel.clone(), generation).await?);
            }
            let mut out = Vec::with_capacity(n);
            for confirm in confirms {
                out.push(confirm.await.map_err(E::from)?);
            }
            Ok::<_, E>(out)
        };
        match pipelined.await {
            Ok(out) => Ok(out),
            Err(e) => {
                tracing::warn!(error = %e, "publishing a batch failed; publishing it one by one");
                self.forget(generation).await;
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    out.push(self.publish(|channel, g| hand_over(i, channel, g)).await?);
                }
                Ok(out)
            }
        }
    }
}

/// The reconnect policy of every consumer: exponential from 100 ms, doubling up to
/// 10 s, each wait lengthened by up to half again at random so that the replicas a
/// broker restart disconnected together do not all come back in the same instant.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const LONGEST: Duration = Duration::from_secs(10);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// Back to the shortest wait (after a connection that worked).
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// The next wait, and lengthens the one after.
    pub fn next_wait(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Self::LONGEST);
        let jitter = rand::thread_rng().gen_range(0..=base.as_millis() as u64 / 2);
        base + Duration::from_millis(jitter)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// What a consumer's delivery handler says next.
pub enum Next {
    /// Keep consuming.
    More,
    /// The receiver has gone away: stop for good.
    Stop,
}

/// Why one consuming session ended.
enum Ended {
    ReceiverGone,
    Broker(String),
}

/// Consumes `queue` until `handle` says [`Next::Stop`] or `closed` resolves, through
/// broker restarts: each session opens a channel on `client`, sets `prefetch`, runs
/// `declare` (so the queue exists on a fresh broker), and passes every delivery to
/// `handle`; a session the broker ended is followed by a [`Backoff`] wait and a new one.
/// `first` is a channel already set up by the caller (so that a broker that is down
/// when consuming starts is reported to it); later sessions open their own.
pub async fn consume<D, DFut, H, HFut>(
    client: AmqpClient,
    queue: String,
    prefetch: u16,
    first: Channel,
    declare: D,
    mut handle: H,
    closed: impl Future<Output = ()>,
) where
    D: Fn(Channel) -> DFut,
    DFut: Future<Output = Result<(), lapin::Error>>,
    H: FnMut(Delivery) -> HFut,
    HFut: Future<Output = Next>,
{
    tokio::pin!(closed);
    let mut backoff = Backoff::new();
    let mut channel = Some(first);
    loop {
        let session = match channel.take() {
            Some(c) => Ok(c),
            None => open_consumer_channel(&client, prefetch, &declare).await,
        };
        match session {
            Ok(c) => {
                backoff.reset();
                let ended = tokio::select! {
                    _ = &mut closed => Ended::ReceiverGone,
                    ended = session_loop(&c, &queue, &mut handle) => ended,
                };
                let _ = c.close(200, "consumer done").await;
                match ended {
                    Ended::ReceiverGone => return,
                    Ended::Broker(e) => {
                        tracing::warn!(queue = %queue, error = %e, "consumer lost the broker; reconnecting");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(queue = %queue, error = %e, "cannot reach the broker; retrying");
            }
        }
        tokio::select! {
            _ = &mut closed => return,
            _ = tokio::time::sleep(backoff.next_wait()) => {}
        }
    }
}

/// A channel of `client` with `prefetch` set and `declare` run: what a consumer needs.
pub async fn open_consumer_channel<D, DFut>(
    client: &AmqpClient,
    prefetch: u16,
    declare: &D,
) -> Result<Channel, lapin::Error>
where
    D: Fn(Channel) -> DFut,
    DFut: Future<Output = Result<(), lapin::Error>>,
{
    let channel = client.channel().await?;
    channel
        .basic_qos(prefetch.max(1), BasicQosOptions::default())
        .await?;
    declare(channel.clone()).await?;
    Ok(channel)
}

async fn session_loop<H, HFut>(channel: &Channel, queue: &str, handle: &mut H) -> Ended
where
    H: FnMut(Delivery) -> HFut,
    HFut: Future<Output = Next>,
{
    let mut consumer = match channel
        .basic_consume(
            queue,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => return Ended::Broker(e.to_string()),
    };
    while let Some(item) = consumer.next().await {
        match item {
            Ok(delivery) => {
                if let Next::Stop = handle(delivery).await {
                    return Ended::ReceiverGone;
                }
            }
            Err(e) => return Ended::Broker(e.to_string()),
        }
    }
    Ended::Broker("the consumer was cancelled".into())
}

/// Rejects a delivery that can never be handled (it does not decode): redelivering it
/// could never help, so it is dropped (or dead-lettered, where the queue has a route).
pub async fn reject(queue: &str, delivery: &Delivery, error: impl std::fmt::Display) {
    tracing::error!(queue = %queue, error = %error, "undecodable message rejected");
    let _ = delivery
        .acker
        .nack(BasicNackOptions {
            requeue: false,
            ..Default::default()
        })
        .await;
}

/// Settles one delivery: the bus's [`crate::events::Acker`] and the queue's
/// [`crate::queue::Settle`] are both this.
pub struct AmqpAck {
    acker: lapin::acker::Acker,
}

impl AmqpAck {
    pub fn new(acker: lapin::acker::Acker) -> Self {
        AmqpAck { acker }
    }

    pub async fn ack(&self) -> Result<(), lapin::Error> {
        self.acker.ack(BasicAckOptions::default()).await
    }

    /// Returns the delivery to the queue (`requeue`) or drops it.
    pub async fn nack(&self, requeue: bool) -> Result<(), lapin::Error> {
        self.acker
            .nack(BasicNackOptions {
                requeue,
                ..Default::default()
            })
            .await
    }
}
