//! GraphQL over WebSocket, `graphql-transport-ws` protocol (the `graphql-ws` library's).
//!
//! One connection carries many operations: subscriptions, and queries and mutations too.
//! The connection loop owns the socket; each operation runs as its own task that turns
//! [`Gateway::stream`] into `next` messages and ends with `complete`, so a slow or long
//! operation never holds up the others, and `complete` from the client is aborting that
//! task (which leaves its upstream at once).
//!
//! Protocol rules kept, with the close codes the protocol names: `connection_init` first
//! and once (4429 for a second one, 4408 when it does not come within the timeout), a
//! credential that does not verify at init is refused (4403), `subscribe` before
//! `connection_ack` closes with 4401, a duplicate operation id with 4409, a malformed
//! message with 4400, and a socket that did not ask for `graphql-transport-ws` (the legacy
//! `graphql-ws` subprotocol) with 4406.

use std::collections::HashMap;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::WebSocketUpgrade;
use axum::http::HeaderMap;
use axum::response::Response;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::authorization::{Access, ACCESS};
use crate::error::GraphQLError;
use crate::gateway::{Gateway, Method};
use crate::rate_limit::RateKeys;
use crate::request::GraphQLRequest;
use crate::subscription::ConnectionPermit;

pub const PROTOCOL: &str = "graphql-transport-ws";

/// What operation tasks hand the connection loop to send.
enum Out {
    Next(String, Vec<u8>),
    Error(String, Vec<GraphQLError>),
    Complete(String),
}

