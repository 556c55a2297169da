//! docker/compose.yaml runs what the binary has: every Flowfleet service passes
//! `flowfleet check` with its command and environment, publishes and health-checks ports
//! and paths it serves, and is told addresses where a compose service listens; Prometheus
//! scrapes services that listen there and the dashboards' exporters are present. A
//! mistake here only shows when someone runs `docker compose up`.
//!
//! [`services`] reads the file and its services as compose and the binary see them.

mod services;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::dockerfile::dockerfile;
use crate::strings;
use crate::support::deploy::{root, venv, yaml_documents};
use services::{
    address, address_variable, bind_variable, compose, environment, healthcheck_defaults,
    port_entries, repository, Listening, Process,
};

/// The ports the third-party images of `docker/compose.yaml` listen on, by repository.
/// A new image needs its line here.
const IMAGE_PORTS: &[(&str, &[u16])] = &[
    ("postgres", &[5432]),
    ("redis", &[6379]),
    // AMQP, the management UI and API, Prometheus metrics (rabbitmq_prometheus, which
    // the official images enable).
    ("rabbitmq", &[5672, 15672, 15692]),
    // The S3 API, and the console where compose.yaml's command puts it.
    ("minio/minio", &[9000, 9001]),
    ("minio/mc", &[]),
    // OTLP gRPC and HTTP, the collector's other inputs, the admin port (metrics), the UI.
    (
        "jaegertracing/all-in-one",
        &[4317, 4318, 5778, 14250, 14268, 14269, 16686],
    ),
    ("prom/prometheus", &[9090]),
    ("grafana/grafana", &[3000]),
    ("prometheuscommunity/postgres-exporter", &[9187]),
    ("oliver006/redis_exporter", &[9121]),
];

/// The exporters the dashboards read (docker/prometheus/prometheus.yml scrapes them).
const EXPORTERS: [(&str, u16); 3] = [
    ("postgres-exporter", 9187),
    ("redis-exporter", 9121),
    ("rabbitmq", 15692),
];

