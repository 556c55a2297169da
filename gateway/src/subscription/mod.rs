//! Federated subscriptions.
//!
//! A subscription's root field belongs to one subgraph: the plan's `subscription` fetch
//! opens its event stream there ([`upstream`], shared between identical subscriptions).
//! For each event, the rest of the plan runs on the event's data exactly like a query's
//! plan after its root fetch: entity fetches to other subgraphs, merge, projection, the
//! usual errors and partial data. The client protocols (`http::ws`, `http::sse`,
//! multipart) only move the resulting responses.
//!
//! What a client's stream does besides relaying events, each on purpose:
//! - it ends with an `UNAUTHENTICATED` error when its credential stops verifying: checked
//!   when it expires and every `recheck_credentials` (a revoked API key or session);
//! - it says so when it fell behind ([`upstream::Item::Lagged`]) or its upstream was
//!   reopened after a break;
//! - across a supergraph reload it keeps running when its operation is still valid (on
//!   the new plan, moving to a new upstream only when the root fetch changed) and ends
//!   with the validation errors when it is not;
//! - on gateway shutdown it completes.

mod limits;
pub(crate) mod upstream;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt as _};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::error::{GraphQLError, RequestError};
use crate::gateway::{Gateway, Method, Supergraph};
use crate::operation::{coerce_variables, OperationKind, PreparedOperation};
use crate::plan::RootFetch;
use crate::request::GraphQLRequest;
pub use limits::SubscriptionLimits;
pub(crate) use limits::{limit_error, ConnectionPermit};
use limits::{CredentialPermit, Limiter};
use upstream::{Item, Subscriber, UpstreamPolicy, Upstreams};

/// Verifies a client's credential (from its headers, or a WebSocket's `connection_init`
/// payload turned into headers) and says until when it is valid: `Ok(None)` for no
/// expiry or no credential, `Err(message)` (client-safe) when it does not verify.
pub type CredentialCheck = Arc<
    dyn Fn(http::HeaderMap) -> BoxFuture<'static, Result<Option<SystemTime>, String>> + Send + Sync,
>;

/// Codes of the errors a subscription stream adds to what subgraphs say.
pub mod codes {
    /// The client fell behind and events were dropped; `extensions.dropped` says how many.
    pub const LAGGED: &str = "SUBSCRIPTION_LAGGED";
    /// The upstream stream broke and was opened again; events may have been missed.
    pub const RESUMED: &str = "SUBSCRIPTION_RESUMED";
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const SHUTTING_DOWN: &str = "SHUTTING_DOWN";
    /// A subscription or connection limit refused the request.
    pub use super::limits::LIMIT_REACHED;
}

#[derive(Clone)]
pub struct SubscriptionConfig {
    pub limits: SubscriptionLimits,
    /// Events buffered per client subscription before it counts as behind.
    pub buffer: usize,
    /// Keep-alive interval of SSE comments, multipart heartbeats and WebSocket pings.
    pub heartbeat: Duration,
    /// How long a WebSocket may take to send `connection_init`.
    pub init_timeout: Duration,
    /// Checks credentials at connection and again at expiry; `None` accepts any.
    pub credentials: Option<CredentialCheck>,
    /// How often a running subscription's credential is checked again besides at expiry.
    pub recheck_credentials: Duration,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        Self {
            limits: SubscriptionLimits::default(),
            buffer: 64,
            heartbeat: Duration::from_secs(10),
            init_timeout: Duration::from_secs(10),
            credentials: None,
            recheck_credentials: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for SubscriptionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionConfig")
            .field("limits", &self.limits)
            .field("buffer", &self.buffer)
            .field("heartbeat", &self.heartbeat)
            .field("init_timeout", &self.init_timeout)
            .field("credentials", &self.credentials.is_some())
            .field("recheck_credentials", &self.recheck_credentials)
            .finish()
    }
}

