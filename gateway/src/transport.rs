//! How the executor reaches a subgraph.
//!
//! Why a trait: in embedded mode the subgraphs run in the same process and are called
//! directly; in distributed mode they are called over HTTP. The executor only knows
//! [`SubgraphTransport`]. Transport errors are internal (they may name hosts and URLs); the
//! executor turns them into client-safe GraphQL errors and logs the details.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::traffic::{
    ReplicaConfig, SubgraphUrl, TrafficConfig, Upstream, UpstreamSpec, Upstreams,
};
pub use crate::upload::SubgraphUploads;
use crate::value::Value as ResponseValue;

/// One request to one subgraph.
#[derive(Debug, Clone)]
pub struct SubgraphRequest {
    /// Subgraph name as declared in the supergraph (`@join__graph(name:)`).
    pub subgraph: String,
    pub query: String,
    pub operation_name: Option<String>,
    pub variables: Map<String, Value>,
    pub headers: http::HeaderMap,
    /// Files for this request (GraphQL multipart request), streamed from the client.
    pub uploads: Option<SubgraphUploads>,
    /// Whether sending it twice does no harm: true for queries and entity fetches, false
    /// for a mutation's root fetch (see [`crate::traffic::RetryPolicy`]).
    pub idempotent: bool,
    /// The JSON body, encoded once (deduplication keys on it, HTTP sends it).
    pub(crate) encoded: std::sync::OnceLock<bytes::Bytes>,
}

/// The JSON body of a subgraph request, borrowing from it.
#[derive(serde::Serialize)]
struct Body<'a> {
    query: &'a str,
    #[serde(rename = "operationName", skip_serializing_if = "Option::is_none")]
    operation_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    variables: &'a Map<String, Value>,
}

impl SubgraphRequest {
    /// A request with no files.
    pub fn new(
        subgraph: impl Into<String>,
        query: impl Into<String>,
        variables: Map<String, Value>,
        headers: http::HeaderMap,
    ) -> Self {
        Self {
            subgraph: subgraph.into(),
            query: query.into(),
            operation_name: None,
            variables,
            headers,
            uploads: None,
            idempotent: true,
            encoded: Default::default(),
        }
    }

    /// The JSON body of the request as sent over HTTP.
    pub fn body(&self) -> Value {
        serde_json::from_slice(&self.encoded()).unwrap_or(Value::Null)
    }

    /// The JSON body, encoded once and then shared.
    pub fn encoded(&self) -> bytes::Bytes {
        self.encoded
            .get_or_init(|| {
                let body = Body {
                    query: &self.query,
                    operation_name: self.operation_name.as_deref(),
                    variables: &self.variables,
                };
                serde_json::to_vec(&body).unwrap_or_default().into()
            })
            .clone()
    }
}

/// Internal transport failure; may contain URLs and host names, so never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("no transport or URL configured for subgraph `{0}`")]
    UnknownSubgraph(String),
    #[error("subgraph request timed out")]
    Timeout,
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("HTTP status {status}")]
    Status { status: u16 },
    #[error("invalid response body: {0}")]
    InvalidResponse(String),
    /// The subgraph's circuit breaker is open: its fetches fail at once for a while.
    #[error("circuit open for another {retry_after:?}")]
    CircuitOpen { retry_after: Duration },
    /// The subgraph's bulkhead is full (fetches in flight and waiting).
    #[error("too many fetches in flight and waiting")]
    Overloaded,
    #[error("{0}")]
    Other(String),
}

impl TransportError {
    /// Whether this says the subgraph (replica) could not answer, as opposed to the
    /// gateway refusing to ask it or the subgraph refusing the request.
    pub fn is_failure(&self) -> bool {
        match self {
            TransportError::Timeout
            | TransportError::Connect(_)
            | TransportError::InvalidResponse(_)
            | TransportError::Other(_) => true,
            TransportError::Status { status } => *status >= 500 || *status == 429,
            TransportError::UnknownSubgraph(_)
            | TransportError::CircuitOpen { .. }
            | TransportError::Overloaded => false,
        }
    }

