//! The pipeline integrations as shipped: the GitHub Action's script (ci/grade.sh, run by
//! action.yml) and the GitLab CI template's job script, each run with the built grader against the
//! repository's own example manifests (grader/tests/fixtures), and the hardlab/grade image
//! (docker/grade, built by .ci/run) run with Docker.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const GRADER: &str = env!("CARGO_BIN_EXE_hardlab-grade");

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn yaml(path: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs ci/grade.sh from the repository root as the action's Grade step does.
fn action_script(paths: &str, work: &Path) -> (Output, String, String) {
    let github_output = work.join("github-output");
    let summary = work.join("summary.md");
    let sarif = work.join("report.sarif");
    let output = Command::new("bash")
        .arg(repository().join("ci/grade.sh"))
        .current_dir(repository())
        .env("HARDLAB_GRADE", GRADER)
        .env("HG_PATHS", paths)
        .env("HG_FORMAT", "github")
        .env("HG_OUTPUTS", format!("sarif={}", sarif.display()))
        .env("HG_EXTRA_ARGS", "--lab pod-security")
        .env("GITHUB_OUTPUT", &github_output)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        output,
        std::fs::read_to_string(github_output).unwrap_or_default(),
        std::fs::read_to_string(summary).unwrap_or_default(),
    )
}

#[test]
fn the_github_action_script_annotates_the_example_manifests_and_defers_the_exit_code() {
    let work = tempfile::tempdir().unwrap();
    let insecure = "grader/tests/fixtures/podsec/insecure.yaml";
    let (output, github_output, summary) = action_script(insecure, work.path());
    assert!(
        output.status.success(),
        "the script defers the exit code: {}",
        text(&output)
    );
    assert_eq!(github_output, "exit-code=1\n");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let errors: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("::error "))
        .collect();
    assert!(
        errors.iter().any(|line| line.starts_with(&format!(
            "::error file={insecure},line=61,title=podsec.no-privileged%3A"
        ))),
        "paths relative to the repository, the field's line: {stdout}"
    );
    assert!(
        summary.starts_with("### hardlab-grade\n```\nhardlab hardlab-grade"),
        "{summary}"
    );
    let sarif: Value =
        serde_json::from_str(&std::fs::read_to_string(work.path().join("report.sarif")).unwrap())
            .unwrap();
    assert!(!sarif["runs"][0]["results"].as_array().unwrap().is_empty());

    let (output, github_output, _) =
        action_script("grader/tests/fixtures/podsec/hardened.yaml", work.path());
    assert!(output.status.success(), "{}", text(&output));
    assert!(github_output.ends_with("exit-code=0\n"), "{github_output}");
}

#[test]
fn the_action_passes_every_input_to_the_script_it_runs() {
    let action = yaml(&repository().join("action.yml"));
    let script = std::fs::read_to_string(repository().join("ci/grade.sh")).unwrap();
    let steps = action["runs"]["steps"].as_sequence().unwrap();
    assert_eq!(action["runs"]["using"], "composite");
    let grade = steps.iter().find(|step| step["id"] == "grade").unwrap();
    assert!(
        grade["run"]
            .as_str()
            .unwrap()
            .contains("$GITHUB_ACTION_PATH/ci/grade.sh")
    );
    for (name, _) in grade["env"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        assert!(
            script.contains(&format!("${{{name}")),
            "ci/grade.sh ignores {name}"
        );
    }
    let everything = serde_yaml::to_string(&action["runs"]).unwrap();
    for (input, _) in action["inputs"].as_mapping().unwrap() {
        let input = input.as_str().unwrap();
        assert!(
            everything.contains(&format!("inputs.{input}")),
            "input {input} is unused"
        );
    }
    let upload = steps
        .iter()
        .find(|step| {
            step["uses"]
                .as_str()
                .is_some_and(|uses| uses.contains("upload-sarif"))
        })
        .unwrap();
    assert_eq!(upload["with"]["sarif_file"], "${{ inputs.sarif }}");
}

#[test]
fn the_gitlab_template_job_writes_code_quality_junit_and_sarif() {
    let template_path = repository().join("ci/hardlab-grade.gitlab-ci.yml");
    let template = yaml(&template_path);
    let job = &template["hardlab-grade"];
    let script: Vec<&str> = job["script"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|line| line.as_str().unwrap())
        .collect();
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("deploy")).unwrap();
    std::fs::copy(
        repository().join("grader/tests/fixtures/podsec/insecure.yaml"),
        work.path().join("deploy/insecure.yaml"),
    )
    .unwrap();
    let bin_dir = Path::new(GRADER).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script.join("\n"))
        .current_dir(work.path())
        .env("PATH", path);
    for (name, value) in template["variables"].as_mapping().unwrap() {
        command.env(name.as_str().unwrap(), value.as_str().unwrap());
    }
    // As a project would set it: only the pod-security lab, on its deploy folder.
    command
        .env("HG_PATHS", "deploy")
        .env("HG_EXTRA_ARGS", "--lab pod-security");
    let output = command.output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "findings fail the job: {}",
        text(&output)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("hardlab "),
        "text in the job log"
    );

    let reports = &job["artifacts"]["reports"];
    let quality_file = work.path().join(reports["codequality"].as_str().unwrap());
    let quality: Value =
        serde_json::from_str(&std::fs::read_to_string(quality_file).unwrap()).unwrap();
    let first = &quality.as_array().unwrap()[0];
    assert_eq!(first["location"]["path"], "deploy/insecure.yaml");
    assert!(first["fingerprint"].is_string() && first["check_name"].is_string());
    let junit =
        std::fs::read_to_string(work.path().join(reports["junit"].as_str().unwrap())).unwrap();
    assert!(junit.contains("<testsuites"));
    for kept in job["artifacts"]["paths"].as_sequence().unwrap() {
        assert!(
            work.path().join(kept.as_str().unwrap()).is_file(),
            "{kept:?} was not written"
        );
    }
}

#[test]
fn the_grade_image_runs_the_static_binary_on_mounted_manifests() {
    if !hardlab_testkit::require(hardlab_testkit::Component::Docker) {
        return;
    }
    let image = "hardlab/grade:latest";
    let present = Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .unwrap();
    if !hardlab_testkit::require_that(
        present.status.success(),
        "the hardlab/grade image is not built (docker/grade/build.sh; .ci/run builds it)",
    ) {
        return;
    }
    let fixtures = repository().join("grader/tests/fixtures/podsec");
    let output = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "-v"])
        .arg(format!("{}:/src:ro", fixtures.display()))
        .args([
            image,
            "static",
            "--lab",
            "pod-security",
            "--format",
            "json",
            "insecure.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["target"], "insecure.yaml");
    assert!(report["finding_summary"]["open"].as_u64().unwrap() > 0);

    let hardened = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "-v"])
        .arg(format!("{}:/src:ro", fixtures.display()))
        .args([
            image,
            "static",
            "--lab",
            "pod-security",
            "--fail-on",
            "fail",
            "hardened.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(hardened.status.code(), Some(0), "{}", text(&hardened));
}
