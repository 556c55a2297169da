//! Rendering `deploy/`'s overlays for the tests that read them (tests/deploy.rs,
//! tests/distributed.rs): `kubectl kustomize`, then YAML to JSON with the Python of
//! `deploy/tests/.venv` (installed by `scripts/test`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of `deploy/tests/.venv`, when it and kubectl are there.
pub fn tools() -> Option<PathBuf> {
    let python = root().join("deploy/tests/.venv/bin/python");
    let kubectl = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if python.exists() && kubectl {
        return Some(python);
    }
    let why = "the deploy checks need kubectl and deploy/tests/.venv (scripts/test installs it)";
    assert!(
        std::env::var("FLOWFLEET_TEST_REQUIRE_INFRA").is_err(),
        "{why}"
    );
    eprintln!("skipped: {why}");
    None
}

/// An overlay as `kubectl kustomize` renders it: its objects, in order.
pub fn render_with(python: &Path, overlay: &str) -> Vec<Value> {
    let rendered = Command::new("kubectl")
        .args(["kustomize"])
        .arg(root().join("deploy/overlays").join(overlay))
        .output()
        .expect("running kubectl kustomize");
    assert!(
        rendered.status.success(),
        "kubectl kustomize deploy/overlays/{overlay} failed: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &rendered.stdout).unwrap();
    let json = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], sys.stdout)",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    serde_json::from_slice(&json.stdout).unwrap()
}

/// An overlay's objects, or None (said why) when the tools are missing outside
/// `scripts/test`.
pub fn render(overlay: &str) -> Option<Vec<Value>> {
    tools().map(|python| render_with(&python, overlay))
}
