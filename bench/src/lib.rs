//! The standard federation benchmark (SPEC §9), ours to run: the four subgraphs `accounts`,
//! `inventory`, `products` and `reviews` with deterministic data, the standard supergraph and
//! query, and the reference response computed from the data.
//!
//! Why a crate of its own: the same subgraphs serve the gateway's tests and `scripts/bench`,
//! and nothing here belongs in a production binary.

pub mod data;
mod expected;
pub mod subgraphs;

use std::net::SocketAddr;

use async_graphql::Executor;
use async_graphql_axum::{GraphQL, GraphQLSubscription};
use axum::response::IntoResponse as _;
use axum::routing::{get_service, MethodRouter};
use axum::Router;
use futures::StreamExt as _;
use tower::ServiceExt as _;

pub use expected::expected_response;

/// The standard benchmark supergraph; its subgraph URLs point at `http://0.0.0.0:4200/<name>`.
pub const SUPERGRAPH: &str = include_str!("../supergraph.graphql");
/// The supergraph of these subgraphs as they are (with the reviews subgraph's
/// `Subscription`), composed by Flowfleet's gateway; a gateway test keeps it in step.
pub const SUBSCRIPTION_SUPERGRAPH: &str = include_str!("../supergraph-subscriptions.graphql");
/// The standard benchmark query.
pub const QUERY: &str = include_str!("../query.graphql");
pub const SUBGRAPHS: [&str; 4] = ["accounts", "inventory", "products", "reviews"];

fn route<E: Executor>(router: Router, name: &str, schema: E) -> Router {
    router.route(&format!("/{name}"), endpoint(schema))
}

/// A subgraph's endpoint: `POST` for GraphQL over HTTP, or over SSE (distinct connections
/// mode) when the request accepts `text/event-stream`; `GET` upgrades to a WebSocket
/// (`graphql-transport-ws`, and the legacy `graphql-ws`).
pub fn endpoint<E: Executor>(schema: E) -> MethodRouter {
    let sse_schema = schema.clone();
    get_service(GraphQLSubscription::new(schema.clone())).post(
        move |request: axum::extract::Request| {
            let schema = sse_schema.clone();
            async move {
                let wants_stream = request
                    .headers()
                    .get(axum::http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("text/event-stream"));
                if !wants_stream {
                    return match GraphQL::new(schema).oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                }
                let body = axum::body::to_bytes(request.into_body(), 1 << 20).await;
                let Ok(graphql) = body
                    .ok()
                    .and_then(|b| serde_json::from_slice::<async_graphql::Request>(&b).ok())
                    .ok_or(())
                else {
                    return (axum::http::StatusCode::BAD_REQUEST, "not a GraphQL request")
                        .into_response();
                };
                let keep_alive = std::time::Duration::from_secs(15);
                let ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
                let responses = schema.execute_stream(graphql, None);
                // `next` per response, `complete` (with the empty `data:` line SSE parsers
                // need), a comment as keep-alive.
                let events = futures::stream::unfold(
                    (Some(responses), ticks),
                    |(responses, mut ticks)| async move {
                        let mut responses = responses?;
                        let chunk = tokio::select! {
                            response = responses.next() => match response {
                                Some(response) => format!(
                                    "event: next\ndata: {}\n\n",
                                    serde_json::to_string(&response).unwrap_or_default()
                                ),
                                None => {
                                    let end = "event: complete\ndata:\n\n".to_string();
                                    return Some((end, (None, ticks)));
                                }
                            },
                            _ = ticks.tick() => ":\n\n".to_string(),
                        };
                        Some((chunk, (Some(responses), ticks)))
                    },
                )
                .map(Ok::<_, std::convert::Infallible>);
                (
                    [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                    axum::body::Body::from_stream(events),
                )
                    .into_response()
            }
        },
    )
}

/// All four subgraphs on one server, at `/accounts`, `/inventory`, `/products`, `/reviews`
/// (the layout of the public benchmark).
pub fn router() -> Router {
    let router = route(Router::new(), "accounts", subgraphs::accounts());
    let router = route(router, "inventory", subgraphs::inventory());
    let router = route(router, "products", subgraphs::products());
    route(router, "reviews", subgraphs::reviews())
}

/// Serves [`router`] on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router()).await
}

/// [`SUBSCRIPTION_SUPERGRAPH`] with its subgraphs at `addr`.
pub fn subscription_supergraph_at(addr: SocketAddr) -> String {
    SUBSCRIPTION_SUPERGRAPH.replace("http://0.0.0.0:4200/", &format!("http://{addr}/"))
}

/// The standard supergraph with its subgraphs at `addr` instead of `0.0.0.0:4200`.
pub fn supergraph_at(addr: SocketAddr) -> String {
    SUPERGRAPH.replace("http://0.0.0.0:4200/", &format!("http://{addr}/"))
}
