use std::time::Instant;

use futures::future::join_all;

use crate::catalog::{self, CheckDef, CheckKind, Lab};
use crate::model::{CheckResult, Outcome};
use crate::{Context, Error, Result};

/// Which checks to run: by lab, by ID, or (with neither) every hardening check.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub labs: Vec<String>,
    pub checks: Vec<String>,
}

impl RunOptions {
    /// The checks this selection names, in catalog order; an unknown lab or check ID is an error.
    /// With no lab and no check named, only the hardening checks: the lab-exercise ones judge a
    /// lab's demo app and steps, which a scan of someone's own cluster or repository does not have.
    pub fn select(&self) -> Result<Vec<CheckDef>> {
        for lab in &self.labs {
            if Lab::from_id(lab).is_none() {
                return Err(Error::Usage(format!("unknown lab {lab:?}")));
            }
        }
        let all = catalog::all();
        for id in &self.checks {
            if !all.iter().any(|check| check.meta.id == id) {
                return Err(Error::Usage(format!("unknown check {id:?}")));
            }
        }
        Ok(all
            .into_iter()
            .filter(|check| {
                let by_lab = self.labs.iter().any(|lab| lab == check.meta.lab.id());
                let by_id = self.checks.iter().any(|id| id == check.meta.id);
                let unselected = self.labs.is_empty() && self.checks.is_empty();
                (unselected && check.meta.kind == CheckKind::Hardening) || by_lab || by_id
            })
            .collect())
    }
}

/// Runs the checks concurrently against one context. A check that errs is reported as `error`
/// with the reason; it never stops the others.
pub async fn run_checks(ctx: &Context, checks: &[CheckDef]) -> Vec<CheckResult> {
    join_all(checks.iter().map(|check| async move {
        let started = Instant::now();
        let outcome = match (check.run)(ctx).await {
            Ok(outcome) => outcome,
            Err(error) => Outcome::error(error_message(&error)),
        };
        let meta = &check.meta;
        CheckResult {
            check: meta.id.to_owned(),
            title: meta.title.to_owned(),
            lab: meta.lab.id().to_owned(),
            step: meta.step.to_owned(),
            status: outcome.status,
            severity: meta.severity,
            message: outcome.message,
            evidence: outcome.evidence,
            remediation: meta.remediation.to_owned(),
            references: meta.references.iter().map(|r| (*r).to_owned()).collect(),
            locations: outcome.locations,
            location_problems: outcome.location_problems,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }))
    .await
}

fn error_message(error: &Error) -> String {
    if let Error::Kube(kube::Error::Api(status)) = error
        && status.code == 403
    {
        return format!("forbidden: {}", status.message);
    }
    error.to_string()
}
