//! How Flowfleet is delivered, as the test suite sees it:
//!
//! - `.github/workflows/` validates against GitHub's workflow schema
//!   (`check-jsonschema --builtin-schema vendor.github-workflows`), and the pipeline runs
//!   what the repository has: the README's test command, the Dockerfile's targets, the
//!   overlays and the image name their manifests use, actions pinned to a version;
//! - `docker/compose.yaml` validates against the compose specification (the same tool,
//!   `vendor.compose-spec`), and every Flowfleet service in it runs what the binary has:
//!   `flowfleet check` with the service's command and environment (over the image's own)
//!   names no unknown variable, every port it publishes or exposes is one the process
//!   listens on, its health check asks a path served there, every address it is given is
//!   a compose service listening on that port (the right service, for the fleet's own),
//!   and so is every Prometheus scrape target; the stores' exporters the dashboards read
//!   are there;
//! - the validators refuse broken copies (an unknown key, a job without `runs-on`, ...).
//!
//! The schemas are the copies bundled with check-jsonschema: the checks run with every
//! download made to fail. The tools come from `deploy/tests/.venv` (scripts/test installs
//! it). Without it the tests say so and pass, except under `scripts/test`
//! (`FLOWFLEET_TEST_REQUIRE_INFRA=1`), where they fail.
//!
//! One test binary, by module: [`schemas`] (the validators and what they refuse),
//! [`pipeline`] (the workflows against the repository), [`compose`] (docker/compose.yaml
//! against the binary and the images); [`dockerfile`] reads `docker/Dockerfile` for the
//! last two.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../support/mod.rs"]
mod support;

mod compose;
mod dockerfile;
mod pipeline;
mod schemas;

use serde_json::Value;
use support::deploy::root;

// ---- the tools -------------------------------------------------------------------

/// check-jsonschema's verdict on `files` against its bundled schema `schema`: `Err` with
/// what it printed when it refuses them. Any download fails (the proxies are a closed
/// port, the cache an empty directory), so a pass is the bundled schema's.
fn check_schema(python: &Path, schema: &str, files: &[PathBuf]) -> Result<(), String> {
    let cache = tempfile::tempdir().unwrap();
    let nowhere = "http://127.0.0.1:9";
    let out = Command::new(python.with_file_name("check-jsonschema"))
        .args(["--builtin-schema", schema])
        .args(files)
        .env("XDG_CACHE_HOME", cache.path())
        .envs(
            [
                "HTTP_PROXY",
                "HTTPS_PROXY",
                "http_proxy",
                "https_proxy",
                "ALL_PROXY",
            ]
            .map(|v| (v, nowhere)),
        )
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .expect("running check-jsonschema");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(())
    } else {
        Err(said)
    }
}

fn workflows() -> Vec<PathBuf> {
    let dir = root().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no workflow in .github/workflows");
    files
}

fn compose_file() -> PathBuf {
    root().join("docker/compose.yaml")
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::String(s) => vec![s.clone()],
        Value::Null => Vec::new(),
        other => vec![other.to_string()],
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
