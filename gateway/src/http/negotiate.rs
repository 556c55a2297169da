//! Content negotiation for GraphQL over HTTP: which response media type the client accepts,
//! and whether a request body's media type is one we read.
//!
//! Why by hand: the rules are small but specific (GraphQL-over-HTTP prefers
//! `application/graphql-response+json`, treats a missing `Accept` as `application/json`,
//! and only allows UTF-8), and a general negotiation crate would still need them spelled out.

use http::header::{ACCEPT, CONTENT_TYPE};
use http::HeaderMap;

pub const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
pub const JSON: &str = "application/json";
pub const MULTIPART_MIXED: &str = "multipart/mixed";

/// How a response body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `application/json`: every well-formed GraphQL request gets 200.
    Json,
    /// `application/graphql-response+json`: requests that could not execute get 4xx.
    GraphQLResponseJson,
}

/// What the `Accept` header allows, besides the JSON formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepts {
    /// The preferred JSON format, `None` when the client accepts neither (406).
    pub json: Option<ResponseFormat>,
    /// `multipart/mixed` (incremental delivery of `@defer`).
    pub multipart: bool,
    /// `text/html` named explicitly (a browser: GraphiQL).
    pub html: bool,
    /// `text/event-stream` named explicitly: GraphQL over SSE.
    pub event_stream: bool,
}

/// One media range of an `Accept` header.
struct MediaRange<'a> {
    essence: &'a str,
    quality: f32,
}

fn media_ranges(headers: &HeaderMap) -> Vec<MediaRange<'_>> {
    let mut ranges: Vec<MediaRange<'_>> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|range| {
            let mut parts = range.split(';');
            let essence = parts.next()?.trim();
            if essence.is_empty() {
                return None;
            }
            let quality = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            Some(MediaRange { essence, quality })
        })
        .collect();
    // Stable: equally weighted ranges keep the client's order.
    ranges.sort_by(|a, b| b.quality.total_cmp(&a.quality));
    ranges
}

pub fn accepts(headers: &HeaderMap) -> Accepts {
    let ranges = media_ranges(headers);
    if ranges.is_empty() {
        return Accepts {
            json: Some(ResponseFormat::Json),
            multipart: false,
            html: false,
            event_stream: false,
        };
    }
    let wanted = |essence: &str| -> bool {
        ranges
            .iter()
            .any(|r| r.quality > 0.0 && r.essence.eq_ignore_ascii_case(essence))
    };
    let json = ranges.iter().filter(|r| r.quality > 0.0).find_map(|r| {
        match r.essence.to_ascii_lowercase().as_str() {
            GRAPHQL_RESPONSE_JSON => Some(ResponseFormat::GraphQLResponseJson),
            JSON | "application/*" | "*/*" => Some(ResponseFormat::Json),
            _ => None,
        }
    });
    Accepts {
        json,
        multipart: wanted(MULTIPART_MIXED),
        html: wanted("text/html"),
        event_stream: wanted("text/event-stream"),
    }
}

/// The media type of a request body, lower-cased, without parameters, plus its charset.
pub struct ContentType {
    pub essence: String,
    pub charset: Option<String>,
}

pub fn content_type(headers: &HeaderMap) -> Option<ContentType> {
    let raw = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let mut parts = raw.split(';');
    let essence = parts.next()?.trim().to_ascii_lowercase();
    let charset = parts
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("charset")
                .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
        })
        .next();
    Some(ContentType { essence, charset })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, value.parse().expect("header"));
        headers
    }

    #[test]
    fn missing_accept_means_json() {
        assert_eq!(accepts(&HeaderMap::new()).json, Some(ResponseFormat::Json));
    }

    #[test]
    fn graphql_response_json_wins_by_order_or_quality() {
        let a = accepts(&with_accept(
            "application/graphql-response+json, application/json;q=0.9",
        ));
        assert_eq!(a.json, Some(ResponseFormat::GraphQLResponseJson));
        let a = accepts(&with_accept(
            "application/json;q=0.5, application/graphql-response+json",
        ));
        assert_eq!(a.json, Some(ResponseFormat::GraphQLResponseJson));
        let a = accepts(&with_accept("*/*"));
        assert_eq!(a.json, Some(ResponseFormat::Json));
    }

    #[test]
    fn unacceptable_and_html() {
        let a = accepts(&with_accept("text/html,application/xhtml+xml"));
        assert_eq!(a.json, None);
        assert!(a.html);
        let a = accepts(&with_accept("application/json;q=0, image/png"));
        assert_eq!(a.json, None);
        let a = accepts(&with_accept(
            "multipart/mixed;deferSpec=20220824, application/json",
        ));
        assert!(a.multipart);
        assert_eq!(a.json, Some(ResponseFormat::Json));
        assert!(!a.event_stream);
        assert!(accepts(&with_accept("text/event-stream")).event_stream);
        assert!(!accepts(&with_accept("*/*")).event_stream);
    }
}
