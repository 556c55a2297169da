//! The gateway process's pass-through routes: `/hooks/...` (webhooks, to the execution
//! service) and `/files...` (uploads and downloads, to the storage service) reach the
//! fleet's one public address and are passed on, method, headers and body unchanged.
//! Bodies stream both ways, so a file of any size passes in bounded memory; webhook
//! bodies are also capped (`triggers.webhook_max_body_bytes`). In `flowfleet dev` the
//! services' routes are in the same process and this is not used.

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
];

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    /// The service's HTTP base URL.
    base: String,
    /// What the routes are for, in the answer when the service is unreachable.
    what: &'static str,
    /// Bodies larger than this are refused (`None`: the service enforces its own).
    max_body_bytes: Option<usize>,
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// `/hooks/...`, passed on to `base` (the execution service).
pub fn hooks(base: String, max_body_bytes: usize) -> anyhow::Result<Router> {
    Ok(Router::new()
        .route("/hooks/{*rest}", any(pass_on))
        .with_state(Upstream {
            client: client()?,
            base,
            what: "webhooks",
            max_body_bytes: Some(max_body_bytes),
        }))
}

/// `/files` and `/files/...`, passed on to `base` (the storage service), which checks
/// sizes and quotas itself as the body streams.
pub fn files(base: String) -> anyhow::Result<Router> {
    Ok(Router::new()
        .route("/files", any(pass_on))
        .route("/files/{*rest}", any(pass_on))
        .with_state(Upstream {
            client: client()?,
            base,
            what: "files",
            max_body_bytes: None,
        }))
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            to.append(name.clone(), value.clone());
        }
    }
}

#[tracing::instrument(name = "proxy", skip_all, fields(path = %request.uri().path()))]
async fn pass_on(State(up): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match up.max_body_bytes {
        Some(limit) => match axum::body::to_bytes(body, limit).await {
            Ok(bytes) => reqwest::Body::from(bytes),
            Err(_) => {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    axum::Json(serde_json::json!({"error": "the request body is too large"})),
                )
                    .into_response()
            }
        },
        None => reqwest::Body::wrap_stream(body.into_data_stream()),
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut headers = HeaderMap::new();
    copy_headers(&parts.headers, &mut headers);
    if up.max_body_bytes.is_some() {
        // The body was read whole; reqwest sets its length.
        headers.remove(axum::http::header::CONTENT_LENGTH);
    }
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
            tracing::warn!(error = %e, what = up.what, "the service behind did not answer");
            return (
                StatusCode::BAD_GATEWAY,
                axum::Json(serde_json::json!({
                    "error": format!("{} are unavailable; try again", up.what)
                })),
            )
                .into_response();
        }
    };
    let status = answer.status();
    let mut out_headers = HeaderMap::new();
    copy_headers(answer.headers(), &mut out_headers);
    let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
    *response.status_mut() = status;
    *response.headers_mut() = out_headers;
    response
}
