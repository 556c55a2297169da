//! Serving a service's GraphQL subgraph, over HTTP or in process.
//!
//! Both paths go through [`Subgraph::execute`] (or [`Subgraph::execute_multipart`] for a
//! request with files, see [`crate::uploads`]): it verifies the caller's token
//! (never trusting an identity it did not verify), refuses the request outright when a
//! presented credential does not verify, puts the [`Caller`] in the GraphQL context, runs
//! the schema and returns the response body as JSON. Subscriptions (and any operation a
//! client asks to stream) go through [`Subgraph::subscribe`], served over HTTP as GraphQL
//! over SSE (distinct connections mode): the protocol the gateway speaks to subgraphs.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use futures::StreamExt as _;
use serde::Deserialize;
use tracing::Instrument;

use flowfleet_runtime::error::ApiError;
use flowfleet_security::identity::{Caller, TokenVerifier};
use flowfleet_security::secrets::SecretKeyRing;
use flowfleet_security::service_auth::{open_client_address, CLIENT_ADDRESS_HEADER};

/// A federation schema, type-erased.
#[async_trait]
pub trait SubgraphSchema: Send + Sync + 'static {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response;
    /// Runs an operation as a stream: one response per event of a subscription, one for
    /// a query or mutation.
    fn execute_stream(
        &self,
        request: async_graphql::Request,
    ) -> futures::stream::BoxStream<'static, async_graphql::Response>;
    /// The Federation v2 SDL (what `_service { sdl }` returns).
    fn federation_sdl(&self) -> String;
}

#[async_trait]
impl<Q, M, S> SubgraphSchema for async_graphql::Schema<Q, M, S>
where
    Q: async_graphql::ObjectType + 'static,
    M: async_graphql::ObjectType + 'static,
    S: async_graphql::SubscriptionType + 'static,
{
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        async_graphql::Schema::execute(self, request).await
    }
    fn execute_stream(
        &self,
        request: async_graphql::Request,
    ) -> futures::stream::BoxStream<'static, async_graphql::Response> {
        async_graphql::Schema::execute_stream(self, request).boxed()
    }
    fn federation_sdl(&self) -> String {
        self.sdl_with_options(
            async_graphql::SDLExportOptions::new()
                .federation()
                .compose_directive(),
        )
    }
}

/// Where a service serves its GraphQL subgraph (to the gateway).
pub const GRAPHQL_PATH: &str = "/graphql";

/// The body of a GraphQL-over-HTTP request.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GraphQLBody {
    pub query: String,
    #[serde(default)]
    pub operation_name: Option<String>,
    #[serde(default)]
    pub variables: Option<serde_json::Value>,
}

#[derive(Clone)]
pub struct Subgraph {
    name: &'static str,
    schema: Arc<dyn SubgraphSchema>,
    verifier: Arc<TokenVerifier>,
    /// Opens the gateway's sealed client address, for subgraphs that use it.
    client_addresses: Option<Arc<SecretKeyRing>>,
    /// Cancelled when the process stops: open event streams then break off (see
    /// [`Subgraph::closing`]).
    closing: tokio_util::sync::CancellationToken,
}

