//! What browsers need from a GraphQL endpoint, and what protects people using one:
//!
//! - **CORS**: which other origins' pages may call the gateway (and with credentials),
//!   from configuration; preflight requests are answered by the CORS layer. With no
//!   origins configured, no CORS headers are sent: only same-origin pages can read
//!   answers.
//! - **CSRF prevention**, as Apollo Router does it: a page on any site can make a browser
//!   POST a "simple" request (a form encoding: `text/plain`,
//!   `application/x-www-form-urlencoded`, `multipart/form-data`) without a preflight, with
//!   the person's cookies. Such a POST must carry a header a form cannot set
//!   ([`PREFLIGHT_HEADERS`]). JSON POSTs always get a preflight, so they pass. GET stays
//!   open: it only runs queries (mutations over GET are refused), so it cannot change
//!   state.
//! - **WebSocket origins**: browsers send `Origin` on WebSocket upgrades and no preflight,
//!   so an upgrade from a page of another origin is refused unless CORS allows that origin
//!   (cross-site WebSocket hijacking). Clients that are not browsers send no `Origin`.
//! - **Security headers** on the GraphiQL page: no framing, no sniffing, no referrer, and a
//!   content security policy naming the only places its scripts come from.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::{GraphQLError, RequestError};

/// Headers only scripts can set: their presence shows a request is not a plain form post.
pub const PREFLIGHT_HEADERS: [&str; 3] = [
    "graphql-require-preflight",
    "apollo-require-preflight",
    "x-apollo-operation-name",
];

/// Cross-origin access, from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// Origins (`https://studio.example.com`) whose pages may call the gateway; `*` for any
    /// (not allowed with credentials). Empty: same origin only.
    pub allow_origins: Vec<String>,
    /// Whether those pages may send cookies and `Authorization`.
    pub allow_credentials: bool,
    /// Request headers allowed besides the CORS-safelisted ones.
    pub allow_headers: Vec<String>,
    /// How long browsers may cache a preflight answer.
    pub max_age: Duration,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allow_origins: Vec::new(),
            allow_credentials: false,
            allow_headers: [
                "content-type",
                "authorization",
                "traceparent",
                "tracestate",
                "graphql-require-preflight",
                "apollo-require-preflight",
                "x-apollo-operation-name",
            ]
            .map(String::from)
            .to_vec(),
            max_age: Duration::from_secs(600),
        }
    }
}

/// A CORS configuration that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CorsError {
    #[error("CORS: `{0}` is not an origin (scheme://host[:port])")]
    BadOrigin(String),
    #[error("CORS: `{0}` is not a header name")]
    BadHeader(String),
    #[error("CORS: `*` cannot be combined with allow_credentials; list the origins instead")]
    WildcardWithCredentials,
}

impl CorsConfig {
    fn any_origin(&self) -> bool {
        self.allow_origins.iter().any(|o| o == "*")
    }

    /// Checks the configuration (at start-up, so a typo is an error, not an open door).
    pub fn validate(&self) -> Result<(), CorsError> {
        if self.any_origin() && self.allow_credentials {
            return Err(CorsError::WildcardWithCredentials);
        }
        for origin in self.allow_origins.iter().filter(|o| *o != "*") {
            let parsed = url_origin(origin);
            if parsed.as_deref() != Some(origin.trim_end_matches('/')) {
                return Err(CorsError::BadOrigin(origin.clone()));
            }
        }
        for name in &self.allow_headers {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| CorsError::BadHeader(name.clone()))?;
        }
        Ok(())
    }

    /// The layer answering preflights and adding CORS headers; `None` when no origin is
    /// allowed (nothing to add).
    pub(crate) fn layer(&self) -> Option<CorsLayer> {
        if self.allow_origins.is_empty() {
            return None;
        }
        let origin = if self.any_origin() {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                self.allow_origins
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
            )
        };
        let headers: Vec<HeaderName> = self
            .allow_headers
            .iter()
            .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
            .collect();
        Some(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers(headers)
                .allow_credentials(self.allow_credentials)
                .max_age(self.max_age),
        )
    }

    /// Whether a page of `origin` may open a WebSocket: an allowed origin, or the
    /// gateway's own (`host` is the request's `Host`).
    fn allows_websocket_from(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim_end_matches('/');
        if self.any_origin()
            || self
                .allow_origins
                .iter()
                .any(|o| o.trim_end_matches('/') == origin)
        {
            return true;
        }
        let origin_host = origin.split_once("://").map(|(_, rest)| rest);
        origin_host.is_some() && origin_host == host
    }
}

