//! `hardlab labs verify`: proves, step by step, that every lab's checks fail before the step's
//! solution and pass after it, on a real cluster.
//!
//! For each lab: a cluster (a disposable one, or the one named), the lab's setup, then each step in
//! order. A step with checks must have at least one check failing (or warning) before its solution,
//! none failing after, and at least one better after than before. A step without checks is a reading
//! step: its solution must succeed. A step needing a capability the cluster lacks is reported as
//! "needs a full cluster" and never as passed; the steps after it run on a state without that
//! step's solution, so what goes wrong in them is reported as not verifiable rather than as a
//! violation of the lab.
//!
//! On a node without a kubelet (the offline test node) the harness publishes the static pod
//! manifests as mirror pods before each grading, as a kubelet would: the grader reads control-plane
//! flags from mirror pods.

pub mod cli;
pub mod plan;
pub mod proxy;
pub mod target;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hardlab_grader::{CheckDef, Status};

pub use plan::{LabPlan, StepPlan};
pub use target::Target;

/// How long one setup or solution script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long one grading of a step's checks may take.
const CHECKS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Checks that open connections between running pods: without pods they report "not run" (skip),
/// which is the truth, not a defect of the step.
const NEEDS_RUNNING_PODS: &[&str] = &["netpol.live-probe", "mtls.plaintext-refused"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Lab { path: String, message: String },
    #[error(transparent)]
    Cluster(#[from] crate::clusters::Error),
    #[error("the node: {0}")]
    Node(String),
    #[error("{0}")]
    Usage(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to verify and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only this step of each lab (the earlier steps' solutions still run first).
    pub step: Option<String>,
    /// Node image for disposable clusters.
    pub image: String,
    pub unprivileged: bool,
    /// Use this existing cluster instead of creating one.
    pub cluster: Option<String>,
    /// Capabilities the operator declares the cluster has (`network-policy`, `mesh`, `internet`).
    pub capabilities: Vec<String>,
}

/// One check's status before and after the step's solution.
#[derive(Debug, Clone)]
pub struct CheckTrace {
    pub check: String,
    pub before: Status,
    pub before_message: String,
    pub after: Option<Status>,
    pub after_message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Checks failed before the solution and passed after it.
    Verified,
    /// No checks; the solution ran and succeeded.
    ReadingStepRan,
    /// No checks and no solution: nothing to run.
    ReadingStep,
    /// The cluster lacks these capabilities; nothing was run.
    NeedsFullCluster(Vec<String>),
    /// Something went wrong, but an earlier step was skipped, so the state is not the lab's.
    NotVerifiable {
        after_step: String,
        reasons: Vec<String>,
    },
    /// The lab is wrong: these are the reasons.
    Violation(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct StepReport {
    pub id: String,
    pub title: String,
    pub verdict: Verdict,
    pub checks: Vec<CheckTrace>,
    /// Checks that could not run here (live probes without running pods), with the reason.
    pub unverified_here: Vec<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub struct LabReport {
    pub lab: String,
    pub cluster: String,
    pub capabilities: BTreeSet<String>,
    pub setup_error: Option<String>,
    pub steps: Vec<StepReport>,
}

impl LabReport {
    pub fn has_violation(&self) -> bool {
        self.setup_error.is_some()
            || self
                .steps
                .iter()
                .any(|step| matches!(step.verdict, Verdict::Violation(_)))
    }
}

/// Verifies one lab on a cluster that already exists (and has not run the lab's setup yet).
pub async fn verify_on(target: &Target, plan: &LabPlan, options: &Options) -> Result<LabReport> {
    let mut capabilities = target.capabilities(&options.capabilities).await?;
    // A lab that judges the access proxy gets a hardlab server of the harness's own.
    let lab_proxy = if plan
        .steps
        .iter()
        .any(|step| step.needs.iter().any(|need| need == proxy::CAPABILITY))
    {
        let started = proxy::LabProxy::start(target).await?;
        capabilities.insert(proxy::CAPABILITY.to_owned());
        Some(started)
    } else {
        None
    };
    let lab_proxy = lab_proxy.as_ref();
    let mut report = LabReport {
        lab: plan.id.clone(),
        cluster: target.name().to_owned(),
        capabilities: capabilities.clone(),
        setup_error: None,
        steps: Vec::new(),
    };
    if let Some(only) = &options.step
        && !plan.steps.iter().any(|step| &step.id == only)
    {
        return Err(Error::Usage(format!(
            "lab {} has no step {only:?}",
            plan.id
        )));
    }
    let lab_missing: Vec<String> = plan
        .needs
        .iter()
        .filter(|need| !capabilities.contains(*need))
        .cloned()
        .collect();
    if !lab_missing.is_empty() {
        for step in &plan.steps {
            report.steps.push(StepReport {
                id: step.id.clone(),
                title: step.title.clone(),
                verdict: Verdict::NeedsFullCluster(lab_missing.clone()),
                checks: Vec::new(),
                unverified_here: Vec::new(),
                seconds: 0.0,
            });
        }
        return Ok(report);
    }
    if let Some(setup) = &plan.setup {
        let run = target.run_script(setup, SCRIPT_TIMEOUT).await?;
        if run.exit_code != 0 {
            report.setup_error = Some(format!(
                "setup.sh exited with {}: {}",
                run.exit_code,
                tail(&run.output)
            ));
            return Ok(report);
        }
    }
    let mut skipped: Option<String> = None;
    for step in &plan.steps {
        let started = Instant::now();
        let missing: Vec<String> = step
            .needs
            .iter()
            .filter(|need| !capabilities.contains(*need))
            .cloned()
            .collect();
        let wanted = options.step.as_ref().is_none_or(|only| only == &step.id);
        if !missing.is_empty() {
            if wanted {
                report.steps.push(StepReport {
                    id: step.id.clone(),
                    title: step.title.clone(),
                    verdict: Verdict::NeedsFullCluster(missing),
                    checks: Vec::new(),
                    unverified_here: Vec::new(),
                    seconds: 0.0,
                });
            }
            skipped.get_or_insert_with(|| step.id.clone());
            continue;
        }
        if !wanted {
            // An earlier step: bring the cluster to the state the wanted step starts from.
            if let Some(solution) = &step.solution {
                let run = run_script(target, lab_proxy, solution).await?;
                if run.exit_code != 0 {
                    report.steps.push(StepReport {
                        id: step.id.clone(),
                        title: step.title.clone(),
                        verdict: Verdict::Violation(vec![solution_failed(step, &run)]),
                        checks: Vec::new(),
                        unverified_here: Vec::new(),
                        seconds: started.elapsed().as_secs_f64(),
                    });
                }
            }
            continue;
        }
        let mut step_report = verify_step(target, lab_proxy, plan, step, &capabilities).await?;
        // A check missing from the catalog is the lab's defect whatever ran before.
        let names_unknown_checks = catalog_checks(&step.checks).is_err();
        if let (Some(after_step), Verdict::Violation(reasons), false) =
            (&skipped, &step_report.verdict, names_unknown_checks)
        {
            step_report.verdict = Verdict::NotVerifiable {
                after_step: after_step.clone(),
                reasons: reasons.clone(),
            };
        }
        step_report.seconds = started.elapsed().as_secs_f64();
        report.steps.push(step_report);
    }
    Ok(report)
}

/// Creates a cluster for the lab (unless one is named), verifies, and removes the cluster again,
/// also when verification fails.
pub async fn verify_lab(
    provider: &crate::clusters::DockerProvider,
    plan: &LabPlan,
    options: &Options,
) -> Result<LabReport> {
    let target = match &options.cluster {
        Some(name) => Target::existing(provider.clone(), name).await?,
        None => {
            Target::create(provider.clone(), &options.image, options.unprivileged, plan).await?
        }
    };
    let result = verify_on(&target, plan, options).await;
    let removed = target.remove().await;
    let report = result?;
    removed?;
    Ok(report)
}

/// Runs a script as the learner would, with what they type for `hardlab login` when the lab has
/// its proxy.
async fn run_script(
    target: &Target,
    lab_proxy: Option<&proxy::LabProxy>,
    script: &str,
) -> Result<target::ScriptRun> {
    let env = match lab_proxy {
        Some(lab_proxy) => lab_proxy.script_env()?,
        None => Vec::new(),
    };
    target
        .run_script_with_env(script, &env, SCRIPT_TIMEOUT)
        .await
}

fn solution_failed(step: &StepPlan, run: &target::ScriptRun) -> String {
    format!(
        "solution {} exited with {}: {}",
        step.solution_path.as_deref().unwrap_or("?"),
        run.exit_code,
        tail(&run.output)
    )
}

/// The last lines of a script's output, for a report.
fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.trim_end().lines().collect();
    let start = lines.len().saturating_sub(6);
    lines[start..].join(" | ")
}

fn catalog_checks(ids: &[String]) -> std::result::Result<Vec<CheckDef>, Vec<String>> {
    let catalog = hardlab_grader::catalog::all();
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    for id in ids {
        match catalog.iter().find(|check| check.meta.id == id) {
            Some(check) => found.push(check.clone()),
            None => unknown.push(format!("check {id} is not in the grader's catalog")),
        }
    }
    if unknown.is_empty() {
        Ok(found)
    } else {
        Err(unknown)
    }
}

/// How good a status is for the before/after comparison: higher is better; skip and error are
/// never good.
fn rank(status: Status) -> i8 {
    match status {
        Status::Pass => 2,
        Status::Warn => 1,
        Status::Fail => 0,
        Status::NotApplicable | Status::Skip | Status::Error => -1,
    }
}

async fn grade(
    target: &Target,
    lab_proxy: Option<&proxy::LabProxy>,
    plan: &LabPlan,
    checks: &[CheckDef],
    capabilities: &BTreeSet<String>,
) -> Result<Vec<hardlab_grader::CheckResult>> {
    if !capabilities.contains("pods") {
        target.publish_mirror_pods().await?;
    }
    let mut params = plan.params.clone();
    if let Some(lab_proxy) = lab_proxy
        && checks
            .iter()
            .any(|check| check.meta.id.starts_with("proxy."))
    {
        lab_proxy
            .add_state(&target.kubeconfig().await?, &mut params)
            .await?;
    }
    let ctx = target.context(&params).await?;
    match tokio::time::timeout(CHECKS_TIMEOUT, hardlab_grader::run_checks(&ctx, checks)).await {
        Ok(results) => Ok(results),
        Err(_) => Err(Error::Node(format!(
            "grading did not finish within {} s",
            CHECKS_TIMEOUT.as_secs()
        ))),
    }
}

async fn verify_step(
    target: &Target,
    lab_proxy: Option<&proxy::LabProxy>,
    plan: &LabPlan,
    step: &StepPlan,
    capabilities: &BTreeSet<String>,
) -> Result<StepReport> {
    let mut report = StepReport {
        id: step.id.clone(),
        title: step.title.clone(),
        verdict: Verdict::Verified,
        checks: Vec::new(),
        unverified_here: Vec::new(),
        seconds: 0.0,
    };
    if step.checks.is_empty() {
        report.verdict = match &step.solution {
            None => Verdict::ReadingStep,
            Some(solution) => {
                let run = run_script(target, lab_proxy, solution).await?;
                if run.exit_code == 0 {
                    Verdict::ReadingStepRan
                } else {
                    Verdict::Violation(vec![solution_failed(step, &run)])
                }
            }
        };
        return Ok(report);
    }
    let checks = match catalog_checks(&step.checks) {
        Ok(checks) => checks,
        Err(unknown) => {
            // Keep the cluster's state on track for the next steps.
            if let Some(solution) = &step.solution {
                run_script(target, lab_proxy, solution).await?;
            }
            report.verdict = Verdict::Violation(unknown);
            return Ok(report);
        }
    };
    let may_skip =
        |check: &str| NEEDS_RUNNING_PODS.contains(&check) && !capabilities.contains("pods");

    let before = grade(target, lab_proxy, plan, &checks, capabilities).await?;
    let mut violations = Vec::new();
    for result in &before {
        report.checks.push(CheckTrace {
            check: result.check.clone(),
            before: result.status,
            before_message: result.message.clone(),
            after: None,
            after_message: String::new(),
        });
        if result.status == Status::Error {
            violations.push(format!(
                "{} errored before the solution: {}",
                result.check, result.message
            ));
        }
    }
    let failing_before = before
        .iter()
        .any(|r| matches!(r.status, Status::Fail | Status::Warn));
    if !failing_before {
        violations.push(format!(
            "check did not fail before the solution: {}",
            before
                .iter()
                .map(|r| format!("{} {}", r.check, r.status))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    match &step.solution {
        None => violations.push("the step has checks but no solution script".to_owned()),
        Some(solution) => {
            let run = run_script(target, lab_proxy, solution).await?;
            if run.exit_code != 0 {
                violations.push(solution_failed(step, &run));
            }
        }
    }

    let after = grade(target, lab_proxy, plan, &checks, capabilities).await?;
    let mut improved = false;
    for (trace, result) in report.checks.iter_mut().zip(&after) {
        trace.after = Some(result.status);
        trace.after_message.clone_from(&result.message);
        if rank(result.status) > rank(trace.before) {
            improved = true;
        }
        match result.status {
            Status::Pass | Status::Warn => {}
            Status::Skip if may_skip(&result.check) => report
                .unverified_here
                .push(format!("{}: {}", result.check, result.message)),
            status => violations.push(format!(
                "{} is {status} after the solution: {}",
                result.check, result.message
            )),
        }
    }
    if failing_before && !improved {
        violations.push("no check got better after the solution".to_owned());
    }
    if !violations.is_empty() {
        report.verdict = Verdict::Violation(violations);
    }
    Ok(report)
}

/// A report for a person: one line per step, the reasons under it.
pub fn render(reports: &[LabReport]) -> String {
    let mut out = String::new();
    for lab in reports {
        let _ = writeln!(
            out,
            "lab {} on cluster {} (capabilities: {})",
            lab.lab,
            lab.cluster,
            if lab.capabilities.is_empty() {
                "none".to_owned()
            } else {
                lab.capabilities
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        if let Some(error) = &lab.setup_error {
            let _ = writeln!(out, "  VIOLATION  setup: {error}");
        }
        for step in &lab.steps {
            let (tag, detail) = match &step.verdict {
                Verdict::Verified => ("VERIFIED", String::new()),
                Verdict::ReadingStepRan => ("READING", "no checks; the solution ran".to_owned()),
                Verdict::ReadingStep => ("READING", "no checks, no solution".to_owned()),
                Verdict::NeedsFullCluster(missing) => (
                    "NEEDS FULL CLUSTER",
                    format!("needs {} (not run, not passed)", missing.join(", ")),
                ),
                Verdict::NotVerifiable { after_step, .. } => (
                    "NOT VERIFIABLE",
                    format!("runs after skipped step {after_step}"),
                ),
                Verdict::Violation(_) => ("VIOLATION", String::new()),
            };
            let _ = writeln!(
                out,
                "  {tag:<18} {:<24} {detail} ({:.1} s)",
                step.id, step.seconds
            );
            for check in &step.checks {
                let after = check.after.map_or("-".to_owned(), |s| s.to_string());
                let _ = writeln!(
                    out,
                    "      {:<36} before {:<5} after {after}",
                    check.check,
                    check.before.to_string()
                );
            }
            for note in &step.unverified_here {
                let _ = writeln!(out, "      not verified here: {note}");
            }
            let reasons = match &step.verdict {
                Verdict::Violation(reasons) | Verdict::NotVerifiable { reasons, .. } => {
                    reasons.clone()
                }
                _ => Vec::new(),
            };
            for reason in reasons {
                let _ = writeln!(out, "      - {reason}");
            }
        }
    }
    let violations = reports.iter().filter(|lab| lab.has_violation()).count();
    let _ = writeln!(
        out,
        "{} lab(s) checked, {violations} with violations",
        reports.len()
    );
    out
}
