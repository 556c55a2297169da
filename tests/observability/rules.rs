//! The alert rules pass `promtool check rules` and their unit tests `promtool test
//! rules`, promtool refuses a broken rule and a wrong expectation (so a promtool that
//! passed everything would be caught), and the test suite's rule reader agrees with it.

use crate::support::deploy::{root, venv};
use crate::support::observability::{promtool, rules, rules_in, run_promtool, RULES, RULE_TESTS};

#[test]
fn the_rule_reader_reads_what_promtool_reads() {
    let Some(python) = venv() else { return };
    let text = r#"
groups:
  - name: g
    rules:
      - record: job:x:rate5m
        expr: sum by (job) (rate(x_total[5m]))
      - alert: A
        expr: |
          job:x:rate5m
          > 1
        for: 5m
        labels:
          severity: page
        annotations:
          summary: "It is {{ $value }} \"high\""
          runbook_url: 'https://example.com/a#it''s'
"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yml");
    std::fs::write(&file, text).unwrap();
    let parsed = rules_in(&python, &file);
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[0].record.as_deref(), Some("job:x:rate5m"));
    assert_eq!(parsed[0].expr, "sum by (job) (rate(x_total[5m]))");
    let alert = &parsed[1];
    assert_eq!(alert.alert.as_deref(), Some("A"));
    assert_eq!(alert.expr, "job:x:rate5m\n> 1");
    assert_eq!(alert.duration.as_deref(), Some("5m"));
    assert_eq!(alert.labels["severity"], "page");
    assert_eq!(alert.annotations["summary"], "It is {{ $value }} \"high\"");
    assert_eq!(
        alert.annotations["runbook_url"],
        "https://example.com/a#it's"
    );
}

#[test]
fn the_rules_pass_promtool_and_their_unit_tests() {
    let (Some(promtool), Some(python)) = (promtool(), venv()) else {
        return;
    };
    let (ok, said) = run_promtool(&promtool, root(), &["check", "rules", RULES]);
    assert!(ok, "promtool check rules {RULES}:\n{said}");
    let found: usize = said
        .split("SUCCESS: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("promtool did not say how many rules: {said}"));
    assert_eq!(
        found,
        rules(&python).len(),
        "promtool and tests/support/observability.rs read a different number of rules"
    );
    let (ok, said) = run_promtool(&promtool, root(), &["test", "rules", RULE_TESTS]);
    assert!(ok, "promtool test rules {RULE_TESTS}:\n{said}");
    let (ok, said) = run_promtool(
        &promtool,
        root(),
        &["check", "config", "docker/prometheus/prometheus.yml"],
    );
    assert!(ok, "promtool check config:\n{said}");
}

/// promtool refuses what it should: without this, a promtool that passed everything would
/// make the test above pass too.
#[test]
fn promtool_refuses_a_broken_rule_and_a_wrong_expectation() {
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.yml"),
        "groups:\n  - name: broken\n    rules:\n      - alert: Broken\n        expr: sum(rate(flowfleet_gateway_operations_total[5m])\n",
    )
    .unwrap();
    let (ok, said) = run_promtool(&promtool, dir.path(), &["check", "rules", "broken.yml"]);
    assert!(!ok, "promtool accepted an unbalanced expression: {said}");

    let rules = root().join(RULES);
    let case = |values: &str| {
        format!(
            "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'up{{job=\"flowfleet-worker\", instance=\"worker-1:9100\"}}'\n        values: '{values}'\n    alert_rule_test:\n      - eval_time: 6m\n        alertname: FlowfleetProcessDown\n        exp_alerts: []\n",
            rules.display()
        )
    };
    // The same expectation (quiet) holds for a process that is up, not for one that is down.
    std::fs::write(dir.path().join("right.yml"), case("1x10")).unwrap();
    std::fs::write(dir.path().join("wrong.yml"), case("0x10")).unwrap();
    let (ok, said) = run_promtool(&promtool, dir.path(), &["test", "rules", "right.yml"]);
    assert!(ok, "the control case failed: {said}");
    let (ok, said) = run_promtool(&promtool, dir.path(), &["test", "rules", "wrong.yml"]);
    assert!(!ok, "promtool passed a wrong expectation: {said}");
}