    /// Whether a fetch that failed like this may be sent again: when it never reached the
    /// subgraph (no connection), or when it is `idempotent` and failed in transit or with
    /// a status that says "try elsewhere". A timeout is not retried: the fetch's time is up.
    pub fn retryable(&self, idempotent: bool) -> bool {
        match self {
            TransportError::Connect(_) => true,
            TransportError::Other(_) | TransportError::InvalidResponse(_) => idempotent,
            TransportError::Status { status } => idempotent && matches!(status, 502..=504),
            _ => false,
        }
    }
}

#[async_trait::async_trait]
pub trait SubgraphTransport: Send + Sync + 'static {
    /// Executes the request and returns the subgraph's GraphQL response body
    /// (an object with `data` and/or `errors`). A transport holding a `serde_json::Value`
    /// converts it with `.into()`.
    async fn execute(&self, request: SubgraphRequest) -> Result<ResponseValue, TransportError>;

    /// Whether requests with `uploads` can be sent (as multipart); others get no files.
    fn supports_uploads(&self) -> bool {
        false
    }

    /// Opens a subscription: each item is the GraphQL response of one event. The stream
    /// ends when the subgraph completes the subscription; an `Err` item means the
    /// connection broke (the gateway may then open it again). Dropping the stream closes
    /// the subscription on the subgraph.
    async fn subscribe(&self, request: SubgraphRequest) -> Result<ResponseStream, TransportError> {
        let _ = request;
        Err(TransportError::Other(
            "this transport does not carry subscriptions".into(),
        ))
    }
}

/// The events of one subgraph subscription (see [`SubgraphTransport::subscribe`]).
pub type ResponseStream =
    futures::stream::BoxStream<'static, Result<ResponseValue, TransportError>>;

