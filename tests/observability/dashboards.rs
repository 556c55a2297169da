//! The six Grafana dashboards parse, have distinct uids and titles, lay out panels of
//! known types on the provisioned Prometheus datasource, and every query parses with
//! promtool: a broken panel shows nothing, and nothing fails until someone looks.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::deploy::venv;
use crate::support::observability::{
    dashboards, panels, prometheus_datasource_uid, promtool, run_promtool,
};
use crate::DASHBOARD_FILES;

/// Grafana variables the dashboards may use, and what stands in for them when promtool
/// parses the expressions.
const GRAFANA_VARIABLES: &[(&str, &str)] = &[
    ("$__rate_interval", "5m"),
    ("$__interval", "1m"),
    ("$__range", "1h"),
];

#[test]
fn the_six_dashboards_are_complete_and_their_queries_parse() {
    let Some(python) = venv() else { return };
    let all = dashboards();
    let files: Vec<&str> = all.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        files, DASHBOARD_FILES,
        "the dashboards under docker/grafana/dashboards"
    );
    let datasource = prometheus_datasource_uid(&python);
    let mut uids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    let mut queries = Vec::new();
    for (file, dashboard) in &all {
        let uid = dashboard["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no uid"));
        assert!(uids.insert(uid.to_string()), "{file}: uid {uid} is taken");
        let title = dashboard["title"].as_str().expect("a title");
        assert!(
            titles.insert(title.to_string()),
            "{file}: title {title} is taken"
        );
        assert!(
            dashboard["id"].is_null(),
            "{file}: a provisioned dashboard has no id"
        );
        let schema = dashboard["schemaVersion"].as_u64().unwrap_or(0);
        assert!(
            (36..=41).contains(&schema),
            "{file}: schemaVersion {schema}"
        );
        assert!(
            dashboard["tags"]
                .as_array()
                .is_some_and(|t| t.contains(&Value::from("flowfleet"))),
            "{file}: not tagged flowfleet (the dashboards' links find each other by it)"
        );
        let panels = panels(dashboard);
        assert!(panels.len() >= 6, "{file}: only {} panels", panels.len());
        let mut ids = BTreeSet::new();
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("");
            let at = format!("{file}: panel '{title}'");
            assert!(!title.is_empty(), "{file}: a panel without a title");
            let kind = panel["type"].as_str().unwrap_or("");
            assert!(
                ["timeseries", "stat", "gauge", "table"].contains(&kind),
                "{at}: type {kind}"
            );
            assert!(
                ids.insert(panel["id"].as_u64().expect("a panel id")),
                "{at}: id taken"
            );
            let grid = &panel["gridPos"];
            let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
            assert!(
                x + w <= 24 && grid["h"].as_u64().unwrap() > 0,
                "{at}: gridPos {grid}"
            );
            assert_eq!(panel["datasource"]["type"], "prometheus", "{at}");
            assert_eq!(panel["datasource"]["uid"], datasource.as_str(), "{at}");
            let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
            let targets = targets.unwrap_or_else(|| panic!("{at}: no targets"));
            let mut refs = BTreeSet::new();
            for target in targets {
                assert!(
                    refs.insert(target["refId"].to_string()),
                    "{at}: refId taken"
                );
                if !target["datasource"].is_null() {
                    assert_eq!(target["datasource"]["uid"], datasource.as_str(), "{at}");
                }
                let expr = target["expr"].as_str().unwrap_or("");
                assert!(!expr.trim().is_empty(), "{at}: a target without PromQL");
                queries.push((at.clone(), expr.to_string()));
            }
        }
    }
    // promtool parses every query, Grafana's variables stood in for.
    let Some(promtool) = promtool() else { return };
    let mut file = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for (i, (at, expr)) in queries.iter().enumerate() {
        let mut expr = expr.clone();
        for (variable, value) in GRAFANA_VARIABLES {
            expr = expr.replace(variable, value);
        }
        assert!(
            !expr.contains('$'),
            "{at}: an unknown Grafana variable in {expr}"
        );
        file.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: |\n          {}\n",
            expr.replace('\n', "\n          ")
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("queries.yml"), &file).unwrap();
    let (ok, said) = run_promtool(&promtool, dir.path(), &["check", "rules", "queries.yml"]);
    let index: Vec<String> = queries
        .iter()
        .enumerate()
        .map(|(i, (at, _))| format!("  dashboard_query_{i}: {at}"))
        .collect();
    assert!(
        ok,
        "promtool refuses dashboard queries:\n{said}\n{}",
        index.join("\n")
    );
}
