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

/// One event, shared by every subscriber of its upstream, with the client responses made
/// from it so far: subscribers running the same operation with the same variables on the
/// same supergraph (and, being on one upstream, with the same credential) would compute the
/// same response, so it is computed once and copied.
pub(crate) struct SharedEvent {
    pub value: Arc<Value>,
    responses: Mutex<HashMap<ResponseKey, (Response, Keep)>>,
}

/// A client response to an event, made once.
pub(crate) type Response = Arc<tokio::sync::OnceCell<Vec<u8>>>;

/// What a key's addresses point at, held while the event lives, so that no address in a
/// key can be freed and reused by something else meanwhile.
pub(crate) type Keep = [Arc<dyn std::any::Any + Send + Sync>; 2];

/// Which response of an event: (supergraph, prepared operation, encoded variables), the
/// first two by address.
pub(crate) type ResponseKey = (usize, usize, Arc<str>);

impl SharedEvent {
    fn new(value: Value) -> Self {
        Self {
            value: Arc::new(value),
            responses: Mutex::default(),
        }
    }

    /// The cell holding the response for `key`, computed by the first to ask; `keep` holds
    /// what the key's addresses point at.
    pub fn response(&self, key: ResponseKey, keep: Keep) -> Response {
        self.responses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_insert_with(|| (Arc::default(), keep))
            .0
            .clone()
    }
}

impl std::fmt::Debug for SharedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedEvent")
            .field("value", &self.value)
            .finish_non_exhaustive()
    }
}

/// What a subscriber receives from its upstream.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    /// One event's GraphQL response from the subgraph.
    Event(Arc<SharedEvent>),
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
            forget(&mut channels, &channel);
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
                    channel.fan_out(&Item::Event(Arc::new(SharedEvent::new(event))));
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
    forget(
        &mut channels.lock().unwrap_or_else(|p| p.into_inner()),
        &channel,
    );
    channel.end(Item::Ended(outcome)).await;
}

