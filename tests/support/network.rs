//! The fleet's network edges two ways: as the processes make them (each process's open
//! TCP connections, read from `/proc`, by the port they reach) and as the Kubernetes
//! NetworkPolicies of `deploy/` allow them (evaluated here for the pods the manifests
//! define). `tests/distributed.rs` compares the two.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::Value;

/// One edge: a process kind (`gateway`, a service, `worker`, `migrate`) reaching another
/// kind or a store (`postgres`, `redis`, `rabbitmq`, `s3`, `otel-collector`, `internet`)
/// on a port known by its name (`http`, `grpc`, `metrics`, `main`, or the number).
pub type Edge = (String, String, String);

/// The remote ports of the TCP connections `pid` opened (established, IPv4 and IPv6; not
/// those it accepted, whose local port is one it listens on or listened on when an
/// earlier call saw it: `listened` keeps them, since a process shutting down closes its
/// listener before the connections it accepted), or nothing when the process is gone.
pub fn remote_ports(pid: u32, listened: &mut HashSet<u16>) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let sockets: HashSet<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().to_string();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let port = |address: &str| {
        address
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    let mut rows: Vec<(u16, u16, String)> = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || !sockets.contains(fields[9]) {
                continue;
            }
            if let (Some(local), Some(remote)) = (port(fields[1]), port(fields[2])) {
                rows.push((local, remote, fields[3].to_string()));
            }
        }
    }
    listened.extend(
        rows.iter()
            .filter(|(_, _, state)| state == "0A")
            .map(|(local, _, _)| *local),
    );
    rows.into_iter()
        .filter(|(local, _, state)| state == "01" && !listened.contains(local))
        .map(|(_, remote, _)| remote)
        .collect()
}

/// A pod (or a stand-in for something outside the namespace) the policies are evaluated
/// for: its labels, its namespace's labels, its address, its named ports.
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// None: in the fleet's namespace.
    pub namespace: Option<BTreeMap<String, String>>,
    /// Outside the cluster: its address (matched by ipBlocks only).
    pub address: Option<std::net::Ipv4Addr>,
    pub ports: Vec<(String, u16)>,
}

fn labels(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// The pods an overlay's workloads make, named by their `app.kubernetes.io/component`
/// label (the fleet's) or `app.kubernetes.io/name` (the rest), with their named ports.
pub fn pods(objects: &[Value]) -> Vec<Peer> {
    objects
        .iter()
        .filter(|o| {
            ["Deployment", "StatefulSet", "Job"].contains(&o["kind"].as_str().unwrap_or(""))
        })
        .map(|o| {
            let template = &o["spec"]["template"];
            let labels = labels(&template["metadata"]["labels"]);
            let name = labels
                .get("app.kubernetes.io/component")
                .or_else(|| labels.get("app.kubernetes.io/name"))
                .unwrap()
                .clone();
            let ports = template["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or("").to_string(),
                        p["containerPort"].as_u64().unwrap() as u16,
                    )
                })
                .collect();
            Peer {
                name,
                labels,
                namespace: None,
                address: None,
                ports,
            }
        })
        .collect()
}

fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let known = ["matchLabels", "matchExpressions"];
    if let Some(other) = selector
        .as_object()
        .and_then(|o| o.keys().find(|k| !known.contains(&k.as_str())))
    {
        panic!("unsupported selector field {other}");
    }
    let by_labels = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let by_expressions = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().unwrap())
                .collect();
            let value = labels.get(e["key"].as_str().unwrap()).map(String::as_str);
            match e["operator"].as_str().unwrap() {
                "In" => value.is_some_and(|v| values.contains(&v)),
                "NotIn" => !value.is_some_and(|v| values.contains(&v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                other => panic!("unsupported operator {other}"),
            }
        });
    by_labels && by_expressions
}

fn ip_block_matches(block: &Value, address: std::net::Ipv4Addr) -> bool {
    let within = |cidr: &str| {
        let net: ipnet::Ipv4Net = cidr.parse().unwrap();
        net.contains(&address)
    };
    within(block["cidr"].as_str().unwrap())
        && !block["except"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| within(e.as_str().unwrap()))
}

