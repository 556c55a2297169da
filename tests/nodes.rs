//! Node types end to end on both backends, against a real HTTP server in the test:
//! `transform` (jq) and `http_request` with a workspace credential; retries of a
//! retryable failure with backoff, then the dead-letter queue; a permanent failure
//! not retried; timeouts; and the SSRF guard refusing internal addresses, directly
//! and through redirects, unless allow-listed.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Json;
use flowfleet_host::testing::Backend;
use flowfleet_runtime::queue::dead_letter_queue;
use serde_json::{json, Value};
use support::engine::{finished, publish_as, published, start, steps_of, workspace};
use support::in_process::{start_with, Fleet};

/// What the test server saw: (path, authorization header, body).
type Seen = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

/// A local HTTP server: `/echo` answers with what it got, `/unavailable` is 503,
/// `/missing` 404, `/slow` answers after 3 s, and `/to-metadata` and `/to-mapped`
/// redirect to internal addresses. Every request is recorded.
async fn server() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = seen.clone();
    let hung = seen.clone();
    let app = axum::Router::new()
        .route(
            "/echo",
            post(|headers: HeaderMap, Json(body): Json<Value>| async move {
                let auth = headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_string());
                Json(json!({"authorization": auth, "received": body}))
            }),
        )
        .route(
            "/unavailable",
            get(|| async { StatusCode::SERVICE_UNAVAILABLE }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late".into_response()
            }),
        )
        .route(
            "/hang",
            get(move || {
                let hung = hung.clone();
                async move {
                    // Records when the request is abandoned (the client went away).
                    struct Abandoned(Seen);
                    impl Drop for Abandoned {
                        fn drop(&mut self) {
                            self.0.lock().unwrap().push((
                                "abandoned /hang".into(),
                                None,
                                Value::Null,
                            ));
                        }
                    }
                    let _guard = Abandoned(hung);
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "too late"
                }
            }),
        )
        .route(
            "/to-metadata",
            get(|| async { Redirect::temporary("http://169.254.169.254/latest/meta-data/") }),
        )
        .route(
            "/to-mapped",
            get(move || async move {
                Redirect::temporary(&format!("http://[::ffff:127.0.0.1]:{port}/echo"))
            }),
        )
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let log = log.clone();
                async move {
                    let auth = request
                        .headers()
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string());
                    log.lock()
                        .unwrap()
                        .push((request.uri().path().to_string(), auth, Value::Null));
                    next.run(request).await
                }
            },
        ));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://127.0.0.1:{port}"), seen)
}

/// A fleet that may reach the test server (loopback, allow-listed) and retries fast.
async fn fleet(backend: &Backend, allow_loopback: bool) -> Fleet {
    start_with(backend, |c| {
        c.worker.retry_base_ms = 200;
        c.worker.retry_cap_ms = 1_000;
        // Leases renewed every 300 ms: a cancelled step is noticed quickly.
        c.worker.lease_ms = 900;
        if allow_loopback {
            c.http_request.allow = vec!["127.0.0.1/32".into()];
        }
    })
    .await
}

