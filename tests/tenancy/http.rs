//! The HTTP routes beside `/graphql` that decide by role. Uploading a file
//! (`PUT /files`, or `POST`) needs an EDITOR of the workspace named in the query. The other routes
//! are not role decisions: a download link is its own credential (checked before the
//! file is looked up), and a webhook call is authenticated by its trigger's secret.
//! `GET /ready` (like `/health` and `/metrics`) is an operator's probe that tells no
//! tenant anything: its rows show every caller gets the same answer, credential or not.

use serde_json::Value;

use crate::support::in_process::Fleet;
use crate::world::{needs, Caller, Outcome, Who, World, FORBIDDEN};

pub const ROUTES: [&str; 3] = ["POST /files", "PUT /files", "GET /ready"];

/// Calls `route` as `caller`; returns the outcome and what it should be.
pub async fn row(
    route: &str,
    fleet: &Fleet,
    w: &World,
    caller: Caller,
) -> (Outcome, Option<String>) {
    match route {
        "POST /files" | "PUT /files" => {
            let url = fleet.url.replace("/graphql", "/files");
            let client = reqwest::Client::new();
            let request = if route.starts_with("PUT") {
                client.put(url)
            } else {
                client.post(url)
            };
            let response = request
                .query(&[
                    ("workspaceId", w.workspace.as_str()),
                    ("name", "matrix.txt"),
                ])
                .bearer_auth(w.credential_of(caller))
                .header("content-type", "text/plain")
                .body("from the tenancy matrix")
                .send()
                .await
                .expect("the fleet answers");
            (
                outcome(response).await,
                needs(Who::Editor, caller, FORBIDDEN),
            )
        }
        "GET /ready" => {
            let response = reqwest::Client::new()
                .get(fleet.url.replace("/graphql", "/ready"))
                .bearer_auth(w.credential_of(caller))
                .send()
                .await
                .expect("the fleet answers");
            let outcome = outcome(response).await.and_then(|body| {
                // The same answer for everyone: the subgraphs' states, nothing else.
                match body["status"] == "ready" && body.as_object().map(|o| o.len()) == Some(2) {
                    true => Ok(body),
                    false => Err(format!("unexpected readiness answer {body}")),
                }
            });
            (outcome, None)
        }
        other => panic!("no row for the HTTP route {other}"),
    }
}

/// `Ok` with the JSON body of a 2xx answer; otherwise the `error.code` of the body.
async fn outcome(response: reqwest::Response) -> Outcome {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        Ok(body)
    } else {
        Err(body["error"]["code"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {status} without an error code")))
    }
}
