//! `.github/workflows/` runs what the repository has: the README's test command, the
//! scripts, the Dockerfile's targets, the overlays and the image name of the manifests,
//! with pinned actions; a pipeline that names something gone would only fail in CI.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::dockerfile::dockerfile;
use crate::support::deploy::{root, venv, yaml_documents};
use crate::{is_executable, strings, workflows};

/// The repository's image name in the rendered manifests: `deploy/base`'s `images` entry
/// for `flowfleet`.
fn manifest_image(python: &Path) -> String {
    let base = yaml_documents(
        python,
        &root().join("deploy/base/kustomization.yaml"),
        "SafeLoader",
    );
    base[0]["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "flowfleet")
        .and_then(|i| i["newName"].as_str())
        .expect("deploy/base renames the image flowfleet")
        .to_string()
}

/// The pipeline uses what exists: the README's test command, `.github/scripts/*` it
/// runs, the Dockerfile's targets, the overlays, the image name of the manifests; it
/// builds both platforms, keeps the debug symbols, fails on HIGH and CRITICAL findings,
/// and deploys production only after staging, behind the `production` environment.
#[test]
fn the_pipeline_runs_what_the_repository_has() {
    let Some(python) = venv() else { return };
    let docker = dockerfile(&root().join("docker/Dockerfile"));
    assert_eq!(
        docker.stages.last().map(String::as_str),
        Some("runtime"),
        "docker/Dockerfile: the runtime stage must stay the last (the default target)"
    );
    let mut jobs = BTreeMap::new();
    for file in workflows() {
        let workflow = yaml_documents(&python, &file, "BaseLoader").remove(0);
        for (name, job) in workflow["jobs"].as_object().unwrap() {
            jobs.insert(name.clone(), job.clone());
        }
    }
    let steps = || {
        jobs.iter().flat_map(|(job, spec)| {
            spec["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |s| (job.as_str(), s))
        })
    };
    // Actions pinned to a version tag (or a commit).
    for (job, step) in steps() {
        let Some(uses) = step["uses"].as_str() else {
            continue;
        };
        let (_, version) = uses
            .split_once('@')
            .unwrap_or_else(|| panic!("{job}: {uses} names no version"));
        let tag = version.strip_prefix('v').unwrap_or(version);
        let pinned = (!tag.is_empty()
            && tag
                .split('.')
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
            || (version.len() == 40 && version.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(pinned, "{job}: {uses} is not pinned to a version tag");
    }
    let runs: Vec<(&str, &str)> = steps()
        .filter_map(|(job, s)| s["run"].as_str().map(|r| (job, r)))
        .collect();
    // The README's test command, and the scripts the steps run.
    assert!(
        runs.iter()
            .any(|(_, r)| r.lines().any(|l| l.trim() == "scripts/test")),
        "no step runs scripts/test"
    );
    assert!(is_executable(&root().join("scripts/test")));
    for (job, run) in &runs {
        for word in run.split_whitespace() {
            if word.starts_with(".github/scripts/") || word.starts_with("scripts/") {
                assert!(
                    is_executable(&root().join(word)),
                    "{job} runs {word}, which is no executable file"
                );
            }
        }
    }
    // The image: both platforms, pushed, from the Dockerfile's stages; the debug symbols
    // kept as an artifact.
    let builds: Vec<&Value> = steps()
        .map(|(_, s)| s)
        .filter(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("docker/build-push-action@"))
        })
        .collect();
    for build in &builds {
        let with = &build["with"];
        let file = with["file"]
            .as_str()
            .expect("build-push-action names its file");
        assert_eq!(file, "docker/Dockerfile");
        let target = with["target"].as_str().expect("a build names its target");
        assert!(
            docker.stages.iter().any(|s| s == target),
            "docker/Dockerfile has no stage {target}"
        );
        let platforms = with["platforms"].as_str().unwrap_or_default();
        for platform in ["linux/amd64", "linux/arm64"] {
            assert!(
                platforms.contains(platform),
                "{target} is not built for {platform}"
            );
        }
    }
    assert!(
        builds
            .iter()
            .any(|b| b["with"]["target"] == "runtime" && b["with"]["push"] == "true"),
        "no build pushes the runtime image"
    );
    let symbols = builds
        .iter()
        .find(|b| b["with"]["target"] == "debug-symbols")
        .expect("no build of the debug-symbols target");
    let outputs = symbols["with"]["outputs"].as_str().unwrap_or_default();
    let dest = outputs
        .split(',')
        .find_map(|kv| kv.strip_prefix("dest="))
        .expect("the debug symbols go to a local directory");
    assert!(
        steps().any(|(_, s)| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
                && s["with"]["path"]
                    .as_str()
                    .is_some_and(|p| p.trim_end_matches('/') == dest.trim_end_matches('/'))
        }),
        "the debug symbols ({dest}) are not uploaded as an artifact"
    );
    // The scan fails on HIGH and CRITICAL findings.
    let scan = steps()
        .map(|(_, s)| s)
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("aquasecurity/trivy-action@"))
        })
        .expect("no Trivy scan");
    let severity = scan["with"]["severity"].as_str().unwrap_or_default();
    assert!(severity.contains("HIGH") && severity.contains("CRITICAL"));
    assert_eq!(scan["with"]["exit-code"], "1", "the scan must fail the run");
    // Staging, then production behind its environment, each with an overlay that exists,
    // through the deploy script, which sets the image name the manifests really use.
    let environment = |job: &Value| -> Option<String> {
        match &job["environment"] {
            Value::String(name) => Some(name.clone()),
            Value::Object(env) => env["name"].as_str().map(str::to_string),
            _ => None,
        }
    };
    let deploying = |env: &str| -> (&String, &Value) {
        jobs.iter()
            .find(|(_, job)| environment(job).as_deref() == Some(env))
            .unwrap_or_else(|| panic!("no job deploys to the {env} environment"))
    };
    let (staging, _) = deploying("staging");
    let (_, production) = deploying("production");
    assert!(
        strings(&production["needs"]).contains(staging),
        "production does not wait for staging"
    );
    for (env, overlay) in [("staging", "staging"), ("production", "prod")] {
        let (name, job) = deploying(env);
        let run: String = job["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["run"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            run.contains(&format!(".github/scripts/deploy {overlay} ")),
            "{name} does not deploy deploy/overlays/{overlay}"
        );
        assert!(root()
            .join(format!("deploy/overlays/{overlay}/kustomization.yaml"))
            .exists());
    }
    let script = std::fs::read_to_string(root().join(".github/scripts/deploy")).unwrap();
    let set = script
        .lines()
        .find_map(|l| l.trim().strip_prefix("manifest_image="))
        .expect(".github/scripts/deploy sets manifest_image");
    assert_eq!(
        set,
        manifest_image(&python),
        ".github/scripts/deploy would set an image the manifests do not use"
    );
    assert!(script.contains("kustomize edit set image \"$manifest_image=$image\""));
}
