//! `multipart/mixed` responses for incremental delivery (`@defer`), in the format clients
//! such as Apollo Client and urql read (`deferSpec=20220824`): one JSON part per payload,
//! parts separated by the `graphql` boundary, closed by the final boundary.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;

pub const CONTENT_TYPE: &str = "multipart/mixed; boundary=\"graphql\"; deferSpec=20220824";

/// How a `multipart/mixed` body with the `graphql` boundary is written, so that every part
/// is complete the moment it is sent: the first part opens with a delimiter, each part is
/// followed at once by the next delimiter, and the end turns that last delimiter into the
/// closing one. A client reading parts as they arrive (a part ends at a delimiter) reads
/// each one at once, instead of when the next one comes.
const DELIMITER: &[u8] = b"\r\n--graphql";

fn part(json: &[u8], first: bool) -> Bytes {
    let mut bytes = Vec::with_capacity(json.len() + 80);
    if first {
        bytes.extend_from_slice(DELIMITER);
    }
    bytes.extend_from_slice(b"\r\ncontent-type: application/json; charset=utf-8\r\n\r\n");
    bytes.extend_from_slice(json);
    bytes.extend_from_slice(DELIMITER);
    Bytes::from(bytes)
}

/// The body for a stream of JSON parts, framed as described above.
pub fn framed<S>(parts: S) -> impl futures::Stream<Item = Bytes> + Send + 'static
where
    S: futures::Stream<Item = Vec<u8>> + Send + 'static,
{
    let opened = Arc::new(AtomicBool::new(false));
    let ended = opened.clone();
    parts
        .map(move |json| part(&json, !opened.swap(true, Ordering::Relaxed)))
        .chain(stream::once(async move {
            if ended.load(Ordering::Relaxed) {
                Bytes::from_static(b"--\r\n")
            } else {
                Bytes::from_static(b"\r\n--graphql--\r\n")
            }
        }))
}

/// Streams each payload as it arrives, then the closing boundary.
pub fn response(parts: mpsc::Receiver<Value>) -> Response {
    let payloads = stream::unfold(parts, |mut parts| async move {
        let payload = parts.recv().await?;
        let json = serde_json::to_vec(&payload).unwrap_or_else(|_| b"{}".to_vec());
        Some((json, parts))
    });
    let body = framed(payloads).map(Ok::<_, Infallible>);
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}
