//! Streaming responses over plain HTTP: GraphQL over SSE (distinct connections mode) and
//! multipart subscriptions (`multipart/mixed;subscriptionSpec="1.0"`, Apollo's protocol).
//!
//! Both carry one [`Responses`] stream and hold a connection permit while open; both send
//! keep-alives (SSE comments; multipart `{}` parts) so proxies and clients can tell a quiet
//! subscription from a dead one.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt as _};

use crate::subscription::{ConnectionPermit, Responses};

/// `text/event-stream`: `event: next` per response, then `event: complete` with an empty
/// `data:` line (an event without one is never dispatched by SSE parsers), and a comment
/// line as keep-alive. Written by hand: each response is one line of compact JSON.
pub fn sse(responses: Responses, heartbeat: Duration, permit: ConnectionPermit) -> Response {
    let events = with_heartbeat(responses, heartbeat)
        .map(|item| match item {
            Some(body) => {
                let mut event = Vec::with_capacity(body.len() + 20);
                event.extend_from_slice(b"event: next\ndata: ");
                event.extend_from_slice(&body);
                event.extend_from_slice(b"\n\n");
                Bytes::from(event)
            }
            None => Bytes::from_static(b":\n\n"),
        })
        .chain(stream::once(async {
            Bytes::from_static(b"event: complete\ndata:\n\n")
        }))
        .map(move |bytes| {
            // The permit lives as long as the stream.
            let _ = &permit;
            Ok::<_, Infallible>(bytes)
        });
    let mut response = (StatusCode::OK, Body::from_stream(events)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    no_buffering(&mut response);
    response
}

pub const MULTIPART_SUBSCRIPTION: &str =
    "multipart/mixed; boundary=\"graphql\"; subscriptionSpec=\"1.0\"";

/// Apollo's multipart subscriptions: each response as `{"payload": …}` in its own part,
/// `{}` parts as heartbeats, then the closing boundary.
pub fn multipart(responses: Responses, heartbeat: Duration, permit: ConnectionPermit) -> Response {
    let parts = with_heartbeat(responses, heartbeat).map(|item| match item {
        Some(body) => {
            let mut payload = b"{\"payload\":".to_vec();
            payload.extend_from_slice(&body);
            payload.push(b'}');
            payload
        }
        None => b"{}".to_vec(),
    });
    let body = super::multipart::framed(parts).map(move |bytes| {
        let _ = &permit;
        Ok::<_, Infallible>(bytes)
    });
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(MULTIPART_SUBSCRIPTION),
    );
    no_buffering(&mut response);
    response
}

fn no_buffering(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Reverse proxies such as nginx otherwise hold events back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// `responses` with a `None` whenever `every` passed without one; ends with `responses`.
fn with_heartbeat(responses: Responses, every: Duration) -> impl Stream<Item = Option<Vec<u8>>> {
    let beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    stream::unfold((responses, beat), |(mut responses, mut beat)| async move {
        tokio::select! {
            body = responses.next() => {
                beat.reset();
                body.map(|body| (Some(body), (responses, beat)))
            }
            _ = beat.tick() => Some((None, (responses, beat))),
        }
    })
}
