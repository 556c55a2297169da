//! Webhooks: `/hooks/<workflow id>` and `/hooks/<workflow id>/<path>`, any
//! method. A request starts the workflow's live version when the path names one
//! of its WEBHOOK triggers and the caller proves it holds the trigger's secret:
//!
//! - `auth: TOKEN`: the secret itself in `X-Flowfleet-Token`;
//! - `auth: HMAC`: `X-Flowfleet-Signature: sha256=<hex HMAC-SHA256 of the raw body>`.
//!
//! The execution's input is the request: `{method, path, query, headers, body}`
//! (the body parsed as JSON when it is JSON, else text; credential headers are
//! left out). An `Idempotency-Key` header makes retried deliveries start one
//! execution. With `respond: IMMEDIATELY` the caller gets `202` and the
//! execution id; with `WITH_NODE` it waits, at most the trigger's `timeoutMs`,
//! for the first `webhook_response` step's reply (the execution's output if it
//! finishes without one; `500` if it fails; `504` on timeout).
//!
//! Every refusal is a JSON `{"error": …}`: `404` for a workflow or path without
//! a live webhook (the same whether the workflow exists or not), `401` for a
//! missing or wrong secret, `413` for a body over `triggers.webhook_max_body_bytes`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Json;
use flowfleet_definitions::definition::{Trigger, WebhookAuth, WebhookRespond, WEBHOOK_TIMEOUT_MS};
use flowfleet_runtime::grpc::GrpcChannel;
use flowfleet_runtime::proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use flowfleet_runtime::proto::workflow::v1::GetCredentialValueRequest;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Live;
use crate::domain::{Start, Status, TriggerKind};
use crate::launch::Launcher;

#[derive(Clone)]
pub struct Hooks {
    pub launcher: Launcher,
    pub live: Live,
    pub credentials: WorkflowServiceClient<GrpcChannel>,
}

