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