/// Removes `channel` from the registry, unless a newer channel took its key meanwhile.
fn forget(channels: &mut HashMap<Key, Arc<Channel>>, channel: &Arc<Channel>) {
    if channels
        .get(&channel.key)
        .is_some_and(|c| Arc::ptr_eq(c, channel))
    {
        channels.remove(&channel.key);
    }
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use tokio::sync::mpsc::UnboundedSender;

    use super::*;
    use crate::transport::ResponseStream;

    type Events = UnboundedSender<Result<Value, TransportError>>;
    type Feed = tokio::sync::mpsc::UnboundedReceiver<Result<Value, TransportError>>;

    /// A subgraph whose streams the test writes: each `subscribe` takes the next scripted
    /// opening (a stream the test feeds, or a failure to connect).
    #[derive(Default)]
    struct Scripted {
        openings: Mutex<VecDeque<Result<Feed, TransportError>>>,
        opened: AtomicU64,
    }

    impl Scripted {
        fn stream(&self) -> Events {
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            self.openings.lock().unwrap().push_back(Ok(receiver));
            sender
        }
        fn refuse(&self) {
            self.openings
                .lock()
                .unwrap()
                .push_back(Err(TransportError::Connect("refused".into())));
        }
    }

    #[async_trait::async_trait]
    impl SubgraphTransport for Scripted {
        async fn execute(&self, _: SubgraphRequest) -> Result<Value, TransportError> {
            Err(TransportError::Other("queries are not scripted".into()))
        }
        async fn subscribe(&self, _: SubgraphRequest) -> Result<ResponseStream, TransportError> {
            self.opened.fetch_add(1, Ordering::SeqCst);
            let next = self.openings.lock().unwrap().pop_front();
            match next {
                Some(Ok(mut receiver)) => {
                    Ok(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)).boxed())
                }
                Some(Err(error)) => Err(error),
                None => Err(TransportError::Connect("nothing scripted".into())),
            }
        }
    }

    fn request() -> SubgraphRequest {
        SubgraphRequest::new(
            "reviews",
            "subscription { reviewAdded { id } }",
            serde_json::Map::new(),
            http::HeaderMap::new(),
        )
    }

    fn event(n: u64) -> Result<Value, TransportError> {
        Ok(Value::from(serde_json::json!({"data": {"n": n}})))
    }

    fn number(item: &Item) -> u64 {
        match item {
            Item::Event(event) => event
                .value
                .get("data")
                .and_then(|d| d.get("n"))
                .and_then(Value::as_u64)
                .expect("n"),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    fn policy(buffer: usize) -> UpstreamPolicy {
        UpstreamPolicy {
            buffer,
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            reconnect_attempts: 3,
        }
    }

    async fn next(subscriber: &mut Subscriber) -> Item {
        tokio::time::timeout(Duration::from_secs(5), subscriber.receiver.recv())
            .await
            .expect("an item within 5 s")
            .expect("channel open")
    }

    /// Lets the driver task take in what was sent.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[tokio::test]
    async fn a_full_buffer_is_reported_before_the_next_event_and_nothing_is_lost_silently() {
        let transport = Arc::new(Scripted::default());
        let feed = transport.stream();
        let upstreams = Upstreams::new(policy(2), Vec::new());
        let mut slow = upstreams.join(transport.clone(), request(), true);
        let mut fast = upstreams.join(transport.clone(), request(), true);
        settle().await;
        assert_eq!(transport.opened.load(Ordering::SeqCst), 1, "shared");
        let mut fast_seen = Vec::new();
        for n in 0..10 {
            feed.send(event(n)).expect("send");
            // The fast subscriber keeps up; the slow one reads nothing yet.
            fast_seen.push(number(&next(&mut fast).await));
        }
        assert_eq!(
            fast_seen,
            (0..10).collect::<Vec<_>>(),
            "a slow peer costs the fast one nothing"
        );
        assert_eq!(number(&next(&mut slow).await), 0);
        assert_eq!(number(&next(&mut slow).await), 1);
        feed.send(event(10)).expect("send");
        settle().await;
        match next(&mut slow).await {
            Item::Lagged(dropped) => assert_eq!(dropped, 8, "events 2..=9"),
            other => panic!("expected the lag first, got {other:?}"),
        }
        assert_eq!(number(&next(&mut slow).await), 10);
    }

    #[tokio::test]
    async fn a_broken_stream_is_reopened_and_subscribers_are_told() {
        let transport = Arc::new(Scripted::default());
        let first = transport.stream();
        let second = transport.stream();
        let upstreams = Upstreams::new(policy(8), Vec::new());
        let mut subscriber = upstreams.join(transport.clone(), request(), true);
        first.send(event(1)).expect("send");
        assert_eq!(number(&next(&mut subscriber).await), 1);
        first
            .send(Err(TransportError::Connect("reset".into())))
            .expect("send");
        assert!(matches!(next(&mut subscriber).await, Item::Reconnected));
        second.send(event(2)).expect("send");
        assert_eq!(number(&next(&mut subscriber).await), 2);
        assert_eq!(transport.opened.load(Ordering::SeqCst), 2);
        // The clean end of the stream ends the subscription.
        drop(second);
        assert!(matches!(next(&mut subscriber).await, Item::Ended(None)));
        assert_eq!(upstreams.open(), 0);
    }

    #[tokio::test]
    async fn a_subgraph_that_cannot_be_reached_ends_the_subscription_at_once() {
        let transport = Arc::new(Scripted::default());
        transport.refuse();
        let upstreams = Upstreams::new(policy(8), Vec::new());
        let mut subscriber = upstreams.join(transport.clone(), request(), true);
        assert!(matches!(
            next(&mut subscriber).await,
            Item::Ended(Some(UpstreamFailure::Unavailable))
        ));
        assert_eq!(
            transport.opened.load(Ordering::SeqCst),
            1,
            "no retry before it ever opened"
        );
        assert_eq!(upstreams.open(), 0, "a new client starts afresh");
    }

    #[tokio::test]
    async fn reopening_gives_up_after_its_attempts() {
        let transport = Arc::new(Scripted::default());
        let first = transport.stream();
        for _ in 0..3 {
            transport.refuse();
        }
        let upstreams = Upstreams::new(policy(8), Vec::new());
        let mut subscriber = upstreams.join(transport.clone(), request(), true);
        first
            .send(Err(TransportError::Connect("reset".into())))
            .expect("send");
        assert!(matches!(
            next(&mut subscriber).await,
            Item::Ended(Some(UpstreamFailure::Unavailable))
        ));
        assert_eq!(transport.opened.load(Ordering::SeqCst), 4, "1 + 3 attempts");
    }

    #[tokio::test]
    async fn the_last_subscriber_leaving_closes_the_stream_without_waiting_for_an_event() {
        let transport = Arc::new(Scripted::default());
        let feed = transport.stream();
        let upstreams = Upstreams::new(policy(8), Vec::new());
        let a = upstreams.join(transport.clone(), request(), true);
        let b = upstreams.join(transport.clone(), request(), true);
        settle().await;
        drop(a);
        settle().await;
        assert!(!feed.is_closed(), "b still listens");
        drop(b);
        settle().await;
        assert!(feed.is_closed(), "the subgraph stream was dropped");
        assert_eq!(upstreams.open(), 0);
        // Without deduplication, two identical requests open two streams.
        let _one = transport.stream();
        let _two = transport.stream();
        let _c = upstreams.join(transport.clone(), request(), false);
        let _d = upstreams.join(transport.clone(), request(), false);
        assert_eq!(upstreams.open(), 2);
    }
}
