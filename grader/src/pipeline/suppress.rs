//! Suppressions: findings a team accepted, each with the reason and where it was accepted.
//!
//! Three places accept a finding: `--skip-check ID` on the command line (every finding of the check),
//! an entry in the configuration file (a check, optionally an object pattern, a reason and an
//! optional expiry date), and the `hardlab/skip` annotation on the object itself, one
//! `CHECK-ID: reason` per line. A suppression naming a check the catalog does not have is an error
//! (a typo would otherwise silently accept nothing, or hide that a check was renamed).

use serde::Serialize;
use time::{Date, Month};

use super::{Disposition, Finding};
use crate::inputs::objects::KubeObject;
use crate::{Error, Result, catalog};

/// The annotation that suppresses findings on the object carrying it.
pub const ANNOTATION: &str = "hardlab/skip";

/// One accepted finding, or a set of them (no object: every object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suppression {
    pub check: String,
    /// `Kind/namespace/name`; `*` matches any run of characters. `None`: every finding of the check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    pub reason: String,
    /// The last day (`YYYY-MM-DD`, UTC) the suppression holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    pub source: SuppressionSource,
}

/// Where a suppression was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SuppressionSource {
    /// `--skip-check` on the command line.
    Flag,
    /// An entry of the configuration file.
    Config { file: String },
    /// The `hardlab/skip` annotation of an object.
    Annotation { object: String },
}

impl std::fmt::Display for SuppressionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SuppressionSource::Flag => f.write_str("--skip-check"),
            SuppressionSource::Config { file } => write!(f, "{file}"),
            SuppressionSource::Annotation { object } => write!(f, "{ANNOTATION} on {object}"),
        }
    }
}

impl Suppression {
    /// `reason (where)`, and the expiry when there is one, for reports.
    pub fn describe(&self) -> String {
        match &self.expires {
            Some(expires) => format!("{} ({}, until {expires})", self.reason, self.source),
            None => format!("{} ({})", self.reason, self.source),
        }
    }

    fn matches(&self, finding: &Finding) -> bool {
        self.check == finding.check
            && match (&self.object, &finding.object) {
                (None, _) => true,
                (Some(pattern), Some(object)) => glob_match(pattern, object),
                (Some(_), None) => false,
            }
    }

    fn expired(&self, today: Date) -> bool {
        self.expires
            .as_deref()
            .and_then(|text| parse_date(text).ok())
            .is_some_and(|expires| today > expires)
    }
}

/// Refuses suppressions that name no known check or carry a bad date; `place` says where each was
/// written for the message.
pub fn validate(suppressions: &[Suppression]) -> Result<()> {
    let known = catalog::all();
    for suppression in suppressions {
        if !known.iter().any(|check| check.meta.id == suppression.check) {
            return Err(Error::Usage(format!(
                "{}: suppression of unknown check {:?} (see `hardlab-grade checks`)",
                suppression.source, suppression.check
            )));
        }
        if suppression.reason.trim().is_empty() {
            return Err(Error::Usage(format!(
                "{}: suppression of {} has no reason (say why the finding is accepted)",
                suppression.source, suppression.check
            )));
        }
        if let Some(expires) = &suppression.expires {
            parse_date(expires).map_err(|message| {
                Error::Usage(format!(
                    "{}: suppression of {}: expires: {message}",
                    suppression.source, suppression.check
                ))
            })?;
        }
    }
    Ok(())
}

/// `--skip-check ID` as suppressions.
pub fn from_flags(checks: &[String]) -> Vec<Suppression> {
    checks
        .iter()
        .map(|check| Suppression {
            check: check.clone(),
            object: None,
            reason: "skipped on the command line".into(),
            expires: None,
            source: SuppressionSource::Flag,
        })
        .collect()
}

