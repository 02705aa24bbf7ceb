//! What happens to a run's results on their way into a pipeline: each failing check is split into
//! one finding per object, findings are matched against suppressions and a baseline, and each is
//! given the line of its offending field where the input file shows it.
//!
//! The checks report one result per check with every offending object as a location; CI tools
//! (code scanning, merge-request widgets, annotations) want one entry per check and object, with a
//! fingerprint that stays the same while the object does. That split happens here, after the
//! checks ran, so the checks stay unaware of how their results are consumed.

pub mod baseline;
pub mod config;
pub mod kustomize;
pub mod locate;
pub mod settings;
pub mod suppress;

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::inputs::objects::KubeObject;
use crate::model::{CheckResult, Status};
pub use suppress::{Suppression, SuppressionSource};

/// One check's verdict on one object (or on the whole input, for checks that judge no object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub check: String,
    /// Index of the check's result in [`crate::report::Report::results`].
    #[serde(skip)]
    pub result: usize,
    /// The check's status: `fail`, `warn` or `error`.
    pub status: Status,
    /// `Kind/namespace/name`, when the finding concerns an object.
    pub object: Option<String>,
    /// The input file, empty for live objects.
    pub file: String,
    /// The object's first line (1-based; 0 when there is no file).
    pub line: usize,
    /// The line of the offending field, when the file shows it; else the object's line.
    pub field_line: usize,
    /// What is wrong with this object, for a person.
    pub message: String,
    /// Stable across reordering, reformatting, moving the object to another file and unrelated edits:
    /// it depends only on the check and the object's identity.
    pub fingerprint: String,
    pub disposition: Disposition,
}

/// Whether a finding counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Disposition {
    /// Counts: fails the run if its status does.
    Open,
    /// Accepted, with a reason; does not fail the run.
    Suppressed(Suppression),
    /// Was accepted until its expiry date; fails like an open finding.
    Expired(Suppression),
    /// Recorded in the baseline; does not fail the run.
    Baselined,
}

impl Disposition {
    /// Whether the finding still counts against the run.
    pub fn counts(&self) -> bool {
        matches!(self, Disposition::Open | Disposition::Expired(_))
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Disposition::Open => "open",
            Disposition::Suppressed(_) => "suppressed",
            Disposition::Expired(_) => "expired",
            Disposition::Baselined => "baselined",
        }
    }
}

impl Finding {
    /// `file:line`, the object ID, or nothing, whichever is known.
    pub fn place(&self) -> String {
        match (&self.object, self.file.is_empty()) {
            (Some(object), true) => object.clone(),
            (Some(object), false) => format!("{}:{} ({object})", self.file, self.field_line),
            (None, false) => format!("{}:{}", self.file, self.field_line),
            (None, true) => String::new(),
        }
    }
}

/// The fingerprint of a check's finding on an object: the check ID and `Kind/namespace/name`.
/// Findings on no object (a flag of the API server read from its manifest, a check that could
/// not run) are keyed by the check and the file's name, without its line.
pub fn fingerprint(check: &str, object: Option<&str>, file: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"hardlab-finding/v1\0");
    hasher.update(check.as_bytes());
    hasher.update(b"\0");
    match object {
        Some(object) => {
            hasher.update(b"object\0");
            hasher.update(object.as_bytes());
        }
        None => {
            hasher.update(b"file\0");
            hasher.update(file.as_bytes());
        }
    }
    hex::encode(&hasher.finalize()[..16])
}

/// The lines of input files, read once per file, so findings can point at the offending field.
#[derive(Debug, Default)]
pub struct Sources {
    /// `false`: never read, every finding points at its object's line.
    read: bool,
    lines: HashMap<String, Option<Vec<String>>>,
}

impl Sources {
    /// Sources read from disk on first use.
    pub fn from_disk() -> Self {
        Self {
            read: true,
            lines: HashMap::new(),
        }
    }

    /// A file's lines; `None` for stdin, live objects, unreadable files and when not reading
    /// (the finding then points at the object's first line).
    fn lines(&mut self, file: &str) -> Option<&[String]> {
        if !self.read || file.is_empty() || file == crate::inputs::documents::STDIN_NAME {
            return None;
        }
        self.lines
            .entry(file.to_owned())
            .or_insert_with(|| {
                std::fs::read_to_string(file)
                    .ok()
                    .map(|text| text.lines().map(str::to_owned).collect())
            })
            .as_deref()
    }
}

