//! The Kubernetes manifests (`deploy/`) as the test suite sees them: each overlay renders
//! with `kubectl kustomize`; every object validates against the Kubernetes schemas
//! (`kubernetes-validate --strict`, where any warning fails) and KEDA's objects against
//! KEDA's models (`deploy/tests/keda.py`); and every Flowfleet container runs a command
//! line the binary accepts, with variables it knows, on the ports it listens on, probed
//! and scraped at paths it serves there (`flowfleet check` says which), and the workers
//! scale on the queue they consume.
//!
//! The tools come from `scripts/test` (kubectl is assumed installed; the Python ones go to
//! `deploy/tests/.venv`). Without them the tests say so and pass, except under
//! `scripts/test` (`FLOWFLEET_TEST_REQUIRE_INFRA=1`), where they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use support::deploy::{render_with as render, root, tools};
use support::network::{self, Edge};

const OVERLAYS: [&str; 3] = ["dev", "staging", "prod"];

fn is_keda(object: &Value) -> bool {
    object["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("keda.sh/"))
}

/// Writes `objects` as a YAML stream (JSON is YAML) into `dir`.
fn write_stream(dir: &Path, name: &str, objects: &[&Value]) -> PathBuf {
    let file = dir.join(name);
    let text: String = objects
        .iter()
        .map(|o| format!("---\n{}\n", serde_json::to_string(o).unwrap()))
        .collect();
    std::fs::write(&file, text).unwrap();
    file
}

/// The validators' verdict on `objects`: `Err` with what they printed when they refuse
/// them (any warning of kubernetes-validate refuses too).
fn validate(python: &Path, objects: &[Value]) -> Result<usize, String> {
    let dir = tempfile::tempdir().unwrap();
    let (keda, kubernetes): (Vec<&Value>, Vec<&Value>) = objects.iter().partition(|o| is_keda(o));
    let file = write_stream(dir.path(), "kubernetes.yaml", &kubernetes);
    let checked = Command::new(python.with_file_name("kubernetes-validate"))
        .args(["--strict", "--quiet"])
        .arg(&file)
        .output()
        .expect("running kubernetes-validate");
    let said = String::from_utf8_lossy(&checked.stdout).to_string()
        + &String::from_utf8_lossy(&checked.stderr);
    if !checked.status.success() || !said.trim().is_empty() {
        return Err(said);
    }
    let file = write_stream(dir.path(), "keda.yaml", &keda);
    let checked = Command::new(python)
        .arg(root().join("deploy/tests/keda.py"))
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&checked.stdout).to_string();
    if !checked.status.success() {
        return Err(said);
    }
    Ok(objects.len())
}

#[test]
fn every_overlay_renders_and_validates_against_the_schemas() {
    let Some(python) = tools() else { return };
    for overlay in OVERLAYS {
        let objects = render(&python, overlay);
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        for kind in [
            "Deployment",
            "Service",
            "ScaledObject",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "Ingress",
            "Job",
        ] {
            assert!(kinds.contains(&kind), "{overlay} has no {kind}");
        }
        if let Err(said) = validate(&python, &objects) {
            panic!("deploy/overlays/{overlay} does not validate:\n{said}");
        }
    }
}

/// The validators refuse what they should: without this, a validator that passed
/// everything (or a kind it has no schema for) would make the test above pass too.
#[test]
fn the_validators_refuse_unknown_fields_and_kinds() {
    let Some(python) = tools() else { return };
    let objects = render(&python, "prod");
    let pick = |kind: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
            .clone()
    };
    let mut deployment = pick("Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = json!({});
    let mut scaled = pick("ScaledObject");
    scaled["spec"]["triggers"][0]["metadataa"] = json!({});
    let mut unknown = pick("ConfigMap");
    unknown["apiVersion"] = json!("example.com/v1");
    unknown["kind"] = json!("Widget");
    for (broken, what) in [
        (deployment, "a misspelt container field"),
        (scaled, "a misspelt KEDA trigger field"),
        (unknown, "a kind without a schema"),
    ] {
        assert!(
            validate(&python, &[broken]).is_err(),
            "the validators passed {what}"
        );
    }
}