/// The `hardlab/skip` annotations of the objects, one suppression per line of each.
pub fn from_annotations(objects: &[KubeObject]) -> Result<Vec<Suppression>> {
    let mut suppressions = Vec::new();
    for object in objects {
        let Some(value) = object
            .value
            .get("metadata")
            .and_then(|metadata| metadata.get("annotations"))
            .and_then(|annotations| annotations.get(ANNOTATION))
        else {
            continue;
        };
        let id = object.id();
        let place = match &object.location {
            Some(location) if !location.file.is_empty() => {
                format!("{}:{} ({id})", location.file, location.line)
            }
            _ => id.clone(),
        };
        let Some(text) = value.as_str() else {
            return Err(Error::invalid(
                place,
                format!("annotation {ANNOTATION} must be a string of `CHECK-ID: reason` lines"),
            ));
        };
        for entry in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
            let Some((check, reason)) = entry.split_once(':') else {
                return Err(Error::invalid(
                    place,
                    format!("annotation {ANNOTATION}: {entry:?} is not `CHECK-ID: reason`"),
                ));
            };
            suppressions.push(Suppression {
                check: check.trim().to_owned(),
                object: Some(id.clone()),
                reason: reason.trim().to_owned(),
                expires: None,
                source: SuppressionSource::Annotation { object: id.clone() },
            });
        }
    }
    Ok(suppressions)
}

/// Marks each open finding that a suppression covers: suppressed, or expired when its date passed
/// (a suppression that still holds wins over one that expired). Annotations come first in
/// `suppressions` order, so the most specific reason is the one shown.
pub fn apply(findings: &mut [Finding], suppressions: &[Suppression], today: Date) {
    for finding in findings.iter_mut() {
        if finding.disposition != Disposition::Open {
            continue;
        }
        let mut expired = None;
        for suppression in suppressions.iter().filter(|s| s.matches(finding)) {
            if suppression.expired(today) {
                expired.get_or_insert(suppression);
            } else {
                finding.disposition = Disposition::Suppressed(suppression.clone());
                break;
            }
        }
        if finding.disposition == Disposition::Open
            && let Some(suppression) = expired
        {
            finding.disposition = Disposition::Expired(suppression.clone());
        }
    }
}

/// The suppressions that matched none of the findings of checks that ran, for a note: they can
/// go (the finding was fixed) or name the wrong object.
pub fn unused<'a>(
    findings: &[Finding],
    suppressions: &'a [Suppression],
    checks_run: &[&str],
) -> Vec<&'a Suppression> {
    suppressions
        .iter()
        .filter(|suppression| checks_run.contains(&suppression.check.as_str()))
        .filter(|suppression| !findings.iter().any(|finding| suppression.matches(finding)))
        .collect()
}

/// Today in UTC, which expiry dates are compared with.
pub fn today() -> Date {
    time::OffsetDateTime::now_utc().date()
}

/// `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> std::result::Result<Date, String> {
    let bad = || format!("{text:?} is not a date like 2026-12-31");
    let mut parts = text.trim().splitn(3, '-');
    let (Some(year), Some(month), Some(day)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return Err(bad());
    }
    let year: i32 = year.parse().map_err(|_| bad())?;
    let month: u8 = month.parse().map_err(|_| bad())?;
    let day: u8 = day.parse().map_err(|_| bad())?;
    let month = Month::try_from(month).map_err(|_| bad())?;
    Date::from_calendar_date(year, month, day).map_err(|_| bad())
}

/// `*` matches any run of characters (including `/`); everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_runs_of_characters() {
        assert!(glob_match("Deployment/shop/*", "Deployment/shop/web"));
        assert!(glob_match("*/kube-system/*", "DaemonSet/kube-system/proxy"));
        assert!(glob_match("Pod/app/web", "Pod/app/web"));
        assert!(!glob_match("Pod/app/web", "Pod/app/web2"));
        assert!(!glob_match("Deployment/*/web", "Pod/shop/web"));
        assert!(glob_match("a*b*c", "abc"));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn dates_are_year_month_day() {
        assert_eq!(
            parse_date("2026-12-31"),
            Ok(Date::from_calendar_date(2026, Month::December, 31).unwrap())
        );
        assert!(parse_date("2026-13-01").is_err());
        assert!(parse_date("2026-02-30").is_err());
        assert!(parse_date("31.12.2026").is_err());
        assert!(parse_date("2026-1-1").is_err());
    }
}