/// GraphQL over HTTP POST with pooled keep-alive connections, to one of each subgraph's
/// replicas (see [`crate::traffic`] for balancing, retries, breakers and bulkheads).
///
/// HTTPS subgraphs that offer HTTP/2 (ALPN `h2`) are spoken to in HTTP/2, others in
/// HTTP/1.1. Cleartext HTTP cannot advertise HTTP/2, so subgraphs known to speak it without
/// TLS (h2c) are listed in `GatewayConfig::h2c_subgraphs` and get a prior-knowledge client.
#[derive(Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    h2c_client: reqwest::Client,
    /// Clients for subscription streams: no bound on a whole request (a stream lasts as
    /// long as its subscribers), only on connecting and on silence between chunks.
    stream_client: reqwest::Client,
    h2c_stream_client: reqwest::Client,
    /// Subgraph name -> its replicas and their state.
    upstreams: HashMap<String, Arc<Upstream>>,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("subgraphs", &self.upstreams.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// One HTTP subgraph for [`HttpTransport::new`].
pub(crate) struct HttpSubgraph {
    pub name: String,
    pub replicas: Vec<ReplicaConfig>,
    /// Bound of one fetch, retries included.
    pub timeout: Duration,
    pub h2c: bool,
}

impl HttpTransport {
    /// `timeout` is the default bound of each request (connect, send, receive); `ca_pem`
    /// adds trusted certificate authorities (PEM, one or more) for HTTPS subgraphs.
    /// Upstreams come from `registry`, so their state outlives this transport.
    pub(crate) fn new(
        subgraphs: Vec<HttpSubgraph>,
        traffic: &TrafficConfig,
        registry: &Upstreams,
        timeout: Duration,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, reqwest::Error> {
        let authorities = match ca_pem {
            Some(pem) => reqwest::Certificate::from_pem_bundle(pem)?,
            None => Vec::new(),
        };
        let base = || {
            authorities
                .iter()
                .fold(reqwest::Client::builder(), |b, ca| {
                    b.add_root_certificate(ca.clone())
                })
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(64)
                .tcp_nodelay(true)
                .http2_adaptive_window(true)
        };
        let builder = || base().timeout(timeout);
        // Subgraphs send a heartbeat at least every `STREAM_HEARTBEAT`; longer silence
        // means a dead connection.
        let streaming = || base().read_timeout(STREAM_SILENCE);
        let client = builder().build()?;
        let h2c_client = builder().http2_prior_knowledge().build()?;
        let upstreams = subgraphs
            .into_iter()
            .map(|subgraph| {
                let spec = UpstreamSpec {
                    subgraph: &subgraph.name,
                    replicas: subgraph.replicas,
                    timeout: subgraph.timeout,
                    h2c: subgraph.h2c,
                    client: if subgraph.h2c { &h2c_client } else { &client },
                };
                (subgraph.name.clone(), registry.get(spec, traffic))
            })
            .collect();
        Ok(Self {
            client,
            h2c_client,
            stream_client: streaming().build()?,
            h2c_stream_client: streaming().http2_prior_knowledge().build()?,
            upstreams,
        })
    }

    fn upstream(&self, subgraph: &str) -> Result<&Arc<Upstream>, TransportError> {
        self.upstreams
            .get(subgraph)
            .ok_or_else(|| TransportError::UnknownSubgraph(subgraph.to_string()))
    }
}

/// Boundary of multipart requests to subgraphs (file parts never contain it: each is
/// framed by the multipart parser that read it, and this string is long and unusual).
const UPLOAD_BOUNDARY: &str = "flowfleet-upload-7f3c9a1e5b2d4c60";
const UPLOAD_CONTENT_TYPE: &str = "multipart/form-data; boundary=flowfleet-upload-7f3c9a1e5b2d4c60";

#[async_trait::async_trait]
impl SubgraphTransport for HttpTransport {
    fn supports_uploads(&self) -> bool {
        true
    }

    async fn subscribe(&self, request: SubgraphRequest) -> Result<ResponseStream, TransportError> {
        self.open_stream(request).await
    }

    async fn execute(&self, request: SubgraphRequest) -> Result<ResponseValue, TransportError> {
        let upstream = self.upstream(&request.subgraph)?;
        let admitted = upstream.admit().await?;
        // Files are read from the client once: such a request cannot be sent again.
        let replayable = request.uploads.is_none();
        let mut tried: Vec<usize> = Vec::new();
        loop {
            let attempt = upstream.attempt(&request.headers, &tried);
            tried.push(attempt.index);
            let result = self.send(upstream, attempt.url(), &request).await;
            let failed = matches!(&result, Err(error) if error.is_failure());
            attempt.settle(failed);
            match result {
                Err(error)
                    if replayable
                        && upstream.retry(&error, request.idempotent, tried.len() as u32) =>
                {
                    tracing::debug!(subgraph = %request.subgraph, %error, "retrying the fetch");
                    if tried.len() >= upstream.replicas.len() {
                        // The same replica again: give it a moment.
                        let pause = 20 * tried.len() as u64 + rand::random::<u64>() % 20;
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                    }
                }
                result => {
                    admitted.settle(failed);
                    return result;
                }
            }
        }
    }
}

impl HttpTransport {
    /// One try of `request` on the replica at `url`.
    async fn send(
        &self,
        upstream: &Upstream,
        url: &SubgraphUrl,
        request: &SubgraphRequest,
    ) -> Result<ResponseValue, TransportError> {
        let body = request.encoded();
        let subgraph = &request.subgraph;
        let mut headers = request.headers.clone();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        let multipart = request.uploads.as_ref().and_then(|uploads| {
            uploads
                .take_body(&String::from_utf8_lossy(&body), UPLOAD_BOUNDARY)
                .map(reqwest::Body::wrap_stream)
        });
        let payload = match multipart {
            Some(stream) => {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(UPLOAD_CONTENT_TYPE),
                );
                // Subgraph servers that guard multipart against CSRF want this.
                headers.insert(
                    "graphql-require-preflight",
                    http::HeaderValue::from_static("true"),
                );
                headers.insert(
                    "apollo-require-preflight",
                    http::HeaderValue::from_static("true"),
                );
                stream
            }
            None => reqwest::Body::from(body.clone()),
        };
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/graphql-response+json, application/json"),
        );
        let client = if upstream.h2c {
            &self.h2c_client
        } else {
            &self.client
        };
        let builder = match &url.parsed {
            Some(parsed) => client.post(parsed.clone()),
            None => client.post(url.text.as_str()),
        };
        let response = builder
            .headers(headers)
            .timeout(upstream.timeout)
            .body(payload)
            .send()
            .await
            .map_err(classify)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(classify)?;
        tracing::trace!(
            %subgraph,
            request = %String::from_utf8_lossy(&body),
            response = %String::from_utf8_lossy(&bytes),
            "subgraph exchange"
        );
        match serde_json::from_slice::<ResponseValue>(&bytes) {
            // A GraphQL response is meaningful even with a non-2xx status
            // (graphql-response+json uses 4xx for requests that did not execute).
            Ok(value @ ResponseValue::Object(_))
                if value.get("data").is_some() || value.get("errors").is_some() =>
            {
                Ok(value)
            }
            _ if !status.is_success() => Err(TransportError::Status {
                status: status.as_u16(),
            }),
            Ok(_) => Err(TransportError::InvalidResponse(
                "not a GraphQL response object".into(),
            )),
            Err(e) => Err(TransportError::InvalidResponse(e.to_string())),
        }
    }
}

