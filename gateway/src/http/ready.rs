//! `GET /ready`: whether this gateway should get traffic. `/health` says the process is
//! up; `/ready` says it can answer: a supergraph is loaded, it is not shutting down, and
//! every subgraph answers a `{ __typename }` query within a second. The answer is kept for
//! a second, so a load balancer probing often does not multiply into subgraph traffic.
//!
//! 200 `{"status":"ready","subgraphs":{...}}` or 503 with the same shape saying which
//! subgraphs do not answer (`"down"`); the reasons are logged, not returned.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::future::join_all;
use serde_json::{json, Map, Value};

use crate::gateway::Gateway;
use crate::transport::SubgraphRequest;

/// How long a probe may take, and how long its answer is kept.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const KEEP: Duration = Duration::from_secs(1);

/// The last answer, shared by the gateway's clones.
#[derive(Default, Clone)]
pub(crate) struct Readiness {
    last: Arc<Mutex<Option<(Instant, bool, Value)>>>,
}

pub(super) async fn ready(State(gateway): State<Gateway>) -> Response {
    let (ready, body) = check(&gateway).await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn check(gateway: &Gateway) -> (bool, Value) {
    if gateway.subscriptions().closing().is_cancelled() {
        return (false, json!({"status": "shutting down"}));
    }
    let readiness = gateway.readiness();
    if let Some((at, ready, body)) = readiness.last.lock().unwrap().clone() {
        if at.elapsed() < KEEP {
            return (ready, body);
        }
    }
    let supergraph = gateway.current();
    let names = gateway.subgraph_names();
    let probes = names.iter().map(|name| {
        let transport = Gateway::transport(&supergraph, name);
        let request = SubgraphRequest::new(
            name.clone(),
            "{ __typename }",
            Map::new(),
            http::HeaderMap::new(),
        );
        async move {
            match tokio::time::timeout(PROBE_TIMEOUT, transport.execute(request)).await {
                Ok(Ok(body)) if body.get("data").is_some() => true,
                Ok(Ok(_)) => {
                    tracing::warn!(subgraph = %name, "readiness probe: no data in the answer");
                    false
                }
                Ok(Err(error)) => {
                    tracing::warn!(subgraph = %name, %error, "readiness probe failed");
                    false
                }
                Err(_) => {
                    tracing::warn!(subgraph = %name, "readiness probe timed out");
                    false
                }
            }
        }
    });
    let answers = join_all(probes).await;
    let ready = answers.iter().all(|up| *up);
    let subgraphs: Map<String, Value> = names
        .into_iter()
        .zip(answers)
        .map(|(name, up)| (name, Value::from(if up { "up" } else { "down" })))
        .collect();
    let body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "subgraphs": subgraphs,
    });
    *readiness.last.lock().unwrap() = Some((Instant::now(), ready, body.clone()));
    (ready, body)
}
