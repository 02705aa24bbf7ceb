//! Labs from files: `labs/<NN-id>/lab.yaml` plus markdown beside it (see docs/authoring.md and
//! the shared lab.yaml contract). Everything is loaded, validated and rendered once at start.

pub mod markdown;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::{Error, Result};

/// One problem in a lab folder, pointing at the file, line (when known) and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabProblem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for LabProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// `lab.yaml` as written by authors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabFile {
    id: String,
    title: String,
    summary: String,
    minutes: u32,
    intro: Option<String>,
    wrapup: Option<String>,
    #[serde(default)]
    cluster: ClusterNeeds,
    setup: Option<String>,
    #[serde(default)]
    params: ParamsFile,
    steps: Vec<StepFile>,
}

/// What a lab asks of its cluster.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterNeeds {
    #[serde(default)]
    pub needs: Vec<String>,
    /// Flag name (without `--`) → value. Authors write `anonymous-auth: false` as often as
    /// `"false"`, so strings, numbers and booleans are all taken, as their text.
    #[serde(default, deserialize_with = "flag_values")]
    pub apiserver_flags: BTreeMap<String, String>,
}

fn flag_values<'de, D>(deserializer: D) -> std::result::Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error as _;
    let raw: BTreeMap<String, serde_yaml::Value> = BTreeMap::deserialize(deserializer)?;
    raw.into_iter()
        .map(|(flag, value)| {
            let text = match value {
                serde_yaml::Value::String(text) => text,
                serde_yaml::Value::Bool(b) => b.to_string(),
                serde_yaml::Value::Number(n) => n.to_string(),
                other => {
                    return Err(D::Error::custom(format!(
                        "{flag}: expected a string, number or boolean, found {other:?}"
                    )));
                }
            };
            Ok((flag.trim_start_matches('-').to_owned(), text))
        })
        .collect()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamsFile {
    namespace: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    extra: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    id: String,
    title: String,
    file: String,
    #[serde(default)]
    checks: Vec<String>,
    #[serde(default)]
    hints: Vec<String>,
    solution: Option<String>,
    #[serde(default)]
    needs: Vec<String>,
    /// `false`: the step page does not check in the background (slow checks, checks that create
    /// objects); the learner presses Check.
    #[serde(default = "default_true")]
    auto_check: bool,
}

fn default_true() -> bool {
    true
}

/// A loaded lab with its markdown rendered to safe HTML.
#[derive(Debug)]
pub struct Lab {
    pub id: String,
    /// The folder name, e.g. `01-etcd-secrets`, which orders the list.
    pub dir_name: String,
    pub dir: PathBuf,
    pub title: String,
    pub summary: String,
    pub minutes: u32,
    pub intro_html: Option<String>,
    pub wrapup_html: Option<String>,
    pub cluster: ClusterNeeds,
    pub setup: Option<PathBuf>,
    /// The setup script's text, read once at load.
    pub setup_script: Option<String>,
    pub params: hardlab_grader::context::Params,
    pub steps: Vec<Step>,
}

#[derive(Debug)]
pub struct Step {
    pub id: String,
    pub title: String,
    pub html: String,
    pub checks: Vec<String>,
    pub hints: Vec<String>,
    pub solution: Option<PathBuf>,
    /// The solution's text, read once at load for the step page's "Show the solution".
    pub solution_script: Option<String>,
    pub needs: Vec<String>,
    /// Whether the step page checks this step in the background (`auto_check` in lab.yaml).
    pub auto_check: bool,
}

impl Lab {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|step| step.id == id)
    }
}

/// Every lab of a folder, in folder-name order.
#[derive(Debug, Default)]
pub struct Labs {
    labs: Vec<Arc<Lab>>,
}