/// The variables a container gets from its `envFrom` and `env`, as the pod would see them.
/// A Secret the overlay does not hold (staging and prod make theirs by reference) is
/// stood in for by the dev overlay's, which has the same keys (docs/deploy.md lists them).
fn container_env(container: &Value, objects: &[Value], dev: &[Value]) -> Vec<(String, String)> {
    let find = |kind: &str, name: &str| -> Option<Value> {
        let named = |o: &&Value| {
            o["kind"] == kind
                && o["metadata"]["name"].as_str().is_some_and(|n| {
                    n == name
                        || n.strip_prefix(name)
                            .is_some_and(|rest| rest.starts_with('-'))
                })
        };
        objects
            .iter()
            .find(named)
            .or_else(|| dev.iter().find(named))
            .cloned()
    };
    let mut env = Vec::new();
    for from in container["envFrom"].as_array().into_iter().flatten() {
        if let Some(name) = from["configMapRef"]["name"].as_str() {
            let map = find("ConfigMap", name).unwrap_or_else(|| panic!("no ConfigMap {name}"));
            for (k, v) in map["data"].as_object().unwrap() {
                env.push((k.clone(), v.as_str().unwrap().to_string()));
            }
        }
        if let Some(name) = from["secretRef"]["name"].as_str() {
            let secret = find("Secret", name).unwrap_or_else(|| panic!("no Secret {name}"));
            for (k, v) in secret["data"].as_object().unwrap() {
                let text: String = v.as_str().unwrap().split_whitespace().collect();
                let value = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .unwrap();
                env.push((k.clone(), String::from_utf8(value).unwrap()));
            }
        }
    }
    for var in container["env"].as_array().into_iter().flatten() {
        let value = var["value"].as_str().unwrap_or("from-a-reference");
        env.push((var["name"].as_str().unwrap().to_string(), value.to_string()));
    }
    env
}

/// What `flowfleet check` says of `container` (of an overlay's `objects`) run with its
/// arguments and environment.
fn report_of(container: &Value, objects: &[Value], dev: &[Value]) -> Value {
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap_or_else(|| panic!("container {} has no args", container["name"]))
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let what = format!("container {}", container["name"]);
    support::deploy::flowfleet_check(&what, &args, &container_env(container, objects, dev))
}

/// The listener of `report` a manifest's port (a name or a number) means, given the
/// container's named ports.
fn listener<'a>(report: &'a Value, port: &Value, named: &BTreeMap<String, u64>) -> &'a Value {
    let number = match port {
        Value::String(name) => *named
            .get(name)
            .unwrap_or_else(|| panic!("no container port named {name}")),
        other => other.as_u64().expect("a port is a name or a number"),
    };
    report["listens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["port"] == number)
        .unwrap_or_else(|| panic!("the process does not listen on {number}: {report}"))
}

#[test]
fn containers_run_what_the_binary_has_on_its_ports_and_paths() {
    let Some(python) = tools() else { return };
    let dev = render(&python, "dev");
    let mut consumed = Vec::new();
    let mut checked = 0;
    for overlay in OVERLAYS {
        let objects = render(&python, overlay);
        for workload in objects
            .iter()
            .filter(|o| ["Deployment", "Job", "StatefulSet"].contains(&o["kind"].as_str().unwrap()))
        {
            let name = workload["metadata"]["name"].as_str().unwrap();
            let pod = &workload["spec"]["template"];
            for container in pod["spec"]["containers"].as_array().unwrap() {
                let image = container["image"].as_str().unwrap();
                let repository = image.rsplit_once(':').map_or(image, |(r, _)| r);
                if !repository.ends_with("flowfleet") {
                    continue; // PostgreSQL, Redis, RabbitMQ, MinIO: not ours to check.
                }
                let report = report_of(container, &objects, &dev);
                checked += 1;
                let named: BTreeMap<String, u64> = container["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap().to_string(),
                            p["containerPort"].as_u64().unwrap(),
                        )
                    })
                    .collect();
                for (port_name, port) in &named {
                    let l = listener(&report, &json!(port), &named);
                    assert_eq!(
                        l["name"], *port_name,
                        "{overlay}/{name}: port {port} is the process's {}",
                        l["name"]
                    );
                }
                for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                    let probe = &container[probe];
                    if let Some(get) = probe.get("httpGet") {
                        let l = listener(&report, &get["port"], &named);
                        assert!(
                            l["paths"].as_array().unwrap().contains(&get["path"]),
                            "{overlay}/{name}: {} is not served on {}",
                            get["path"],
                            l["port"]
                        );
                    }
                    if let Some(grpc) = probe.get("grpc") {
                        let l = listener(&report, &grpc["port"], &named);
                        assert_eq!(l["grpc_health"], true, "{overlay}/{name}: no gRPC health");
                    }
                }
                let annotations = &pod["metadata"]["annotations"];
                if annotations["prometheus.io/scrape"] == "true" {
                    let port: u64 = annotations["prometheus.io/port"]
                        .as_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    let l = listener(&report, &json!(port), &named);
                    assert!(
                        l["paths"]
                            .as_array()
                            .unwrap()
                            .contains(&annotations["prometheus.io/path"]),
                        "{overlay}/{name}: metrics are not served there"
                    );
                }
                if let Some(queue) = report["consumes"].as_str() {
                    consumed.push((overlay, queue.to_string()));
                }
            }
        }
        // Every Service's target ports are ports its pods name.
        for service in objects.iter().filter(|o| o["kind"] == "Service") {
            let selector = &service["spec"]["selector"];
            let pods: Vec<&Value> = objects
                .iter()
                .filter(|o| ["Deployment", "StatefulSet"].contains(&o["kind"].as_str().unwrap()))
                .map(|o| &o["spec"]["template"])
                .filter(|t| {
                    selector
                        .as_object()
                        .unwrap()
                        .iter()
                        .all(|(k, v)| t["metadata"]["labels"][k] == *v)
                })
                .collect();
            assert!(
                !pods.is_empty(),
                "{overlay}: Service {} selects no pod",
                service["metadata"]["name"]
            );
            for port in service["spec"]["ports"].as_array().unwrap() {
                let target = &port["targetPort"];
                for pod in &pods {
                    let has = pod["spec"]["containers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|c| {
                            c["ports"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|p| p["name"] == *target || p["containerPort"] == *target)
                        });
                    assert!(
                        has,
                        "{overlay}: Service {} targets {target}, which its pods lack",
                        service["metadata"]["name"]
                    );
                }
            }
        }
        // Workers scale on the queue they consume.
        let queue = &consumed
            .iter()
            .find(|(o, _)| *o == overlay)
            .expect("a worker")
            .1;
        let scaled = objects
            .iter()
            .find(|o| {
                o["kind"] == "ScaledObject"
                    && o["spec"]["scaleTargetRef"]["name"] == "flowfleet-worker"
            })
            .expect("the workers' ScaledObject");
        assert_eq!(
            scaled["spec"]["triggers"][0]["metadata"]["queueName"],
            queue.as_str(),
            "{overlay}: the workers scale on another queue than the one they consume"
        );
    }
    assert!(checked >= 3 * 9, "only {checked} containers checked");
}

