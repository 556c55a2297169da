//! Upstream subscriptions, shared between the clients that ask for the same thing.
//!
//! Why: a thousand people watching the same run should cost the subgraph one stream, not
//! a thousand. Client subscriptions whose subgraph request is identical (same operation,
//! variables and forwarded headers, so the same auth context) share one upstream
//! [`Channel`]; a driver task reads the subgraph's stream and hands each event to every
//! subscriber.
//!
//! Invariants, each tested:
//! - An upstream stream is open exactly while its channel has subscribers: the last
//!   subscriber to leave removes the channel from the registry and aborts its driver, which
//!   drops the subgraph stream (closing the connection or in-process stream). Joining and
//!   leaving both hold the registry lock, so a client joining as the last one leaves
//!   either joins the old channel before it closes or starts a new one.
//! - Every subscriber has its own bounded buffer. A subscriber whose buffer is full misses
//!   events, and the next thing it receives is [`Item::Lagged`] with how many: never a
//!   silent skip, and a slow client never slows the others or the subgraph.
//! - A stream that breaks (subgraph restarted, connection lost) is opened again with
//!   backoff; subscribers are told with [`Item::Reconnected`] that events may have been
//!   missed meanwhile. When reconnecting gives up, they receive [`Item::Ended`] with the
//!   failure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::mpsc;

use crate::executor::dedupe::Key;
use crate::transport::{SubgraphRequest, SubgraphTransport, TransportError};
use crate::value::Value;

/// What a subscriber receives from its upstream.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    /// One event's GraphQL response from the subgraph.
    Event(Arc<Value>),
    /// This many events were dropped because the subscriber's buffer was full.
    Lagged(u64),
    /// The subgraph stream broke and was opened again; events in between may be missing.
    Reconnected,
    /// The upstream ended: cleanly (`None`) or because it could not be (re)opened.
    Ended(Option<UpstreamFailure>),
}

/// Why an upstream subscription ended; client-safe (details are logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamFailure {
    /// The subgraph could not be reached, even after retrying.
    Unavailable,
}

/// How upstream streams are shared and retried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpstreamPolicy {
    /// Events buffered per subscriber before it is considered behind.
    pub buffer: usize,
    /// First wait before reopening a broken stream; doubles up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts to reopen a broken stream before giving up.
    pub reconnect_attempts: u32,
}

impl Default for UpstreamPolicy {
    fn default() -> Self {
        Self {
            buffer: 64,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            reconnect_attempts: 8,
        }
    }
}

struct Slot {
    sender: mpsc::Sender<Item>,
    /// Events dropped since the subscriber last received something.
    missed: u64,
}

/// One upstream stream and its subscribers.
struct Channel {
    key: Key,
    subscribers: Mutex<HashMap<u64, Slot>>,
    driver: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Channel {
    /// Hands `item` to every subscriber without waiting for any of them.
    fn fan_out(&self, item: &Item) {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        for slot in subscribers.values_mut() {
            if slot.missed > 0 {
                match slot.sender.try_send(Item::Lagged(slot.missed)) {
                    Ok(()) => slot.missed = 0,
                    Err(_) => {
                        slot.missed += 1;
                        continue;
                    }
                }
            }
            if slot.sender.try_send(item.clone()).is_err() {
                slot.missed += 1;
            }
        }
    }

    /// Delivers the end to everyone, waiting for room (the end must not be dropped).
    async fn end(&self, item: Item) {
        let senders: Vec<(u64, mpsc::Sender<Item>)> = {
            let subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
            subscribers
                .iter()
                .map(|(id, slot)| (*id, slot.sender.clone()))
                .collect()
        };
        for (_, sender) in senders {
            let _ = sender.send(item.clone()).await;
        }
    }
}

/// The gateway's open upstream subscriptions.
#[derive(Default)]
pub(crate) struct Upstreams {
    channels: Arc<Mutex<HashMap<Key, Arc<Channel>>>>,
    next_id: AtomicU64,
    policy: UpstreamPolicy,
    /// Headers left out of the sharing key (see `GatewayConfig::dedupe_ignored_headers`).
    ignored_headers: Vec<http::HeaderName>,
}

/// A client's place on an upstream channel; leaving is dropping it.
pub(crate) struct Subscriber {
    pub receiver: mpsc::Receiver<Item>,
    id: u64,
    channel: Weak<Channel>,
    channels: Arc<Mutex<HashMap<Key, Arc<Channel>>>>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let Some(channel) = self.channel.upgrade() else {
            return;
        };
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let mut subscribers = channel
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        subscribers.remove(&self.id);
        if subscribers.is_empty() {
            // The last one out closes the upstream.
            if channels
                .get(&channel.key)
                .is_some_and(|c| Arc::ptr_eq(c, &channel))
            {
                channels.remove(&channel.key);
            }
            if let Some(driver) = channel
                .driver
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                driver.abort();
            }
        }
    }
}