impl Labs {
    pub fn all(&self) -> &[Arc<Lab>] {
        &self.labs
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Lab>> {
        self.labs.iter().find(|lab| lab.id == id)
    }

    pub fn from_labs(labs: Vec<Lab>) -> Self {
        Labs {
            labs: labs.into_iter().map(Arc::new).collect(),
        }
    }
}

/// Loads one lab folder with the same parser and rules as [`load`] (the lab harness uses it).
pub fn load_lab(folder: &Path) -> std::result::Result<Lab, Vec<LabProblem>> {
    let known_checks = known_checks();
    let mut problems = Vec::new();
    match load_one(folder, &known_checks, &mut problems) {
        Some(lab) if problems.is_empty() => Ok(lab),
        _ => Err(problems),
    }
}

fn known_checks() -> HashSet<&'static str> {
    hardlab_grader::catalog::all()
        .iter()
        .map(|check| check.meta.id)
        .collect()
}

/// Loads every `<dir>/*/lab.yaml`; any problem anywhere stops the load with all problems listed.
pub fn load(dir: &Path) -> Result<Labs> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut folders: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.join("lab.yaml").is_file())
        .collect();
    folders.sort();

    let known_checks = known_checks();
    let mut problems = Vec::new();
    let mut labs: Vec<Lab> = Vec::new();
    let mut seen_ids: HashMap<String, PathBuf> = HashMap::new();
    for folder in folders {
        let file = folder.join("lab.yaml");
        let Some(lab) = load_one(&folder, &known_checks, &mut problems) else {
            continue;
        };
        if let Some(first) = seen_ids.get(&lab.id) {
            problems.push(LabProblem {
                line: line_of(
                    &std::fs::read_to_string(&file).unwrap_or_default(),
                    "id:",
                    1,
                ),
                file,
                field: "id".into(),
                message: format!("lab id {:?} is already used by {}", lab.id, first.display()),
            });
            continue;
        }
        seen_ids.insert(lab.id.clone(), file);
        labs.push(lab);
    }
    if problems.is_empty() {
        Ok(Labs::from_labs(labs))
    } else {
        Err(Error::Labs(problems))
    }
}

