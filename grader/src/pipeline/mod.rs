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

/// Whether findings get the line of their offending field from the input files.
#[derive(Debug, Default)]
pub struct Sources {
    /// `false`: never read, every finding points at its object's line.
    read: bool,
}

impl Sources {
    /// Sources read from disk, each file once, while findings are made.
    pub fn from_disk() -> Self {
        Self { read: true }
    }

    /// Whether a finding in `file` can get its field's line: not for stdin, live objects, or
    /// when not reading (the finding then points at the object's first line).
    fn readable(&self, file: &str) -> bool {
        self.read && !file.is_empty() && file != crate::inputs::documents::STDIN_NAME
    }
}

/// A finding waiting for its field line: the finding's index, its `List` item and its problems.
struct PendingLine {
    finding: usize,
    item: Option<usize>,
    problems: Vec<String>,
}

/// Splits every `fail`, `warn` and `error` result into findings, one per check and object.
/// `objects` are the run's objects (for the index of `List` items); `sources` says whether file
/// text is read for field lines.
pub fn findings(
    results: &[CheckResult],
    objects: &[KubeObject],
    sources: &mut Sources,
) -> Vec<Finding> {
    let list_items = list_item_indexes(objects);
    let mut findings = Vec::new();
    let mut pending: Vec<PendingLine> = Vec::new();
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
            if sources.readable(&location.file) && location.line > 0 {
                let item = location.object.as_ref().and_then(|object| {
                    list_items
                        .get(&(location.file.as_str(), location.line, object.as_str()))
                        .copied()
                });
                pending.push(PendingLine {
                    finding: findings.len(),
                    item,
                    problems,
                });
            }
            findings.push(Finding {
                check: result.check.clone(),
                result: index,
                status: result.status,
                object: location.object.clone(),
                file: location.file.clone(),
                line: location.line,
                field_line: location.line,
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
    resolve_field_lines(&mut findings, pending);
    findings
}

/// Gives each pending finding its field's line, reading each file once and holding one file's
/// text at a time (a large scan's findings span thousands of files). A file that cannot be read
/// leaves its findings at their object's line.
fn resolve_field_lines(findings: &mut [Finding], mut pending: Vec<PendingLine>) {
    pending.sort_by(|a, b| findings[a.finding].file.cmp(&findings[b.finding].file));
    let mut rest = pending.as_slice();
    while let Some(first) = rest.first() {
        let file = findings[first.finding].file.clone();
        let count = rest
            .iter()
            .position(|entry| findings[entry.finding].file != file)
            .unwrap_or(rest.len());
        let (group, after) = rest.split_at(count);
        rest = after;
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let source = locate::Source::new(&text);
        for entry in group {
            let finding = &mut findings[entry.finding];
            finding.field_line =
                locate::field_line(&source, finding.line, entry.item, &entry.problems);
        }
    }
}

/// For objects that are items of a `kind: List` document (they share the document's line), their
/// index among the list's items, keyed by file, line and object ID.
fn list_item_indexes(objects: &[KubeObject]) -> HashMap<(&str, usize, &str), usize> {
    let mut per_document: HashMap<(&str, usize), Vec<&str>> = HashMap::new();
    for object in objects {
        if let Some(location) = &object.location {
            // A located object's ID is set when it is read from a file.
            let id = location.object.as_deref().unwrap_or_default();
            per_document
                .entry((location.file.as_str(), location.line))
                .or_default()
                .push(id);
        }
    }
    let mut indexes = HashMap::new();
    for ((file, line), ids) in per_document {
        if ids.len() < 2 {
            continue;
        }
        for (item, id) in ids.into_iter().enumerate() {
            indexes.entry((file, line, id)).or_insert(item);
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