/// `scheme://host[:port]` of `url`, lowercased, if it is one.
fn url_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains(['/', '?', '#']) {
        return None;
    }
    Some(format!("{scheme}://{rest}"))
}

/// CSRF prevention for a POST: refused when its content type is one a form can send and
/// it has no preflight header.
pub(crate) fn check_csrf(headers: &HeaderMap) -> Result<(), RequestError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let simple = matches!(
        essence.as_deref(),
        Some("text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data")
    );
    if !simple
        || PREFLIGHT_HEADERS
            .iter()
            .any(|name| headers.contains_key(*name))
    {
        return Ok(());
    }
    Err(RequestError::Refused(
        http::StatusCode::BAD_REQUEST,
        GraphQLError::new(
            "This request was blocked as a possible cross-site request forgery: a POST with \
             a form content type must carry a `GraphQL-Require-Preflight` (or \
             `Apollo-Require-Preflight`) header.",
        )
        .with_code(crate::error::codes::CSRF_PREVENTED),
    ))
}

/// Refuses a WebSocket upgrade from a page of an origin CORS does not allow.
pub(crate) fn check_websocket_origin(
    cors: &CorsConfig,
    headers: &HeaderMap,
) -> Result<(), RequestError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if cors.allows_websocket_from(origin, host) {
        return Ok(());
    }
    Err(RequestError::Refused(
        http::StatusCode::FORBIDDEN,
        GraphQLError::new(format!(
            "WebSocket connections from pages of {origin} are not allowed; add the origin to \
             the gateway's CORS origins."
        ))
        .with_code(crate::error::codes::FORBIDDEN_ORIGIN),
    ))
}

/// Headers of the GraphiQL page.
pub(crate) fn graphiql_headers() -> [(HeaderName, HeaderValue); 5] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'unsafe-inline' https://unpkg.com; \
                 style-src 'unsafe-inline' https://unpkg.com; img-src 'self' data:; \
                 font-src https://unpkg.com data:; connect-src 'self'; \
                 frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_mistakes_are_refused() {
        let bad = |origins: &[&str], credentials: bool| CorsConfig {
            allow_origins: origins.iter().map(|o| o.to_string()).collect(),
            allow_credentials: credentials,
            ..CorsConfig::default()
        };
        assert!(bad(&["https://studio.example.com"], true)
            .validate()
            .is_ok());
        assert!(bad(&["*"], false).validate().is_ok());
        assert!(matches!(
            bad(&["*"], true).validate(),
            Err(CorsError::WildcardWithCredentials)
        ));
        assert!(matches!(
            bad(&["studio.example.com"], false).validate(),
            Err(CorsError::BadOrigin(_))
        ));
        assert!(matches!(
            bad(&["https://example.com/path"], false).validate(),
            Err(CorsError::BadOrigin(_))
        ));
    }

    #[test]
    fn websockets_from_the_gateways_own_origin_or_an_allowed_one() {
        let cors = CorsConfig {
            allow_origins: vec!["https://studio.example.com".into()],
            ..CorsConfig::default()
        };
        assert!(cors.allows_websocket_from("https://studio.example.com", Some("api.example.com")));
        assert!(cors.allows_websocket_from("http://localhost:4000", Some("localhost:4000")));
        assert!(!cors.allows_websocket_from("https://evil.example", Some("localhost:4000")));
    }
}