/// Whether a rule's peer (`to` or `from` entry) is `peer`.
fn peer_matches(entry: &Value, peer: &Peer) -> bool {
    if let Some(block) = entry.get("ipBlock") {
        return peer.address.is_some_and(|a| ip_block_matches(block, a));
    }
    if peer.address.is_some() {
        return false; // Outside the cluster: only ipBlocks match.
    }
    let namespace_ok = match (&entry.get("namespaceSelector"), &peer.namespace) {
        (None, None) => true,
        (None, Some(_)) => false,
        // The fleet's policies pick their own namespace's pods by podSelector alone.
        (Some(_), None) => false,
        (Some(selector), Some(ns)) => selector_matches(selector, ns),
    };
    namespace_ok
        && entry
            .get("podSelector")
            .is_none_or(|selector| selector_matches(selector, &peer.labels))
}

/// Whether a rule's `ports` let `port` (a named port of `to`) through.
fn port_matches(ports: Option<&Value>, port: &(String, u16)) -> bool {
    let Some(ports) = ports.and_then(Value::as_array) else {
        return true;
    };
    ports.is_empty()
        || ports.iter().any(|p| {
            p["protocol"].as_str().unwrap_or("TCP") == "TCP"
                && match &p["port"] {
                    Value::Null => true,
                    Value::String(name) => *name == port.0,
                    number => number.as_u64() == Some(port.1 as u64),
                }
        })
}

/// Whether the policies let `from` open a connection to `to` on `port`: egress from
/// `from` (when policies select it for egress) and ingress to `to` (when it is a pod of
/// the namespace that policies select for ingress).
pub fn allows(policies: &[Value], from: &Peer, to: &Peer, port: &(String, u16)) -> bool {
    let selecting = |peer: &Peer, kind: &str| -> Vec<&Value> {
        if peer.namespace.is_some() || peer.address.is_some() {
            return Vec::new(); // Not ours: its own namespace's policies apply, if any.
        }
        policies
            .iter()
            .filter(|p| {
                p["spec"]["policyTypes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t == kind)
                    && selector_matches(&p["spec"]["podSelector"], &peer.labels)
            })
            .collect()
    };
    // A direction is open when no policy governs it for that pod, or a rule of one that does
    // names the peer on the other end (`to` for egress, `from` for ingress) and the port.
    let admits = |pod: &Peer, kind: &str, rules: &str, peers: &str, other: &Peer| {
        let governing = selecting(pod, kind);
        governing.is_empty()
            || governing.iter().any(|p| {
                p["spec"][rules]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|rule| {
                        rule.get(peers)
                            .and_then(Value::as_array)
                            .is_none_or(|list| list.iter().any(|e| peer_matches(e, other)))
                            && port_matches(rule.get("ports"), port)
                    })
            })
    };
    admits(from, "Egress", "egress", "to", to) && admits(to, "Ingress", "ingress", "from", from)
}

/// Every edge the policies allow from each of `sources` to each of `targets`, by port
/// name (the number where the port has no name).
pub fn allowed_edges(policies: &[Value], sources: &[Peer], targets: &[Peer]) -> BTreeSet<Edge> {
    let mut edges = BTreeSet::new();
    for from in sources {
        for to in targets {
            for port in &to.ports {
                if allows(policies, from, to, port) {
                    let name = if port.0.is_empty() {
                        port.1.to_string()
                    } else {
                        port.0.clone()
                    };
                    edges.insert((from.name.clone(), to.name.clone(), name));
                }
            }
        }
    }
    edges
}

/// Watches processes' connections from a thread, every 20 ms, until [`Watcher::stop`]:
/// which kind of process reached which port.
pub struct Watcher {
    watched: std::sync::Arc<std::sync::Mutex<Vec<(u32, String)>>>,
    seen: std::sync::Arc<std::sync::Mutex<BTreeSet<(String, u16)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    pub fn start() -> Watcher {
        let watched = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u32, String)>::new()));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (watched, seen, stop) = (watched.clone(), seen.clone(), stop.clone());
            std::thread::spawn(move || {
                // Per process: the ports it has listened on (see `remote_ports`).
                let mut listened: HashMap<u32, HashSet<u16>> = HashMap::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let processes = watched.lock().unwrap().clone();
                    for (pid, kind) in processes {
                        let ports = remote_ports(pid, listened.entry(pid).or_default());
                        let mut seen = seen.lock().unwrap();
                        seen.extend(ports.into_iter().map(|p| (kind.clone(), p)));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            })
        };
        Watcher {
            watched,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Watches `pid` as a process of `kind` from now on.
    pub fn watch(&self, pid: u32, kind: &str) {
        self.watched.lock().unwrap().push((pid, kind.to_string()));
    }

    /// Records what `kind` reaches (for a process watched by its caller).
    pub fn record(&self, kind: &str, ports: Vec<u16>) {
        let mut seen = self.seen.lock().unwrap();
        seen.extend(ports.into_iter().map(|p| (kind.to_string(), p)));
    }

    /// Stops watching: every (kind, remote port) seen.
    pub fn stop(mut self) -> BTreeSet<(String, u16)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.seen.lock().unwrap().clone()
    }
}

