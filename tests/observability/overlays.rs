//! The Kubernetes overlays ship the dashboards and the rules as ConfigMaps made from the
//! very files under docker/, and the dev overlay runs the datastores' exporters, hardened,
//! with Prometheus allowed exactly their ports: what the cluster runs is what is tested.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::support::deploy::{render, root};
use crate::support::network;
use crate::support::observability::RULES;
use crate::DASHBOARD_FILES;

/// The objects of `objects` of `kind` whose label `label` is `value`.
fn labelled<'a>(objects: &'a [Value], kind: &str, label: &str, value: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["labels"][label] == value)
        .collect()
}

/// The overlays ship the dashboards and the rules, made from the files under docker/; the
/// dev overlay runs the datastores' exporters, hardened like the stores, and Prometheus may
/// reach exactly their ports (and, as tests/deploy.rs checks, nothing else of the stores).
#[test]
fn the_overlays_ship_the_dashboards_the_rules_and_the_exporters() {
    let Some(dev) = render("dev") else { return };
    let files: BTreeMap<String, String> = DASHBOARD_FILES
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(root().join("docker/grafana/dashboards").join(f));
            (f.to_string(), text.unwrap())
        })
        .collect();
    let rule_file = std::fs::read_to_string(root().join(RULES)).unwrap();
    for overlay in ["dev", "staging", "prod"] {
        let objects = if overlay == "dev" {
            dev.clone()
        } else {
            render(overlay).unwrap()
        };
        let maps = labelled(&objects, "ConfigMap", "grafana_dashboard", "1");
        let mut shipped = BTreeMap::new();
        for map in &maps {
            // `kubectl apply` keeps the object in an annotation of at most 256 KiB.
            let size = serde_json::to_string(map).unwrap().len();
            assert!(
                size < 200 * 1024,
                "{overlay}: ConfigMap {} is {size} bytes: split it",
                map["metadata"]["name"]
            );
            for (key, value) in map["data"].as_object().unwrap() {
                shipped.insert(key.clone(), value.as_str().unwrap().to_string());
            }
        }
        assert_eq!(shipped, files, "{overlay}: the dashboards' ConfigMaps");
        let rules = labelled(&objects, "ConfigMap", "prometheus_rule", "1");
        assert_eq!(rules.len(), 1, "{overlay}: one ConfigMap of rules");
        assert_eq!(rules[0]["metadata"]["name"], "flowfleet-prometheus-rules");
        let data = rules[0]["data"].as_object().unwrap();
        assert_eq!(
            data.len(),
            1,
            "{overlay}: the rules ConfigMap holds one file"
        );
        assert_eq!(
            data["flowfleet.yml"],
            rule_file.as_str(),
            "{overlay}: the rules"
        );
    }

    let mut stores = Vec::new();
    for (store, exporter, port) in [
        ("postgres", Some("postgres-exporter"), 9187),
        ("redis", Some("redis-exporter"), 9121),
        ("rabbitmq", None, 15692),
    ] {
        let set = dev
            .iter()
            .find(|o| {
                o["kind"] == "StatefulSet"
                    && o["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
                        == store
            })
            .unwrap_or_else(|| panic!("no {store} StatefulSet"));
        let pod = &set["spec"]["template"];
        let annotations = &pod["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true", "{store}");
        assert_eq!(
            annotations["prometheus.io/port"],
            port.to_string(),
            "{store}"
        );
        assert_eq!(annotations["prometheus.io/path"], "/metrics", "{store}");
        let containers = pod["spec"]["containers"].as_array().unwrap();
        let serving =
            containers
                .iter()
                .find(|c| {
                    c["ports"].as_array().into_iter().flatten().any(|p| {
                        p["name"] == "metrics" && p["containerPort"].as_u64() == Some(port)
                    })
                })
                .unwrap_or_else(|| panic!("{store}: no container port `metrics` {port}"));
        if let Some(exporter) = exporter {
            assert_eq!(serving["name"], exporter, "{store}");
            let image = serving["image"].as_str().unwrap();
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(
                !tag.is_empty() && tag != "latest" && !tag.contains('/'),
                "{store}: {image} is not pinned"
            );
            let security = &serving["securityContext"];
            assert_eq!(security["readOnlyRootFilesystem"], true, "{exporter}");
            assert_eq!(security["allowPrivilegeEscalation"], false, "{exporter}");
            assert_eq!(security["capabilities"]["drop"][0], "ALL", "{exporter}");
            assert!(
                security["runAsUser"].as_u64().is_some_and(|u| u > 0)
                    && pod["spec"]["securityContext"]["runAsNonRoot"] == true,
                "{exporter} may run as root"
            );
            for bound in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(
                        serving["resources"][bound][resource].is_string(),
                        "{exporter}: no {bound}.{resource}"
                    );
                }
            }
            assert!(
                serving.get("readinessProbe").is_none(),
                "{exporter}: a sidecar's readiness would take its store out of its Service"
            );
        }
        stores.push(store);
    }
    let policies: Vec<Value> = dev
        .iter()
        .filter(|o| o["kind"] == "NetworkPolicy")
        .cloned()
        .collect();
    let store_pods: Vec<network::Peer> = network::pods(&dev)
        .into_iter()
        .filter(|p| stores.contains(&p.name.as_str()) || p.name == "s3")
        .collect();
    let allowed = network::allowed_edges(&policies, &network::cluster_callers(), &store_pods);
    let expected: BTreeSet<network::Edge> = stores
        .iter()
        .map(|s| {
            (
                "prometheus".to_string(),
                s.to_string(),
                "metrics".to_string(),
            )
        })
        .collect();
    assert_eq!(
        allowed, expected,
        "what the cluster may reach of the dev stores"
    );
}
