use futures::future::BoxFuture;
use serde::Serialize;

use crate::{Context, Result, model::Outcome, model::Severity};

/// The six labs; a check belongs to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lab {
    EtcdSecrets,
    NetworkPolicies,
    PodMtls,
    SecureAccess,
    PodSecurity,
    AccessProxy,
}

impl Lab {
    pub const ALL: [Lab; 6] = [
        Lab::EtcdSecrets,
        Lab::NetworkPolicies,
        Lab::PodMtls,
        Lab::SecureAccess,
        Lab::PodSecurity,
        Lab::AccessProxy,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Lab::EtcdSecrets => "etcd-secrets",
            Lab::NetworkPolicies => "network-policies",
            Lab::PodMtls => "pod-mtls",
            Lab::SecureAccess => "secure-access",
            Lab::PodSecurity => "pod-security",
            Lab::AccessProxy => "access-proxy",
        }
    }

    pub fn from_id(id: &str) -> Option<Lab> {
        Lab::ALL.into_iter().find(|lab| lab.id() == id)
    }
}

/// What a check judges: any cluster's hardening, or the state a lab's exercise asks for (its
/// demo app's intended traffic, the grant a step describes, the lab's proxy). A scan without
/// `--lab` runs only the first kind, so a CI user never gets findings about the lab's demo app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    Hardening,
    Exercise,
}

/// The published, stable facts about a check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckMeta {
    /// `<area>.<what>`, kebab case; never changes once published.
    pub id: &'static str,
    pub title: &'static str,
    pub lab: Lab,
    /// The lab step this check verifies.
    pub step: &'static str,
    pub severity: Severity,
    pub remediation: &'static str,
    /// CIS Kubernetes Benchmark IDs, NSA/CISA guide sections, Pod Security Standards, docs URLs.
    pub references: &'static [&'static str],
    pub kind: CheckKind,
}

impl CheckMeta {
    /// Marks the check as judging a lab's exercise rather than any cluster's hardening.
    pub const fn exercise(mut self) -> Self {
        self.kind = CheckKind::Exercise;
        self
    }
}

impl Lab {
    /// The catalog entry of one of this lab's checks.
    pub const fn meta(
        self,
        id: &'static str,
        title: &'static str,
        step: &'static str,
        severity: Severity,
        remediation: &'static str,
        references: &'static [&'static str],
    ) -> CheckMeta {
        CheckMeta {
            id,
            title,
            lab: self,
            step,
            severity,
            remediation,
            references,
            kind: CheckKind::Hardening,
        }
    }
}

pub type CheckFn = for<'a> fn(&'a Context) -> BoxFuture<'a, Result<Outcome>>;

/// A check: its catalog entry and the function that judges it.
#[derive(Clone)]
pub struct CheckDef {
    pub meta: CheckMeta,
    pub run: CheckFn,
}

impl std::fmt::Debug for CheckDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckDef")
            .field("id", &self.meta.id)
            .finish()
    }
}

/// Every check hardlab knows, in catalog order (by lab, then as each area lists them).
pub fn all() -> Vec<CheckDef> {
    crate::checks::all()
}

/// Looks a check up by ID.
pub fn find(id: &str) -> Option<CheckDef> {
    all().into_iter().find(|check| check.meta.id == id)
}
