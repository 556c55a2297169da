//! The compose Prometheus (docker/prometheus/prometheus.yml) scrapes the exporters
//! docker/compose.yaml runs under the job names the rules use: an alert on a job nobody
//! scrapes would never fire.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::deploy::{root, venv, yaml_documents};
use crate::support::observability::expressions;

/// The jobs of the compose Prometheus (docker/prometheus/prometheus.yml) and their static
/// targets.
fn compose_jobs(python: &Path) -> BTreeMap<String, Vec<String>> {
    let file = root().join("docker/prometheus/prometheus.yml");
    let documents = yaml_documents(python, &file, "SafeLoader");
    let config = documents.first().expect("a Prometheus configuration");
    config["scrape_configs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|job| {
            let targets = job["static_configs"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["targets"].as_array().cloned().unwrap_or_default())
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect();
            (
                job["job_name"].as_str().unwrap_or_default().to_string(),
                targets,
            )
        })
        .collect()
}

/// The compose Prometheus scrapes the exporters docker/compose.yaml runs, under the job
/// names the rules use; every job an alert names exactly is one it scrapes.
#[test]
fn the_compose_prometheus_scrapes_the_exporters_under_the_jobs_the_rules_name() {
    let Some(python) = venv() else { return };
    let jobs = compose_jobs(&python);
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
    for (place, expr) in expressions(&python) {
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
