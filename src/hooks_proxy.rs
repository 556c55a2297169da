//! The gateway process's `/hooks/...`: webhooks reach the fleet's one public
//! address and are passed on, method, headers and body unchanged, to the
//! execution service that serves them (in `flowfleet dev` the service's routes
//! are in the same process and this is not used).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
];

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    /// The execution service's HTTP base URL.
    base: String,
    max_body_bytes: usize,
}

/// The routes, passing requests on to `base` (the execution service).
pub fn route(base: String, max_body_bytes: usize) -> anyhow::Result<Router> {
    let upstream = Upstream {
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        base,
        max_body_bytes,
    };
    Ok(Router::new()
        .route("/hooks/{*rest}", any(pass_on))
        .with_state(upstream))
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            to.append(name.clone(), value.clone());
        }
    }
}

#[tracing::instrument(name = "webhook proxy", skip_all, fields(path = %request.uri().path()))]
async fn pass_on(State(up): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, up.max_body_bytes).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(serde_json::json!({"error": "the request body is too large"})),
        )
            .into_response();
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut headers = HeaderMap::new();
    copy_headers(&parts.headers, &mut headers);
    let sent = up
        .client
        .request(parts.method, format!("{}{path_and_query}", up.base))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "the execution service did not answer a webhook");
            return (
                StatusCode::BAD_GATEWAY,
                axum::Json(serde_json::json!({"error": "webhooks are unavailable; try again"})),
            )
                .into_response();
        }
    };
    let status = answer.status();
    let mut out_headers = HeaderMap::new();
    copy_headers(answer.headers(), &mut out_headers);
    let body = answer.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = out_headers;
    response
}
