//! Verifying credentials at the edge: the gateway checks the bearer token or API key of
//! every GraphQL request before it plans anything, so a forged, expired or revoked
//! credential costs the fleet one signature check (or one cached lookup) and never reaches
//! a subgraph. Subgraphs still verify again themselves (zero trust inside the cluster);
//! this is the first of two checks, not a replacement.
//!
//! A request without `Authorization` passes: signing up and in are anonymous, and each
//! resolver decides what an anonymous caller may do.
//!
//! The same layer first decides the request's client address ([`ClientAddresses`]): one
//! layer, so the gateway's hot path pays for one.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use flowfleet_runtime::error::ApiError;
use flowfleet_security::identity::{Caller, TokenVerifier};

use crate::client_address::ClientAddresses;

#[derive(Clone)]
struct Edge {
    verifier: Arc<TokenVerifier>,
    addresses: ClientAddresses,
}

/// Wraps `router` so that every request's client address is decided (and passed on), and
/// its `/graphql` requests' credentials are verified by `verifier`.
pub fn edge(router: Router, verifier: Arc<TokenVerifier>, addresses: ClientAddresses) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        Edge {
            verifier,
            addresses,
        },
        check,
    ))
}

async fn check(State(edge): State<Edge>, mut request: Request, next: Next) -> Response {
    edge.addresses.attribute(&mut request);
    let verifier = &edge.verifier;
    if request.uri().path() != "/graphql"
        || !request.headers().contains_key(http::header::AUTHORIZATION)
    {
        return next.run(request).await;
    }
    match verifier.caller(request.headers()).await {
        Caller::Rejected(reason) => {
            tracing::debug!(%reason, "credential refused at the edge");
            let body = ApiError::unauthenticated(reason).graphql_response();
            (
                http::StatusCode::UNAUTHORIZED,
                [(
                    http::header::WWW_AUTHENTICATE,
                    "Bearer error=\"invalid_token\"",
                )],
                axum::Json(body),
            )
                .into_response()
        }
        Caller::User(_) | Caller::Anonymous => next.run(request).await,
    }
}
