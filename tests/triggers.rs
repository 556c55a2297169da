//! Triggers end to end, on both backends: webhooks (token and HMAC secrets,
//! refusals, the request as input, idempotent deliveries, a synchronous reply
//! through `webhook_response`, its timeout, and archiving that closes the hook)
//! and cron schedules (every second here, each scheduled time started once);
//! on the distributed backend, two replicas of the fleet sharing one database
//! run one scheduler between them, and the other takes over when it stops.

mod support;

use std::time::Duration;

use flowfleet_host::testing::Backend;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use support::engine::{finished, publish_as, workspace};
use support::eventually;
use support::in_process::{start_with, Fleet, Person};

async fn fleet(backend: &Backend) -> Fleet {
    start_with(backend, |c| {
        c.triggers.cron_tick_ms = 200;
        c.triggers.cron_lease_ms = 1_500;
    })
    .await
}

/// A SECRET credential holding `value`, in `owner`'s workspace.
async fn secret(owner: &Person, value: &str) -> String {
    let ws = workspace(owner).await;
    let r = owner
        .client
        .ok(
            "mutation($i: CreateCredentialInput!) { createCredential(input: $i) { id } }",
            json!({"i": {"workspaceId": ws, "name": format!("hook {value}"), "kind": "SECRET", "value": {"value": value}}}),
        )
        .await;
    r["createCredential"]["id"].as_str().unwrap().to_string()
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs `body` to a hook with `headers`; the status and JSON answer.
async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut answer: Value = response.json().await.unwrap_or(Value::Null);
    if let Some(h) = headers.get("x-order") {
        answer["x-order header"] = json!(h.to_str().unwrap());
    }
    (status, answer)
}

