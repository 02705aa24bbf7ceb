//! What the harness needs from a lab folder: its setup, its grader parameters, and per step the
//! checks, the solution script and the capabilities it needs: a view of the lab as `labs::load_lab`
//! reads it (one parser and one set of rules for `serve`, `labs validate` and the harness).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Error, Result};

/// One lab, ready to verify.
#[derive(Debug, Clone)]
pub struct LabPlan {
    pub id: String,
    pub dir: PathBuf,
    pub needs: Vec<String>,
    pub apiserver_flags: BTreeMap<String, String>,
    pub setup: Option<String>,
    pub params: hardlab_grader::context::Params,
    pub steps: Vec<StepPlan>,
}

#[derive(Debug, Clone)]
pub struct StepPlan {
    pub id: String,
    pub title: String,
    pub checks: Vec<String>,
    /// The solution script's text; `None` when the step has none.
    pub solution: Option<String>,
    pub solution_path: Option<String>,
    /// The step's own capabilities plus the lab's.
    pub needs: Vec<String>,
}

impl LabPlan {
    /// Reads `dir/lab.yaml` and the scripts it names, with the parser and rules `serve` and
    /// `hardlab labs validate` use: a lab the server would refuse is refused here, with the same
    /// problems.
    pub fn load(dir: &Path) -> Result<Self> {
        let lab = crate::labs::load_lab(dir).map_err(|problems| problems_error(dir, &problems))?;
        Ok(Self::from_lab(&lab))
    }

    /// The harness's view of a loaded lab.
    pub fn from_lab(lab: &crate::labs::Lab) -> Self {
        let steps = lab
            .steps
            .iter()
            .map(|step| {
                let mut needs = lab.cluster.needs.clone();
                needs.extend(step.needs.iter().cloned());
                needs.sort();
                needs.dedup();
                StepPlan {
                    id: step.id.clone(),
                    title: step.title.clone(),
                    checks: step.checks.clone(),
                    solution: step.solution_script.clone(),
                    solution_path: step.solution.as_ref().map(|path| {
                        path.strip_prefix(&lab.dir)
                            .unwrap_or(path)
                            .display()
                            .to_string()
                    }),
                    needs,
                }
            })
            .collect();
        LabPlan {
            id: lab.id.clone(),
            dir: lab.dir.clone(),
            needs: lab.cluster.needs.clone(),
            apiserver_flags: lab.cluster.apiserver_flags.clone(),
            setup: lab.setup_script.clone(),
            params: lab.params.clone(),
            steps,
        }
    }

    /// Every lab folder (`NN-id/lab.yaml`) under `root`, in folder order, loaded as `serve` loads them.
    pub fn load_all(root: &Path) -> Result<Vec<Self>> {
        let labs = crate::labs::load(root).map_err(|error| match error {
            crate::Error::Labs(problems) => problems_error(root, &problems),
            other => Error::Lab {
                path: root.display().to_string(),
                message: other.to_string(),
            },
        })?;
        Ok(labs.all().iter().map(|lab| Self::from_lab(lab)).collect())
    }
}

fn problems_error(dir: &Path, problems: &[crate::labs::LabProblem]) -> Error {
    Error::Lab {
        path: dir.display().to_string(),
        message: problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GOOD: &str = "id: demo
title: Demo
summary: A lab.
minutes: 5
cluster:
  apiserver_flags:
    anonymous-auth: false
    --profiling: \"false\"
    max-requests-inflight: 400
steps:
  - id: one
    title: One
    file: one.md
    checks: [etcd.encryption-configured]
";

    /// One lab folder with `lab.yaml` and the files `GOOD` names.
    fn folder(yaml: &str) -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("01-demo");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("lab.yaml"), yaml).unwrap();
        std::fs::write(dir.join("one.md"), "# One\n").unwrap();
        (root, dir)
    }

    /// What `serve` (and `hardlab labs validate`, which is the same load) and the harness say.
    fn verdicts(
        yaml: &str,
    ) -> (
        std::result::Result<(), String>,
        std::result::Result<LabPlan, String>,
    ) {
        let (root, dir) = folder(yaml);
        let served = crate::labs::load(root.path())
            .map(|_| ())
            .map_err(|e| match e {
                crate::Error::Labs(problems) => problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
                other => other.to_string(),
            });
        let harness = LabPlan::load(&dir).map_err(|e| match e {
            Error::Lab { message, .. } => message,
            other => other.to_string(),
        });
        (served, harness)
    }

    #[test]
    fn serve_and_the_harness_give_one_verdict_on_unusual_and_broken_labs() {
        let (served, harness) = verdicts(GOOD);
        assert!(served.is_ok(), "{served:?}");
        let plan = harness.unwrap();
        // Booleans and numbers are taken as their text, leading dashes dropped, by both.
        assert_eq!(plan.apiserver_flags["anonymous-auth"], "false");
        assert_eq!(plan.apiserver_flags["profiling"], "false");
        assert_eq!(plan.apiserver_flags["max-requests-inflight"], "400");

        let broken = [
            GOOD.replace("minutes: 5\n", "minutes: 5\ncolour: blue\n"),
            GOOD.replace("etcd.encryption-configured", "etcd.no-such-check"),
            GOOD.replace("file: one.md", "file: one.md\n    solution: missing.sh"),
            GOOD.replace("file: one.md", "file: ../outside.md"),
            GOOD.replace("anonymous-auth: false", "anonymous-auth: [a, b]"),
            GOOD.replace("  - id: one", "  - id: One"),
            GOOD.split("steps:").next().unwrap().to_owned() + "steps: []\n",
        ];
        for yaml in &broken {
            let (served, harness) = verdicts(yaml);
            let served = served.expect_err(&format!("serve accepted:\n{yaml}"));
            let harness = harness
                .err()
                .unwrap_or_else(|| panic!("the harness accepted:\n{yaml}"));
            assert_eq!(served, harness, "different verdicts for:\n{yaml}");
        }
    }
}
