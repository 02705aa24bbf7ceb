//! Baselines: the findings a repository had when it adopted the grader, so a pipeline fails only on
//! new ones. Entries are matched by fingerprint (check and object identity), so moving an object
//! to another file, reordering or reformatting manifests and unrelated edits keep it matched; the
//! file and check are recorded for the person reading the baseline. Entries that no longer match a
//! finding are reported as fixed, so the baseline can shrink.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Disposition, Finding};
use crate::model::{CheckResult, Status};
use crate::{Error, Result};

/// The `format` a baseline file carries; a later layout would bump it.
const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    pub tool: String,
    pub format: u32,
    pub findings: Vec<Entry>,
}

/// One recorded finding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Entry {
    pub check: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Where the object was when the baseline was made (not used for matching).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    pub fingerprint: String,
}

/// The baseline of today's findings, those already in a baseline included, sorted so it diffs
/// well. Left out: suppressed ones (they keep their own reason), those whose suppression expired
/// (a decision to revisit, not to bury) and checks that could not run (not a finding to accept).
pub fn create(findings: &[Finding]) -> Baseline {
    let mut entries: Vec<Entry> = findings
        .iter()
        .filter(|finding| {
            matches!(
                finding.disposition,
                Disposition::Open | Disposition::Baselined
            ) && finding.status != Status::Error
        })
        .map(|finding| Entry {
            check: finding.check.clone(),
            object: finding.object.clone(),
            file: finding.file.clone(),
            fingerprint: finding.fingerprint.clone(),
        })
        .collect();
    entries.sort();
    entries.dedup_by(|a, b| a.fingerprint == b.fingerprint);
    Baseline {
        tool: crate::report::TOOL.into(),
        format: FORMAT,
        findings: entries,
    }
}

impl Baseline {
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let baseline: Baseline = serde_json::from_str(&text).map_err(|error| {
            Error::invalid(
                format!("{}:{}", path.display(), error.line()),
                format!("not a hardlab-grade baseline: {error}"),
            )
        })?;
        if baseline.format != FORMAT {
            return Err(Error::invalid(
                format!("{}:1", path.display()),
                format!(
                    "baseline format {} is not the {FORMAT} this grader reads (recreate it with --create-baseline)",
                    baseline.format
                ),
            ));
        }
        Ok(baseline)
    }

    /// Marks findings the baseline holds as baselined and returns the entries that matched no
    /// finding although their check ran and judged (the fixed ones). Errors are never baselined:
    /// a check that could not run says nothing about the finding.
    pub fn apply(&self, findings: &mut [Finding], results: &[CheckResult]) -> Vec<Entry> {
        let known: HashSet<&str> = self
            .findings
            .iter()
            .map(|entry| entry.fingerprint.as_str())
            .collect();
        let mut seen: HashSet<String> = HashSet::new();
        for finding in findings.iter_mut() {
            if !known.contains(finding.fingerprint.as_str()) {
                continue;
            }
            seen.insert(finding.fingerprint.clone());
            if finding.disposition == Disposition::Open && finding.status != Status::Error {
                finding.disposition = Disposition::Baselined;
            }
        }
        let judged: HashSet<&str> = results
            .iter()
            // A check that no longer applies (the flag is gone with the release) has fixed its findings.
            .filter(|result| {
                matches!(
                    result.status,
                    Status::Pass | Status::NotApplicable | Status::Warn | Status::Fail
                )
            })
            .map(|result| result.check.as_str())
            .collect();
        self.findings
            .iter()
            .filter(|entry| judged.contains(entry.check.as_str()))
            .filter(|entry| !seen.contains(&entry.fingerprint))
            .cloned()
            .collect()
    }
}
