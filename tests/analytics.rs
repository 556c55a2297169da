//! Analytics end to end, on both backends: the engine's `step.finished` events and the
//! worker pool's own reports (`worker.sampled`) reach the analytics service, and the
//! workspace's dashboard answers through the gateway (which passes the workspace's time
//! zone from the auth service for `@requires`).

mod support;

use flowfleet_host::testing::Backend;
use serde_json::{json, Value};
use support::engine::{finished, published, start};
use support::eventually;
use support::in_process::start_with;

const DASHBOARD: &str = "query($range: AnalyticsRange!) { me { memberships { workspace { timeZone \
    analytics(range: $range) { timeZone totals { runs succeeded } steps { attempts } \
    slowestNodes { nodeId nodeType attempts } workers { samples stepsPerMinute utilisation averageSlots } \
    kpis { activeWorkflows runs } } } } } }";

/// Hourly buckets from an hour ago to a quarter-hour from now: the runs just made.
fn last_hour() -> Value {
    let now = chrono::Utc::now();
    json!({
        "from": (now - chrono::Duration::hours(1)).to_rfc3339(),
        "to": (now + chrono::Duration::minutes(15)).to_rfc3339(),
        "bucket": "HOUR",
    })
}

#[tokio::test]
async fn runs_steps_and_worker_reports_reach_the_dashboard() {
    for backend in Backend::all() {
        let name = backend.name();
        let fleet = start_with(&backend, |c| {
            c.worker.sample_interval_ms = 300;
            c.analytics.roll_interval_ms = 100;
        })
        .await;
        let (owner, wf) = published(
            &fleet,
            "dashboards@example.com",
            json!({
                "nodes": [
                    {"id": "start", "type": "passthrough"},
                    {"id": "shape", "type": "set", "config": {"value": {"ok": true}}}
                ],
                "edges": [{"source": "start", "target": "shape"}],
                "triggers": [{"kind": "MANUAL"}]
            }),
        )
        .await;
        for _ in 0..3 {
            let id = start(&owner, &wf, json!({})).await;
            assert_eq!(finished(&owner, &id).await["status"], "SUCCEEDED", "{name}");
        }
        let range = last_hour();
        let d: Value = eventually(30, || {
            let (client, range) = (&owner.client, range.clone());
            async move {
                let r = client.ok(DASHBOARD, json!({"range": range})).await;
                let r = r["me"]["memberships"][0].clone();
                let a = &r["workspace"]["analytics"];
                let attempts: i64 = a["steps"]
                    .as_array()?
                    .iter()
                    .filter_map(|b| b["attempts"].as_i64())
                    .sum();
                let samples: i64 = a["workers"]
                    .as_array()?
                    .iter()
                    .filter_map(|b| b["samples"].as_i64())
                    .sum();
                let worked = a["workers"]
                    .as_array()?
                    .iter()
                    .any(|b| b["stepsPerMinute"].as_f64() > Some(0.0));
                (a["totals"]["runs"] == 3 && attempts == 6 && samples > 0 && worked)
                    .then(|| r.clone())
            }
        })
        .await;
        let a = &d["workspace"]["analytics"];
        assert_eq!(
            a["timeZone"], d["workspace"]["timeZone"],
            "{name}: the workspace's own zone"
        );
        assert_eq!(a["totals"]["succeeded"], 3, "{name}");
        assert_eq!(
            a["kpis"],
            json!({"activeWorkflows": 1, "runs": 3}),
            "{name}"
        );
        let nodes: Vec<(&str, i64)> = a["slowestNodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["nodeId"].as_str().unwrap(),
                    n["attempts"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(nodes.len(), 2, "{name}: {nodes:?}");
        assert!(nodes.iter().all(|(_, n)| *n == 3), "{name}: {nodes:?}");
        let busy = a["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["utilisation"].as_f64())
            .fold(0.0, f64::max);
        assert!((0.0..=1.0).contains(&busy), "{name}: {busy}");
    }
}

#[tokio::test]
async fn without_step_events_runs_count_but_steps_do_not() {
    for backend in Backend::all() {
        let name = backend.name();
        let fleet = start_with(&backend, |c| {
            c.worker.step_events = false;
            c.analytics.roll_interval_ms = 100;
        })
        .await;
        let (owner, wf) = published(
            &fleet,
            "quiet@example.com",
            json!({
                "nodes": [{"id": "only", "type": "passthrough"}],
                "edges": [],
                "triggers": [{"kind": "MANUAL"}]
            }),
        )
        .await;
        let id = start(&owner, &wf, json!({})).await;
        assert_eq!(finished(&owner, &id).await["status"], "SUCCEEDED", "{name}");
        let range = last_hour();
        let a: Value = eventually(30, || {
            let (client, range) = (&owner.client, range.clone());
            async move {
                let r = client.ok(DASHBOARD, json!({"range": range})).await;
                let a = r["me"]["memberships"][0]["workspace"]["analytics"].clone();
                (a["totals"]["runs"] == 1).then_some(a)
            }
        })
        .await;
        let attempts: i64 = a["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["attempts"].as_i64())
            .sum();
        assert_eq!(attempts, 0, "{name}: no step.finished, no step facts");
    }
}
