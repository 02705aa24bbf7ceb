//! Control frameworks auditors use: the CIS Kubernetes Benchmark and the NSA/CISA Kubernetes
//! Hardening Guide. Each check's catalog references name the items it covers; `--framework` runs
//! the checks that cover an item of the framework and summarizes the run by item.

use serde::Serialize;

use super::Report;
use crate::catalog::CheckDef;
use crate::model::Status;

const CIS_PREFIX: &str = "CIS Kubernetes Benchmark ";
const NSA_PREFIX: &str = "NSA/CISA Kubernetes Hardening Guide v1.2: ";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Framework {
    Cis,
    Nsa,
}

impl Framework {
    pub fn from_id(id: &str) -> Option<Self> {
        match id {
            "cis" => Some(Framework::Cis),
            "nsa" => Some(Framework::Nsa),
            _ => None,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Framework::Cis => "CIS Kubernetes Benchmark",
            Framework::Nsa => "NSA/CISA Kubernetes Hardening Guide v1.2",
        }
    }

    /// The items of this framework among a check's references (`5.2.7`, `Network separation`).
    pub fn controls<S: AsRef<str>>(self, references: &[S]) -> Vec<String> {
        let prefix = match self {
            Framework::Cis => CIS_PREFIX,
            Framework::Nsa => NSA_PREFIX,
        };
        references
            .iter()
            .filter_map(|reference| reference.as_ref().strip_prefix(prefix))
            .map(str::to_owned)
            .collect()
    }

    /// The checks that cover at least one item of the framework.
    pub fn select(self, checks: Vec<CheckDef>) -> Vec<CheckDef> {
        checks
            .into_iter()
            .filter(|check| !self.controls(check.meta.references).is_empty())
            .collect()
    }
}

/// Every framework item the run covered, with the checks behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlSummary {
    pub control: String,
    /// The worst status of its checks after suppressions and the baseline.
    pub status: Status,
    pub checks: Vec<ControlCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlCheck {
    pub check: String,
    pub status: Status,
}

/// The run summarized by the items of `framework`, in the framework's order.
pub fn summarize(report: &Report, framework: Framework) -> Vec<ControlSummary> {
    let mut controls: Vec<ControlSummary> = Vec::new();
    for (index, result) in report.results.iter().enumerate() {
        let status = report.status_of(index);
        for control in framework.controls(&result.references) {
            let check = ControlCheck {
                check: result.check.clone(),
                status,
            };
            match controls
                .iter_mut()
                .find(|summary| summary.control == control)
            {
                Some(summary) => {
                    summary.status = summary.status.max(status);
                    summary.checks.push(check);
                }
                None => controls.push(ControlSummary {
                    control,
                    status,
                    checks: vec![check],
                }),
            }
        }
    }
    controls.sort_by_key(|summary| order_key(&summary.control));
    controls
}

/// `5.2.10` after `5.2.9`: numeric parts compare as numbers.
fn order_key(control: &str) -> Vec<(u64, String)> {
    control
        .split(['.', ' '])
        .map(|part| (part.parse().unwrap_or(u64::MAX), part.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_from_the_references() {
        let references = [
            "CIS Kubernetes Benchmark 5.2.7",
            "NSA/CISA Kubernetes Hardening Guide v1.2: Non-root containers",
            "https://kubernetes.io/",
        ];
        assert_eq!(Framework::Cis.controls(&references), vec!["5.2.7"]);
        assert_eq!(
            Framework::Nsa.controls(&references),
            vec!["Non-root containers"]
        );
    }

    #[test]
    fn cis_items_sort_numerically() {
        let mut items = vec!["5.2.10", "5.2.9", "1.2.1"];
        items.sort_by_key(|item| order_key(item));
        assert_eq!(items, vec!["1.2.1", "5.2.9", "5.2.10"]);
    }
}
