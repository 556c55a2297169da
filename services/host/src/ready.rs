//! `GET /ready` of service and worker processes: whether the process can do its work now,
//! as opposed to `/health` (the process is up). It checks what the process depends on:
//! each database it opened (`SELECT 1`), the broker (a channel opens on the shared
//! connection, reconnecting first if it dropped) and Redis (`PING`), each within a second,
//! all at once. Kubernetes takes a pod that answers 503 out of its Service until it
//! answers 200 again, rather than restarting it: an outage of PostgreSQL is not fixed by
//! restarting every pod.
//!
//! 200 `{"status":"ready","checks":{"database:workflow":"up",...}}`, or 503 with the
//! same shape naming what is `"down"`; the errors are logged, not returned.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use futures::future::{join_all, BoxFuture};
use serde_json::{json, Map, Value};

/// One dependency's check: `Ok` when it answers.
pub type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a service or worker answers whether it can serve (readiness probes): its
/// databases, broker and Redis answer.
pub const READY_PATH: &str = "/ready";

/// The dependencies of one process. Cheap to clone; checks added later are seen by every
/// clone (services register their databases as they open them).
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<Vec<(String, Check)>>>,
}

impl Readiness {
    pub fn add(&self, name: impl Into<String>, check: Check) {
        self.checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.into(), check));
    }

    /// Runs every check; `true` when all pass.
    pub async fn check(&self) -> (bool, Map<String, Value>) {
        let checks = self
            .checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let answers = join_all(checks.iter().map(|(name, check)| async move {
            let up = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(Ok(())) => true,
                Ok(Err(error)) => {
                    tracing::warn!(dependency = %name, %error, "readiness check failed");
                    false
                }
                Err(_) => {
                    tracing::warn!(dependency = %name, "readiness check timed out");
                    false
                }
            };
            (name.clone(), up)
        }))
        .await;
        let ready = answers.iter().all(|(_, up)| *up);
        let checks = answers
            .into_iter()
            .map(|(name, up)| (name, Value::from(if up { "up" } else { "down" })))
            .collect();
        (ready, checks)
    }

    /// `GET /ready`.
    pub fn route<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        let readiness = self.clone();
        axum::Router::new().route(
            READY_PATH,
            axum::routing::get(move || {
                let readiness = readiness.clone();
                async move { readiness.respond().await }
            }),
        )
    }

    async fn respond(&self) -> Response {
        let (ready, checks) = self.check().await;
        let status = if ready {
            http::StatusCode::OK
        } else {
            http::StatusCode::SERVICE_UNAVAILABLE
        };
        let body = json!({
            "status": if ready { "ready" } else { "unavailable" },
            "checks": checks,
        });
        (status, axum::Json(body)).into_response()
    }
}