/// The fleet's pods in an overlay (`app.kubernetes.io/name: flowfleet`).
pub fn fleet_pods(objects: &[Value]) -> Vec<Peer> {
    pods(objects)
        .into_iter()
        .filter(|p| p.labels.get("app.kubernetes.io/name").map(String::as_str) == Some("flowfleet"))
        .collect()
}

fn outside(name: &str, address: std::net::Ipv4Addr, port: (&str, u16)) -> Peer {
    Peer {
        name: name.into(),
        labels: BTreeMap::new(),
        namespace: None,
        address: Some(address),
        ports: vec![(port.0.into(), port.1)],
    }
}

fn in_namespace(name: &str, namespace: &str, app: &str, ports: Vec<(String, u16)>) -> Peer {
    Peer {
        name: name.into(),
        labels: [("app.kubernetes.io/name".to_string(), app.to_string())].into(),
        namespace: Some(
            [(
                "kubernetes.io/metadata.name".to_string(),
                namespace.to_string(),
            )]
            .into(),
        ),
        address: None,
        ports,
    }
}

/// Everything the fleet's pods may reach in an overlay, named as the edges name them: the
/// overlay's pods (the dev overlay's stores among them, port `main`), the OTLP collector
/// (`otel-collector`, port `4318`), the internet (`internet`, port `any`) and, where the
/// stores are managed services outside the cluster (staging, prod), `postgres`, `redis`
/// and `rabbitmq` at an address of the range the overlay's policies name and `s3` on the
/// internet, each on port `main`.
pub fn targets(objects: &[Value]) -> Vec<Peer> {
    let mut targets = pods(objects);
    targets.push(in_namespace(
        "otel-collector",
        "observability",
        "opentelemetry-collector",
        vec![(String::new(), 4318)],
    ));
    let public = std::net::Ipv4Addr::new(93, 184, 215, 14);
    // A port other than HTTPS: in staging and prod the storage service may reach HTTPS
    // anywhere (its bucket's endpoint, which no policy can name by address), nothing else.
    targets.push(outside("internet", public, ("any", 8443)));
    if !targets.iter().any(|t| t.name == "postgres") {
        let managed: ipnet::Ipv4Net = objects
            .iter()
            .filter(|o| o["kind"] == "NetworkPolicy")
            .flat_map(|p| p["spec"]["egress"].as_array().cloned().unwrap_or_default())
            .flat_map(|rule| rule["to"].as_array().cloned().unwrap_or_default())
            .filter_map(|to| to["ipBlock"]["cidr"].as_str().map(str::to_string))
            .filter_map(|cidr| cidr.parse::<ipnet::Ipv4Net>().ok())
            .find(|net| net.prefix_len() > 0)
            .expect("an overlay without its own stores names the managed stores' range");
        let address = managed.hosts().next().unwrap();
        targets.push(outside("postgres", address, ("main", 5432)));
        targets.push(outside("redis", address, ("main", 6379)));
        targets.push(outside("rabbitmq", address, ("main", 5671)));
        targets.push(outside("s3", public, ("main", 443)));
    }
    targets
}

/// Who reaches the fleet from the rest of the cluster: Prometheus (namespace `monitoring`)
/// and the ingress controller (namespace `ingress-nginx`).
pub fn cluster_callers() -> Vec<Peer> {
    vec![
        in_namespace("prometheus", "monitoring", "prometheus", Vec::new()),
        in_namespace(
            "ingress-nginx",
            "ingress-nginx",
            "ingress-nginx",
            Vec::new(),
        ),
    ]
}