#[tokio::test]
async fn transform_and_http_request_with_a_workspace_credential() {
    for backend in Backend::all() {
        let name = backend.name();
        let (url, seen) = server().await;
        let fleet = fleet(&backend, true).await;
        let owner = fleet.sign_up("nodes@example.com").await;
        let ws = workspace(&owner).await;
        let credential = owner
            .client
            .ok(
                "mutation($i: CreateCredentialInput!) { createCredential(input: $i) { id } }",
                json!({"i": {"workspaceId": ws, "name": "api", "kind": "HTTP_BEARER", "value": {"token": "s3cret"}}}),
            )
            .await["createCredential"]["id"]
            .clone();
        let wf = publish_as(
            &owner,
            json!({
                "nodes": [
                    {"id": "total", "type": "transform", "config": {"expression": "{order: .id, total: ([.items[] | .price * .qty] | add)}"}},
                    {"id": "post", "type": "http_request", "config": {
                        "method": "POST", "url": format!("{url}/echo?order={{{{/order}}}}"),
                        "credentialId": credential
                    }}
                ],
                "edges": [{"source": "total", "target": "post"}],
                "triggers": [{"kind": "MANUAL"}]
            }),
        )
        .await;
        let id = start(
            &owner,
            &wf,
            json!({"id": "A-1", "items": [{"price": 3, "qty": 2}, {"price": 5, "qty": 1}]}),
        )
        .await;
        let e = finished(&owner, &id).await;
        assert_eq!(e["status"], "SUCCEEDED", "{name}: {e}");
        assert_eq!(
            steps_of(&e, "total")[0]["output"],
            json!({"order": "A-1", "total": 11}),
            "{name}"
        );
        let out = &e["output"];
        assert_eq!(out["status"], 200, "{name}: {out}");
        assert_eq!(out["body"]["authorization"], "Bearer s3cret", "{name}");
        assert_eq!(
            out["body"]["received"],
            json!({"order": "A-1", "total": 11}),
            "{name}"
        );
        let logs = steps_of(&e, "post")[0]["logs"].to_string();
        assert!(
            logs.contains("POST http://127.0.0.1") && logs.contains("HTTP 200"),
            "{name}: {logs}"
        );
        assert!(!logs.contains("s3cret"), "{name}: the secret is not logged");
        let requests = seen.lock().unwrap().clone();
        assert_eq!(requests.len(), 1, "{name}: one request");
        assert_eq!(requests[0].1.as_deref(), Some("Bearer s3cret"), "{name}");
    }
}

