//! Every alert has a severity, a summary, a description and a runbook URL naming its own
//! section of docs/runbook.md, and a unit test where it fires and one where it stays
//! quiet; the alerts issue #22 asks for are all there. An on-call person gets a page
//! they can act on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::deploy::{root, venv, yaml_documents};
use crate::support::observability::{rules, RULE_TESTS};

const RUNBOOK: &str = "docs/runbook.md";
const RUNBOOK_URL: &str = "https://github.com/flowfleet/flowfleet/blob/main/docs/runbook.md";

/// The alerts issue #22 asks for, by what they watch.
const REQUIRED_ALERTS: &[(&str, &str)] = &[
    ("gateway error rate", "FlowfleetGatewayErrorRate"),
    ("gateway latency SLO", "FlowfleetGatewayLatencySLO"),
    ("subgraph errors", "FlowfleetSubgraphErrors"),
    ("circuit breaker open", "FlowfleetCircuitBreakerOpen"),
    ("rate limiting surge", "FlowfleetRateLimitSurge"),
    ("queue backlog", "FlowfleetQueueBacklog"),
    ("dead letters", "FlowfleetDeadLetters"),
    ("worker saturation", "FlowfleetWorkerSaturation"),
    ("no cron leader", "FlowfleetCronNoLeader"),
    ("outbox lag", "FlowfleetOutboxLag"),
    ("database pool exhaustion", "FlowfleetDbPoolExhausted"),
    ("certificate expiry", "FlowfleetCertificateExpiry"),
    ("process down", "FlowfleetProcessDown"),
    (
        "notification delivery failures",
        "FlowfleetNotificationDeliveryFailures",
    ),
    ("execution failure ratio", "FlowfleetExecutionFailureRatio"),
    ("PostgreSQL", "FlowfleetPostgresDown"),
    ("Redis", "FlowfleetRedisDown"),
    ("RabbitMQ", "FlowfleetRabbitMQResourceAlarm"),
    ("high memory", "FlowfleetHighMemory"),
];

/// A heading's anchor as GitHub makes it.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The runbook's sections by anchor: each heading's text up to the next heading of the
/// same or a higher level.
fn runbook_sections() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root().join(RUNBOOK)).expect("docs/runbook.md");
    // Lines inside code blocks are no headings (a shell comment starts with `#` too).
    let mut fenced = false;
    let lines: Vec<(bool, &str)> = text
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return (true, line);
            }
            (fenced, line)
        })
        .collect();
    let level = |(fenced, line): &(bool, &str)| {
        let depth = line.chars().take_while(|c| *c == '#').count();
        if *fenced || depth == 0 || !line[depth..].starts_with(' ') {
            0
        } else {
            depth
        }
    };
    let mut sections = BTreeMap::new();
    for (i, entry) in lines.iter().enumerate() {
        let depth = level(entry);
        if depth == 0 {
            continue;
        }
        let body: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| {
                let d = level(l);
                d == 0 || d > depth
            })
            .map(|(_, l)| *l)
            .collect();
        sections.insert(anchor(&entry.1[depth..]), body.join("\n"));
    }
    sections
}

/// For each alert of the unit tests: whether a case expects it to fire, and whether one
/// expects it quiet.
fn tested_alerts(python: &Path) -> BTreeMap<String, (bool, bool)> {
    let mut tested: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for document in yaml_documents(python, &root().join(RULE_TESTS), "BaseLoader") {
        let cases = document["tests"].as_array().into_iter().flatten();
        for case in cases.flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten()) {
            let name = case["alertname"]
                .as_str()
                .unwrap_or_else(|| panic!("{RULE_TESTS}: a case without alertname: {case}"));
            // BaseLoader reads the flow sequence `[]` as an empty list; a missing key is null.
            let expected = case["exp_alerts"].as_array().unwrap_or_else(|| {
                panic!("{RULE_TESTS}: {name}: exp_alerts is neither [] nor a list")
            });
            let entry = tested.entry(name.to_string()).or_default();
            if expected.is_empty() {
                entry.1 = true;
            } else {
                entry.0 = true;
            }
        }
    }
    tested
}

#[test]
fn every_alert_is_labelled_annotated_documented_and_tested() {
    let Some(python) = venv() else { return };
    let alerts: Vec<_> = rules(&python)
        .into_iter()
        .filter(|r| r.alert.is_some())
        .collect();
    assert!(alerts.len() >= 15, "only {} alerts", alerts.len());
    let names: BTreeSet<&str> = alerts.iter().map(|a| a.name()).collect();
    assert_eq!(names.len(), alerts.len(), "two alerts share a name");
    for (what, name) in REQUIRED_ALERTS {
        assert!(names.contains(name), "no alert for {what} ({name})");
    }
    let sections = runbook_sections();
    let tested = tested_alerts(&python);
    for alert in &alerts {
        let name = alert.name();
        let severity = alert.labels.get("severity").map(String::as_str);
        assert!(
            matches!(severity, Some("page" | "ticket")),
            "{name}: severity {severity:?} is neither page nor ticket"
        );
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                alert
                    .annotations
                    .get(key)
                    .is_some_and(|v| !v.trim().is_empty()),
                "{name} has no {key}"
            );
        }
        let url = &alert.annotations["runbook_url"];
        let (page, fragment) = url
            .split_once('#')
            .unwrap_or_else(|| panic!("{name}: {url} names no section"));
        assert_eq!(
            page, RUNBOOK_URL,
            "{name}: the runbook URL is not {RUNBOOK}'s"
        );
        assert_eq!(
            fragment,
            anchor(name),
            "{name}: its runbook URL names another alert's section"
        );
        let section = sections
            .get(fragment)
            .unwrap_or_else(|| panic!("{RUNBOOK} has no section {fragment} ({name})"));
        for part in ["Meaning", "Impact", "Diagnosis", "Remedy"] {
            assert!(
                section.contains(&format!("**{part}.**")),
                "{RUNBOOK}#{fragment}: no **{part}.**"
            );
        }
        let (fires, quiet) = tested.get(name).copied().unwrap_or_default();
        assert!(fires, "{RULE_TESTS}: no case where {name} fires");
        assert!(quiet, "{RULE_TESTS}: no case where {name} stays quiet");
    }
    for name in tested.keys() {
        assert!(
            names.contains(name.as_str()),
            "{RULE_TESTS} tests {name}, which is no alert"
        );
    }
}
