//! Browsers at the gateway: CORS from configuration (preflights answered), CSRF prevention
//! for form-encoded POSTs, WebSocket upgrades checked against the allowed origins, and the
//! GraphiQL page's security headers.

mod common;

use common::{fixture, start_configured};
use flowfleet_gateway::http::CorsConfig;
use flowfleet_gateway::GatewayConfig;
use serde_json::{json, Value};

const STUDIO: &str = "https://studio.example.com";

async fn gateway_allowing(origins: &[&str]) -> String {
    let cors = CorsConfig {
        allow_origins: origins.iter().map(|o| o.to_string()).collect(),
        allow_credentials: true,
        ..CorsConfig::default()
    };
    start_configured(
        &fixture("supergraph.graphql"),
        GatewayConfig {
            cors,
            ..GatewayConfig::default()
        },
    )
    .await
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn preflights_and_answers_carry_cors_headers_for_allowed_origins_only() {
    let base = gateway_allowing(&[STUDIO]).await;
    let client = reqwest::Client::new();
    let preflight = |origin: &str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{base}/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization",
            )
            .send()
    };
    let allowed = preflight(STUDIO).await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(
        header(&allowed, "access-control-allow-origin").as_deref(),
        Some(STUDIO)
    );
    assert_eq!(
        header(&allowed, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    let headers = header(&allowed, "access-control-allow-headers").unwrap();
    assert!(headers.contains("authorization"), "{headers}");
    assert!(header(&allowed, "access-control-max-age").is_some());

    let other = preflight("https://evil.example").await.unwrap();
    assert_eq!(header(&other, "access-control-allow-origin"), None);

    // The answer to the request itself names the origin too.
    let answer = client
        .post(format!("{base}/graphql"))
        .header("origin", STUDIO)
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        header(&answer, "access-control-allow-origin").as_deref(),
        Some(STUDIO)
    );
}

#[tokio::test]
async fn without_configured_origins_no_cors_headers_are_sent() {
    let base = gateway_allowing(&[]).await;
    let answer = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .header("origin", STUDIO)
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(header(&answer, "access-control-allow-origin"), None);
}

async fn post_as(base: &str, content_type: &str, preflight: bool) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .header("content-type", content_type)
        .body(r#"{"query":"mutation { __typename }"}"#);
    if preflight {
        request = request.header("graphql-require-preflight", "1");
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn form_encoded_posts_without_a_preflight_header_are_refused_as_csrf() {
    let base = gateway_allowing(&[]).await;
    for content_type in [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, body) = post_as(&base, content_type, false).await;
        assert_eq!(status, 400, "{content_type}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "CSRF_PREVENTED",
            "{content_type}: {body}"
        );
    }
    // With the header, the request is judged on its merits (text/plain is not GraphQL).
    let (status, body) = post_as(&base, "text/plain", true).await;
    assert_eq!(status, 415, "{body}");
    // JSON always gets a preflight from browsers: it needs no header.
    let (status, body) = post_as(&base, "application/json", false).await;
    assert_eq!(status, 200, "{body}");
    // GET stays open for queries (the GraphQL-over-HTTP audits rely on it).
    let get = reqwest::get(format!("{base}/graphql?query=%7B__typename%7D"))
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
}

async fn upgrade(base: &str, origin: Option<&str>) -> Result<u16, (u16, Value)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = format!("{}/graphql", base.replace("http", "ws"))
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => Ok(response.status().as_u16()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| serde_json::from_slice(b).unwrap())
                .unwrap_or(Value::Null);
            Err((response.status().as_u16(), body))
        }
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn websocket_upgrades_from_other_origins_are_refused_unless_allowed() {
    let base = gateway_allowing(&[STUDIO]).await;
    assert_eq!(upgrade(&base, None).await, Ok(101));
    assert_eq!(upgrade(&base, Some(STUDIO)).await, Ok(101));
    // The gateway's own origin (a page it served).
    let own = base.clone();
    assert_eq!(upgrade(&base, Some(&own)).await, Ok(101));
    let (status, body) = upgrade(&base, Some("https://evil.example"))
        .await
        .unwrap_err();
    assert_eq!(status, 403);
    assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN_ORIGIN");
}

#[tokio::test]
async fn graphiql_is_served_with_security_headers() {
    let base = gateway_allowing(&[]).await;
    let page = reqwest::Client::new()
        .get(format!("{base}/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = header(&page, "content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert_eq!(header(&page, "x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(
        header(&page, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        header(&page, "referrer-policy").as_deref(),
        Some("no-referrer")
    );
}
