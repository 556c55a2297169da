//! Verifying credentials at the edge: the gateway checks the bearer token or API key of
//! every GraphQL request before it plans anything, so a forged, expired or revoked
//! credential costs the fleet one signature check (or one cached lookup) and never reaches
//! a subgraph. Subgraphs still verify again themselves (zero trust inside the cluster);
//! this is the first of two checks, not a replacement.
//!
//! A request without `Authorization` passes: signing up and in are anonymous, and each
//! resolver decides what an anonymous caller may do.
//!
//! The same layer first decides the request's client address ([`ClientAddresses`]) and
//! hands the gateway's rate limits the verified address and caller (`RateKeys`): one
//! layer, so the gateway's hot path pays for one.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use flowfleet_gateway::authorization::Access;
use flowfleet_gateway::rate_limit::{Principal, RateKeys};
use flowfleet_runtime::error::ApiError;
use flowfleet_security::identity::{Caller, TokenVerifier};

use crate::client_address::ClientAddresses;

/// How the gateway checks a subscription's credential when it starts, when it expires and
/// periodically (see `flowfleet_gateway::CredentialCheck`): the same verification as the
/// edge's, plus the access token's expiry. A token still inside the verifier's leeway but
/// past its `exp` counts as expired, so a subscription ends at its token's expiry.
pub fn credential_check(verifier: Arc<TokenVerifier>) -> flowfleet_gateway::CredentialCheck {
    Arc::new(move |headers: http::HeaderMap| {
        let verifier = verifier.clone();
        Box::pin(async move {
            match verifier.caller(&headers).await {
                Caller::Rejected(reason) => Err(reason),
                Caller::Anonymous => Ok(None),
                Caller::User(_) => {
                    let Some(exp) = flowfleet_security::identity::access_token_expiry(&headers)
                    else {
                        return Ok(None);
                    };
                    let at =
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(exp.max(0) as u64);
                    if at <= std::time::SystemTime::now() {
                        return Err(
                            "the access token expired; sign in again (or refresh it) and \
                                    subscribe again"
                                .into(),
                        );
                    }
                    Ok(Some(at))
                }
            }
        })
    })
}

/// What a verified caller holds for the supergraph's authorization directives: a person
/// signed in holds the `session` scope, an API key the `api_key` scope (the fleet's
/// schemas mark what only a person may do with `@requiresScopes(scopes: [["session"]])`).
pub fn access_of(caller: &Caller) -> Access {
    match caller {
        Caller::User(identity) => Access {
            authenticated: true,
            scopes: [if identity.api_key.is_some() {
                "api_key"
            } else {
                "session"
            }
            .to_string()]
            .into(),
        },
        Caller::Anonymous | Caller::Rejected(_) => Access::default(),
    }
}

/// What a WebSocket's `connection_init` credential holds (see [`access_of`]).
pub fn access_check(verifier: Arc<TokenVerifier>) -> flowfleet_gateway::authorization::AccessCheck {
    Arc::new(move |headers: http::HeaderMap| {
        let verifier = verifier.clone();
        Box::pin(async move { access_of(&verifier.caller(&headers).await) })
    })
}

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
    let address = edge.addresses.attribute(&mut request);
    let verifier = &edge.verifier;
    if request.uri().path() != "/graphql" {
        return next.run(request).await;
    }
    if !request.headers().contains_key(http::header::AUTHORIZATION) {
        request.extensions_mut().insert(RateKeys {
            address,
            principal: None,
        });
        // No `Access`: the gateway treats the request as anonymous.
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
        caller => {
            request.extensions_mut().insert(access_of(&caller));
            // Rate limits key on who was verified here, never on what the client claims.
            let principal = match caller {
                Caller::User(identity) => Some(match identity.api_key {
                    Some(key) => Principal::ApiKey(key.key_id.to_string()),
                    None => Principal::User(identity.user_id.to_string()),
                }),
                _ => None,
            };
            request
                .extensions_mut()
                .insert(RateKeys { address, principal });
            next.run(request).await
        }
    }
}
