//! HTTP surface: `POST /graphql`, `GET /graphql`, `GET /health`, and graceful serving.
//!
//! Status codes follow GraphQL-over-HTTP: 200 whenever the operation executed (even with
//! errors or partial data), 400 for requests that could not execute, 405 for mutations over
//! GET. The response media type follows the `Accept` header
//! (`application/graphql-response+json` when asked for, `application/json` otherwise).

use std::collections::HashMap;
use std::future::Future;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::error::RequestError;
use crate::gateway::{Gateway, Method, Outcome};
use crate::request::GraphQLRequest;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

impl Gateway {
    /// Routes: `POST /graphql`, `GET /graphql` (queries only), `GET /health`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/graphql", get(get_graphql).post(post_graphql))
            .route("/health", get(health))
            .with_state(self.clone())
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn post_graphql(State(gateway): State<Gateway>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let request =
        if content_type.starts_with("application/graphql") && !content_type.contains("json") {
            Ok(GraphQLRequest::new(
                String::from_utf8_lossy(&body).into_owned(),
            ))
        } else if content_type.starts_with("application/json") || content_type.contains("+json") {
            serde_json::from_slice::<GraphQLRequest>(&body).map_err(|_| {
                RequestError::BadRequest("The request body is not a valid GraphQL request.".into())
            })
        } else {
            return respond(
                &headers,
                Outcome {
                    status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    body: RequestError::BadRequest(
                        "Unsupported content type; use application/json.".into(),
                    )
                    .to_response(),
                },
            );
        };
    let outcome = match request {
        Ok(request) => gateway.execute_with(request, &headers, Method::Post).await,
        Err(error) => Outcome {
            status: error.status(),
            body: error.to_response(),
        },
    };
    respond(&headers, outcome)
}

async fn get_graphql(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let outcome = match request_from_params(params) {
        Ok(request) => gateway.execute_with(request, &headers, Method::Get).await,
        Err(error) => Outcome {
            status: error.status(),
            body: error.to_response(),
        },
    };
    respond(&headers, outcome)
}

fn request_from_params(
    mut params: HashMap<String, String>,
) -> Result<GraphQLRequest, RequestError> {
    let query = params
        .remove("query")
        .ok_or_else(|| RequestError::BadRequest("Missing `query` parameter.".into()))?;
    let json_param = |value: Option<String>,
                      name: &str|
     -> Result<Option<serde_json::Map<String, Value>>, RequestError> {
        match value.as_deref().map(str::trim) {
            None | Some("") | Some("null") => Ok(None),
            Some(raw) => serde_json::from_str(raw).map(Some).map_err(|_| {
                RequestError::BadRequest(format!("The `{name}` parameter is not a JSON object."))
            }),
        }
    };
    Ok(GraphQLRequest {
        query,
        operation_name: params.remove("operationName").filter(|n| !n.is_empty()),
        variables: json_param(params.remove("variables"), "variables")?,
        extensions: json_param(params.remove("extensions"), "extensions")?,
    })
}

fn respond(request_headers: &HeaderMap, outcome: Outcome) -> Response {
    let wants_graphql_response = request_headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(GRAPHQL_RESPONSE_JSON));
    let media_type = if wants_graphql_response {
        GRAPHQL_RESPONSE_JSON
    } else {
        "application/json"
    };
    let body = serde_json::to_vec(&outcome.body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = (outcome.status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&format!("{media_type}; charset=utf-8"))
            .unwrap_or(HeaderValue::from_static("application/json")),
    );
    if outcome.status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    response
}
