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
use async_graphql_axum::GraphQL;
use axum::routing::post_service;
use axum::Router;

pub use expected::expected_response;

/// The standard benchmark supergraph; its subgraph URLs point at `http://0.0.0.0:4200/<name>`.
pub const SUPERGRAPH: &str = include_str!("../supergraph.graphql");
/// The standard benchmark query.
pub const QUERY: &str = include_str!("../query.graphql");
pub const SUBGRAPHS: [&str; 4] = ["accounts", "inventory", "products", "reviews"];

fn route<E: Executor>(router: Router, name: &str, schema: E) -> Router {
    router.route(&format!("/{name}"), post_service(GraphQL::new(schema)))
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

/// The standard supergraph with its subgraphs at `addr` instead of `0.0.0.0:4200`.
pub fn supergraph_at(addr: SocketAddr) -> String {
    SUPERGRAPH.replace("http://0.0.0.0:4200/", &format!("http://{addr}/"))
}
