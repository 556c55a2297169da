//! The `http_request` node: one HTTP call, with a workspace credential if the node
//! names one, through the SSRF-guarded client of `flowfleet_egress`.
//!
//! `{{/pointer}}` in the URL is replaced by the input's value there (URL-encoded).
//! The body is `config.body`, or the input for POST, PUT and PATCH without one.
//! The output is `{status, headers, body}`, the body parsed as JSON when the
//! response says it is JSON. Statuses of 400 and above fail the step unless
//! `failOnStatus` is false; 408, 429 and 5xx (and network errors) are retried,
//! other failures are not (retrying cannot fix a 404 or a refused address).

use std::sync::Arc;

use flowfleet_runtime::config::HttpRequestConfig;
use flowfleet_runtime::grpc::GrpcChannel;
use flowfleet_runtime::proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use flowfleet_runtime::proto::workflow::v1::GetCredentialValueRequest;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::NodeError;
use flowfleet_egress::Guard;

#[derive(Clone)]
pub struct HttpNode {
    client: reqwest::Client,
    guard: Arc<Guard>,
    max_response_bytes: usize,
    credentials: WorkflowServiceClient<GrpcChannel>,
}

impl HttpNode {
    pub fn new(
        config: &HttpRequestConfig,
        credentials: WorkflowServiceClient<GrpcChannel>,
    ) -> anyhow::Result<HttpNode> {
        let guard =
            Arc::new(Guard::new(&config.allow, "http_request.allow").map_err(anyhow::Error::msg)?);
        let client = flowfleet_egress::client(guard.clone(), config.max_redirects)?;
        Ok(HttpNode {
            client,
            guard,
            max_response_bytes: config.max_response_bytes,
            credentials,
        })
    }

    pub async fn run(
        &self,
        workspace: Uuid,
        config: &Value,
        input: &Value,
        logs: &mut Vec<String>,
    ) -> Result<Value, NodeError> {
        let method = config
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("GET");
        let method: reqwest::Method = method
            .parse()
            .map_err(|_| NodeError::permanent(format!("`{method}` is not an HTTP method")))?;
        let template = config
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| NodeError::permanent("`config.url` is missing"))?;
        let mut url = reqwest::Url::parse(&fill(template, input))
            .map_err(|e| NodeError::permanent(format!("`config.url` is not a valid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NodeError::permanent(
                "only http and https URLs can be requested",
            ));
        }
        if let Some(query) = config.get("query").and_then(Value::as_object) {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, &text(v));
            }
        }
        flowfleet_egress::check_url(&self.guard, &url).map_err(NodeError::permanent)?;
        let mut request = self.client.request(method.clone(), url.clone());
        if let Some(headers) = config.get("headers").and_then(Value::as_object) {
            for (k, v) in headers {
                request = request.header(k.as_str(), text(v));
            }
        }
        let body = config.get("body").cloned().or_else(|| {
            matches!(
                method,
                reqwest::Method::POST | reqwest::Method::PUT | reqwest::Method::PATCH
            )
            .then(|| input.clone())
        });
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(id) = config.get("credentialId").and_then(Value::as_str) {
            request = self.authorize(request, workspace, id).await?;
        }
        logs.push(format!("{method} {}", redact(&url)));
        let response = request.send().await.map_err(|e| {
            let refused = error_chain(&e);
            if refused.contains("refused to reach") {
                NodeError::permanent(refused)
            } else {
                NodeError::retryable(format!("request to {} failed: {refused}", redact(&url)))
            }
        })?;
        let status = response.status();
        logs.push(format!("HTTP {}", status.as_u16()));
        let mut headers = Map::new();
        for (k, v) in response.headers() {
            headers.insert(
                k.as_str().to_string(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into()),
            );
        }
        let is_json = headers
            .get("content-type")
            .and_then(Value::as_str)
            .is_some_and(|c| c.contains("json"));
        let bytes = self.read_body(response).await?;
        let body = if is_json {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        } else {
            Value::String(String::from_utf8_lossy(&bytes).into())
        };
        let fail_on_status = config
            .get("failOnStatus")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if fail_on_status && (status.is_client_error() || status.is_server_error()) {
            let message = format!("HTTP {} from {}", status.as_u16(), redact(&url));
            let code = status.as_u16();
            return Err(if code == 408 || code == 429 || status.is_server_error() {
                NodeError::retryable(message)
            } else {
                NodeError::permanent(message)
            });
        }
        Ok(serde_json::json!({"status": status.as_u16(), "headers": headers, "body": body}))
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<Vec<u8>, NodeError> {
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            NodeError::retryable(format!("reading the response failed: {}", error_chain(&e)))
        })? {
            if bytes.len() + chunk.len() > self.max_response_bytes {
                return Err(NodeError::permanent(format!(
                    "the response is larger than {} bytes (http_request.max_response_bytes)",
                    self.max_response_bytes
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// Adds the workspace credential `id` (basic, bearer or one header).
    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        workspace: Uuid,
        id: &str,
    ) -> Result<reqwest::RequestBuilder, NodeError> {
        let credential = self
            .credentials
            .clone()
            .get_credential_value(GetCredentialValueRequest {
                credential_id: id.to_string(),
                workspace_id: workspace.to_string(),
            })
            .await
            .map_err(|s| match s.code() {
                tonic::Code::NotFound
                | tonic::Code::PermissionDenied
                | tonic::Code::InvalidArgument => {
                    NodeError::permanent(format!("credential `{id}`: {}", s.message()))
                }
                _ => NodeError::retryable(format!(
                    "could not read credential `{id}`: {}",
                    s.message()
                )),
            })?
            .into_inner();
        let fields: Value = serde_json::from_str(&credential.value_json)
            .map_err(|_| NodeError::permanent(format!("credential `{id}` is unreadable")))?;
        let field = |k: &str| {
            fields
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Ok(match credential.kind.as_str() {
            "HTTP_BASIC" => request.basic_auth(field("username"), Some(field("password"))),
            "HTTP_BEARER" => request.bearer_auth(field("token")),
            "HTTP_HEADER" => request.header(field("name"), field("value")),
            other => {
                return Err(NodeError::permanent(format!(
                    "credential `{id}` is a {other} credential; http_request takes HTTP_BASIC, HTTP_BEARER or HTTP_HEADER"
                )))
            }
        })
    }
}

/// The URL without user info or query (which may carry secrets), for logs and errors.
fn redact(url: &reqwest::Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.path()
    )
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Replaces each `{{/pointer}}` with the input's value there, URL-encoded.
fn fill(template: &str, input: &Value) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let pointer = rest[start + 2..start + len].trim();
        let value = input.pointer(pointer).map(text).unwrap_or_default();
        out.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// The error and its causes, which is where the guard's refusal sits.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_fill_from_the_input_url_encoded() {
        let input = json!({"user": {"id": 7, "name": "a b&c"}});
        assert_eq!(
            fill(
                "https://x.test/users/{{/user/id}}?q={{ /user/name }}",
                &input
            ),
            "https://x.test/users/7?q=a+b%26c"
        );
        assert_eq!(
            fill("https://x.test/{{/missing}}", &input),
            "https://x.test/"
        );
    }
}