/// The gateway's subscription state (outlives reloads).
pub(crate) struct Subscriptions {
    upstreams: Upstreams,
    limiter: Limiter,
    dedupe: bool,
    closing: CancellationToken,
    reloads: tokio::sync::watch::Sender<u64>,
}

impl Subscriptions {
    pub fn new(config: &crate::GatewayConfig) -> Self {
        let policy = UpstreamPolicy {
            buffer: config.subscriptions.buffer,
            ..UpstreamPolicy::default()
        };
        Self {
            upstreams: Upstreams::new(policy, config.dedupe_ignored_headers.clone()),
            limiter: Limiter::new(config.subscriptions.limits),
            dedupe: config.dedupe_subgraph_requests,
            closing: CancellationToken::new(),
            reloads: tokio::sync::watch::channel(0).0,
        }
    }

    pub fn reloaded(&self) {
        self.reloads.send_modify(|generation| *generation += 1);
    }

    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    pub fn closing(&self) -> &CancellationToken {
        &self.closing
    }
}

/// One GraphQL response body per item; the stream's end is the operation's completion.
pub(crate) type Responses = BoxStream<'static, Vec<u8>>;

impl Gateway {
    /// Upstream subscription streams open now (shared ones count once).
    pub fn open_upstream_subscriptions(&self) -> usize {
        self.subscriptions().upstreams.open()
    }

    /// Ends every open subscription (clients get `complete`) and refuses new ones: for a
    /// graceful shutdown.
    pub fn close_subscriptions(&self) {
        self.subscriptions().closing.cancel();
    }

