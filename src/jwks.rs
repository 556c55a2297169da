//! The gateway process's `GET /.well-known/jwks.json`: the auth service's public signing
//! keys at the fleet's one public address, so clients and third parties can verify access
//! tokens without reaching an internal service.
//!
//! Why a cache: every verifier fetches this document, and keys change rarely. A fetched
//! document is served for [`FRESH_FOR`]; a client that meets an unknown `kid` right after
//! a rotation refetches after that. When the auth service cannot be reached, the last
//! document is served rather than nothing (keys stay valid well beyond a minute); with
//! none at all the answer is `503`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use flowfleet_security::identity::JwksSource;
use tokio::sync::RwLock;

const FRESH_FOR: Duration = Duration::from_secs(60);

struct Cached {
    document: serde_json::Value,
    fetched: Instant,
}

struct JwksEndpoint {
    source: Arc<dyn JwksSource>,
    cached: RwLock<Option<Cached>>,
}

/// The route, serving the keys of `source`.
pub fn route(source: Arc<dyn JwksSource>) -> Router {
    let endpoint = Arc::new(JwksEndpoint {
        source,
        cached: RwLock::new(None),
    });
    Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let endpoint = endpoint.clone();
            async move { endpoint.respond().await }
        }),
    )
}

impl JwksEndpoint {
    #[tracing::instrument(name = "jwks", skip_all)]
    async fn respond(&self) -> Response {
        if let Some(cached) = &*self.cached.read().await {
            if cached.fetched.elapsed() < FRESH_FOR {
                return document(&cached.document);
            }
        }
        let fetched = self
            .source
            .jwks()
            .await
            .and_then(|set| Ok(serde_json::to_value(set)?));
        let mut cached = self.cached.write().await;
        match fetched {
            Ok(value) => {
                let response = document(&value);
                *cached = Some(Cached {
                    document: value,
                    fetched: Instant::now(),
                });
                response
            }
            Err(error) => {
                tracing::warn!(%error, "fetching the JWKS from the auth service failed");
                match &*cached {
                    Some(stale) => document(&stale.document),
                    None => (
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        axum::Json(serde_json::json!({
                            "error": "the signing keys are unavailable; retry shortly"
                        })),
                    )
                        .into_response(),
                }
            }
        }
    }
}

fn document(value: &serde_json::Value) -> Response {
    let mut response = axum::Json(value).into_response();
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=60"),
    );
    response
}