impl Upstreams {
    pub fn new(policy: UpstreamPolicy, ignored_headers: Vec<http::HeaderName>) -> Self {
        Self {
            policy,
            ignored_headers,
            ..Self::default()
        }
    }

    /// Upstream streams open now.
    pub fn open(&self) -> usize {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Joins the upstream for `request`, opening it when nobody shares it yet. Must be
    /// called within a Tokio runtime (the driver is a task).
    pub fn join(
        &self,
        transport: Arc<dyn SubgraphTransport>,
        request: SubgraphRequest,
        dedupe: bool,
    ) -> Subscriber {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(self.policy.buffer.max(1));
        let slot = Slot { sender, missed: 0 };
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        // Without deduplication every subscriber gets a key of its own.
        let key = if dedupe {
            Key::of(&request, &self.ignored_headers)
        } else {
            Key::unique(&request, id)
        };
        if let Some(channel) = channels.get(&key) {
            channel
                .subscribers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, slot);
            return Subscriber {
                receiver,
                id,
                channel: Arc::downgrade(channel),
                channels: self.channels.clone(),
            };
        }
        let channel = Arc::new(Channel {
            key: key.clone(),
            subscribers: Mutex::new(HashMap::from([(id, slot)])),
            driver: Mutex::new(None),
        });
        let driver = tokio::spawn(drive(
            Arc::downgrade(&channel),
            self.channels.clone(),
            transport,
            request,
            self.policy,
        ));
        *channel.driver.lock().unwrap_or_else(|p| p.into_inner()) = Some(driver.abort_handle());
        channels.insert(key, channel.clone());
        Subscriber {
            receiver,
            id,
            channel: Arc::downgrade(&channel),
            channels: self.channels.clone(),
        }
    }
}

/// Reads the subgraph stream into the channel until it ends or the channel closes.
async fn drive(
    channel: Weak<Channel>,
    channels: Arc<Mutex<HashMap<Key, Arc<Channel>>>>,
    transport: Arc<dyn SubgraphTransport>,
    request: SubgraphRequest,
    policy: UpstreamPolicy,
) {
    let subgraph = request.subgraph.clone();
    let mut failures = 0u32;
    // A subgraph that cannot be reached at all fails the subscription at once (the client
    // decides whether to try again); only a stream that was open is reopened.
    let mut was_open = false;
    let outcome = loop {
        let mut stream = match transport.subscribe(request.clone()).await {
            Ok(stream) => stream,
            Err(error) if !was_open => {
                tracing::warn!(%subgraph, %error, "subscription could not be opened");
                break Some(UpstreamFailure::Unavailable);
            }
            Err(error) => {
                if !retry(&subgraph, &error, &mut failures, &policy).await {
                    break Some(UpstreamFailure::Unavailable);
                }
                continue;
            }
        };
        if was_open {
            let Some(channel) = channel.upgrade() else {
                return;
            };
            channel.fan_out(&Item::Reconnected);
        }
        was_open = true;
        let broke = loop {
            match stream.next().await {
                Some(Ok(event)) => {
                    failures = 0;
                    let Some(channel) = channel.upgrade() else {
                        return;
                    };
                    channel.fan_out(&Item::Event(Arc::new(event)));
                }
                Some(Err(error)) => break Some(error),
                None => break None,
            }
        };
        match broke {
            None => break None,
            Some(error) => {
                if !retry(&subgraph, &error, &mut failures, &policy).await {
                    break Some(UpstreamFailure::Unavailable);
                }
            }
        }
    };
    let Some(channel) = channel.upgrade() else {
        return;
    };
    // New clients start a fresh upstream from now on; the current ones hear the end.
    {
        let mut map = channels.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(&channel.key)
            .is_some_and(|c| Arc::ptr_eq(c, &channel))
        {
            map.remove(&channel.key);
        }
    }
    channel.end(Item::Ended(outcome)).await;
}

/// Logs the failure and waits before the next attempt; `false` when attempts ran out.
async fn retry(
    subgraph: &str,
    error: &TransportError,
    failures: &mut u32,
    policy: &UpstreamPolicy,
) -> bool {
    *failures += 1;
    if *failures > policy.reconnect_attempts {
        tracing::warn!(%subgraph, %error, "subscription stream lost; giving up");
        return false;
    }
    let wait = policy
        .first_backoff
        .saturating_mul(1 << (*failures - 1).min(16))
        .min(policy.max_backoff);
    tracing::info!(%subgraph, %error, attempt = *failures, ?wait, "subscription stream lost; reopening");
    tokio::time::sleep(wait).await;
    true
}
