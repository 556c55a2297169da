//! Deduplication of identical in-flight subgraph queries across client requests.
//!
//! Why: under load many clients ask the same thing at once (the same page, the same
//! entities). When a subgraph query with the same operation, variables and forwarded headers
//! is already on its way, a second caller waits for that response instead of sending its own.
//! Mutations are never shared: each must run.
//!
//! Invariant: an entry lives in the map exactly while its request is in flight. The shared
//! future removes its own entry when the response arrives, whoever drives it, so a caller
//! that gives up (its client disconnected) cannot leave a stale entry behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::transport::SubgraphRequest;
use crate::value::Value;
use futures::future::{BoxFuture, FutureExt, Shared};

/// Headers that differ on every request without changing the answer (trace context): they
/// are not part of the key, and a follower's trace shows no fetch of its own.
const IGNORED_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

/// What a subgraph request resolves to, shareable between callers.
pub(crate) type SharedResponse<E> = Result<Arc<Value>, E>;

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    subgraph: String,
    /// The encoded request body (operation and variables), shared with the transport.
    body: bytes::Bytes,
    headers: Vec<(String, Vec<u8>)>,
}

impl Key {
    /// The key of `request`, leaving out trace context and the headers in `ignored`.
    pub fn of(request: &SubgraphRequest, ignored: &[http::HeaderName]) -> Self {
        let mut headers: Vec<(String, Vec<u8>)> = request
            .headers
            .iter()
            .filter(|(name, _)| {
                !IGNORED_HEADERS.contains(&name.as_str()) && !ignored.contains(name)
            })
            .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
            .collect();
        headers.sort();
        Self {
            subgraph: request.subgraph.clone(),
            body: request.encoded(),
            headers,
        }
    }

    /// A key no other request has (`id` unique among callers): for what must not be shared.
    pub fn unique(request: &SubgraphRequest, id: u64) -> Self {
        Self {
            subgraph: request.subgraph.clone(),
            body: request.encoded(),
            headers: vec![(String::new(), id.to_le_bytes().to_vec())],
        }
    }
}

type InFlight<E> = Shared<BoxFuture<'static, SharedResponse<E>>>;

/// The in-flight subgraph queries of one gateway.
pub(crate) struct Dedupe<E: Clone + Send + Sync + 'static> {
    in_flight: Arc<Mutex<HashMap<Key, InFlight<E>>>>,
    /// Headers that vary per request without changing the answer (see `GatewayConfig`).
    pub ignored_headers: Vec<http::HeaderName>,
}

impl<E: Clone + Send + Sync + 'static> Default for Dedupe<E> {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl<E: Clone + Send + Sync + 'static> Dedupe<E> {
    pub fn new(ignored_headers: Vec<http::HeaderName>) -> Self {
        Self {
            in_flight: Arc::default(),
            ignored_headers,
        }
    }
}

impl<E: Clone + Send + Sync + 'static> Dedupe<E> {
    /// Runs `fetch` unless an identical request is in flight, in which case its response is
    /// shared. Returns the response and whether this caller sent the request. The response
    /// is not copied per caller: when it is still shared, callers read it (see
    /// `fetch::Response`).
    pub async fn run(
        &self,
        key: Key,
        fetch: BoxFuture<'static, Result<Value, E>>,
    ) -> (SharedResponse<E>, bool) {
        let (shared, leader) = {
            let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&key) {
                Some(existing) => (existing.clone(), false),
                None => {
                    let in_flight = self.in_flight.clone();
                    let own_key = key.clone();
                    let future = async move {
                        let result = fetch.await.map(Arc::new);
                        in_flight
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&own_key);
                        result
                    }
                    .boxed()
                    .shared();
                    map.insert(key, future.clone());
                    (future, true)
                }
            }
        };
        (shared.await, leader)
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::Map;

    use super::*;

    macro_rules! json {
        ($($t:tt)+) => {
            Value::from(serde_json::json!($($t)+))
        };
    }

    fn unshare(response: SharedResponse<()>) -> Result<Value, ()> {
        response.map(|value| (*value).clone())
    }

    fn request(variables: serde_json::Value, traceparent: &str) -> SubgraphRequest {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", traceparent.parse().expect("header"));
        headers.insert("authorization", "Bearer a".parse().expect("header"));
        SubgraphRequest {
            subgraph: "products".into(),
            query: "{ topProducts { upc } }".into(),
            operation_name: None,
            variables: variables.as_object().cloned().unwrap_or_else(Map::new),
            headers,
            uploads: None,
            idempotent: true,
            encoded: Default::default(),
        }
    }

    #[tokio::test]
    async fn concurrent_identical_requests_share_one_call() {
        let dedupe: Dedupe<()> = Dedupe::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        let fetch = |calls: Arc<AtomicUsize>, mut gate: tokio::sync::watch::Receiver<bool>| {
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let _ = gate.wait_for(|open| *open).await;
                Ok(json!({"data": {"n": 1}}))
            }
            .boxed()
        };
        let a = dedupe.run(
            Key::of(&request(serde_json::json!({"first": 5}), "00-a-01"), &[]),
            fetch(calls.clone(), gate.clone()),
        );
        let b = dedupe.run(
            Key::of(&request(serde_json::json!({"first": 5}), "00-b-01"), &[]),
            fetch(calls.clone(), gate.clone()),
        );
        let c = dedupe.run(
            Key::of(&request(serde_json::json!({"first": 6}), "00-c-01"), &[]),
            fetch(calls.clone(), gate.clone()),
        );
        let opener = async {
            tokio::task::yield_now().await;
            release.send(true).expect("gate");
        };
        let ((a, a_led), (b, b_led), (c, c_led), ()) = tokio::join!(a, b, c, opener);
        let (a, b, c) = (unshare(a), unshare(b), unshare(c));
        assert_eq!(a, Ok(json!({"data": {"n": 1}})));
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(
            a_led && !b_led && c_led,
            "b waited for a; c differs in variables"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            dedupe.in_flight(),
            0,
            "entries leave the map with their response"
        );
    }

    #[tokio::test]
    async fn a_finished_request_is_not_reused() {
        let dedupe: Dedupe<()> = Dedupe::default();
        let key = Key::of(&request(serde_json::json!({}), "00-a-01"), &[]);
        let (first, led) = dedupe
            .run(key.clone(), async { Ok(json!(1)) }.boxed())
            .await;
        assert_eq!((unshare(first), led), (Ok(json!(1)), true));
        let (second, led) = dedupe.run(key, async { Ok(json!(2)) }.boxed()).await;
        assert_eq!((unshare(second), led), (Ok(json!(2)), true));
    }

    #[tokio::test]
    async fn an_abandoned_leader_is_driven_by_the_next_caller_and_then_removed() {
        let dedupe: Dedupe<()> = Dedupe::default();
        let key = Key::of(&request(serde_json::json!({}), "00-a-01"), &[]);
        let slow = async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            Ok(json!(1))
        };
        // The leader's client goes away before the response: its future is dropped.
        let abandoned = dedupe.run(key.clone(), slow.boxed());
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(10), abandoned).await;
        assert!(gave_up.is_err());
        // The request is still in flight; the next identical caller joins and drives it.
        let (result, led) = dedupe
            .run(key.clone(), async { Ok(json!(2)) }.boxed())
            .await;
        assert_eq!((unshare(result), led), (Ok(json!(1)), false));
        assert_eq!(dedupe.in_flight(), 0);
    }
}