/// Splits every `fail`, `warn` and `error` result into findings, one per check and object.
/// `objects` are the run's objects (for the index of `List` items); `sources` supplies file text
/// for field lines.
pub fn findings(
    results: &[CheckResult],
    objects: &[KubeObject],
    sources: &mut Sources,
) -> Vec<Finding> {
    let list_items = list_item_indexes(objects);
    let mut findings = Vec::new();
    for (index, result) in results.iter().enumerate() {
        if !matches!(result.status, Status::Fail | Status::Warn | Status::Error) {
            continue;
        }
        // A set: a check on a large repository has thousands of locations.
        let mut seen: HashSet<(Option<&str>, &str, usize)> = HashSet::new();
        let evidence: Vec<&str> = result
            .evidence
            .as_deref()
            .map(|evidence| evidence.lines().collect())
            .unwrap_or_default();
        for (index_in_result, location) in result.locations.iter().enumerate() {
            let key = (
                location.object.as_deref(),
                location.file.as_str(),
                location.line,
            );
            if !seen.insert(key) {
                continue;
            }
            // The check's own per-object problems, else what its (capped) evidence says.
            let problems = match result.location_problems.get(index_in_result) {
                Some(problems) if !problems.is_empty() => problems.clone(),
                _ => location
                    .object
                    .as_deref()
                    .map(|object| problems_of(&evidence, object))
                    .unwrap_or_default(),
            };
            let message = if problems.is_empty() {
                result.message.clone()
            } else {
                problems.join("; ")
            };
            let item = location.object.as_ref().and_then(|object| {
                list_items
                    .get(&(location.file.clone(), location.line, object.clone()))
                    .copied()
            });
            let field_line = match sources.lines(&location.file) {
                Some(lines) if location.line > 0 => {
                    locate::field_line(lines, location.line, item, &problems)
                }
                _ => location.line,
            };
            findings.push(Finding {
                check: result.check.clone(),
                result: index,
                status: result.status,
                object: location.object.clone(),
                file: location.file.clone(),
                line: location.line,
                field_line,
                message,
                fingerprint: fingerprint(&result.check, location.object.as_deref(), &location.file),
                disposition: Disposition::Open,
            });
        }
        if result.locations.is_empty() {
            findings.push(Finding {
                check: result.check.clone(),
                result: index,
                status: result.status,
                object: None,
                file: String::new(),
                line: 0,
                field_line: 0,
                message: result.message.clone(),
                fingerprint: fingerprint(&result.check, None, ""),
                disposition: Disposition::Open,
            });
        }
    }
    findings
}

/// For objects that are items of a `kind: List` document (they share the document's line), their
/// index among the list's items, keyed by file, line and object ID.
fn list_item_indexes(objects: &[KubeObject]) -> HashMap<(String, usize, String), usize> {
    let mut per_document: HashMap<(String, usize), Vec<String>> = HashMap::new();
    for object in objects {
        if let Some(location) = &object.location {
            per_document
                .entry((location.file.clone(), location.line))
                .or_default()
                .push(object.id());
        }
    }
    let mut indexes = HashMap::new();
    for ((file, line), ids) in per_document {
        if ids.len() < 2 {
            continue;
        }
        for (item, id) in ids.into_iter().enumerate() {
            indexes.entry((file.clone(), line, id)).or_insert(item);
        }
    }
    indexes
}

/// The evidence lines a check wrote about one object (`Kind/ns/name (file:line): problem`), the
/// problem part of each.
fn problems_of(evidence: &[&str], object: &str) -> Vec<String> {
    evidence
        .iter()
        .filter_map(|line| {
            let rest = line.strip_prefix(object)?;
            let rest = match rest.strip_prefix(" (") {
                // `(file:line): `; a file name may hold parentheses of its own.
                Some(inner) => &inner[inner.find("):")? + 1..],
                None => rest,
            };
            let problem = rest.strip_prefix(':')?.trim();
            (!problem.is_empty()).then(|| problem.to_owned())
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_depend_on_the_check_and_the_object_only() {
        let a = fingerprint("podsec.no-privileged", Some("Pod/app/web"), "a.yaml");
        let moved = fingerprint("podsec.no-privileged", Some("Pod/app/web"), "b/c.yaml");
        assert_eq!(a, moved);
        assert_ne!(
            a,
            fingerprint("podsec.no-privileged", Some("Pod/app/api"), "a.yaml")
        );
        assert_ne!(
            a,
            fingerprint("podsec.no-host-path", Some("Pod/app/web"), "a.yaml")
        );
        assert_eq!(a.len(), 32);
    }
}