#[tokio::test]
async fn retryable_failures_back_off_then_dead_letter_and_permanent_ones_stop_at_once() {
    for backend in Backend::all() {
        let name = backend.name();
        let (url, seen) = server().await;
        let fleet = fleet(&backend, true).await;
        let (owner, wf) = published(
            &fleet,
            "retries@example.com",
            json!({
                "nodes": [
                    {"id": "call", "type": "http_request", "config": {"url": format!("{url}/unavailable")}, "maxRetries": 2},
                    {"id": "after", "type": "passthrough"}
                ],
                "edges": [{"source": "call", "target": "after"}],
                "triggers": [{"kind": "MANUAL"}],
                "settings": {"maxRetries": 0}
            }),
        )
        .await;
        let id = start(&owner, &wf, json!({})).await;
        let e = finished(&owner, &id).await;
        assert_eq!(e["status"], "FAILED", "{name}: {e}");
        let error = e["error"].as_str().unwrap();
        assert!(
            error.contains("node `call` failed after 3 attempts") && error.contains("HTTP 503"),
            "{name}: {error}"
        );
        let attempts = steps_of(&e, "call");
        assert_eq!(
            attempts
                .iter()
                .map(|s| s["attempt"].as_i64().unwrap())
                .collect::<Vec<_>>(),
            vec![1, 2, 3],
            "{name}: the node's maxRetries (2) overrides the workflow's (0)"
        );
        for (i, s) in attempts.iter().enumerate() {
            assert_eq!(s["status"], "FAILED", "{name}");
            if i > 0 {
                // Each retry waited out a backoff after the previous attempt.
                let prev = attempts[i - 1]["finishedAt"].as_str().unwrap();
                let due = s["dueAt"].as_str().unwrap();
                assert!(
                    due > prev,
                    "{name}: retry {i} was due at {due}, before {prev}"
                );
                assert!(
                    s["startedAt"].as_str().unwrap() >= due,
                    "{name}: started early"
                );
            }
        }
        assert_eq!(seen.lock().unwrap().len(), 3, "{name}: three requests");
        assert!(
            steps_of(&e, "after").is_empty(),
            "{name}: nothing runs after a failure"
        );

        // The last attempt's task is in the dead-letter queue, with the reason.
        let mut dead = fleet
            .queue
            .consume(&dead_letter_queue("steps"), 8)
            .await
            .unwrap();
        let d = tokio::time::timeout(Duration::from_secs(10), dead.next())
            .await
            .unwrap_or_else(|_| panic!("{name}: no dead letter"))
            .unwrap();
        assert_eq!(d.task.payload["executionId"], id.as_str(), "{name}");
        assert_eq!(d.task.payload["nodeId"], "call", "{name}");
        assert_eq!(d.task.attempt, 3, "{name}");
        assert!(
            d.task.last_error.as_deref().unwrap().contains("503"),
            "{name}"
        );
        d.ack().await.unwrap();

        // A 404 cannot get better: one attempt, whatever maxRetries says.
        let (owner, wf) = published(
            &fleet,
            "permanent@example.com",
            json!({
                "nodes": [{"id": "call", "type": "http_request", "config": {"url": format!("{url}/missing")}}],
                "triggers": [{"kind": "MANUAL"}],
                "settings": {"maxRetries": 3}
            }),
        )
        .await;
        let e = finished(&owner, &start(&owner, &wf, json!({})).await).await;
        assert_eq!(e["status"], "FAILED", "{name}");
        let attempts = steps_of(&e, "call");
        assert_eq!(attempts.len(), 1, "{name}: {e}");
        assert!(
            attempts[0]["logs"].to_string().contains("not retried"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_step_past_its_timeout_is_stopped_and_retried_as_timed_out() {
    for backend in Backend::all() {
        let name = backend.name();
        let (url, _) = server().await;
        let fleet = fleet(&backend, true).await;
        let (owner, wf) = published(
            &fleet,
            "timeouts@example.com",
            json!({
                "nodes": [{"id": "slow", "type": "http_request", "config": {"url": format!("{url}/slow")}, "timeoutMs": 300}],
                "triggers": [{"kind": "MANUAL"}],
                "settings": {"maxRetries": 1, "timeoutMs": 60000}
            }),
        )
        .await;
        let e = finished(&owner, &start(&owner, &wf, json!({})).await).await;
        assert_eq!(e["status"], "FAILED", "{name}: {e}");
        assert!(
            e["error"]
                .as_str()
                .unwrap()
                .contains("timed out after 300 ms"),
            "{name}: {e}"
        );
        let attempts = steps_of(&e, "slow");
        assert_eq!(attempts.len(), 2, "{name}");
        for a in attempts {
            assert_eq!(a["status"], "TIMED_OUT", "{name}");
        }
    }
}

#[tokio::test]
async fn the_ssrf_guard_refuses_internal_addresses_directly_and_through_redirects() {
    for backend in Backend::all() {
        let name = backend.name();
        let (url, seen) = server().await;
        let port = url.rsplit(':').next().unwrap().to_string();
        // Without an allow-list, the test server itself (loopback) is internal.
        let strict = fleet(&backend, false).await;
        let targets = [
            url.clone(),
            format!("http://localhost:{port}/echo"),
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "http://10.0.0.1/".to_string(),
            "http://100.64.1.1/".to_string(),
            "http://[::1]/".to_string(),
            format!("http://[::ffff:127.0.0.1]:{port}/echo"),
            "http://224.0.0.1/".to_string(),
            "http://0.0.0.0/".to_string(),
        ];
        // Each on its own, so every one is tried.
        for target in &targets {
            let (owner, wf) = published(
                &strict,
                &format!("ssrf-{}@example.com", uuid::Uuid::new_v4().simple()),
                json!({"nodes": [{"id": "n", "type": "http_request", "config": {"url": target}}], "triggers": [{"kind": "MANUAL"}]}),
            )
            .await;
            let e = finished(&owner, &start(&owner, &wf, json!({})).await).await;
            assert_eq!(e["status"], "FAILED", "{name}: {target}");
            let s = steps_of(&e, "n");
            assert_eq!(s.len(), 1, "{name}: {target}: refusals are not retried");
            let error = s[0]["error"].as_str().unwrap();
            assert!(
                error.contains("refused to reach") && error.contains("http_request.allow"),
                "{name}: {target}: {error}"
            );
        }
        assert!(
            seen.lock().unwrap().is_empty(),
            "{name}: no request got through"
        );

        // Allow-listed loopback: the server is reached, but its redirects to the
        // metadata service or to a mapped loopback address are refused.
        let allowed = fleet(&backend, true).await;
        for (path, why) in [
            ("to-metadata", "cloud metadata"),
            ("to-mapped", "IPv4-mapped"),
        ] {
            let (owner, wf) = published(
                &allowed,
                &format!("redirect-{path}@example.com"),
                json!({"nodes": [{"id": "n", "type": "http_request", "config": {"url": format!("{url}/{path}")}}], "triggers": [{"kind": "MANUAL"}]}),
            )
            .await;
            let e = finished(&owner, &start(&owner, &wf, json!({})).await).await;
            assert_eq!(e["status"], "FAILED", "{name}: {path}");
            let error = e["error"].as_str().unwrap();
            assert!(
                error.contains("refused to reach") && error.contains(why),
                "{name}: {path}: {error}"
            );
        }
        // The server saw the two redirecting requests, and nothing followed them.
        let paths: Vec<String> = seen.lock().unwrap().iter().map(|r| r.0.clone()).collect();
        assert_eq!(
            paths,
            vec!["/to-metadata", "/to-mapped"],
            "{name}: the redirects were not followed"
        );
    }
}

#[tokio::test]
async fn cancelling_stops_the_running_step_and_starts_nothing_more() {
    for backend in Backend::all() {
        let name = backend.name();
        let (url, seen) = server().await;
        let fleet = fleet(&backend, true).await;
        let (owner, wf) = published(
            &fleet,
            "cancel@example.com",
            json!({
                "nodes": [
                    {"id": "hang", "type": "http_request", "config": {"url": format!("{url}/hang")}},
                    {"id": "after", "type": "passthrough"}
                ],
                "edges": [{"source": "hang", "target": "after"}],
                "triggers": [{"kind": "MANUAL"}]
            }),
        )
        .await;
        let id = start(&owner, &wf, json!({})).await;
        support::eventually(30, || {
            let (owner, id) = (&owner, &id);
            async move {
                let e = owner
                    .client
                    .ok(support::engine::EXECUTION, json!({"id": id}))
                    .await;
                (e["execution"]["steps"][0]["status"] == "RUNNING").then_some(())
            }
        })
        .await;
        let cancelled = owner
            .client
            .ok(
                "mutation($id: ID!) { cancelExecution(id: $id) { status error } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(
            cancelled["cancelExecution"]["status"], "CANCELLED",
            "{name}: {cancelled}"
        );
        // The worker is told: it drops the request in flight.
        support::eventually(30, || {
            let seen = &seen;
            async move {
                seen.lock()
                    .unwrap()
                    .iter()
                    .any(|r| r.0 == "abandoned /hang")
                    .then_some(())
            }
        })
        .await;
        let e = finished(&owner, &id).await;
        assert_eq!(e["status"], "CANCELLED", "{name}");
        assert!(
            e["error"].as_str().unwrap().contains("cancelled by user"),
            "{name}"
        );
        let hang = steps_of(&e, "hang");
        assert_eq!(hang.len(), 1, "{name}: not retried");
        assert_eq!(hang[0]["status"], "CANCELLED", "{name}");
        assert!(
            steps_of(&e, "after").is_empty(),
            "{name}: nothing started after"
        );
        // Cancelling again changes nothing.
        let again = owner
            .client
            .ok(
                "mutation($id: ID!) { cancelExecution(id: $id) { status } }",
                json!({"id": id}),
            )
            .await;
        assert_eq!(again["cancelExecution"]["status"], "CANCELLED", "{name}");
    }
}