/// The webhook routes.
pub fn router(hooks: Hooks, max_body_bytes: usize) -> axum::Router {
    axum::Router::new()
        .route("/hooks/{workflow}", any(without_path))
        .route("/hooks/{workflow}/{path}", any(with_path))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(Arc::new(hooks))
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

fn not_found() -> Response {
    refuse(StatusCode::NOT_FOUND, "no webhook at this address")
}

async fn without_path(
    State(hooks): State<Arc<Hooks>>,
    Path(workflow): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match body {
        Ok(body) => {
            hooks
                .handle(&workflow, "", method, query, headers, body)
                .await
        }
        Err(rejected) => unreadable(rejected),
    }
}

async fn with_path(
    State(hooks): State<Arc<Hooks>>,
    Path((workflow, path)): Path<(String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match body {
        Ok(body) => {
            hooks
                .handle(&workflow, &path, method, query, headers, body)
                .await
        }
        Err(rejected) => unreadable(rejected),
    }
}

/// A body over the limit (or cut short), as JSON like every other refusal.
fn unreadable(rejected: BytesRejection) -> Response {
    match rejected.status() {
        StatusCode::PAYLOAD_TOO_LARGE => refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is too large",
        ),
        status => refuse(status, "the request body could not be read"),
    }
}

/// The webhook trigger a request matched.
struct Hook {
    auth: WebhookAuth,
    secret_credential_id: String,
    respond: WebhookRespond,
    timeout_ms: u64,
}

/// Headers kept out of the execution input: credentials and the hook's own.
fn private_header(name: &str) -> bool {
    matches!(name, "authorization" | "cookie" | "proxy-authorization")
        || name.starts_with("x-flowfleet-")
}

impl Hooks {
    #[tracing::instrument(name = "webhook", skip_all, fields(%workflow, %path))]
    async fn handle(
        &self,
        workflow: &str,
        path: &str,
        method: Method,
        query: Option<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let Ok(workflow) = workflow.parse::<Uuid>() else {
            return not_found();
        };
        // Only a live webhook trigger with this path answers.
        let Some(live) = self.live.of(workflow) else {
            return not_found();
        };
        if !live
            .triggers
            .iter()
            .any(|t| t.kind == TriggerKind::Webhook.as_str() && t.webhook_path == path)
        {
            return not_found();
        }
        let published = match self.launcher.version(workflow, live.version as i64).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e.message, "webhook: could not read the live version");
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the workflow could not be read; try again",
                );
            }
        };
        let Some(hook) = published.definition.triggers.iter().find_map(|t| match t {
            Trigger::Webhook {
                path: p,
                auth,
                secret_credential_id: Some(secret),
                respond,
                timeout_ms,
            } if p == path => Some(Hook {
                auth: *auth,
                secret_credential_id: secret.clone(),
                respond: *respond,
                timeout_ms: timeout_ms.unwrap_or(WEBHOOK_TIMEOUT_MS),
            }),
            _ => None,
        }) else {
            return not_found();
        };
        match self.secret(published.workspace_id, &hook.secret_credential_id).await {
            Ok(secret) if proves(hook.auth, &secret, &headers, &body) => {}
            Ok(_) => {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    match hook.auth {
                        WebhookAuth::Token => "missing or wrong X-Flowfleet-Token",
                        WebhookAuth::Hmac => "missing or wrong X-Flowfleet-Signature (sha256=<hex HMAC-SHA256 of the body>)",
                    },
                )
            }
            Err(status) => return status,
        }
        let input = json!({
            "method": method.as_str(),
            "path": path,
            "query": query_map(query.as_deref()),
            "headers": headers
                .iter()
                .filter(|(n, _)| !private_header(n.as_str()))
                .filter_map(|(n, v)| Some((n.as_str().to_string(), Value::String(v.to_str().ok()?.to_string()))))
                .collect::<Map<String, Value>>(),
            "body": body_value(&headers, &body),
        });
        let idempotency_key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .filter(|k| !k.is_empty() && k.len() <= 200)
            .map(|k| format!("webhook:{path}:{k}"));
        let started = self
            .launcher
            .launch(
                &published,
                Start {
                    input,
                    priority: None,
                    idempotency_key,
                    trigger: TriggerKind::Webhook,
                    triggered_by: Uuid::nil(),
                    parent: None,
                    depth: 0,
                    retry_of: None,
                },
            )
            .await;
        let e = match started {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e.message, "webhook: could not start the execution");
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the execution could not be started; try again",
                );
            }
        };
        match hook.respond {
            WebhookRespond::Immediately => (
                StatusCode::ACCEPTED,
                Json(json!({"executionId": e.id, "status": e.status.as_str()})),
            )
                .into_response(),
            WebhookRespond::WithNode => self.reply(e.id, hook.timeout_ms).await,
        }
    }

    /// The trigger's secret, from its SECRET credential.
    async fn secret(&self, workspace: Uuid, credential: &str) -> Result<String, Response> {
        let value = self
            .credentials
            .clone()
            .get_credential_value(GetCredentialValueRequest {
                credential_id: credential.to_string(),
                workspace_id: workspace.to_string(),
            })
            .await
            .map_err(|s| {
                tracing::warn!(error = %s.message(), "webhook: could not read its secret");
                match s.code() {
                    // Deleted since publishing: nobody can call it.
                    tonic::Code::NotFound => refuse(
                        StatusCode::UNAUTHORIZED,
                        "this webhook's secret no longer exists",
                    ),
                    _ => refuse(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the webhook's secret could not be read; try again",
                    ),
                }
            })?
            .into_inner();
        serde_json::from_str::<Value>(&value.value_json)
            .ok()
            .and_then(|v| v.get("value").and_then(Value::as_str).map(str::to_string))
            .ok_or_else(|| {
                refuse(
                    StatusCode::UNAUTHORIZED,
                    "this webhook's secret is not a SECRET credential",
                )
            })
    }

    /// Waits for the execution's reply: polled, quickly at first.
    async fn reply(&self, execution: Uuid, timeout_ms: u64) -> Response {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        let mut pause = Duration::from_millis(5);
        loop {
            match self.launcher.store.reply_of(execution).await {
                Ok(Some((_, Some(reply), _))) => return replied(&reply),
                Ok(Some((Status::Succeeded, None, output))) => {
                    return (StatusCode::OK, Json(output.unwrap_or(Value::Null))).into_response()
                }
                Ok(Some((status, None, _))) if status.is_terminal() => {
                    return (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Json(json!({"error": format!("the execution ended {}", status.as_str()), "executionId": execution})),
                    )
                        .into_response()
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e.message, "webhook: could not read the reply"),
            }
            if tokio::time::Instant::now() + pause > deadline {
                return (
                    StatusCode::GATEWAY_TIMEOUT,
                    Json(json!({"error": format!("no reply within {timeout_ms} ms; the execution goes on"), "executionId": execution})),
                )
                    .into_response();
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
}

/// True when the request proves it holds `secret`. Digests are compared, not
/// the values, so the time taken says nothing about the secret.
fn proves(auth: WebhookAuth, secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match auth {
        WebhookAuth::Token => header("x-flowfleet-token")
            .is_some_and(|t| Sha256::digest(t.as_bytes()) == Sha256::digest(secret.as_bytes())),
        WebhookAuth::Hmac => {
            let Some(signature) = header("x-flowfleet-signature")
                .and_then(|s| s.strip_prefix("sha256="))
                .and_then(|hex_sig| hex::decode(hex_sig).ok())
            else {
                return false;
            };
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
                return false;
            };
            mac.update(body);
            mac.verify_slice(&signature).is_ok()
        }
    }
}

fn query_map(query: Option<&str>) -> Map<String, Value> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

fn body_value(headers: &HeaderMap, body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    let json_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("json"));
    match json_type
        .then(|| serde_json::from_slice(body).ok())
        .flatten()
    {
        Some(v) => v,
        None => Value::String(String::from_utf8_lossy(body).into_owned()),
    }
}

/// The HTTP response for a `webhook_response` reply.
fn replied(reply: &Value) -> Response {
    let status = reply
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = (
        status,
        Json(reply.get("body").cloned().unwrap_or(Value::Null)),
    )
        .into_response();
    let headers: BTreeMap<String, String> = reply
        .get("headers")
        .and_then(|h| serde_json::from_value(h.clone()).ok())
        .unwrap_or_default();
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(n, v);
        }
    }
    response
}
