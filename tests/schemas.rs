//! The SDL and supergraph files in `schemas/` must equal what the code produces.
//! Regenerate them with `flowfleet compose` and `flowfleet schema <service>`.

mod support;

use std::process::Command;

#[test]
fn schema_files_match_the_code() {
    let root = env!("CARGO_MANIFEST_DIR");
    for s in [
        "workflow",
        "execution",
        "auth",
        "notification",
        "analytics",
        "storage",
    ] {
        let out = Command::new(support::BIN)
            .args(["schema", s])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = format!("{root}/schemas/{s}.graphql");
        let committed = std::fs::read_to_string(&file).unwrap_or_default();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            committed,
            "{file} is stale: run `cargo run -- schema {s} > schemas/{s}.graphql`"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("supergraph.graphql");
    let out = Command::new(support::BIN)
        .args(["compose", "--out"])
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        std::fs::read_to_string(format!("{root}/schemas/supergraph.graphql")).unwrap(),
        "schemas/supergraph.graphql is stale: run `cargo run -- compose`"
    );
}

/// Issue #2: whatever composes the supergraph, Apollo's own gateway must accept it too.
/// Together with the test above, this holds for what `flowfleet compose` produces.
#[test]
fn apollo_gateway_accepts_the_fleet_supergraph() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let apollo = root.join("gateway/tests/apollo");
    assert!(
        apollo.join("node_modules/@apollo/gateway").exists(),
        "@apollo/gateway is not installed: run `npm ci --prefix gateway/tests/apollo` first"
    );
    let out = Command::new("node")
        .arg(apollo.join("check-supergraph.mjs"))
        .arg(root.join("schemas/supergraph.graphql"))
        .output()
        .expect("running node (is Node.js installed?)");
    assert!(
        out.status.success(),
        "@apollo/gateway rejected schemas/supergraph.graphql:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