/// Longest silence accepted on a subscription stream; subgraphs send SSE comments as
/// heartbeats well within it.
const STREAM_SILENCE: Duration = Duration::from_secs(45);

impl HttpTransport {
    /// GraphQL over SSE (distinct connections mode): `POST` the operation with
    /// `Accept: text/event-stream`; `next` events carry results, `complete` ends the
    /// stream. A subgraph that answers with a JSON body (a request it refused) gives that
    /// one response and the stream ends.
    async fn open_stream(
        &self,
        request: SubgraphRequest,
    ) -> Result<ResponseStream, TransportError> {
        use eventsource_stream::Eventsource as _;
        use futures::StreamExt as _;
        let upstream = self.upstream(&request.subgraph)?;
        // No breaker or retries here: a subscription that cannot open is reopened by the
        // subscription layer, with its own backoff. The replica is balanced like a fetch.
        let attempt = upstream.attempt(&request.headers, &[]);
        let url = attempt.url();
        let client = if upstream.h2c {
            &self.h2c_stream_client
        } else {
            &self.stream_client
        };
        let mut headers = request.headers.clone();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("text/event-stream"),
        );
        let builder = match &url.parsed {
            Some(parsed) => client.post(parsed.clone()),
            None => client.post(url.text.as_str()),
        };
        let response = builder
            .headers(headers)
            .body(reqwest::Body::from(request.encoded()))
            .send()
            .await
            .map_err(classify);
        attempt.settle(response.is_err());
        let response = response?;
        let status = response.status();
        let is_stream = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_stream {
            let bytes = response.bytes().await.map_err(classify)?;
            let single = match serde_json::from_slice::<ResponseValue>(&bytes) {
                Ok(value @ ResponseValue::Object(_))
                    if value.get("data").is_some() || value.get("errors").is_some() =>
                {
                    Ok(value)
                }
                _ if !status.is_success() => Err(TransportError::Status {
                    status: status.as_u16(),
                }),
                _ => Err(TransportError::InvalidResponse(
                    "a subscription answered with neither an event stream nor a GraphQL response"
                        .into(),
                )),
            }?;
            return Ok(futures::stream::once(async move { Ok(single) }).boxed());
        }
        // `Some(item)` per event to deliver, `None` once `complete` arrived; a stream that
        // ends without `complete` broke.
        let events = response.bytes_stream().eventsource();
        let stream = futures::stream::unfold(Some(events), |state| async move {
            let mut events = state?;
            loop {
                match events.next().await {
                    Some(Ok(event)) => match event.event.as_str() {
                        "next" => {
                            let item = serde_json::from_str::<ResponseValue>(&event.data)
                                .map_err(|e| TransportError::InvalidResponse(e.to_string()));
                            return Some((item, Some(events)));
                        }
                        "complete" => return None,
                        _ => continue,
                    },
                    Some(Err(error)) => {
                        let error =
                            TransportError::Connect(format!("subscription stream: {error}"));
                        return Some((Err(error), None));
                    }
                    None => {
                        let error = TransportError::Connect(
                            "subscription stream ended without `complete`".into(),
                        );
                        return Some((Err(error), None));
                    }
                }
            }
        });
        Ok(stream.boxed())
    }
}

fn classify(error: reqwest::Error) -> TransportError {
    if error.is_timeout() {
        TransportError::Timeout
    } else if error.is_connect() {
        TransportError::Connect(error.to_string())
    } else {
        TransportError::Other(error.to_string())
    }
}
