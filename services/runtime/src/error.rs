//! Client-safe errors, mapped once at each edge.
//!
//! The design kept: a service's use cases and stores return [`ApiError`], which
//! carries one of the fleet's error codes and a message meant for the caller
//! (what went wrong and what to do). Infrastructure behind a trait (cache,
//! bus, queue, sessions, counters) has its own `thiserror` enum; where a use
//! case meets one of those (or a `sqlx` error) it converts it with
//! [`ApiError::internal`], which logs the cause there and hands the caller only
//! `INTERNAL_SERVER_ERROR` with a generic message: no SQL, URL or stack leaks.
//! The adapters then map [`ApiError`] once: into a GraphQL error with
//! `extensions.code` (`From<ApiError> for async_graphql::Error`) or into a gRPC
//! status (`From<ApiError> for tonic::Status`).

use async_graphql::ErrorExtensions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    BadUserInput,
    NotFound,
    Conflict,
    RateLimited,
    /// The password was right, and the account's second factor is needed too.
    MfaRequired,
    /// The workspace has used up an allowance (stored bytes, files): freeing some or
    /// raising the limit is the way on, not retrying.
    QuotaExceeded,
    /// The request's content is larger than accepted.
    PayloadTooLarge,
    /// A live subscriber read too slowly and updates were dropped.
    SubscriptionLagged,
    Internal,
}

/// gRPC metadata naming the [`ErrorCode`] where a status code alone is ambiguous
/// (`RESOURCE_EXHAUSTED` is a rate limit, a quota or a size).
const CODE_METADATA: &str = "flowfleet-error-code";

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::MfaRequired => "MFA_REQUIRED",
            ErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::SubscriptionLagged => "SUBSCRIPTION_LAGGED",
            ErrorCode::Internal => "INTERNAL_SERVER_ERROR",
        }
    }
}

/// Deliberately not `Display`: async-graphql turns any `Display` type into an
/// error without extensions, and this type must always keep its code. The
/// conversion below is the only way into a GraphQL error.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Structured detail for clients, set as GraphQL extensions next to
    /// `code` (e.g. `problems` for a definition that cannot be published; `path`,
    /// `line` and `column` for a template that does not parse).
    pub detail: Vec<(&'static str, serde_json::Value)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            detail: Vec::new(),
        }
    }
    /// Adds a structured extension, e.g. `("problems", [...])`, replacing one of the
    /// same key.
    pub fn with_detail(mut self, key: &'static str, value: serde_json::Value) -> Self {
        self.detail.retain(|(k, _)| *k != key);
        self.detail.push((key, value));
        self
    }

    /// The extension set under `key`, if any.
    pub fn detail(&self, key: &str) -> Option<&serde_json::Value> {
        self.detail.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadUserInput, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    /// A GraphQL response body carrying only this error, for a request refused before
    /// anything executed.
    pub fn graphql_response(&self) -> serde_json::Value {
        let mut extensions = serde_json::Map::new();
        extensions.insert("code".into(), self.code.as_str().into());
        for (key, value) in &self.detail {
            extensions.insert((*key).into(), value.clone());
        }
        serde_json::json!({"errors": [{
            "message": self.message,
            "extensions": extensions,
        }]})
    }

    /// Logs the internal error here and returns a message that reveals nothing.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "internal error");
        Self::new(
            ErrorCode::Internal,
            "internal error; it has been logged, please retry or contact the operator",
        )
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> Self {
        async_graphql::Error::new(e.message).extend_with(|_, ext| {
            ext.set("code", e.code.as_str());
            for (key, value) in e.detail {
                if let Ok(value) = async_graphql::Value::from_json(value) {
                    ext.set(key, value);
                }
            }
        })
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        match e.code {
            ErrorCode::Unauthenticated | ErrorCode::MfaRequired => {
                tonic::Status::unauthenticated(e.message)
            }
            ErrorCode::Forbidden => tonic::Status::permission_denied(e.message),
            ErrorCode::BadUserInput => tonic::Status::invalid_argument(e.message),
            ErrorCode::NotFound => tonic::Status::not_found(e.message),
            ErrorCode::Conflict => tonic::Status::already_exists(e.message),
            ErrorCode::RateLimited => tonic::Status::resource_exhausted(e.message),
            ErrorCode::QuotaExceeded | ErrorCode::PayloadTooLarge => {
                let mut status = tonic::Status::resource_exhausted(e.message);
                status.metadata_mut().insert(
                    CODE_METADATA,
                    tonic::metadata::MetadataValue::from_static(e.code.as_str()),
                );
                status
            }
            ErrorCode::SubscriptionLagged => tonic::Status::data_loss(e.message),
            ErrorCode::Internal => tonic::Status::internal(e.message),
        }
    }
}

/// The reverse direction, for a service that relays another service's answer.
impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        match s.code() {
            Code::NotFound => ApiError::not_found(s.message()),
            Code::InvalidArgument => ApiError::bad_input(s.message()),
            Code::PermissionDenied => ApiError::forbidden(s.message()),
            Code::Unauthenticated => ApiError::unauthenticated(s.message()),
            Code::AlreadyExists => ApiError::conflict(s.message()),
            Code::ResourceExhausted => {
                let code = match s
                    .metadata()
                    .get(CODE_METADATA)
                    .and_then(|v| v.to_str().ok())
                {
                    Some("QUOTA_EXCEEDED") => ErrorCode::QuotaExceeded,
                    Some("PAYLOAD_TOO_LARGE") => ErrorCode::PayloadTooLarge,
                    _ => ErrorCode::RateLimited,
                };
                ApiError::new(code, s.message())
            }
            _ => ApiError::internal(format!("gRPC call failed: {s}")),
        }
    }
}

/// For code that reports with `anyhow` (the worker, start-up): the client-safe message
/// (an internal error was logged where it became an `ApiError`).
impl From<ApiError> for anyhow::Error {
    fn from(e: ApiError) -> Self {
        anyhow::anyhow!("{}", e.message)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(e)
    }
}

/// Parses a UUID argument, with an error that names the argument.
pub fn parse_id(field: &str, value: &str) -> Result<uuid::Uuid, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::bad_input(format!("`{field}` must be a UUID, got `{value}`")))
}