fn load_one(
    folder: &Path,
    known_checks: &HashSet<&'static str>,
    problems: &mut Vec<LabProblem>,
) -> Option<Lab> {
    let file = folder.join("lab.yaml");
    let problem = |line: Option<usize>, field: &str, message: String| LabProblem {
        file: file.clone(),
        line,
        field: field.to_owned(),
        message,
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) => {
            problems.push(problem(None, "", e.to_string()));
            return None;
        }
    };
    let parsed: LabFile = match serde_yaml::from_str(&text) {
        Ok(parsed) => parsed,
        Err(e) => {
            let line = e.location().map(|l| l.line());
            // serde_yaml says "steps[1]: missing field `file` at line 9 column 5"; the field path
            // is the part before the first colon when there is one.
            let message = e.to_string();
            let (field, message) = match message.split_once(": ") {
                Some((path, rest)) if !path.contains(' ') => (path.to_owned(), rest.to_owned()),
                _ => (String::new(), message),
            };
            problems.push(problem(line, &field, message));
            return None;
        }
    };
    let before = problems.len();
    if !is_kebab(&parsed.id) {
        problems.push(problem(
            line_of(&text, "id:", 1),
            "id",
            format!("{:?} is not kebab case (a-z, 0-9 and -)", parsed.id),
        ));
    }
    let render_file =
        |problems: &mut Vec<LabProblem>, field: &str, relative: &str| match read_inside(
            folder, relative,
        ) {
            Ok(markdown) => Some(markdown::render(&markdown)),
            Err(message) => {
                problems.push(LabProblem {
                    file: file.clone(),
                    line: line_of(&text, relative, 1),
                    field: field.to_owned(),
                    message: format!("{}: {message}", folder.join(relative).display()),
                });
                None
            }
        };
    let intro_html = parsed
        .intro
        .as_deref()
        .and_then(|f| render_file(problems, "intro", f));
    let wrapup_html = parsed
        .wrapup
        .as_deref()
        .and_then(|f| render_file(problems, "wrapup", f));
    let mut steps = Vec::new();
    let mut step_ids = HashSet::new();
    for (index, step) in parsed.steps.iter().enumerate() {
        let field = format!("steps[{index}]");
        let html = render_file(problems, &format!("{field}.file"), &step.file);
        if !step_ids.insert(step.id.as_str()) {
            problems.push(problem(
                line_of(&text, &format!("id: {}", step.id), 2),
                &format!("{field}.id"),
                format!("duplicate step id {:?}", step.id),
            ));
        }
        if !is_kebab(&step.id) {
            problems.push(problem(
                line_of(&text, &format!("id: {}", step.id), 1),
                &format!("{field}.id"),
                format!("{:?} is not kebab case", step.id),
            ));
        }
        for (check_index, check) in step.checks.iter().enumerate() {
            if !known_checks.contains(check.as_str()) {
                problems.push(problem(
                    line_of(&text, check, 1),
                    &format!("{field}.checks[{check_index}]"),
                    format!("unknown check ID {check:?} (hardlab-grade checks lists them)"),
                ));
            }
        }
        let mut solution = None;
        let mut solution_script = None;
        if let Some(relative) = &step.solution {
            match read_inside(folder, relative) {
                Ok(text) => {
                    solution = Some(folder.join(relative));
                    solution_script = Some(text);
                }
                Err(message) => problems.push(problem(
                    line_of(&text, relative, 1),
                    &format!("{field}.solution"),
                    format!("{relative}: {message}"),
                )),
            }
        }
        steps.push(Step {
            id: step.id.clone(),
            title: step.title.clone(),
            html: html.unwrap_or_default(),
            checks: step.checks.clone(),
            hints: step.hints.clone(),
            solution,
            solution_script,
            needs: step.needs.clone(),
            auto_check: step.auto_check,
        });
    }
    if parsed.steps.is_empty() {
        problems.push(problem(
            line_of(&text, "steps:", 1),
            "steps",
            "a lab needs at least one step".into(),
        ));
    }
    let mut setup = None;
    let mut setup_script = None;
    if let Some(relative) = &parsed.setup {
        match read_inside(folder, relative) {
            Ok(text) => {
                setup = Some(folder.join(relative));
                setup_script = Some(text);
            }
            Err(message) => problems.push(problem(
                line_of(&text, relative, 1),
                "setup",
                format!("{relative}: {message}"),
            )),
        }
    }
    if problems.len() > before {
        return None;
    }
    Some(Lab {
        id: parsed.id,
        dir_name: folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        dir: folder.to_path_buf(),
        title: parsed.title,
        summary: parsed.summary,
        minutes: parsed.minutes,
        intro_html,
        wrapup_html,
        cluster: parsed.cluster,
        setup,
        setup_script,
        params: hardlab_grader::context::Params {
            namespace: parsed.params.namespace,
            secret: parsed.params.secret,
            extra: parsed.params.extra,
        },
        steps,
    })
}

/// Reads a file named relative to the lab folder, refusing paths that leave it.
fn read_inside(folder: &Path, relative: &str) -> std::result::Result<String, String> {
    let relative_path = Path::new(relative);
    if relative_path.is_absolute()
        || relative_path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err("must be a path inside the lab folder".into());
    }
    std::fs::read_to_string(folder.join(relative_path)).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "file not found".to_owned(),
        _ => e.to_string(),
    })
}

fn is_kebab(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('-')
        && !id.ends_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The 1-based line of the `nth` line containing `needle` (a best effort: YAML values carry no
/// positions once deserialized).
fn line_of(text: &str, needle: &str, nth: usize) -> Option<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.contains(needle))
        .nth(nth.saturating_sub(1))
        .map(|(index, _)| index + 1)
}

/// `hardlab labs validate [DIR]`: the same load as `serve`, reported for authors and CI.
pub fn validate_command(dir: &Path) -> Result<()> {
    let labs = load(dir)?;
    for lab in labs.all() {
        let checks: usize = lab.steps.iter().map(|s| s.checks.len()).sum();
        println!(
            "ok  {} ({}): {} steps, {checks} checks",
            lab.dir_name,
            lab.id,
            lab.steps.len()
        );
    }
    println!("{} lab(s) valid in {}", labs.all().len(), dir.display());
    Ok(())
}