    /// Checks a credential with the configured [`CredentialCheck`]; the error is the
    /// client's `UNAUTHENTICATED` error.
    pub(crate) async fn check_credentials(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Option<SystemTime>, GraphQLError> {
        match &self.config().subscriptions.credentials {
            Some(check) => check(headers.clone()).await.map_err(unauthenticated),
            None => Ok(None),
        }
    }

    /// Runs any operation as a stream of responses: a query or mutation gives one, a
    /// subscription one per event. Errors are those of a request that cannot start.
    /// `credential` is `Some(expires)` when the caller already ran
    /// [`Self::check_credentials`] for these headers, `None` to check them here (every
    /// transport passes `None` today: a WebSocket checks at `connection_init` to refuse
    /// the connection early, and again per subscription, which also catches a credential
    /// that expired since).
    pub(crate) async fn stream(
        &self,
        request: GraphQLRequest,
        headers: &http::HeaderMap,
        method: Method,
        credential: Option<Option<SystemTime>>,
    ) -> Result<Responses, RequestError> {
        let subscriptions = self.subscriptions();
        if subscriptions.closing.is_cancelled() {
            return Err(shutting_down());
        }
        let admitted = self.admit(&request, method)?;
        admitted.whole_or_refused()?;
        let fetch = match (
            &admitted.operation.kind,
            &admitted.operation.plan.subscription,
        ) {
            (OperationKind::Subscription, Some(fetch)) => fetch.clone(),
            // A query, a mutation or a subscription with nothing to subscribe to (only
            // `__typename`): one response.
            _ => {
                let gateway = self.clone();
                let headers = headers.clone();
                let single = async move {
                    gateway
                        .execute_prepared(
                            &admitted.supergraph,
                            &admitted.operation,
                            &admitted.variables,
                            &headers,
                            None,
                        )
                        .await
                        .body
                };
                return Ok(stream::once(single).boxed());
            }
        };
        let expires = match credential {
            Some(expires) => expires,
            None => self
                .check_credentials(headers)
                .await
                .map_err(|e| RequestError::Refused(http::StatusCode::UNAUTHORIZED, e))?,
        };
        let credential_value = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let permit = subscriptions
            .limiter
            .subscribe(credential_value)
            .map_err(|e| RequestError::Refused(http::StatusCode::TOO_MANY_REQUESTS, e))?;
        let subscriber = self.join_upstream(
            &admitted.supergraph,
            &admitted.operation,
            &admitted.variables,
            headers,
            &fetch,
        );
        let config = &self.config().subscriptions;
        let live = Live {
            gateway: self.clone(),
            query: request.query,
            operation_name: request.operation_name,
            raw_variables: request.variables,
            supergraph: admitted.supergraph,
            operation: admitted.operation,
            variables_key: variables_key(&admitted.variables),
            variables: admitted.variables,
            headers: headers.clone(),
            fetch,
            subscriber,
            closing: subscriptions.closing.clone(),
            reloads: subscriptions.reloads.subscribe(),
            credential_due: credential_deadline(expires, config.recheck_credentials),
            _permit: permit,
            done: false,
        };
        Ok(stream::unfold(live, |mut live| async move {
            let body = live.next().await?;
            Some((body, live))
        })
        .boxed())
    }

    fn join_upstream(
        &self,
        supergraph: &Supergraph,
        operation: &PreparedOperation,
        variables: &Map<String, Value>,
        headers: &http::HeaderMap,
        fetch: &RootFetch,
    ) -> Subscriber {
        let execution = self.execution(supergraph, operation, variables, headers, None);
        let request = execution.subscription_request(fetch);
        let transport = Gateway::transport(supergraph, &fetch.subgraph);
        let subscriptions = self.subscriptions();
        subscriptions
            .upstreams
            .join(transport, request, subscriptions.dedupe)
    }
}

/// When a credential valid until `expires` is checked next.
fn credential_deadline(expires: Option<SystemTime>, recheck: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let recheck_at = now + recheck;
    match expires.map(|at| at.duration_since(SystemTime::now()).unwrap_or_default()) {
        Some(left) => recheck_at.min(now + left),
        None => recheck_at,
    }
}

/// One client's running subscription.
struct Live {
    gateway: Gateway,
    // The request as sent, to prepare it again on a new supergraph.
    query: String,
    operation_name: Option<String>,
    raw_variables: Option<Map<String, Value>>,
    supergraph: Arc<Supergraph>,
    operation: Arc<PreparedOperation>,
    variables: Map<String, Value>,
    /// `variables` encoded: part of the key under which an event's response is shared.
    variables_key: Arc<str>,
    headers: http::HeaderMap,
    fetch: Arc<RootFetch>,
    subscriber: Subscriber,
    closing: CancellationToken,
    reloads: tokio::sync::watch::Receiver<u64>,
    credential_due: tokio::time::Instant,
    _permit: CredentialPermit,
    /// Set once a final error was produced: the next poll ends the stream.
    done: bool,
}

impl Live {
    async fn next(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        loop {
            tokio::select! {
                biased;
                _ = self.closing.cancelled() => return None,
                _ = tokio::time::sleep_until(self.credential_due) => {
                    let recheck = self.gateway.config().subscriptions.recheck_credentials;
                    match self.gateway.check_credentials(&self.headers).await {
                        Ok(expires) => self.credential_due = credential_deadline(expires, recheck),
                        Err(error) => return self.finish(error),
                    }
                }
                changed = self.reloads.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    if let Err(errors) = self.follow_reload() {
                        self.done = true;
                        return Some(errors_body(&errors));
                    }
                }
                item = self.subscriber.receiver.recv() => return match item {
                    Some(Item::Event(event)) => Some(self.execute_event(event).await),
                    Some(Item::Lagged(dropped)) => Some(errors_body(&[GraphQLError::new(format!(
                        "This subscription fell behind: {dropped} events were dropped because \
                         they arrived faster than this client read them."
                    ))
                    .with_code(codes::LAGGED)
                    .with_extension("dropped", dropped.into())])),
                    Some(Item::Reconnected) => Some(errors_body(&[GraphQLError::new(
                        "The subgraph's event stream broke and was reopened; events in between \
                         may be missing."
                    )
                    .with_code(codes::RESUMED)])),
                    Some(Item::Ended(None)) | None => None,
                    Some(Item::Ended(Some(_))) => {
                        let execution = self.gateway.execution(
                            &self.supergraph, &self.operation, &self.variables, &self.headers, None,
                        );
                        let error = execution.subscription_failed(&self.fetch);
                        self.finish(error)
                    }
                },
            }
        }
    }

