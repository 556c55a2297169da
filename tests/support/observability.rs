//! The fleet's dashboards and alert rules as the tests read them: the Grafana dashboards
//! (`docker/grafana/dashboards/*.json`), the alert rules
//! (`docker/prometheus/rules/flowfleet.yml`) and every metric name their PromQL uses.
//!
//! [`metrics_used`] finds those names with a small PromQL tokenizer ([`metric_names`]);
//! [`unknown`] says which of them neither the fleet exposes (as a test scraping it finds)
//! nor a standard exporter provides ([`EXPORTER_METRICS`]). `tests/observability/`
//! checks the files themselves (promtool, the dashboards' shape).
//!
//! The YAML files (the rules, Grafana's datasources) are read by PyYAML in
//! `deploy/tests/.venv` ([`yaml_documents`]), so the functions reading them take its
//! Python; the tests cross-check the count of rules read here with promtool's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::deploy::{root, yaml_documents};

/// The alert rules, relative to the repository's root.
pub const RULES: &str = "docker/prometheus/rules/flowfleet.yml";
/// Their promtool unit tests.
pub const RULE_TESTS: &str = "docker/prometheus/rules/tests/flowfleet_test.yml";
/// The dashboards' directory.
pub const DASHBOARDS: &str = "docker/grafana/dashboards";
/// Grafana's provisioned datasources (the dashboards name Prometheus's by its uid).
pub const DATASOURCES: &str = "docker/grafana/provisioning/datasources/flowfleet.yaml";

/// Metric-name prefixes that come from standard exporters rather than from Flowfleet's
/// processes, with what exposes them. An entry ending in `_` is a prefix; any other is one
/// whole name.
pub const EXPORTER_METRICS: &[(&str, &str)] = &[
    (
        "pg_",
        "postgres_exporter (prometheus-community), beside PostgreSQL",
    ),
    ("redis_", "redis_exporter (oliver006), beside Redis"),
    (
        "rabbitmq_",
        "RabbitMQ's rabbitmq_prometheus plugin, port 15692",
    ),
    ("certmanager_", "cert-manager's controller"),
    (
        "up",
        "Prometheus itself: 1 when a target's scrape succeeded",
    ),
    ("ALERTS", "Prometheus itself: the alerts pending or firing"),
];

/// The exporter that provides `metric`, if any.
pub fn exporter_of(metric: &str) -> Option<&'static str> {
    EXPORTER_METRICS
        .iter()
        .find(|(prefix, _)| {
            if prefix.ends_with('_') {
                metric.starts_with(prefix)
            } else {
                metric == *prefix
            }
        })
        .map(|(_, exporter)| *exporter)
}

/// One rule of [`RULES`]: an alert (or a recording rule, `record` set).
#[derive(Debug, Clone, Default)]
pub struct Rule {
    pub alert: Option<String>,
    pub record: Option<String>,
    pub expr: String,
    pub duration: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Rule {
    pub fn name(&self) -> &str {
        self.alert
            .as_deref()
            .or(self.record.as_deref())
            .unwrap_or("")
    }
}

/// The keys a rule of [`RULES`] may have.
const RULE_KEYS: &[&str] = &[
    "alert",
    "record",
    "expr",
    "for",
    "keep_firing_for",
    "labels",
    "annotations",
];

/// The rules of a rule file, in order, as PyYAML (through `python`) reads it.
pub fn rules_in(python: &Path, file: &Path) -> Vec<Rule> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let map = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), text(v).unwrap_or_else(|| v.to_string())))
            .collect()
    };
    let mut rules = Vec::new();
    // BaseLoader: every scalar a string, as Prometheus reads labels and annotations.
    for document in yaml_documents(python, file, "BaseLoader") {
        for group in document["groups"].as_array().into_iter().flatten() {
            for entry in group["rules"].as_array().into_iter().flatten() {
                let rule = Rule {
                    alert: text(&entry["alert"]),
                    record: text(&entry["record"]),
                    // A block scalar ends in a line break that is no part of the query.
                    expr: text(&entry["expr"])
                        .unwrap_or_default()
                        .trim_end_matches('\n')
                        .to_string(),
                    duration: text(&entry["for"]).or_else(|| text(&entry["keep_firing_for"])),
                    labels: map(&entry["labels"]),
                    annotations: map(&entry["annotations"]),
                };
                for key in entry.as_object().into_iter().flatten().map(|(k, _)| k) {
                    assert!(
                        RULE_KEYS.contains(&key.as_str()),
                        "{}: rule {} has a key this reader does not know: {key}",
                        file.display(),
                        rule.name()
                    );
                }
                assert!(
                    !rule.expr.trim().is_empty(),
                    "{}: rule {} has no expr",
                    file.display(),
                    rule.name()
                );
                rules.push(rule);
            }
        }
    }
    rules
}

/// The rules of [`RULES`].
pub fn rules(python: &Path) -> Vec<Rule> {
    rules_in(python, &root().join(RULES))
}

