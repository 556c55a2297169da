//! `multipart/mixed` responses for incremental delivery (`@defer`), in the format clients
//! such as Apollo Client and urql read (`deferSpec=20220824`): one JSON part per payload,
//! parts separated by the `graphql` boundary, closed by the final boundary.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;

pub const CONTENT_TYPE: &str = "multipart/mixed; boundary=\"graphql\"; deferSpec=20220824";

fn part(payload: &Value) -> Bytes {
    let json = serde_json::to_string(payload).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!(
        "\r\n--graphql\r\ncontent-type: application/json; charset=utf-8\r\n\r\n{json}"
    ))
}

/// Streams each payload as it arrives, then the closing boundary.
pub fn response(parts: mpsc::Receiver<Value>) -> Response {
    let payloads = stream::unfold(parts, |mut parts| async move {
        parts.recv().await.map(|payload| (part(&payload), parts))
    });
    let body = payloads
        .chain(stream::once(async {
            Bytes::from_static(b"\r\n--graphql--\r\n")
        }))
        .map(Ok::<_, Infallible>);
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}
