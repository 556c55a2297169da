//! HTTP surface: `POST /graphql`, `GET /graphql`, `GET /health`, `GET /ready`, and
//! graceful serving.
//!
//! A request goes through these stages, each a function below:
//! 1. negotiate: which response media type the client accepts (406 if none we produce);
//!    for a POST, CSRF prevention (`browsers`) before the body is read;
//! 2. read: the GraphQL request(s) from the query string (GET) or the body (POST: JSON, a
//!    JSON array for a batch, `application/graphql`, or a multipart upload whose files
//!    stream on to a subgraph), with 4xx for anything malformed; then rate limits (with
//!    the weight of every operation read) and persisted operations (a hash becomes its
//!    text);
//! 3. execute: [`Gateway::execute_with`] per operation (a batch runs its operations
//!    concurrently); operations a client wants streamed (SSE, multipart subscriptions)
//!    go through [`Gateway::stream`] instead, and a WebSocket upgrade on `GET /graphql`
//!    goes to `ws` (`graphql-transport-ws`);
//! 4. respond: the status follows GraphQL-over-HTTP. 200 whenever the operation executed,
//!    even with errors or partial data. For requests that could not execute,
//!    `application/graphql-response+json` gets 4xx and `application/json` gets 200 for a
//!    well-formed GraphQL request (parse, validation and variable errors) and 4xx otherwise.

pub mod browsers;
mod graphiql;
mod multipart;
mod negotiate;
pub(crate) mod ready;
mod streams;
mod ws;

use std::collections::HashMap;
use std::future::Future;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::future::join_all;
use serde_json::{json, Value};

use crate::authorization::{Access, ACCESS};
use crate::error::RequestError;
use crate::gateway::{Gateway, Method, ResponseJson};
use crate::incremental::Delivery;
use crate::rate_limit::RateKeys;
use crate::request::{GraphQLRequest, Incoming};
use crate::upload;
pub use browsers::CorsConfig;
use negotiate::{accepts, content_type, Accepts, ResponseFormat};

/// The GraphQL endpoint.
pub const GRAPHQL_PATH: &str = "/graphql";
/// The gateway is up (liveness probes).
pub const HEALTH_PATH: &str = "/health";
/// The gateway can serve: every subgraph answers (readiness probes).
pub const READY_PATH: &str = "/ready";

