//! What the harness needs from a lab folder: its setup, its grader parameters, and per step the
//! checks, the solution script and the capabilities it needs. Read from `lab.yaml` (the contract in
//! docs/authoring.md); fields only the web app uses are ignored here.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

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

#[derive(Debug, Deserialize)]
struct LabFile {
    id: String,
    #[serde(default)]
    cluster: ClusterFile,
    setup: Option<String>,
    #[serde(default)]
    params: ParamsFile,
    #[serde(default)]
    steps: Vec<StepFile>,
}

#[derive(Debug, Default, Deserialize)]
struct ClusterFile {
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default)]
    apiserver_flags: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct ParamsFile {
    namespace: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    extra: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct StepFile {
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    checks: Vec<String>,
    solution: Option<String>,
    #[serde(default)]
    needs: Vec<String>,
}

impl LabPlan {
    /// Reads `dir/lab.yaml` and the scripts it names.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("lab.yaml");
        let text = read(&path)?;
        let file: LabFile = serde_yaml::from_str(&text).map_err(|error| Error::Lab {
            path: path.display().to_string(),
            message: match error.location() {
                Some(at) => format!("line {}, column {}: {error}", at.line(), at.column()),
                None => error.to_string(),
            },
        })?;
        let setup = file
            .setup
            .as_deref()
            .map(|name| read(&dir.join(name)))
            .transpose()?;
        let mut apiserver_flags = BTreeMap::new();
        for (flag, value) in file.cluster.apiserver_flags {
            let value = match value {
                serde_yaml::Value::String(text) => text,
                serde_yaml::Value::Bool(b) => b.to_string(),
                serde_yaml::Value::Number(n) => n.to_string(),
                other => {
                    return Err(Error::Lab {
                        path: path.display().to_string(),
                        message: format!(
                            "cluster.apiserver_flags.{flag}: expected a string, number or boolean, found {other:?}"
                        ),
                    });
                }
            };
            apiserver_flags.insert(flag.trim_start_matches('-').to_owned(), value);
        }
        let mut steps = Vec::new();
        for step in file.steps {
            let solution = step
                .solution
                .as_deref()
                .map(|name| read(&dir.join(name)))
                .transpose()?;
            let mut needs = file.cluster.needs.clone();
            needs.extend(step.needs.iter().cloned());
            needs.sort();
            needs.dedup();
            steps.push(StepPlan {
                id: step.id,
                title: step.title,
                checks: step.checks,
                solution,
                solution_path: step.solution,
                needs,
            });
        }
        Ok(LabPlan {
            id: file.id,
            dir: dir.to_path_buf(),
            needs: file.cluster.needs,
            apiserver_flags,
            setup,
            params: hardlab_grader::context::Params {
                namespace: file.params.namespace,
                secret: file.params.secret,
                extra: file.params.extra,
            },
            steps,
        })
    }

    /// Every lab folder (`NN-id/lab.yaml`) under `root`, in folder order.
    pub fn load_all(root: &Path) -> Result<Vec<Self>> {
        let entries = std::fs::read_dir(root).map_err(|error| Error::Lab {
            path: root.display().to_string(),
            message: error.to_string(),
        })?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.join("lab.yaml").is_file())
            .collect();
        dirs.sort();
        dirs.iter().map(|dir| LabPlan::load(dir)).collect()
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|error| Error::Lab {
        path: path.display().to_string(),
        message: error.to_string(),
    })
}