/// The edges `flowfleet check` says a container makes, named as [`network`] names them.
fn declared_edges(component: &str, report: &Value, s3_outside: bool) -> BTreeSet<Edge> {
    let mut edges = BTreeSet::new();
    for reach in report["reaches"].as_array().unwrap() {
        let to = reach["to"].as_str().unwrap();
        let port = match (to, reach["port"].as_str()) {
            (_, Some(port)) => port,
            ("otel-collector", None) => "4318",
            ("internet", None) => "any",
            (_, None) => "main",
        };
        edges.insert((component.to_string(), to.to_string(), port.to_string()));
        if to == "internet" && s3_outside {
            // The bucket is on the internet too.
            edges.insert((component.to_string(), "s3".into(), "main".into()));
        }
    }
    edges
}

/// The NetworkPolicies allow the fleet's pods exactly the edges the code makes (as
/// `flowfleet check` derives them from the code and each container's configuration), and
/// let in from the rest of the cluster only Prometheus, at the ports it scrapes, and the
/// ingress controller, at the gateway. tests/distributed.rs checks the other way round:
/// every connection the running processes open is among these.
#[test]
fn network_policies_allow_exactly_the_edges_the_code_makes() {
    let Some(python) = tools() else { return };
    let dev = render(&python, "dev");
    for overlay in OVERLAYS {
        let objects = render(&python, overlay);
        let policies: Vec<Value> = objects
            .iter()
            .filter(|o| o["kind"] == "NetworkPolicy")
            .cloned()
            .collect();
        let fleet = network::fleet_pods(&objects);
        let targets = network::targets(&objects);
        let s3_outside = !objects.iter().any(|o| o["kind"] == "StatefulSet");
        let mut declared = BTreeSet::new();
        let mut scraped = BTreeSet::new();
        for workload in objects.iter().filter(|o| {
            ["Deployment", "Job"].contains(&o["kind"].as_str().unwrap())
                && o["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
                    == "flowfleet"
        }) {
            let pod = &workload["spec"]["template"];
            let component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
                .as_str()
                .unwrap();
            let container = &pod["spec"]["containers"][0];
            let report = report_of(container, &objects, &dev);
            declared.extend(declared_edges(component, &report, s3_outside));
            if let Some(port) = pod["metadata"]["annotations"]["prometheus.io/port"].as_str() {
                let name = container["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| {
                        p["containerPort"]
                            .as_u64()
                            .map(|n| n.to_string())
                            .as_deref()
                            == Some(port)
                    })
                    .map(|p| p["name"].as_str().unwrap().to_string())
                    .unwrap();
                scraped.insert(("prometheus".to_string(), component.to_string(), name));
            }
        }
        let allowed = network::allowed_edges(&policies, &fleet, &targets);
        let missing: Vec<_> = declared.difference(&allowed).collect();
        let extra: Vec<_> = allowed.difference(&declared).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "deploy/overlays/{overlay}: the NetworkPolicies differ from the edges the code makes\n\
             made but not allowed: {missing:?}\nallowed but never made: {extra:?}"
        );
        let mut inbound = scraped;
        inbound.insert(("ingress-nginx".into(), "gateway".into(), "http".into()));
        let allowed_in = network::allowed_edges(&policies, &network::cluster_callers(), &fleet);
        assert_eq!(allowed_in, inbound, "{overlay}: what the cluster may reach");
    }
}
