//! The fleet's dashboards and alert rules as the tests read them: the Grafana dashboards
//! (`docker/grafana/dashboards/*.json`), the alert rules
//! (`docker/prometheus/rules/flowfleet.yml`) and every metric name their PromQL uses.
//!
//! [`metrics_used`] finds those names with a small PromQL tokenizer ([`metric_names`]);
//! [`unknown`] says which of them neither the fleet exposes (as a test scraping it finds)
//! nor a standard exporter provides ([`EXPORTER_METRICS`]). `tests/observability/`
//! checks the files themselves (promtool, the dashboards' shape).
//!
//! The rule file is read line by line (the test dependencies have no YAML parser): it keeps
//! to one style, which its header states, and the tests cross-check the count of rules
//! read here with promtool's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::deploy::root;

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

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// A scalar as YAML writes it: plain, "double-quoted" or 'single-quoted'.
fn scalar(text: &str) -> String {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        inner.replace("\\\"", "\"").replace("\\\\", "\\")
    } else if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        inner.replace("''", "'")
    } else {
        text.to_string()
    }
}

/// The rules of a rule file's text, in order.
pub fn parse_rules(text: &str) -> Vec<Rule> {
    let lines: Vec<&str> = text.lines().collect();
    let mut rules = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let (kind, name) = match trimmed.strip_prefix("- alert:") {
            Some(name) => ("alert", name),
            None => match trimmed.strip_prefix("- record:") {
                Some(name) => ("record", name),
                None => {
                    i += 1;
                    continue;
                }
            },
        };
        let mut rule = Rule::default();
        if kind == "alert" {
            rule.alert = Some(scalar(name));
        } else {
            rule.record = Some(scalar(name));
        }
        // The rule's keys sit where its first key (after "- ") does.
        let key_indent = indent(line) + 2;
        i += 1;
        while i < lines.len() {
            let line = lines[i];
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                i += 1;
                continue;
            }
            if indent(line) < key_indent {
                break;
            }
            assert_eq!(
                indent(line),
                key_indent,
                "{RULES}: unexpected indentation in rule {}: {line:?}",
                rule.name()
            );
            let (key, value) = line
                .trim()
                .split_once(':')
                .unwrap_or_else(|| panic!("{RULES}: not a key: {line:?}"));
            let value = value.trim();
            i += 1;
            // The lines below the key, more indented: a block scalar or a mapping.
            let mut block = Vec::new();
            while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > key_indent) {
                block.push(lines[i]);
                i += 1;
            }
            while block.last().is_some_and(|l| l.trim().is_empty()) {
                block.pop();
            }
            match key {
                "expr" if value.starts_with('|') || value.starts_with('>') => {
                    let strip = block
                        .iter()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| indent(l))
                        .min()
                        .unwrap_or(0);
                    let joined: Vec<&str> = block
                        .iter()
                        .map(|l| if l.len() >= strip { &l[strip..] } else { "" })
                        .collect();
                    rule.expr = joined.join("\n");
                }
                "expr" => rule.expr = scalar(value),
                "for" | "keep_firing_for" => rule.duration = Some(scalar(value)),
                "labels" | "annotations" => {
                    let map = if key == "labels" {
                        &mut rule.labels
                    } else {
                        &mut rule.annotations
                    };
                    for entry in block.iter().filter(|l| !l.trim().is_empty()) {
                        let (k, v) = entry
                            .trim()
                            .split_once(':')
                            .unwrap_or_else(|| panic!("{RULES}: not a key: {entry:?}"));
                        map.insert(k.trim().to_string(), scalar(v));
                    }
                }
                other => panic!(
                    "{RULES}: rule {} has a key this reader does not know: {other}",
                    rule.name()
                ),
            }
        }
        assert!(
            !rule.expr.trim().is_empty(),
            "{RULES}: rule {} has no expr",
            rule.name()
        );
        rules.push(rule);
    }
    rules
}

/// The rules of [`RULES`].
pub fn rules() -> Vec<Rule> {
    let path = root().join(RULES);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{RULES}: {e}"));
    parse_rules(&text)
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
pub fn expressions() -> Vec<(String, String)> {
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
    for rule in rules() {
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
pub fn metrics_used() -> BTreeMap<String, Vec<String>> {
    let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (place, expr) in expressions() {
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
pub fn unknown(exposed: &BTreeSet<String>) -> Vec<(String, Vec<String>)> {
    let recorded: BTreeSet<String> = rules().into_iter().filter_map(|r| r.record).collect();
    metrics_used()
        .into_iter()
        .filter(|(name, _)| {
            !exposed.contains(name) && exporter_of(name).is_none() && !recorded.contains(name)
        })
        .collect()
}

/// The uid of the provisioned Prometheus datasource (docker/grafana/provisioning).
pub fn prometheus_datasource_uid() -> String {
    let text = std::fs::read_to_string(root().join(DATASOURCES)).unwrap();
    // Entries start with "- name:"; each has a type and a uid.
    let mut entries: Vec<BTreeMap<String, String>> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("- ") {
            entries.push(BTreeMap::new());
            if let Some((k, v)) = rest.split_once(':') {
                entries
                    .last_mut()
                    .unwrap()
                    .insert(k.trim().into(), scalar(v));
            }
        } else if let (Some(entry), Some((k, v))) = (entries.last_mut(), trimmed.split_once(':')) {
            entry.insert(k.trim().into(), scalar(v));
        }
    }
    entries
        .into_iter()
        .find(|e| e.get("type").map(String::as_str) == Some("prometheus"))
        .and_then(|e| e.get("uid").cloned())
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