    fn finish(&mut self, error: GraphQLError) -> Option<Vec<u8>> {
        self.done = true;
        Some(errors_body(&[error]))
    }

    /// The response to one event: the rest of the plan runs on the event's data, once for
    /// all the subscribers of the upstream that run the same operation.
    async fn execute_event(&self, event: Arc<upstream::SharedEvent>) -> Vec<u8> {
        let key = (
            Arc::as_ptr(&self.supergraph) as usize,
            Arc::as_ptr(&self.operation) as usize,
            self.variables_key.clone(),
        );
        let keep: upstream::Keep = [self.supergraph.clone(), self.operation.clone()];
        let cell = event.response(key, keep);
        cell.get_or_init(|| self.respond_to(event.value.clone()))
            .await
            .clone()
    }

    async fn respond_to(&self, event: Arc<crate::value::Value>) -> Vec<u8> {
        let execution = self.gateway.execution(
            &self.supergraph,
            &self.operation,
            &self.variables,
            &self.headers,
            None,
        );
        execution.absorb_root(&self.fetch, event);
        let waited = execution.run(&self.operation.plan).await;
        Gateway::respond(
            &self.supergraph,
            &self.operation,
            &self.variables,
            execution,
            waited,
        )
        .body
    }

    /// Moves to the supergraph now served, if this subscription is still valid there.
    fn follow_reload(&mut self) -> Result<(), Vec<GraphQLError>> {
        let supergraph = self.gateway.current();
        if Arc::ptr_eq(&supergraph, &self.supergraph) {
            return Ok(());
        }
        let changed = |error: RequestError| -> Vec<GraphQLError> {
            let mut errors = vec![GraphQLError::new(
                "The schema changed and this subscription is no longer valid; it ended.",
            )
            .with_code(crate::error::codes::VALIDATION_FAILED)];
            errors.extend(error.errors());
            errors
        };
        let operation = Gateway::prepared(&supergraph, &self.query, self.operation_name.as_deref())
            .map_err(changed)?;
        let variables =
            coerce_variables(&operation.variables, self.raw_variables.as_ref()).map_err(changed)?;
        let Some(fetch) = operation.plan.subscription.clone() else {
            return Err(changed(RequestError::Unsupported(
                "The operation no longer subscribes to anything.".into(),
            )));
        };
        let same_upstream =
            fetch.subgraph == self.fetch.subgraph && fetch.operation == self.fetch.operation;
        if !same_upstream {
            self.subscriber = self.gateway.join_upstream(
                &supergraph,
                &operation,
                &variables,
                &self.headers,
                &fetch,
            );
        }
        tracing::debug!(
            same_upstream,
            "subscription moved to the reloaded supergraph"
        );
        self.supergraph = supergraph;
        self.operation = operation;
        self.variables_key = variables_key(&variables);
        self.variables = variables;
        self.fetch = fetch;
        Ok(())
    }
}

fn variables_key(variables: &Map<String, Value>) -> Arc<str> {
    serde_json::to_string(variables).unwrap_or_default().into()
}

/// `{"errors":[...]}`: a response with no data, the form of notices and final errors.
pub(crate) fn errors_body(errors: &[GraphQLError]) -> Vec<u8> {
    let mut body = b"{\"errors\":".to_vec();
    let _ = serde_json::to_writer(&mut body, errors);
    body.push(b'}');
    body
}

fn unauthenticated(message: String) -> GraphQLError {
    GraphQLError::new(message).with_code(codes::UNAUTHENTICATED)
}

pub(crate) fn shutting_down() -> RequestError {
    RequestError::Refused(
        http::StatusCode::SERVICE_UNAVAILABLE,
        GraphQLError::new("This gateway is shutting down; reconnect in a moment.")
            .with_code(codes::SHUTTING_DOWN),
    )
}