/// Every dashboard: its file name and its JSON, by file name.
pub fn dashboards() -> Vec<(String, Value)> {
    let dir = root().join(DASHBOARDS);
    let mut found: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{DASHBOARDS}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{DASHBOARDS}/{name} is not JSON: {e}"));
            (name, json)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// A dashboard's panels, those nested in rows included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// Every PromQL expression of the dashboards and the rules, with where it is used:
/// "dashboard queue.json: panel 'Step backlog'", "alert FlowfleetOutboxLag".
pub fn expressions(python: &Path) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for (file, dashboard) in dashboards() {
        for panel in panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or("");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    all.push((
                        format!("dashboard {file}: panel '{title}'"),
                        expr.to_string(),
                    ));
                }
            }
        }
    }
    for rule in rules(python) {
        let place = match (&rule.alert, &rule.record) {
            (Some(alert), _) => format!("alert {alert}"),
            (None, Some(record)) => format!("recording rule {record}"),
            (None, None) => unreachable!(),
        };
        all.push((place, rule.expr.clone()));
    }
    all
}

/// Words of PromQL that are no metric names: binary operators and their modifiers,
/// grouping, `offset`, literals, and the aggregation operators (which may come before
/// their `by (...)` instead of a parenthesis).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "by",
    "without",
    "offset",
    "inf",
    "nan",
    "atan2",
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The index just past the bracket that closes the one at `start` (`{`/`}`, `[`/`]`,
/// `(`/`)`), stepping over quoted strings; the end when it is never closed.
fn skip_brackets(chars: &[char], start: usize) -> usize {
    let (open, close) = match chars[start] {
        '{' => ('{', '}'),
        '[' => ('[', ']'),
        _ => ('(', ')'),
    };
    let mut depth = 0;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = skip_string(chars, i);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

/// The index just past the string starting at `start` (its quote).
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == '\\' && quote != '`' {
            i += 2;
            continue;
        }
        if chars[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The metric names a PromQL expression selects, in order of appearance, without
/// repeats: identifiers that are not followed by `(` (functions, aggregations), not
/// keywords, not label names (inside `{...}` or a `by (...)`-like list), not durations or
/// numbers, not Grafana variables (`$__rate_interval`, `${x}`). Nothing is stripped:
/// a histogram's series are named as used (`_bucket`, `_sum`, `_count`).
pub fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '{' | '[' => i = skip_brackets(&chars, i),
            '$' => {
                i += 1;
                if i < chars.len() && chars[i] == '{' {
                    i = skip_brackets(&chars, i);
                } else {
                    while i < chars.len() && is_name_char(chars[i]) {
                        i += 1;
                    }
                }
            }
            // Numbers (0.99, 1e3, 0x1f) and durations (5m, 1h30m), e.g. after `offset`.
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit())) =>
            {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if is_name_start(c) => {
                let start = i;
                while i < chars.len() && is_name_char(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let lower = word.to_ascii_lowercase();
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if next < chars.len() && chars[next] == '(' {
                        i = skip_brackets(&chars, next);
                    }
                } else if KEYWORDS.contains(&lower.as_str()) {
                    // An operator or an aggregation: what follows is read on.
                } else if next < chars.len() && chars[next] == '(' {
                    // A function.
                } else if !names.contains(&word) {
                    names.push(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every metric name any dashboard or alert uses, with where it is used.
pub fn metrics_used(python: &Path) -> BTreeMap<String, Vec<String>> {
    let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (place, expr) in expressions(python) {
        for name in metric_names(&expr) {
            let places = used.entry(name).or_default();
            if !places.contains(&place) {
                places.push(place.clone());
            }
        }
    }
    used
}

/// The used metrics that are neither in `exposed` (what the fleet's processes expose),
/// nor provided by an exporter ([`EXPORTER_METRICS`]), nor recorded by a recording rule of
/// [`RULES`]: with where each is used.
pub fn unknown(python: &Path, exposed: &BTreeSet<String>) -> Vec<(String, Vec<String>)> {
    let recorded: BTreeSet<String> = rules(python).into_iter().filter_map(|r| r.record).collect();
    metrics_used(python)
        .into_iter()
        .filter(|(name, _)| {
            !exposed.contains(name) && exporter_of(name).is_none() && !recorded.contains(name)
        })
        .collect()
}

/// The uid of the provisioned Prometheus datasource (docker/grafana/provisioning).
pub fn prometheus_datasource_uid(python: &Path) -> String {
    yaml_documents(python, &root().join(DATASOURCES), "BaseLoader")
        .iter()
        .flat_map(|document| {
            document["datasources"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|source| source["type"] == "prometheus")
        .and_then(|source| source["uid"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("{DATASOURCES} provisions no Prometheus datasource with a uid"))
}

/// promtool, when it is installed (`scripts/test` installs Debian's `prometheus` package);
/// without it the tests say so and pass, except under `scripts/test`
/// (`FLOWFLEET_TEST_REQUIRE_INFRA=1`), where they fail.
pub fn promtool() -> Option<PathBuf> {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(PathBuf::from("promtool"));
    }
    super::deploy::skip(
        "the rule checks need promtool (scripts/test installs Debian's prometheus package)",
    )
}

/// `promtool <args>` run in `dir`: whether it succeeded, and what it printed.
pub fn run_promtool(promtool: &Path, dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running promtool");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}
