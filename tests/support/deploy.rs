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
    skip("the deploy checks need kubectl and deploy/tests/.venv (scripts/test installs it)")
}

/// A check whose tool is missing: skipped, saying `why`, outside `scripts/test`; under it
/// (`FLOWFLEET_TEST_REQUIRE_INFRA`) the test fails instead.
pub fn skip<T>(why: &str) -> Option<T> {
    assert!(
        std::env::var("FLOWFLEET_TEST_REQUIRE_INFRA").is_err(),
        "{why}"
    );
    eprintln!("skipped: {why}");
    None
}

/// What `flowfleet check <args>` reports when run with exactly `env` (nothing inherited).
/// The test fails, naming `what` runs it, when a variable names no configuration key or
/// the binary refuses the command.
pub fn flowfleet_check(what: &str, args: &[String], env: &[(String, String)]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_flowfleet"))
        .arg("check")
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("running flowfleet check");
    let report: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    if let Some(unknown) = report.as_ref().map(|r| &r["unknown_variables"]) {
        assert!(
            unknown.as_array().is_some_and(Vec::is_empty),
            "{what} sets variables that name no configuration key: {unknown}"
        );
    }
    assert!(
        out.status.success(),
        "flowfleet check {} ({what}) refused: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    report.expect("flowfleet check prints its report as JSON")
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
    yaml_documents(python, &file, "SafeLoader")
}

/// An overlay's objects, or None (said why) when the tools are missing outside
/// `scripts/test`.
pub fn render(overlay: &str) -> Option<Vec<Value>> {
    tools().map(|python| render_with(&python, overlay))
}

/// The Python of `deploy/tests/.venv` (with PyYAML, and check-jsonschema beside it) for
/// the checks that need no kubectl (tests/delivery/), when it is there: like [`tools`],
/// the test says why it is skipped, and fails instead under `scripts/test`.
pub fn venv() -> Option<PathBuf> {
    let python = root().join("deploy/tests/.venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    skip("the delivery checks need deploy/tests/.venv (scripts/test installs it)")
}

/// The documents of a YAML file as JSON, read by PyYAML's `loader`: `SafeLoader`
/// (anchors and merge keys resolved, YAML 1.1 types) or `BaseLoader` (every scalar a
/// string: GitHub's `on:` stays a key instead of becoming `true`).
pub fn yaml_documents(python: &Path, file: &Path, loader: &str) -> Vec<Value> {
    let json = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; json.dump([d for d in yaml.load_all(open(sys.argv[1]), Loader=getattr(yaml, sys.argv[2])) if d is not None], sys.stdout)",
        ])
        .arg(file)
        .arg(loader)
        .output()
        .unwrap();
    assert!(
        json.status.success(),
        "reading {}: {}",
        file.display(),
        String::from_utf8_lossy(&json.stderr)
    );
    serde_json::from_slice(&json.stdout).unwrap()
}
