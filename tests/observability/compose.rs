//! The compose Prometheus (docker/prometheus/prometheus.yml) scrapes the exporters
//! docker/compose.yaml runs under the job names the rules use: an alert on a job nobody
//! scrapes would never fire.

use std::collections::BTreeMap;

use crate::support::deploy::root;
use crate::support::observability::expressions;

/// The jobs of the compose Prometheus (docker/prometheus/prometheus.yml) and their static
/// targets.
fn compose_jobs() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(root().join("docker/prometheus/prometheus.yml")).unwrap();
    let mut jobs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- job_name:") {
            current = Some(name.trim().to_string());
            jobs.insert(name.trim().to_string(), Vec::new());
        } else if let (Some(job), Some(list)) = (&current, line.strip_prefix("- targets:")) {
            let list = list.trim().trim_start_matches('[').trim_end_matches(']');
            jobs.get_mut(job).unwrap().extend(
                list.split(',')
                    .map(|t| t.trim().trim_matches('"').to_string())
                    .filter(|t| !t.is_empty()),
            );
        }
    }
    jobs
}

/// The compose Prometheus scrapes the exporters docker/compose.yaml runs, under the job
/// names the rules use; every job an alert names exactly is one it scrapes.
#[test]
fn the_compose_prometheus_scrapes_the_exporters_under_the_jobs_the_rules_name() {
    let jobs = compose_jobs();
    for (job, target) in [
        ("postgres", "postgres-exporter:9187"),
        ("redis", "redis-exporter:9121"),
        ("rabbitmq", "rabbitmq:15692"),
    ] {
        assert_eq!(
            jobs.get(job).map(Vec::as_slice),
            Some([target.to_string()].as_slice()),
            "job {job}"
        );
    }
    for (place, expr) in expressions() {
        for (i, _) in expr.match_indices("job=\"") {
            let name: String = expr[i + 5..].chars().take_while(|c| *c != '"').collect();
            assert!(
                jobs.contains_key(&name),
                "{place}: no job {name} is scraped"
            );
        }
        if expr.contains("job=~\"flowfleet-") {
            let fleet: Vec<&String> = jobs
                .keys()
                .filter(|j| j.starts_with("flowfleet-"))
                .collect();
            assert_eq!(
                fleet,
                [
                    "flowfleet-gateway",
                    "flowfleet-services",
                    "flowfleet-worker"
                ],
                "{place}: the flowfleet-* jobs are not the gateway, services and workers"
            );
        }
    }
}