#[test]
fn compose_runs_what_the_binary_has_on_its_ports_and_paths() {
    let Some(python) = venv() else { return };
    let compose = compose(&python);
    let docker = dockerfile(&root().join("docker/Dockerfile"));
    let (default_port, default_path) = healthcheck_defaults();
    let services = compose["services"].as_object().expect("services");

    // What each service is and listens on.
    let mut listens: BTreeMap<&str, Vec<Listening>> = BTreeMap::new();
    let mut fleet: BTreeMap<&str, Process> = BTreeMap::new();
    for (name, service) in services {
        for dependency in service["depends_on"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_else(|| strings(&service["depends_on"]))
        {
            assert!(
                services.contains_key(&dependency),
                "{name} depends on {dependency}, which is no service"
            );
        }
        let image = service["image"].as_str().unwrap_or_default();
        let ours = repository(image).ends_with("flowfleet")
            || service["build"]["dockerfile"] == "docker/Dockerfile";
        if !ours {
            let repo = repository(image);
            assert!(
                image.len() > repo.len() && !image.ends_with(":latest"),
                "{name}: pin {image} to a version"
            );
            let (_, ports) = IMAGE_PORTS
                .iter()
                .find(|(r, _)| *r == repo)
                .unwrap_or_else(|| panic!("{name}: add the ports of {repo} to IMAGE_PORTS"));
            listens.insert(
                name,
                ports
                    .iter()
                    .map(|&port| Listening {
                        port,
                        name: None,
                        paths: Vec::new(),
                    })
                    .collect(),
            );
            continue;
        }
        assert!(
            service.get("entrypoint").is_none() && docker.entrypoint == ["flowfleet"],
            "{name}: the image's entry point is flowfleet, and compose keeps it"
        );
        let args = match &service["command"] {
            Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
            other => strings(other),
        };
        assert!(!args.is_empty(), "{name}: no command");
        // The image's environment, then the service's over it.
        let mut env: BTreeMap<String, String> = docker.env.iter().cloned().collect();
        env.extend(environment(service));
        let env: Vec<(String, String)> = env.into_iter().collect();
        let what = format!("docker/compose.yaml: {name}");
        let report = crate::support::deploy::flowfleet_check(&what, &args, &env);
        listens.insert(
            name,
            report["listens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| Listening {
                    port: l["port"].as_u64().unwrap() as u16,
                    name: l["name"].as_str().map(str::to_string),
                    paths: strings(&l["paths"]),
                })
                .collect(),
        );
        fleet.insert(name, Process { args, env, report });
    }
    assert!(
        fleet.len() >= 9,
        "only {} Flowfleet services checked",
        fleet.len()
    );
    let listener = |service: &str, port: u16| -> Option<&Listening> {
        listens.get(service)?.iter().find(|l| l.port == port)
    };
    let published: BTreeSet<u16> = services
        .iter()
        .flat_map(|(name, s)| {
            port_entries(&s["ports"])
                .into_iter()
                .filter_map(move |(container, host)| {
                    let host = host?;
                    assert!(
                        listener(name, container).is_some(),
                        "{name} publishes {container}, where it does not listen"
                    );
                    Some(host)
                })
        })
        .collect();

    // Every published or exposed port is one the service listens on.
    for (name, service) in services {
        for key in ["ports", "expose"] {
            for (port, _) in port_entries(&service[key]) {
                assert!(
                    listener(name, port).is_some(),
                    "docker/compose.yaml: {name} {key} {port}, where it does not listen \
                     (it listens on {:?})",
                    listens[name.as_str()]
                        .iter()
                        .map(|l| l.port)
                        .collect::<Vec<_>>()
                );
            }
        }
    }

    for (name, Process { args, env, report }) in &fleet {
        let service = &services[*name];
        let var = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        // Listeners others reach are bound to every interface of the container.
        if let Some(bind) = bind_variable(args) {
            let host = var(&bind).unwrap_or("127.0.0.1");
            assert!(
                !["127.0.0.1", "localhost", "::1"].contains(&host),
                "{name} listens on {host} only ({bind}): nothing outside its container reaches it"
            );
        }
        // Its health check asks a path served on a port it listens on: the service's own
        // check, or else the image's.
        let healthcheck = &service["healthcheck"];
        let test = if healthcheck["disable"] == true {
            Vec::new()
        } else if healthcheck.get("test").is_some() {
            strings(&healthcheck["test"])
        } else {
            std::iter::once("CMD".to_string())
                .chain(docker.healthcheck.iter().cloned())
                .collect()
        };
        match test
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [] | ["NONE", ..] => {}
            ["CMD", "flowfleet-healthcheck", rest @ ..] => {
                let port = rest.first().map_or(default_port, |p| p.parse().unwrap());
                let path = rest.get(1).map_or(default_path.clone(), |p| p.to_string());
                let l = listener(name, port).unwrap_or_else(|| {
                    panic!("{name}: the health check asks port {port}, where it does not listen")
                });
                assert!(
                    l.paths.contains(&path),
                    "{name}: the health check asks {path}, which is not served on {port}"
                );
            }
            other => panic!(
                "{name}: health check {other:?}: use flowfleet-healthcheck (the image has no curl)"
            ),
        }
        // Everything it reaches has an address, and a compose service listens there: for
        // the fleet's own services, the one serving that service on a port of that kind.
        for reach in report["reaches"].as_array().unwrap() {
            let Some(variable) = address_variable(reach) else {
                continue;
            };
            let value = var(&variable).unwrap_or_else(|| {
                panic!("{name} reaches {reach} but is not told where ({variable} is not set)")
            });
            let (host, port) = address(value)
                .unwrap_or_else(|| panic!("{name}: {variable}={value} names no host"));
            let l = listener(&host, port).unwrap_or_else(|| {
                panic!("{name}: {variable}={value}: no compose service {host} listens on {port}")
            });
            if let Some(kind) = reach["port"].as_str() {
                let target = fleet.get(host.as_str()).unwrap_or_else(|| {
                    panic!("{name}: {variable}={value} is no Flowfleet service")
                });
                assert_eq!(
                    target.args[..],
                    ["serve", reach["to"].as_str().unwrap()],
                    "{name}: {variable}={value} is another process"
                );
                assert_eq!(
                    l.name.as_deref(),
                    Some(kind),
                    "{name}: {variable}={value} is not {host}'s {kind} port"
                );
            }
        }
    }

    // Any address in any service's environment that names a compose service names a port
    // it listens on; a Flowfleet address on this host (what browsers are sent to) is a
    // published port.
    for (name, service) in services {
        let ours = fleet.contains_key(name.as_str());
        let env = match fleet.get(name.as_str()) {
            Some(process) => process.env.clone(),
            None => environment(service),
        };
        for (variable, value) in env {
            let Some((host, port)) = address(&value) else {
                continue;
            };
            if services.contains_key(&host) {
                assert!(
                    listener(&host, port).is_some(),
                    "{name}: {variable}={value}: {host} does not listen on {port}"
                );
            } else if ours && ["localhost", "127.0.0.1"].contains(&host.as_str()) {
                assert!(
                    published.contains(&port),
                    "{name}: {variable}={value}: no service publishes port {port} on this host"
                );
            }
        }
    }

    // Prometheus scrapes services that listen there, Flowfleet's at paths they serve.
    let prometheus = services
        .iter()
        .find(|(_, s)| {
            s["image"]
                .as_str()
                .is_some_and(|i| repository(i) == "prom/prometheus")
        })
        .map(|(name, _)| name.as_str())
        .expect("a Prometheus service");
    assert!(
        strings(&services[prometheus]["volumes"])
            .iter()
            .any(|v| v.starts_with("./prometheus:/etc/prometheus")),
        "Prometheus does not read docker/prometheus"
    );
    let config = yaml_documents(
        &python,
        &root().join("docker/prometheus/prometheus.yml"),
        "SafeLoader",
    )
    .remove(0);
    for job in config["scrape_configs"].as_array().unwrap() {
        let path = job["metrics_path"].as_str().unwrap_or("/metrics");
        let mut targets = Vec::new();
        for stat in job["static_configs"].as_array().into_iter().flatten() {
            for target in strings(&stat["targets"]) {
                let (host, port) = target.rsplit_once(':').expect("host:port");
                targets.push((host.to_string(), port.parse::<u16>().unwrap()));
            }
        }
        for sd in job["dns_sd_configs"].as_array().into_iter().flatten() {
            for host in strings(&sd["names"]) {
                targets.push((host, sd["port"].as_u64().expect("a port") as u16));
            }
        }
        for (host, port) in targets {
            let service = if host == "localhost" {
                prometheus
            } else {
                &host
            };
            let l = listener(service, port).unwrap_or_else(|| {
                panic!(
                    "prometheus.yml: job {}: {host}:{port} is no compose service listening there",
                    job["job_name"]
                )
            });
            if fleet.contains_key(service) {
                assert!(
                    l.paths.iter().any(|p| p == path),
                    "prometheus.yml: {host}:{port} does not serve {path}"
                );
            }
        }
    }

    // The exporters the dashboards need.
    for (service, port) in EXPORTERS {
        assert!(
            listener(service, port).is_some(),
            "docker/compose.yaml has no {service} listening on {port}"
        );
    }
}
