//! The fleet's dashboards and alerts (`docker/grafana/dashboards`,
//! `docker/prometheus/rules`) as the test suite checks them:
//!
//! - the alert rules pass `promtool check rules` and their unit tests pass `promtool test
//!   rules` (a firing and a quiet case for every alert), and promtool refuses a broken rule
//!   and a wrong expectation, so a promtool that passed everything would be caught;
//! - every alert has a severity (`page` or `ticket`), a summary, a description and a
//!   runbook URL naming its own section of docs/runbook.md;
//! - the six dashboards parse, have distinct uids, and every panel queries the provisioned
//!   Prometheus datasource with PromQL that promtool parses;
//! - every metric a dashboard or an alert names is in the catalogue of [`metrics`] (what
//!   the fleet's processes expose; `tests/distributed.rs` checks that against a running
//!   fleet) or comes from a standard exporter (`support::observability::EXPORTER_METRICS`);
//! - the Kubernetes overlays ship the dashboards and the rules as ConfigMaps made from the
//!   very files under docker/, the dev overlay runs the datastores' exporters and lets
//!   Prometheus scrape exactly their ports, and the compose Prometheus scrapes them.
//!
//! promtool comes from `scripts/test` (Debian's `prometheus` package), kubectl and
//! `deploy/tests/.venv` as for tests/deploy.rs. Without them the tests that need them say
//! so and pass, except under `scripts/test` (`FLOWFLEET_TEST_REQUIRE_INFRA=1`), where they
//! fail.
//!
//! One test binary, by module: [`metrics`] (the catalogue and the metric-name
//! tokenizer), [`rules`] (promtool and the rule reader), [`alerts`] (labels,
//! annotations, runbook, unit tests), [`dashboards`], [`compose`] (the compose
//! Prometheus's jobs) and [`overlays`] (what Kubernetes ships and scrapes).

#[path = "../support/mod.rs"]
mod support;

mod alerts;
mod compose;
mod dashboards;
mod metrics;
mod overlays;
mod rules;

const DASHBOARD_FILES: [&str; 6] = [
    "application-performance.json",
    "business-kpis.json",
    "database.json",
    "queue.json",
    "system-overview.json",
    "worker-pool.json",
];