impl Gateway {
    /// Routes: `POST /graphql`, `GET /graphql` (queries only; GraphiQL for browsers;
    /// WebSocket upgrades), `GET /health` (the process is up), `GET /ready` (it can serve:
    /// every subgraph answers).
    pub fn router(&self) -> Router {
        let router = Router::new()
            .route(GRAPHQL_PATH, get(get_graphql).post(post_graphql))
            .route(HEALTH_PATH, get(health))
            .route(READY_PATH, get(ready::ready))
            .with_state(self.clone());
        match self.config().cors.layer() {
            Some(cors) => router.layer(cors),
            None => router,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // With the peer's address in each request's extensions (`ConnectInfo`), for layers that
    // attribute requests to clients.
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// What the layer in front of the gateway verified of the caller (for `@authenticated`,
/// `@requiresScopes`, `@policy`); anonymous when nothing was put there.
fn access(extensions: &http::Extensions) -> Access {
    extensions.get::<Access>().cloned().unwrap_or_default()
}

async fn post_graphql(State(gateway): State<Gateway>, request: Request) -> Response {
    let access = access(request.extensions());
    ACCESS.scope(access, post_scoped(gateway, request)).await
}

#[tracing::instrument(name = "http_post", skip_all)]
async fn post_scoped(gateway: Gateway, request: Request) -> Response {
    let _in_flight = crate::measure::InFlight::requests();
    let (parts, body) = request.into_parts();
    let keys = rate_keys(&parts.extensions);
    let headers = parts.headers;
    let accepted = accepts(&headers);
    let Some(format) =
        response_format(&accepted).or(accepted.event_stream.then_some(ResponseFormat::Json))
    else {
        return error_response(ResponseFormat::Json, RequestError::NotAcceptable);
    };
    if let Err(error) = browsers::check_csrf(&headers) {
        return error_response(format, error);
    }
    if let Some(content_type) = content_type(&headers) {
        if content_type.essence == "multipart/form-data" {
            let raw = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            // The operation's name is inside the stream: an upload weighs 1.
            if let Err(error) = gateway.rate_limiter().admit(&keys, 1).await {
                return error_response(format, error);
            }
            let limits = gateway.config().uploads;
            let result = match upload::read(raw, body, limits).await {
                Ok(mut upload) => match gateway.persisted().resolve(upload.request).await {
                    Ok(request) => {
                        upload.request = request;
                        gateway.execute_upload(upload, &headers).await
                    }
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            };
            return single_response(format, result);
        }
    }
    let limit = gateway.config().max_request_bytes;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(_) => {
            return error_response(
                format,
                RequestError::PayloadTooLarge(format!(
                    "The request body is larger than {limit} bytes."
                )),
            )
        }
    };
    let incoming = match read_post(&headers, &body, gateway.config().max_batch_size) {
        Ok(incoming) => incoming,
        Err(error) => return error_response(format, error),
    };
    if let Err(error) = admit_rate(&gateway, &keys, &incoming).await {
        return error_response(format, error);
    }
    let persisted = gateway.persisted();
    match incoming {
        Incoming::Single(request) => match request {
            Ok(request) => match persisted.resolve(request).await {
                Ok(request) => execute(&gateway, request, &headers, Method::Post, &accepted).await,
                Err(error) => error_response(format, error),
            },
            Err(error) => error_response(format, error),
        },
        Incoming::Batch(requests) => {
            let results = join_all(requests.into_iter().map(|request| {
                let gateway = &gateway;
                let headers = &headers;
                async move {
                    let request = persisted.resolve(request?).await?;
                    gateway.execute_with(request, headers, Method::Post).await
                }
            }))
            .await;
            let mut body = vec![b'['];
            for (i, result) in results.into_iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                match result {
                    Ok(json) => body.extend_from_slice(&json.body),
                    Err(error) => {
                        let _ = serde_json::to_writer(&mut body, &error.to_response());
                    }
                }
            }
            body.push(b']');
            // Each entry carries its own errors; the batch itself was well-formed.
            bytes_response(format, StatusCode::OK, body)
        }
    }
}

/// Who sent a request, for rate limits: what the edge layer in front of the gateway
/// verified, or else the peer's address.
fn rate_keys(extensions: &http::Extensions) -> RateKeys {
    if let Some(keys) = extensions.get::<RateKeys>() {
        return keys.clone();
    }
    RateKeys {
        address: extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip()),
        principal: None,
    }
}

/// Stage 2½: rate limits, with the weight of every operation the request carries (a
/// batch weighs the sum of its operations').
async fn admit_rate(
    gateway: &Gateway,
    keys: &RateKeys,
    incoming: &Incoming,
) -> Result<(), RequestError> {
    let limiter = gateway.rate_limiter();
    let weight_of = |request: &Result<GraphQLRequest, RequestError>| match request {
        Ok(request) => limiter.weight(request.operation_name.as_deref()),
        Err(_) => 1,
    };
    let weight = match incoming {
        Incoming::Single(request) => weight_of(request),
        Incoming::Batch(requests) => requests.iter().map(weight_of).sum(),
    };
    limiter.admit(keys, weight).await
}

/// Stage 2 for POST: the body as one request or a batch.
fn read_post(headers: &HeaderMap, body: &[u8], max_batch: usize) -> Result<Incoming, RequestError> {
    let Some(content_type) = content_type(headers) else {
        return Err(RequestError::UnsupportedMediaType(
            "The request has no Content-Type; send application/json.".into(),
        ));
    };
    if content_type
        .charset
        .as_deref()
        .is_some_and(|c| c != "utf-8" && c != "utf8")
    {
        return Err(RequestError::UnsupportedMediaType(
            "Only UTF-8 request bodies are accepted.".into(),
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| RequestError::BadRequest("The request body is not valid UTF-8.".into()))?;
    match content_type.essence.as_str() {
        "application/json" => {
            if text.trim().is_empty() {
                return Err(RequestError::BadRequest(
                    "The request body is empty; send a JSON object with a `query`.".into(),
                ));
            }
            let value: Value = serde_json::from_str(text).map_err(|_| {
                RequestError::BadRequest("The request body is not valid JSON.".into())
            })?;
            let incoming = Incoming::from_json(value);
            if let Incoming::Batch(requests) = &incoming {
                if max_batch == 0 {
                    return Err(RequestError::BadRequest(
                        "Batched requests are disabled on this endpoint.".into(),
                    ));
                }
                if requests.is_empty() {
                    return Err(RequestError::BadRequest("The batch is empty.".into()));
                }
                if requests.len() > max_batch {
                    return Err(RequestError::BadRequest(format!(
                        "The batch has {} operations; at most {max_batch} are allowed.",
                        requests.len()
                    )));
                }
            }
            Ok(incoming)
        }
        "application/graphql" => Ok(Incoming::Single(Ok(GraphQLRequest::new(text)))),
        _ => Err(RequestError::UnsupportedMediaType(format!(
            "Unsupported Content-Type `{}`; send application/json.",
            content_type.essence
        ))),
    }
}

async fn get_graphql(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let access = access(request.extensions());
    ACCESS
        .scope(access, get_scoped(gateway, headers, params, request))
        .await
}

#[tracing::instrument(name = "http_get", skip_all)]
async fn get_scoped(
    gateway: Gateway,
    headers: HeaderMap,
    params: HashMap<String, String>,
    request: Request,
) -> Response {
    let _in_flight = crate::measure::InFlight::requests();
    let wants_websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let keys = rate_keys(request.extensions());
    if wants_websocket {
        use axum::extract::FromRequestParts as _;
        if let Err(error) = browsers::check_websocket_origin(&gateway.config().cors, &headers) {
            return error_response(ResponseFormat::Json, error);
        }
        // Opening a connection counts as a request; so does each operation sent on it.
        if let Err(error) = gateway.rate_limiter().admit(&keys, 1).await {
            return error_response(ResponseFormat::Json, error);
        }
        let (mut parts, _) = request.into_parts();
        return match axum::extract::WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => ws::upgrade(gateway, upgrade, headers, keys, access(&parts.extensions)),
            Err(rejection) => rejection.into_response(),
        };
    }
    let accepted = accepts(&headers);
    if accepted.html && gateway.config().graphiql && !params.contains_key("query") {
        return (browsers::graphiql_headers(), Html(graphiql::PAGE)).into_response();
    }
    let Some(format) =
        response_format(&accepted).or(accepted.event_stream.then_some(ResponseFormat::Json))
    else {
        return error_response(ResponseFormat::Json, RequestError::NotAcceptable);
    };
    let request = match request_from_params(params) {
        Ok(request) => request,
        Err(error) => return error_response(format, error),
    };
    let limiter = gateway.rate_limiter();
    let weight = limiter.weight(request.operation_name.as_deref());
    if let Err(error) = limiter.admit(&keys, weight).await {
        return error_response(format, error);
    }
    match gateway.persisted().resolve(request).await {
        Ok(request) => execute(&gateway, request, &headers, Method::Get, &accepted).await,
        Err(error) => error_response(format, error),
    }
}

/// The JSON format for single responses and errors. A client that accepts only
/// `multipart/mixed` still gets JSON errors (a request error is not incremental).
fn response_format(accepted: &Accepts) -> Option<ResponseFormat> {
    match accepted.json {
        Some(format) => Some(format),
        None if accepted.multipart => Some(ResponseFormat::Json),
        None => None,
    }
}

/// Stage 3 for one operation: incrementally (`multipart/mixed`) when the client accepts it
/// and the operation defers something, as one JSON body otherwise.
async fn execute(
    gateway: &Gateway,
    request: GraphQLRequest,
    headers: &HeaderMap,
    method: Method,
    accepted: &Accepts,
) -> Response {
    let format = response_format(accepted).unwrap_or(ResponseFormat::Json);
    if accepted.event_stream {
        return streamed(gateway, request, headers, method, Streamed::Sse).await;
    }
    if accepted.multipart && is_subscription(gateway, &request, method) {
        return streamed(gateway, request, headers, method, Streamed::Multipart).await;
    }
    if !accepted.multipart {
        let started = std::time::Instant::now();
        let result = gateway.execute_with(request, headers, method).await;
        let timing = match &result {
            Ok(json) if gateway.config().server_timing => {
                Some(server_timing(started.elapsed(), json.subgraph_wait))
            }
            _ => None,
        };
        let mut response = single_response(format, result);
        if let Some(timing) = timing {
            response.headers_mut().insert("server-timing", timing);
        }
        return response;
    }
    match gateway.execute_incremental(request, headers, method).await {
        Ok(Delivery::Single(body)) if accepted.json.is_some() => {
            json_response(format, StatusCode::OK, &body)
        }
        Ok(Delivery::Single(mut body)) => {
            // Only multipart is acceptable: one part, and nothing follows.
            if let Value::Object(map) = &mut body {
                map.insert("hasNext".into(), Value::Bool(false));
            }
            let (sender, receiver) = tokio::sync::mpsc::channel(1);
            let _ = sender.try_send(body);
            multipart::response(receiver)
        }
        Ok(Delivery::Parts(parts)) => multipart::response(parts),
        Err(error) => error_response(format, error),
    }
}

#[derive(Clone, Copy)]
enum Streamed {
    Sse,
    Multipart,
}

/// Whether `request` is a subscription (answered with multipart subscription parts rather
/// than `@defer`'s incremental parts). Admission is cached, so asking costs little.
fn is_subscription(gateway: &Gateway, request: &GraphQLRequest, method: Method) -> bool {
    gateway.admit(request, method).is_ok_and(|admitted| {
        admitted.operation.kind == crate::operation::OperationKind::Subscription
    })
}

/// Stage 3 and 4 for a streamed operation. Errors before the stream starts are ordinary
/// JSON error responses with their status.
async fn streamed(
    gateway: &Gateway,
    request: GraphQLRequest,
    headers: &HeaderMap,
    method: Method,
    how: Streamed,
) -> Response {
    let permit = match gateway.subscriptions().limiter().connect() {
        Ok(permit) => permit,
        Err(error) => return error_response(ResponseFormat::Json, error),
    };
    let responses = match gateway.stream(request, headers, method, None).await {
        Ok(responses) => responses,
        Err(error) => return error_response(ResponseFormat::Json, error),
    };
    let heartbeat = gateway.config().subscriptions.heartbeat;
    match how {
        Streamed::Sse => streams::sse(responses, heartbeat, permit),
        Streamed::Multipart => streams::multipart(responses, heartbeat, permit),
    }
}

/// Stage 2 for GET: the query string's `query`, `operationName`, `variables` and
/// `extensions` (the last two URL-encoded JSON).
fn request_from_params(
    mut params: HashMap<String, String>,
) -> Result<GraphQLRequest, RequestError> {
    let json_param = |value: Option<String>,
                      name: &str|
     -> Result<Option<serde_json::Map<String, Value>>, RequestError> {
        match value.as_deref().map(str::trim) {
            None | Some("") | Some("null") => Ok(None),
            Some(raw) => serde_json::from_str(raw).map(Some).map_err(|_| {
                RequestError::BadRequest(format!("The `{name}` parameter is not a JSON map."))
            }),
        }
    };
    let extensions = json_param(params.remove("extensions"), "extensions")?;
    // A persisted query names its text by hash (see `persisted`).
    let persisted = extensions
        .as_ref()
        .is_some_and(|e| e.contains_key("persistedQuery"));
    let query = match params.remove("query") {
        Some(query) => query,
        None if persisted => String::new(),
        None => {
            return Err(RequestError::BadRequest(
                "Missing `query` parameter.".into(),
            ))
        }
    };
    Ok(GraphQLRequest {
        query,
        operation_name: params.remove("operationName").filter(|n| !n.is_empty()),
        variables: json_param(params.remove("variables"), "variables")?,
        extensions,
    })
}

/// `Server-Timing` for an executed operation: the gateway's own time (parsing, planning,
/// building requests, merging, projecting: everything but waiting for subgraphs on the
/// critical path) and the subgraph wait, in milliseconds.
fn server_timing(total: std::time::Duration, subgraphs: std::time::Duration) -> HeaderValue {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let own = total.saturating_sub(subgraphs);
    HeaderValue::from_str(&format!(
        "gateway;dur={:.3}, subgraphs;dur={:.3}",
        ms(own),
        ms(subgraphs)
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("gateway"))
}

/// Stage 4 for one operation.
fn single_response(format: ResponseFormat, result: Result<ResponseJson, RequestError>) -> Response {
    match result {
        Ok(json) => bytes_response(format, StatusCode::OK, json.body),
        Err(error) => error_response(format, error),
    }
}

fn error_response(format: ResponseFormat, error: RequestError) -> Response {
    let status = error.status(format == ResponseFormat::Json);
    let mut response = json_response(format, status, &error.to_response());
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    if let RequestError::Refused(StatusCode::TOO_MANY_REQUESTS, error) = &error {
        if let Some(seconds) = error.extensions.get("retryAfter").and_then(Value::as_u64) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
    }
    response
}

fn json_response(format: ResponseFormat, status: StatusCode, body: &Value) -> Response {
    let body = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    bytes_response(format, status, body)
}

fn bytes_response(format: ResponseFormat, status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(match format {
            ResponseFormat::Json => "application/json; charset=utf-8",
            ResponseFormat::GraphQLResponseJson => {
                "application/graphql-response+json; charset=utf-8"
            }
        }),
    );
    response
}
