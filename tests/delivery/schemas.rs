//! The workflows and docker/compose.yaml validate against the schemas bundled with
//! check-jsonschema, and the validators refuse broken copies: a validator that passed
//! everything would otherwise go unnoticed.

use crate::support::deploy::venv;
use crate::{check_schema, compose_file, workflows};

#[test]
fn workflows_validate_against_the_github_workflow_schema() {
    let Some(python) = venv() else { return };
    if let Err(said) = check_schema(&python, "vendor.github-workflows", &workflows()) {
        panic!("the workflows do not validate:\n{said}");
    }
}

#[test]
fn compose_validates_against_the_compose_specification() {
    let Some(python) = venv() else { return };
    if let Err(said) = check_schema(&python, "vendor.compose-spec", &[compose_file()]) {
        panic!("docker/compose.yaml does not validate:\n{said}");
    }
}

/// The validators refuse what they should: without this, a validator that passed
/// everything (or a schema that allows any key) would make the tests above pass too.
#[test]
fn the_schema_checks_refuse_broken_files() {
    let Some(python) = venv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        file
    };
    let workflow = std::fs::read_to_string(&workflows()[0]).unwrap();
    let runs_on = workflow
        .lines()
        .find(|l| l.trim_start().starts_with("runs-on:"))
        .expect("a job with runs-on");
    let indent = &runs_on[..runs_on.len() - runs_on.trim_start().len()];
    let uses = workflow
        .lines()
        .find(|l| l.trim_start().starts_with("- uses:"))
        .expect("a step that uses an action");
    let compose = std::fs::read_to_string(compose_file()).unwrap();
    let condition = "condition: service_healthy";
    assert!(compose.contains(condition));
    let cases = [
        (
            "vendor.github-workflows",
            "workflow.yml",
            workflow.clone(),
            "the workflow itself",
            true,
        ),
        (
            "vendor.github-workflows",
            "no-runs-on.yml",
            workflow.replacen(&format!("{runs_on}\n"), "", 1),
            "a job without runs-on",
            false,
        ),
        (
            "vendor.github-workflows",
            "unknown-job-key.yml",
            workflow.replacen(runs_on, &format!("{runs_on}\n{indent}timeout-minute: 5"), 1),
            "a job with an unknown key",
            false,
        ),
        (
            "vendor.github-workflows",
            "unknown-step-key.yml",
            workflow.replacen(uses, &uses.replacen("- uses:", "- use:", 1), 1),
            "a step with an unknown key",
            false,
        ),
        (
            "vendor.compose-spec",
            "compose.yaml",
            compose.clone(),
            "the compose file itself",
            true,
        ),
        (
            "vendor.compose-spec",
            "unknown-service-key.yaml",
            compose.replacen("\n  gateway:\n", "\n  gateway:\n    restrat: always\n", 1),
            "a service with an unknown key",
            false,
        ),
        (
            "vendor.compose-spec",
            "bad-condition.yaml",
            compose.replacen(condition, "condition: service_ready", 1),
            "a dependency condition compose does not have",
            false,
        ),
    ];
    for (schema, name, text, what, valid) in cases {
        let file = write(name, &text);
        let verdict = check_schema(&python, schema, &[file]);
        if valid {
            if let Err(said) = verdict {
                panic!(
                    "check-jsonschema refused {what} (a copy in a temporary directory):\n{said}"
                );
            }
        } else {
            assert!(verdict.is_err(), "check-jsonschema passed {what}");
        }
    }
}