/// Answers a WebSocket upgrade on `/graphql`.
pub fn upgrade(
    gateway: Gateway,
    upgrade: WebSocketUpgrade,
    headers: HeaderMap,
    keys: RateKeys,
    access: Access,
) -> Response {
    let permit = match gateway.subscriptions().limiter().connect() {
        Ok(permit) => permit,
        Err(error) => return super::error_response(super::ResponseFormat::Json, error),
    };
    let asked_for_protocol = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    // No subprotocol at all is accepted as ours; asking only for another one is not.
    let wrong_protocol = !asked_for_protocol.is_empty() && !asked_for_protocol.contains(&PROTOCOL);
    let max_message = gateway.config().max_request_bytes;
    // Buffers sized for GraphQL messages, not tungstenite's 128 KiB defaults: with
    // thousands of sockets those are most of the gateway's memory; a larger message
    // still goes through (the buffers grow), it just does not reserve the room up front.
    upgrade
        .protocols([PROTOCOL])
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .max_message_size(max_message)
        .on_upgrade(move |socket| async move {
            if wrong_protocol {
                close(
                    socket,
                    4406,
                    "Subprotocol not acceptable: use graphql-transport-ws",
                )
                .await;
                return;
            }
            Connection::new(gateway, headers, keys, access, permit)
                .run(socket)
                .await;
        })
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

struct Connection {
    gateway: Gateway,
    /// The upgrade request's headers, with the credential of `connection_init` once it came.
    headers: HeaderMap,
    /// Rate-limit keys of the upgrade request: each operation is checked against them.
    keys: RateKeys,
    /// What the edge verified of the upgrade request's credential (authorization
    /// directives apply it to every operation of the connection).
    access: Access,
    acknowledged: bool,
    operations: HashMap<String, tokio::task::AbortHandle>,
    _permit: ConnectionPermit,
}

/// Why the connection loop stops: a close frame to send, or nothing (the client left).
type Closing = Option<(u16, String)>;

impl Connection {
    fn new(
        gateway: Gateway,
        headers: HeaderMap,
        keys: RateKeys,
        access: Access,
        permit: ConnectionPermit,
    ) -> Self {
        Self {
            gateway,
            headers,
            keys,
            access,
            acknowledged: false,
            operations: HashMap::new(),
            _permit: permit,
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let (mut sink, mut incoming) = socket.split();
        let (out_tx, mut out_rx) = mpsc::channel::<Out>(256);
        let config = self.gateway.config().subscriptions.clone();
        let init_deadline = tokio::time::sleep(config.init_timeout);
        tokio::pin!(init_deadline);
        let mut heartbeat = tokio::time::interval(config.heartbeat);
        heartbeat.tick().await;
        let closing_token = self.gateway.subscriptions().closing().clone();
        let mut shutting_down = false;
        let closing: Closing = loop {
            tokio::select! {
                message = incoming.next() => {
                    let Some(Ok(message)) = message else { break None };
                    let text = match message {
                        Message::Text(text) => text.to_string(),
                        Message::Binary(_) => break Some((4400, "Binary messages are not part of graphql-transport-ws".into())),
                        Message::Close(_) => break None,
                        Message::Ping(_) | Message::Pong(_) => continue,
                    };
                    match self.receive(&text, &out_tx, &mut sink).await {
                        Ok(()) => {}
                        Err(closing) => break closing,
                    }
                }
                out = out_rx.recv() => {
                    let Some(out) = out else { break None };
                    let text = match out {
                        Out::Next(id, body) => frame(&id, "next", &body),
                        Out::Error(id, errors) => {
                            self.operations.remove(&id);
                            frame(&id, "error", &serde_json::to_vec(&errors).unwrap_or_default())
                        }
                        Out::Complete(id) => {
                            self.operations.remove(&id);
                            frame(&id, "complete", b"")
                        }
                    };
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break None;
                    }
                    if shutting_down && self.operations.is_empty() {
                        break Some((1001, "The gateway is shutting down".into()));
                    }
                }
                _ = &mut init_deadline, if !self.acknowledged => {
                    break Some((4408, "Connection initialisation timeout".into()));
                }
                _ = heartbeat.tick() => {
                    if sink.send(Message::Text(r#"{"type":"ping"}"#.into())).await.is_err() {
                        break None;
                    }
                }
                _ = closing_token.cancelled(), if !shutting_down => {
                    // Every operation ends (each sends `complete`); then the socket closes.
                    shutting_down = true;
                    if self.operations.is_empty() {
                        break Some((1001, "The gateway is shutting down".into()));
                    }
                }
            }
        };
        for (_, task) in self.operations.drain() {
            task.abort();
        }
        if let Some((code, reason)) = closing {
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                })))
                .await;
        }
    }

    /// Handles one client message; `Err` closes the connection.
    async fn receive<S>(
        &mut self,
        text: &str,
        out: &mpsc::Sender<Out>,
        sink: &mut S,
    ) -> Result<(), Closing>
    where
        S: futures::Sink<Message> + Unpin,
    {
        let invalid = |why: &str| Err(Some((4400, why.to_string())));
        let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(text) else {
            return invalid("Invalid message: not a JSON object");
        };
        let kind = match message.remove("type") {
            Some(Value::String(kind)) => kind,
            _ => return invalid("Invalid message: no `type`"),
        };
        match kind.as_str() {
            "connection_init" => {
                if self.acknowledged {
                    return Err(Some((4429, "Too many initialisation requests".into())));
                }
                if let Some(Value::Object(payload)) = message.remove("payload") {
                    apply_init_payload(&mut self.headers, &payload);
                }
                if let Err(error) = self.gateway.check_credentials(&self.headers).await {
                    return Err(Some((4403, format!("Forbidden: {}", error.message))));
                }
                // The credential may have come with the payload: what it holds is what the
                // connection's operations may see.
                if let Some(check) = &self.gateway.config().access_check {
                    self.access = check(self.headers.clone()).await;
                }
                self.acknowledged = true;
                let ack = Message::Text(r#"{"type":"connection_ack"}"#.into());
                if sink.send(ack).await.is_err() {
                    return Err(None);
                }
                Ok(())
            }
            "ping" => {
                let pong = Message::Text(r#"{"type":"pong"}"#.into());
                if sink.send(pong).await.is_err() {
                    return Err(None);
                }
                Ok(())
            }
            "pong" => Ok(()),
            "subscribe" => {
                if !self.acknowledged {
                    return Err(Some((4401, "Unauthorized".into())));
                }
                let Some(Value::String(id)) = message.remove("id") else {
                    return invalid("Invalid message: `subscribe` needs a string `id`");
                };
                if self.operations.contains_key(&id) {
                    return Err(Some((4409, format!("Subscriber for {id} already exists"))));
                }
                let request = match message.remove("payload").map(GraphQLRequest::from_json) {
                    Some(Ok(request)) => request,
                    Some(Err(error)) => {
                        let _ = out.send(Out::Error(id, error.errors())).await;
                        return Ok(());
                    }
                    None => return invalid("Invalid message: `subscribe` needs a `payload`"),
                };
                let max = self
                    .gateway
                    .subscriptions()
                    .limiter()
                    .limits()
                    .max_per_connection;
                if self.operations.len() >= max {
                    let error = crate::subscription::limit_error(format!(
                        "This connection already runs {} operations, its limit; complete some \
                         or open another connection.",
                        self.operations.len()
                    ));
                    let _ = out.send(Out::Error(id, vec![error])).await;
                    return Ok(());
                }
                let task = tokio::spawn(ACCESS.scope(
                    self.access.clone(),
                    operation(
                        self.gateway.clone(),
                        id.clone(),
                        request,
                        self.headers.clone(),
                        self.keys.clone(),
                        out.clone(),
                    ),
                ));
                self.operations.insert(id, task.abort_handle());
                Ok(())
            }
            "complete" => {
                if let Some(Value::String(id)) = message.remove("id") {
                    // Aborting drops the operation's stream, which leaves its upstream.
                    if let Some(task) = self.operations.remove(&id) {
                        task.abort();
                    }
                }
                Ok(())
            }
            other => Err(Some((4400, format!("Invalid message type `{other}`")))),
        }
    }
}

/// Runs one operation of the connection until it ends.
async fn operation(
    gateway: Gateway,
    id: String,
    request: GraphQLRequest,
    headers: HeaderMap,
    keys: RateKeys,
    out: mpsc::Sender<Out>,
) {
    let limiter = gateway.rate_limiter();
    let weight = limiter.weight(request.operation_name.as_deref());
    if let Err(error) = limiter.admit(&keys, weight).await {
        let _ = out.send(Out::Error(id, error.errors())).await;
        return;
    }
    let request = match gateway.persisted().resolve(request).await {
        Ok(request) => request,
        Err(error) => {
            let _ = out.send(Out::Error(id, error.errors())).await;
            return;
        }
    };
    let mut responses = match gateway.stream(request, &headers, Method::Post, None).await {
        Ok(responses) => responses,
        Err(error) => {
            let _ = out.send(Out::Error(id, error.errors())).await;
            return;
        }
    };
    while let Some(body) = responses.next().await {
        if out.send(Out::Next(id.clone(), body)).await.is_err() {
            return;
        }
    }
    let _ = out.send(Out::Complete(id)).await;
}

/// `{"id":..,"type":..,"payload":..}` with an already encoded payload.
fn frame(id: &str, kind: &str, payload: &[u8]) -> String {
    let mut text = String::with_capacity(payload.len() + id.len() + 40);
    text.push_str("{\"id\":");
    text.push_str(&serde_json::to_string(id).unwrap_or_else(|_| "\"\"".into()));
    text.push_str(",\"type\":\"");
    text.push_str(kind);
    text.push('"');
    if !payload.is_empty() {
        text.push_str(",\"payload\":");
        text.push_str(&String::from_utf8_lossy(payload));
    }
    text.push('}');
    text
}

/// The credential of a `connection_init` payload, in the forms clients send it:
/// `{"Authorization": "Bearer …"}` (any case), `{"headers": {"Authorization": …}}`, or
/// `{"token": "…"}`.
fn apply_init_payload(headers: &mut HeaderMap, payload: &Map<String, Value>) {
    let from_map = |map: &Map<String, Value>| -> Option<String> {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .and_then(|(_, v)| v.as_str().map(str::to_string))
    };
    let authorization = from_map(payload)
        .or_else(|| match payload.get("headers") {
            Some(Value::Object(inner)) => from_map(inner),
            _ => None,
        })
        .or_else(|| {
            payload
                .get("token")
                .and_then(Value::as_str)
                .map(|token| format!("Bearer {token}"))
        });
    if let Some(value) = authorization.and_then(|v| http::HeaderValue::from_str(&v).ok()) {
        headers.insert(http::header::AUTHORIZATION, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_payload_credentials_in_each_form() {
        for payload in [
            serde_json::json!({"Authorization": "Bearer t"}),
            serde_json::json!({"authorization": "Bearer t"}),
            serde_json::json!({"headers": {"authorization": "Bearer t"}}),
            serde_json::json!({"token": "t"}),
        ] {
            let mut headers = HeaderMap::new();
            apply_init_payload(&mut headers, payload.as_object().expect("object"));
            assert_eq!(
                headers
                    .get(http::header::AUTHORIZATION)
                    .map(|v| v.to_str().unwrap()),
                Some("Bearer t"),
                "{payload}"
            );
        }
        let mut headers = HeaderMap::new();
        apply_init_payload(&mut headers, &Map::new());
        assert!(headers.is_empty());
    }

    #[test]
    fn frames_embed_the_encoded_payload() {
        assert_eq!(
            frame("a\"1", "next", br#"{"data":{"x":1}}"#),
            r#"{"id":"a\"1","type":"next","payload":{"data":{"x":1}}}"#
        );
        assert_eq!(
            frame("1", "complete", b""),
            r#"{"id":"1","type":"complete"}"#
        );
    }
}