impl Subgraph {
    pub fn new(
        name: &'static str,
        schema: Arc<dyn SubgraphSchema>,
        verifier: Arc<TokenVerifier>,
    ) -> Self {
        Subgraph {
            name,
            schema,
            verifier,
            client_addresses: None,
            closing: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Cancel it when the process stops: each open event stream then ends without
    /// `complete`, which tells the gateway the stream broke (not that the subscription is
    /// over), so it reopens the subscription on another replica; and the server's graceful
    /// shutdown is not held up by streams that would never end.
    pub fn closing(&self) -> tokio_util::sync::CancellationToken {
        self.closing.clone()
    }

    /// Puts the client's address, as sealed by the gateway, in the GraphQL context
    /// ([`ClientAddress`]); requests without a valid seal have none.
    pub fn with_client_addresses(mut self, ring: Arc<SecretKeyRing>) -> Self {
        self.client_addresses = Some(ring);
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn sdl(&self) -> String {
        self.schema.federation_sdl()
    }

    /// Runs one GraphQL request with the caller identified from `headers`.
    pub async fn execute(&self, body: GraphQLBody, headers: &http::HeaderMap) -> serde_json::Value {
        self.run(body, headers, None).await
    }

    /// Runs a multipart GraphQL request (GraphQL multipart request specification): its
    /// files stream from `body` to the resolvers that take them.
    pub async fn execute_multipart<S>(
        &self,
        content_type: &str,
        body: S,
        headers: &http::HeaderMap,
    ) -> serde_json::Value
    where
        S: futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    {
        let (operations, uploads) = match crate::uploads::read(content_type, body).await {
            Ok(read) => read,
            Err(e) => return e.graphql_response(),
        };
        let body: GraphQLBody = match serde_json::from_value(operations) {
            Ok(body) => body,
            Err(e) => {
                return ApiError::bad_input(format!("`operations` is not a GraphQL request: {e}"))
                    .graphql_response()
            }
        };
        self.run(body, headers, Some(uploads)).await
    }

    async fn run(
        &self,
        body: GraphQLBody,
        headers: &http::HeaderMap,
        uploads: Option<crate::uploads::Uploads>,
    ) -> serde_json::Value {
        let span = tracing::info_span!(
            "subgraph.request",
            subgraph = self.name,
            operation = body.operation_name.as_deref().unwrap_or("")
        );
        flowfleet_runtime::telemetry::set_parent_from_headers(&span, headers);
        async move {
            let started = std::time::Instant::now();
            let (request, credential) = match self.request(body, headers).await {
                Ok(prepared) => prepared,
                Err(refusal) => return refusal,
            };
            let request = match uploads {
                Some(uploads) => request.data(uploads),
                None => request,
            };
            let response = flowfleet_runtime::grpc::acting_for(
                credential.as_deref(),
                self.schema.execute(request),
            )
            .await;
            let outcome = if response.errors.is_empty() { "ok" } else { "error" };
            metrics::histogram!("flowfleet_subgraph_request_seconds", "subgraph" => self.name, "outcome" => outcome)
                .record(started.elapsed().as_secs_f64());
            response_json(&response)
        }
        .instrument(span)
        .await
    }

    /// Runs an operation as a stream of response bodies: each event of a subscription, or
    /// the one response of a query or mutation. A credential that does not verify gives
    /// one error response.
    pub async fn subscribe(
        &self,
        body: GraphQLBody,
        headers: &http::HeaderMap,
    ) -> futures::stream::BoxStream<'static, serde_json::Value> {
        let span = tracing::info_span!(
            "subgraph.subscription",
            subgraph = self.name,
            operation = body.operation_name.as_deref().unwrap_or("")
        );
        flowfleet_runtime::telemetry::set_parent_from_headers(&span, headers);
        let (request, credential) = match self.request(body, headers).instrument(span.clone()).await
        {
            Ok(prepared) => prepared,
            Err(refusal) => return futures::stream::once(async move { refusal }).boxed(),
        };
        let mut responses = self
            .schema
            .execute_stream(request)
            .map(|response| response_json(&response));
        // Every poll (where the resolvers run) inside the subscription's span.
        let traced =
            futures::stream::poll_fn(move |cx| span.in_scope(|| responses.poll_next_unpin(cx)));
        flowfleet_runtime::grpc::acting_for_stream(credential.as_deref(), traced)
    }

    /// The async-graphql request for `body` from a verified caller, and the caller's
    /// credential for the gRPC calls its resolvers make; or the response refusing it.
    async fn request(
        &self,
        body: GraphQLBody,
        headers: &http::HeaderMap,
    ) -> Result<(async_graphql::Request, Option<String>), serde_json::Value> {
        let caller = self.verifier.caller(headers).await;
        // A credential that does not verify ends the request here, whatever it asks
        // for: nothing runs on behalf of a forged, expired or revoked identity, and
        // the client learns its credential is bad instead of being served as anonymous.
        if let Caller::Rejected(reason) = &caller {
            return Err(ApiError::unauthenticated(reason.clone()).graphql_response());
        }
        // gRPC calls the resolvers make carry this caller's (verified) credential.
        let credential = matches!(caller, Caller::User(_))
            .then(|| headers.get(http::header::AUTHORIZATION))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.get(7..))
            .map(|v| v.trim().to_string());
        let mut request = async_graphql::Request::new(body.query).data(caller);
        if let Some(ring) = &self.client_addresses {
            let address = headers
                .get(CLIENT_ADDRESS_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| open_client_address(ring, v));
            if let Some(address) = address {
                request = request.data(address);
            }
        }
        if let Some(name) = body.operation_name {
            request = request.operation_name(name);
        }
        if let Some(vars) = body.variables {
            request = request.variables(async_graphql::Variables::from_json(vars));
        }
        Ok((request, credential))
    }

    /// `POST /graphql`, `GET /health`, `GET /metrics`.
    pub fn router(&self) -> Router {
        Router::new()
            .route(GRAPHQL_PATH, post(graphql_handler))
            .merge(flowfleet_runtime::telemetry::ops_routes())
            .with_state(self.clone())
    }
}

fn response_json(response: &async_graphql::Response) -> serde_json::Value {
    serde_json::to_value(response).unwrap_or_else(|e| {
        serde_json::json!({"errors": [{"message": format!("response encoding failed: {e}"), "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]})
    })
}

/// How often a quiet event stream sends a keep-alive comment; well within the gateway's
/// limit on silence.
const SSE_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// GraphQL over SSE: `event: next` per response, then `event: complete` with an empty
/// `data:` line (SSE parsers drop events without one), and a comment as keep-alive while
/// quiet.
fn event_stream(
    responses: futures::stream::BoxStream<'static, serde_json::Value>,
    closing: tokio_util::sync::CancellationToken,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let keep_alive =
        tokio::time::interval_at(tokio::time::Instant::now() + SSE_KEEP_ALIVE, SSE_KEEP_ALIVE);
    let events = futures::stream::unfold(
        (Some(responses), keep_alive),
        move |(responses, mut keep_alive)| {
            let closing = closing.clone();
            async move {
            let mut responses = responses?;
            let chunk = tokio::select! {
                // Broken off, without `complete`: the gateway reopens it elsewhere.
                _ = closing.cancelled() => return None,
                response = responses.next() => match response {
                    Some(body) => format!("event: next\ndata: {body}\n\n"),
                    None => return Some(("event: complete\ndata:\n\n".to_string(), (None, keep_alive))),
                },
                _ = keep_alive.tick() => ":\n\n".to_string(),
            };
            Some((chunk, (Some(responses), keep_alive)))
            }
        },
    )
    .map(Ok::<_, std::convert::Infallible>);
    (
        [(http::header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(events),
    )
        .into_response()
}

/// Headers only scripts can set: a multipart request must carry one, so that a plain
/// cross-site form post cannot reach a resolver (CSRF).
const PREFLIGHT_HEADERS: [&str; 2] = ["graphql-require-preflight", "apollo-require-preflight"];

/// Largest JSON request body (axum's default limit for JSON bodies).
const MAX_JSON_BYTES: usize = 2 * 1024 * 1024;

async fn graphql_handler(
    State(subgraph): State<Subgraph>,
    headers: http::HeaderMap,
    body: Body,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let bad_request = |message: String| {
        (
            http::StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"errors": [{
                "message": message,
                "extensions": {"code": "BAD_REQUEST"}
            }]})),
        )
            .into_response()
    };
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if content_type.starts_with("multipart/form-data") {
        if !PREFLIGHT_HEADERS.iter().any(|h| headers.contains_key(*h)) {
            return bad_request(
                "multipart requests must carry a `GraphQL-Require-Preflight` header".into(),
            );
        }
        let stream = body
            .into_data_stream()
            .map(|chunk| chunk.map_err(std::io::Error::other));
        return Json(
            subgraph
                .execute_multipart(&content_type, stream, &headers)
                .await,
        )
        .into_response();
    }
    let bytes = match axum::body::to_bytes(body, MAX_JSON_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => return bad_request(format!("the request body could not be read: {e}")),
    };
    let wants_stream = headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"));
    match serde_json::from_slice::<GraphQLBody>(&bytes) {
        Ok(body) if wants_stream => {
            event_stream(subgraph.subscribe(body, &headers).await, subgraph.closing())
        }
        Ok(body) => Json(subgraph.execute(body, &headers).await).into_response(),
        Err(e) => bad_request(format!("the request body is not a GraphQL request: {e}")),
    }
}

/// The caller placed in the context by [`Subgraph::execute`].
pub fn caller<'a>(ctx: &'a async_graphql::Context<'_>) -> &'a Caller {
    static ANON: Caller = Caller::Anonymous;
    ctx.data_opt::<Caller>().unwrap_or(&ANON)
}
