//! How the compose test reads docker/compose.yaml: interpolated as `docker compose`
//! would, each service's ports and environment, what `flowfleet check` reports of a
//! Flowfleet service, and the variables and URLs that say where it binds and what it
//! reaches.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::compose_file;
use crate::support::deploy::{root, yaml_documents};

/// What a user exports before `docker compose up` (compose demands it:
/// `${FLOWFLEET_SECRET_KEYS:?...}`): the dev overlay's key ring.
const SECRET_KEYS: &str = r#"["dev:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="]"#;

/// Compose's interpolation of `text` (`$$` is a `$`): `${V}`, `${V:-default}`,
/// `${V-default}`, `${V:?error}`, `${V?error}`, `$V`. A required variable that is not
/// set fails the test, as `docker compose` would refuse to start.
fn interpolate(text: &str, vars: &BTreeMap<&str, &str>) -> String {
    let name_end = |s: &str| {
        s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len())
    };
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {text}"));
            let expr = &r[..end];
            rest = &r[end + 1..];
            let (name, op) = expr.split_at(name_end(expr));
            let value = vars.get(name).copied();
            let set = value.filter(|v| !v.is_empty());
            let required = |v: Option<&str>| {
                v.unwrap_or_else(|| panic!("compose would refuse to start: {name} {op}"))
                    .to_string()
            };
            out.push_str(&match op {
                "" => value.unwrap_or_default().to_string(),
                _ if op.starts_with(":-") => set.unwrap_or(&op[2..]).to_string(),
                _ if op.starts_with('-') => value.unwrap_or(&op[1..]).to_string(),
                _ if op.starts_with(":?") => required(set),
                _ if op.starts_with('?') => required(value),
                _ => panic!("interpolation ${{{expr}}} is not understood here"),
            });
        } else {
            let end = name_end(rest);
            out.push_str(vars.get(&rest[..end]).copied().unwrap_or_default());
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

fn interpolate_all(value: &mut Value, vars: &BTreeMap<&str, &str>) {
    match value {
        Value::String(s) => *s = interpolate(s, vars),
        Value::Array(items) => items.iter_mut().for_each(|v| interpolate_all(v, vars)),
        Value::Object(map) => map.values_mut().for_each(|v| interpolate_all(v, vars)),
        _ => {}
    }
}

/// The compose file as `docker compose` would take it, with FLOWFLEET_SECRET_KEYS set.
pub(super) fn compose(python: &Path) -> Value {
    let mut compose = yaml_documents(python, &compose_file(), "SafeLoader").remove(0);
    let vars = BTreeMap::from([("FLOWFLEET_SECRET_KEYS", SECRET_KEYS)]);
    interpolate_all(&mut compose, &vars);
    compose
}

/// The container ports of a `ports` or `expose` list, each with the host port it is
/// published on (when it is fixed).
pub(super) fn port_entries(list: &Value) -> Vec<(u16, Option<u16>)> {
    let number = |s: &str| -> Vec<u16> {
        let s = s.split('/').next().unwrap();
        match s.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect(),
            None => vec![s.parse().unwrap_or_else(|_| panic!("not a port: {s}"))],
        }
    };
    let mut ports = Vec::new();
    for entry in list.as_array().into_iter().flatten() {
        match entry {
            Value::Object(long) => ports.push((
                long["target"].as_u64().expect("a port's target") as u16,
                long["published"]
                    .as_str()
                    .and_then(|p| p.parse().ok())
                    .or(long["published"].as_u64().map(|p| p as u16)),
            )),
            other => {
                let text = other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_string);
                let parts: Vec<&str> = text.rsplitn(3, ':').collect();
                let container = number(parts[0]);
                let host = parts.get(1).map(|h| number(h));
                for (i, port) in container.iter().enumerate() {
                    let published = host.as_ref().and_then(|h| h.get(i).copied());
                    ports.push((*port, published));
                }
            }
        }
    }
    ports
}

