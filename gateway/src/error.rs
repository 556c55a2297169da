//! Error types, split by audience.
//!
//! Client-safe errors ([`GraphQLError`], [`RequestError`]) carry only messages we wrote for
//! clients: no URLs, host names, internal error chains or stacks. Internal errors
//! ([`GatewayError`], [`crate::transport::TransportError`], planner errors) keep the details
//! and are logged with `tracing`, never serialized into a response.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::planner::PlannerInitError;

/// Codes put in `extensions.code`.
pub mod codes {
    pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
    pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    pub const OPERATION_NOT_SUPPORTED: &str = "OPERATION_NOT_SUPPORTED";
    pub const METHOD_NOT_ALLOWED: &str = "METHOD_NOT_ALLOWED";
    pub const INTROSPECTION_DISABLED: &str = "INTROSPECTION_DISABLED";
    pub const INTERNAL: &str = "INTERNAL_SERVER_ERROR";
    pub const SUBGRAPH_REQUEST_FAILED: &str = "SUBGRAPH_REQUEST_FAILED";
    pub const SUBGRAPH_TIMEOUT: &str = "SUBGRAPH_TIMEOUT";
    pub const SUBGRAPH_CIRCUIT_OPEN: &str = "SUBGRAPH_CIRCUIT_OPEN";
    pub const SUBGRAPH_OVERLOADED: &str = "SUBGRAPH_OVERLOADED";
    pub const DOWNSTREAM_SERVICE_ERROR: &str = "DOWNSTREAM_SERVICE_ERROR";
    pub const NON_NULL_VIOLATION: &str = "NON_NULL_VIOLATION";
    pub const INVALID_ENUM_VALUE: &str = "INVALID_ENUM_VALUE";
    pub const NOT_ACCEPTABLE: &str = "NOT_ACCEPTABLE";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "UNSUPPORTED_MEDIA_TYPE";
    pub const PAYLOAD_TOO_LARGE: &str = "PAYLOAD_TOO_LARGE";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    pub const CSRF_PREVENTED: &str = "CSRF_PREVENTED";
    pub const FORBIDDEN_ORIGIN: &str = "FORBIDDEN_ORIGIN";
}

/// Failure to build a [`crate::Gateway`]; for operators.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Supergraph(#[from] PlannerInitError),
    #[error("failed to build the HTTP client for subgraphs: {0}")]
    HttpClient(String),
    #[error("URL override for unknown subgraph `{0}`")]
    UnknownSubgraph(String),
}

/// A response path element: a field response key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum PathSegment {
    Key(String),
    Index(usize),
}

impl From<&str> for PathSegment {
    fn from(key: &str) -> Self {
        PathSegment::Key(key.to_string())
    }
}

/// A GraphQL error as sent to clients.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphQLError {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Vec<PathSegment>>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub extensions: Map<String, Value>,
}

impl GraphQLError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            path: None,
            extensions: Map::new(),
        }
    }

    pub fn with_code(mut self, code: &str) -> Self {
        self.extensions
            .insert("code".to_string(), Value::String(code.to_string()));
        self
    }

    pub fn with_path(mut self, path: Vec<PathSegment>) -> Self {
        self.path = Some(path);
        self
    }

    pub fn with_extension(mut self, key: &str, value: Value) -> Self {
        self.extensions.insert(key.to_string(), value);
        self
    }

    pub fn code(&self) -> Option<&str> {
        self.extensions.get("code").and_then(Value::as_str)
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A request that cannot be executed at all (no `data` in the response).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    Parse(String),
    #[error("operation failed validation")]
    Validation(Vec<String>),
    #[error("{0}")]
    BadUserInput(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("Mutations cannot be sent with GET; use POST.")]
    MutationOverGet,
    #[error("Introspection is disabled.")]
    IntrospectionDisabled,
    #[error("The Accept header allows no response type this endpoint produces; accept application/graphql-response+json or application/json.")]
    NotAcceptable,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Refused before execution with this status and this error (a limit, a credential
    /// that stopped verifying, a gateway shutting down). A 429's error carries
    /// `extensions.retryAfter`, which becomes the `Retry-After` header.
    #[error("{}", .1.message)]
    Refused(http::StatusCode, GraphQLError),
    /// Our fault; the details were logged where the error was created.
    #[error("Internal server error.")]
    Internal,
}

impl RequestError {
    /// The HTTP status of a response made of this error alone.
    ///
    /// `lenient` is true for `application/json` responses: GraphQL-over-HTTP answers every
    /// well-formed GraphQL request with 200 there (the errors are in the body), and keeps 4xx
    /// for requests that are not GraphQL requests at all.
    pub fn status(&self, lenient: bool) -> http::StatusCode {
        use http::StatusCode;
        match self {
            RequestError::Parse(_)
            | RequestError::Validation(_)
            | RequestError::BadUserInput(_)
            | RequestError::Unsupported(_)
            | RequestError::IntrospectionDisabled => {
                if lenient {
                    StatusCode::OK
                } else {
                    StatusCode::BAD_REQUEST
                }
            }
            RequestError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RequestError::MutationOverGet => StatusCode::METHOD_NOT_ALLOWED,
            RequestError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            RequestError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RequestError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::Refused(status, _) => *status,
            RequestError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn errors(&self) -> Vec<GraphQLError> {
        if let RequestError::Refused(_, error) = self {
            return vec![error.clone()];
        }
        let code = match self {
            RequestError::Parse(_) => codes::PARSE_FAILED,
            RequestError::Validation(_) => codes::VALIDATION_FAILED,
            RequestError::BadUserInput(_) => codes::BAD_USER_INPUT,
            RequestError::BadRequest(_) => codes::BAD_REQUEST,
            RequestError::Unsupported(_) => codes::OPERATION_NOT_SUPPORTED,
            RequestError::MutationOverGet => codes::METHOD_NOT_ALLOWED,
            RequestError::IntrospectionDisabled => codes::INTROSPECTION_DISABLED,
            RequestError::NotAcceptable => codes::NOT_ACCEPTABLE,
            RequestError::UnsupportedMediaType(_) => codes::UNSUPPORTED_MEDIA_TYPE,
            RequestError::PayloadTooLarge(_) => codes::PAYLOAD_TOO_LARGE,
            RequestError::Internal | RequestError::Refused(..) => codes::INTERNAL,
        };
        match self {
            RequestError::Validation(messages) => messages
                .iter()
                .map(|m| GraphQLError::new(m.clone()).with_code(code))
                .collect(),
            other => vec![GraphQLError::new(other.to_string()).with_code(code)],
        }
    }

    /// The response body: `{"errors": [...]}` without `data` (the request never executed).
    pub fn to_response(&self) -> Value {
        serde_json::json!({ "errors": self.errors().iter().map(GraphQLError::to_json).collect::<Vec<_>>() })
    }
}