#[tokio::test]
async fn webhooks_check_their_secret_and_reply_through_webhook_response() {
    for backend in Backend::all() {
        let f = fleet(&backend).await;
        let owner = f.sign_up("hooks@example.com").await;
        let token = secret(&owner, "t0ken-secret").await;
        let signing = secret(&owner, "signing-secret").await;
        let wf = publish_as(
            &owner,
            json!({
                "nodes": [
                    {"id": "total", "type": "transform", "config": {"expression": "{order: .body.id, items: (.body.items | length), source: .query.source, agent: .headers[\"user-agent\"], leaked: (.headers | keys | map(select(startswith(\"x-flowfleet\"))))}"}},
                    {"id": "reply", "type": "webhook_response", "config": {"status": 201, "headers": {"x-order": "accepted"}}},
                    {"id": "after", "type": "passthrough"}
                ],
                "edges": [{"source": "total", "target": "reply"}, {"source": "reply", "target": "after"}],
                "triggers": [
                    {"kind": "WEBHOOK", "path": "orders", "secretCredentialId": token, "respond": "WITH_NODE"},
                    {"kind": "WEBHOOK", "path": "signed", "auth": "HMAC", "secretCredentialId": signing}
                ]
            }),
        )
        .await;
        let hook = |path: &str| format!("{}/hooks/{wf}/{path}", f.base());
        let body = r#"{"id": 42, "items": [1, 2, 3]}"#;
        // The feed reaches the execution service moments after publishing.
        let (status, answer) = eventually(30, || async {
            let r = post(
                &format!("{}?source=shop", hook("orders")),
                &[
                    ("x-flowfleet-token", "t0ken-secret"),
                    ("user-agent", "shop/1.0"),
                ],
                body,
            )
            .await;
            (r.0 != 404).then_some(r)
        })
        .await;
        assert_eq!(status, 201, "{backend:?}: {answer}");
        assert_eq!(
            answer,
            json!({"order": 42, "items": 3, "source": "shop", "agent": "shop/1.0", "leaked": [], "x-order header": "accepted"}),
            "{backend:?}"
        );

        // Refusals.
        let (status, answer) = post(&hook("orders"), &[("x-flowfleet-token", "guess")], body).await;
        assert_eq!(
            (status, answer["error"].as_str().unwrap()),
            (401, "missing or wrong X-Flowfleet-Token"),
            "{backend:?}"
        );
        assert_eq!(post(&hook("orders"), &[], body).await.0, 401, "{backend:?}");
        assert_eq!(
            post(
                &hook("elsewhere"),
                &[("x-flowfleet-token", "t0ken-secret")],
                body
            )
            .await
            .0,
            404
        );
        let (status, answer) = post(
            &format!("{}/hooks/{}/orders", f.base(), uuid::Uuid::now_v7()),
            &[],
            body,
        )
        .await;
        assert_eq!(
            (status, answer["error"].as_str().unwrap()),
            (404, "no webhook at this address")
        );
        assert_eq!(
            post(&format!("{}/hooks/not-an-id", f.base()), &[], body)
                .await
                .0,
            404
        );
        let huge = format!("\"{}\"", "x".repeat(1_100_000));
        let (status, answer) = post(
            &hook("orders"),
            &[("x-flowfleet-token", "t0ken-secret")],
            &huge,
        )
        .await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (413, Some("the request body is too large")),
            "{backend:?}"
        );

        // HMAC: the signature of the exact body; answered at once.
        let (status, _) = post(
            &hook("signed"),
            &[("x-flowfleet-signature", &sign("signing-secret", b"{}"))],
            body,
        )
        .await;
        assert_eq!(status, 401, "{backend:?}: a signature of another body");
        let good = sign("signing-secret", body.as_bytes());
        let delivery = [
            ("x-flowfleet-signature", good.as_str()),
            ("idempotency-key", "delivery-1"),
        ];
        let (status, first) = post(&hook("signed"), &delivery, body).await;
        assert_eq!(status, 202, "{backend:?}: {first}");
        let (_, again) = post(&hook("signed"), &delivery, body).await;
        assert_eq!(
            again["executionId"], first["executionId"],
            "{backend:?}: a redelivery starts nothing new"
        );
        let e = finished(&owner, first["executionId"].as_str().unwrap()).await;
        assert_eq!(e["status"], "SUCCEEDED", "{backend:?}: {e}");
        let input = owner
            .client
            .ok(
                "query($id: ID!) { execution(id: $id) { input trigger } }",
                json!({"id": first["executionId"]}),
            )
            .await["execution"]
            .clone();
        assert_eq!(input["trigger"], "WEBHOOK");
        assert_eq!(input["input"]["method"], "POST");
        assert_eq!(
            input["input"]["body"],
            json!({"id": 42, "items": [1, 2, 3]})
        );
        assert!(
            input["input"]["headers"]
                .get("x-flowfleet-signature")
                .is_none(),
            "{input}"
        );

        // Archiving closes the hook.
        owner
            .client
            .ok(
                "mutation($id: ID!) { archiveWorkflow(id: $id) { id } }",
                json!({"id": wf}),
            )
            .await;
        eventually(30, || async {
            (post(
                &hook("orders"),
                &[("x-flowfleet-token", "t0ken-secret")],
                body,
            )
            .await
            .0 == 404)
                .then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn a_webhook_waiting_for_a_reply_times_out_with_the_execution_id() {
    for backend in Backend::all() {
        let f = fleet(&backend).await;
        let owner = f.sign_up("slow-hooks@example.com").await;
        let token = secret(&owner, "s").await;
        let wf = publish_as(
            &owner,
            json!({
                "nodes": [
                    {"id": "wait", "type": "delay", "config": {"durationMs": 1500}},
                    {"id": "reply", "type": "webhook_response", "config": {"body": "late"}}
                ],
                "edges": [{"source": "wait", "target": "reply"}],
                "triggers": [{"kind": "WEBHOOK", "secretCredentialId": token, "respond": "WITH_NODE", "timeoutMs": 300}]
            }),
        )
        .await;
        let url = format!("{}/hooks/{wf}", f.base());
        let (status, answer) = eventually(30, || async {
            let r = post(&url, &[("x-flowfleet-token", "s")], "{}").await;
            (r.0 != 404).then_some(r)
        })
        .await;
        assert_eq!(status, 504, "{backend:?}: {answer}");
        // The execution goes on and finishes.
        let e = finished(&owner, answer["executionId"].as_str().unwrap()).await;
        assert_eq!(e["status"], "SUCCEEDED", "{backend:?}: {e}");
    }
}

/// The scheduled times of a workflow's CRON executions, in order.
async fn scheduled(owner: &Person, wf: &str) -> Vec<String> {
    let r = owner
        .client
        .ok(
            "query($id: ID!) { workflow(id: $id) { executions(first: 100, filter: {trigger: \"CRON\"}) { nodes { input } } } }",
            json!({"id": wf}),
        )
        .await;
    let mut times: Vec<String> = r["workflow"]["executions"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["input"]["scheduledAt"].as_str().unwrap().to_string())
        .collect();
    times.sort();
    times
}

fn every_second() -> Value {
    json!({
        "nodes": [{"id": "tick", "type": "passthrough"}],
        "edges": [],
        "triggers": [{"kind": "CRON", "expression": "* * * * * *", "timezone": "Asia/Kolkata"}]
    })
}

#[tokio::test]
async fn a_cron_schedule_starts_one_execution_per_scheduled_time() {
    for backend in Backend::all() {
        let f = fleet(&backend).await;
        let owner = f.sign_up("cron@example.com").await;
        let wf = publish_as(&owner, every_second()).await;
        let times = eventually(30, || async {
            let t = scheduled(&owner, &wf).await;
            (t.len() >= 3).then_some(t)
        })
        .await;
        let mut unique = times.clone();
        unique.dedup();
        assert_eq!(unique, times, "{backend:?}: a time started twice");
        for t in &times {
            let at = chrono::DateTime::parse_from_rfc3339(t).unwrap();
            assert_eq!(
                at.timestamp_subsec_millis(),
                0,
                "{backend:?}: {t} is on a second"
            );
        }
        let e = owner.client.ok("query($id: ID!, $f: ExecutionFilter) { workflow(id: $id) { executions(first: 1, filter: $f) { nodes { id } } } }", json!({"id": wf, "f": {"trigger": "CRON"}})).await;
        let id = e["workflow"]["executions"]["nodes"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let e = finished(&owner, &id).await;
        assert_eq!(e["status"], "SUCCEEDED", "{backend:?}: {e}");
        // No one started it by hand: its outcome reaches the workflow's owner.
        eventually(30, || async {
            let me = owner
                .client
                .ok(
                    "{ me { notifications(first: 100) { nodes { body } } } }",
                    json!({}),
                )
                .await;
            me["me"]["notifications"]["nodes"]
                .as_array()
                .is_some_and(|n| {
                    n.iter()
                        .any(|n| n["body"].as_str().unwrap_or("").contains(&id))
                })
                .then_some(())
        })
        .await;
        // Archived: the schedule stops.
        owner
            .client
            .ok(
                "mutation($id: ID!) { archiveWorkflow(id: $id) { id } }",
                json!({"id": wf}),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let stopped = scheduled(&owner, &wf).await.len();
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        assert_eq!(
            scheduled(&owner, &wf).await.len(),
            stopped,
            "{backend:?}: still firing after archiving"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_scheduler_and_another_takes_over_when_it_stops() {
    let Some(backend) = Backend::all()
        .into_iter()
        .find(|b| matches!(b, Backend::Distributed { .. }))
    else {
        return; // one process cannot be two replicas of the embedded mode
    };
    // The replicas count their fires in this process's metrics, by replica.
    let metrics = flowfleet_runtime::telemetry::metrics_handle();
    let fires = || cron_fires(&metrics.render());

    // The first replica alone: it takes the lease and fires.
    let mut first = fleet(&backend).await;
    let owner = first.sign_up("replicas@example.com").await;
    let wf = publish_as(&owner, every_second()).await;
    eventually(30, || async {
        (scheduled(&owner, &wf).await.len() >= 2).then_some(())
    })
    .await;
    let alone = fires();
    assert_eq!(alone.len(), 1, "one scheduler fired: {alone:?}");
    let leader = alone.keys().next().unwrap().clone();

    // A second replica joins; the first keeps the lease, and the second never fires.
    let second = first.replica().await;
    let before = scheduled(&owner, &wf).await.len();
    eventually(30, || async {
        (scheduled(&owner, &wf).await.len() >= before + 4).then_some(())
    })
    .await;
    let together = fires();
    assert_eq!(
        together.keys().collect::<Vec<_>>(),
        vec![&leader],
        "only the lease holder fires while both replicas run: {together:?}"
    );
    assert!(together[&leader] >= alone[&leader] + 4, "{together:?}");

    // The first stops: the second takes over, and the first has fired its last.
    first.stop().await;
    let stopped = fires()[&leader];
    let mut reader = support::Client::new(&second.url);
    reader.token = owner.client.token.clone();
    let owner = Person {
        id: owner.id.clone(),
        client: reader,
    };
    let before = scheduled(&owner, &wf).await.len();
    let times = eventually(30, || async {
        let t = scheduled(&owner, &wf).await;
        (t.len() >= before + 4).then_some(t)
    })
    .await;
    let after = fires();
    assert_eq!(
        after[&leader], stopped,
        "a stopped replica fired: {after:?}"
    );
    assert_eq!(after.len(), 2, "the second replica took over: {after:?}");
    assert!(after.iter().all(|(_, n)| *n > 0), "{after:?}");
    let mut unique = times.clone();
    unique.dedup();
    assert_eq!(unique, times, "two schedulers started the same time");
}

/// `flowfleet_cron_fires_total` by replica, from a Prometheus exposition.
fn cron_fires(exposition: &str) -> std::collections::BTreeMap<String, u64> {
    exposition
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("flowfleet_cron_fires_total{replica=\"")?;
            let (replica, value) = rest.split_once("\"} ")?;
            Some((
                replica.to_string(),
                value.trim().parse::<f64>().ok()? as u64,
            ))
        })
        // Every replica's series is registered at zero when it starts: only firing counts.
        .filter(|(_, fires)| *fires > 0)
        .collect()
}
