//! What the delivery tests read of `docker/Dockerfile`: its stages (the pipeline builds
//! targets that must exist) and the runtime stage's environment, health check and entry
//! point (what compose runs), parsed here once for both.

use std::path::Path;

use serde_json::Value;

use crate::strings;

/// What the tests read of `docker/Dockerfile`: its stages, and of the last one (the
/// default target, which compose builds) the environment, health check and entry point.
pub(crate) struct Dockerfile {
    pub(crate) stages: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) healthcheck: Vec<String>,
    pub(crate) entrypoint: Vec<String>,
}

pub(crate) fn dockerfile(path: &Path) -> Dockerfile {
    let text = std::fs::read_to_string(path).unwrap();
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if current.is_empty() && (line.starts_with('#') || line.is_empty()) {
            continue;
        }
        if line.starts_with('#') {
            continue; // a comment inside a continued instruction
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let mut file = Dockerfile {
        stages: Vec::new(),
        env: Vec::new(),
        healthcheck: Vec::new(),
        entrypoint: Vec::new(),
    };
    let json_array = |s: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(s.trim())
            .unwrap_or_else(|_| panic!("not an exec-form (JSON) array: {s}"));
        strings(&v)
    };
    for instruction in instructions {
        let (keyword, rest) = instruction
            .split_once(char::is_whitespace)
            .unwrap_or((&instruction, ""));
        match keyword.to_ascii_uppercase().as_str() {
            "FROM" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let name = match words.as_slice() {
                    [.., as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                    _ => format!("#{}", file.stages.len()),
                };
                file.stages.push(name);
                file.env.clear();
                file.healthcheck.clear();
                file.entrypoint.clear();
            }
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("ENV {pair}: use the KEY=value form"));
                    file.env
                        .push((k.to_string(), v.trim_matches('"').to_string()));
                }
            }
            "HEALTHCHECK" => {
                let (_, command) = rest.split_once("CMD").expect("HEALTHCHECK ... CMD [...]");
                file.healthcheck = json_array(command);
            }
            "ENTRYPOINT" => file.entrypoint = json_array(rest),
            _ => {}
        }
    }
    file
}