/// A port a compose service listens on; for Flowfleet processes, with its name and the
/// paths served there, as `flowfleet check` reports them.
#[derive(Debug, Clone)]
pub(super) struct Listening {
    pub(super) port: u16,
    pub(super) name: Option<String>,
    pub(super) paths: Vec<String>,
}

/// A service's environment, from its `environment` (a mapping or `KEY=value` list).
pub(super) fn environment(service: &Value) -> Vec<(String, String)> {
    let mut env = Vec::new();
    match &service["environment"] {
        Value::Object(map) => {
            for (k, v) in map {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => panic!("{k} takes its value from the host: set it here"),
                    other => other.to_string(),
                };
                env.push((k.clone(), value));
            }
        }
        Value::Array(items) => {
            for item in items {
                let (k, v) = item.as_str().unwrap().split_once('=').expect("KEY=value");
                env.push((k.to_string(), v.to_string()));
            }
        }
        _ => {}
    }
    env
}

/// A Flowfleet service of the compose file: its command line (after the image's entry
/// point), its environment (the image's, then the service's) and what `flowfleet check`
/// says of them.
pub(super) struct Process {
    pub(super) args: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) report: Value,
}

/// The host and port a URL names (the scheme's port when it names none), if it names a
/// host at all.
pub(super) fn address(value: &str) -> Option<(String, u16)> {
    let url = url::Url::parse(value).ok()?;
    let host = url.host_str().filter(|h| !h.is_empty())?.to_string();
    let port = url.port_or_known_default().or(match url.scheme() {
        "postgres" | "postgresql" => Some(5432),
        "amqp" => Some(5672),
        "amqps" => Some(5671),
        "redis" | "rediss" => Some(6379),
        _ => None,
    })?;
    Some((host, port))
}

/// The variable that tells a Flowfleet process where a `reaches` entry of its report
/// is; `None` for the internet.
pub(super) fn address_variable(reach: &Value) -> Option<String> {
    let to = reach["to"].as_str().unwrap();
    Some(match (to, reach["port"].as_str()) {
        ("postgres", None) => "FLOWFLEET_DATABASE__URL".into(),
        ("rabbitmq", None) => "FLOWFLEET_AMQP__URL".into(),
        ("redis", None) => "FLOWFLEET_REDIS__URL".into(),
        ("s3", None) => "FLOWFLEET_STORAGE__S3_ENDPOINT".into(),
        ("otel-collector", None) => "FLOWFLEET_TELEMETRY__OTLP_ENDPOINT".into(),
        ("internet", None) => return None,
        (service, Some(port)) => format!(
            "FLOWFLEET_SERVICES__{}__{}_URL",
            service.to_uppercase(),
            port.to_uppercase()
        ),
        (other, None) => panic!("flowfleet check reaches {other}: teach this test its variable"),
    })
}

/// The variable holding the address a Flowfleet process binds its listeners to (the
/// report gives ports only); `None` for a process that listens nowhere.
pub(super) fn bind_variable(args: &[String]) -> Option<String> {
    match args.first().map(String::as_str) {
        Some("gateway" | "dev") => Some("FLOWFLEET_GATEWAY__HOST".into()),
        Some("worker") => Some("FLOWFLEET_WORKER__HOST".into()),
        Some("serve") => Some(format!(
            "FLOWFLEET_SERVICES__{}__HOST",
            args[1].to_uppercase()
        )),
        _ => None,
    }
}

/// The defaults of `flowfleet-healthcheck [PORT] [PATH]` (docker/healthcheck.sh).
pub(super) fn healthcheck_defaults() -> (u16, String) {
    let script = std::fs::read_to_string(root().join("docker/healthcheck.sh")).unwrap();
    let default = |var: &str| -> String {
        script
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{var}=${{")))
            .and_then(|rest| rest.split_once(":-"))
            .map(|(_, d)| d.trim_end_matches('}').to_string())
            .unwrap_or_else(|| panic!("docker/healthcheck.sh has no default {var}"))
    };
    (default("port").parse().unwrap(), default("path"))
}

pub(super) fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap();
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image,
    }
}
