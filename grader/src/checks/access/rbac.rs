//! RBAC as the authorizer evaluates it, from Role, ClusterRole, RoleBinding and ClusterRoleBinding
//! objects: who is bound to what, and whether a rule grants a verb on a resource. Used in static
//! mode and, live, to find the subjects to ask `SubjectAccessReview` about.

use std::fmt;

use serde_json::Value;

use crate::inputs::objects::KubeObject;

use super::super::podsec::SYSTEM_NAMESPACES;

/// One `rules[]` entry of a role.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
    pub resource_names: Vec<String>,
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

impl Rule {
    fn from_value(value: &Value) -> Self {
        Self {
            api_groups: strings(value.get("apiGroups")),
            resources: strings(value.get("resources")),
            verbs: strings(value.get("verbs")),
            resource_names: strings(value.get("resourceNames")),
        }
    }

    /// Whether the rule grants `verb` on every object of `resource` (which may be `pods/log`) in
    /// `group`: rules limited to named objects do not.
    pub fn allows(&self, verb: &str, group: &str, resource: &str) -> bool {
        self.resource_names.is_empty()
            && self.verbs.iter().any(|v| v == "*" || v == verb)
            && self.api_groups.iter().any(|g| g == "*" || g == group)
            && self.resources.iter().any(|r| resource_matches(r, resource))
    }

    pub fn is_full_wildcard(&self) -> bool {
        self.resource_names.is_empty()
            && self.verbs.iter().any(|v| v == "*")
            && self.api_groups.iter().any(|g| g == "*")
            && self.resources.iter().any(|r| r == "*")
    }

    pub fn has_wildcard(&self) -> bool {
        self.verbs.iter().any(|v| v == "*")
            || self
                .resources
                .iter()
                .any(|r| r == "*" || r.starts_with("*/"))
    }

    pub fn describe(&self) -> String {
        format!(
            "apiGroups {:?} resources {:?} verbs {:?}",
            self.api_groups, self.resources, self.verbs
        )
    }
}

/// RBAC's resource matching: `*` is everything, `*/sub` is that subresource of any resource.
fn resource_matches(rule: &str, requested: &str) -> bool {
    if rule == "*" || rule == requested {
        return true;
    }
    match (rule.strip_prefix("*/"), requested.split_once('/')) {
        (Some(sub), Some((_, requested_sub))) => sub == requested_sub,
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectKind {
    User,
    Group,
    ServiceAccount,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    pub kind: SubjectKind,
    pub name: String,
    /// ServiceAccounts only.
    pub namespace: Option<String>,
}

/// Groups and users that stand for everyone (or every workload): a grant to them is never "a
/// system component's" even though their names start with `system:`.
pub const EVERYONE: &[&str] = &[
    "system:anonymous",
    "system:unauthenticated",
    "system:authenticated",
    "system:serviceaccounts",
];

/// Subjects of the cluster's own components that do not follow the `system:` convention: kubeadm
/// binds its admin.conf identity (1.29+) to cluster-admin through this group.
const DEFAULT_ADMIN_GROUPS: &[&str] = &["kubeadm:cluster-admins"];

impl Subject {
    fn from_value(value: &Value, binding_namespace: Option<&str>) -> Option<Self> {
        let name = value.get("name")?.as_str()?.to_owned();
        let kind = match value.get("kind")?.as_str()? {
            "User" => SubjectKind::User,
            "Group" => SubjectKind::Group,
            "ServiceAccount" => SubjectKind::ServiceAccount,
            _ => return None,
        };
        let namespace = (kind == SubjectKind::ServiceAccount).then(|| {
            value
                .get("namespace")
                .and_then(Value::as_str)
                .or(binding_namespace)
                .unwrap_or("default")
                .to_owned()
        });
        Some(Self {
            kind,
            name,
            namespace,
        })
    }

    pub fn group(name: &str) -> Self {
        Self {
            kind: SubjectKind::Group,
            name: name.to_owned(),
            namespace: None,
        }
    }

    /// Whether the subject is part of the cluster itself (control-plane components, controllers,
    /// system namespaces' service accounts) rather than a person or an application.
    pub fn is_system(&self) -> bool {
        match self.kind {
            SubjectKind::ServiceAccount => self
                .namespace
                .as_deref()
                .is_some_and(|ns| SYSTEM_NAMESPACES.contains(&ns)),
            SubjectKind::User | SubjectKind::Group => {
                (self.name.starts_with("system:") && !EVERYONE.contains(&self.name.as_str()))
                    || DEFAULT_ADMIN_GROUPS.contains(&self.name.as_str())
            }
        }
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(
            (&self.kind, self.name.as_str()),
            (SubjectKind::User, "system:anonymous")
                | (SubjectKind::Group, "system:unauthenticated")
        )
    }

    /// The user name and groups an access review asks about for this subject.
    pub fn as_review_identity(&self) -> (Option<String>, Vec<String>) {
        match self.kind {
            SubjectKind::User => {
                let groups = if self.name == "system:anonymous" {
                    vec!["system:unauthenticated".to_owned()]
                } else {
                    Vec::new()
                };
                (Some(self.name.clone()), groups)
            }
            SubjectKind::Group => (None, vec![self.name.clone()]),
            SubjectKind::ServiceAccount => {
                let namespace = self.namespace.clone().unwrap_or_default();
                (
                    Some(format!("system:serviceaccount:{namespace}:{}", self.name)),
                    vec![
                        "system:serviceaccounts".to_owned(),
                        format!("system:serviceaccounts:{namespace}"),
                        "system:authenticated".to_owned(),
                    ],
                )
            }
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, &self.namespace) {
            (SubjectKind::ServiceAccount, Some(ns)) => {
                write!(f, "ServiceAccount {ns}/{}", self.name)
            }
            (kind, _) => write!(f, "{kind:?} {}", self.name),
        }
    }
}

/// One binding's grant of one role to its subjects, with the role's rules resolved.
#[derive(Debug, Clone)]
pub struct Binding<'a> {
    pub object: &'a KubeObject,
    /// `None` for a ClusterRoleBinding (everywhere), the namespace for a RoleBinding.
    pub namespace: Option<String>,
    pub role_kind: String,
    pub role_name: String,
    /// The role object when the inputs hold it.
    pub role: Option<&'a KubeObject>,
    pub rules: Vec<Rule>,
    pub subjects: Vec<Subject>,
}

impl Binding<'_> {
    /// `ClusterRoleBinding/ops binds ... to ClusterRole cluster-admin`, for evidence.
    pub fn describe_role(&self) -> String {
        format!("{} {}", self.role_kind, self.role_name)
    }

    pub fn allows(&self, verb: &str, group: &str, resource: &str) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.allows(verb, group, resource))
    }

    pub fn is_cluster_admin(&self) -> bool {
        (self.role_kind == "ClusterRole" && self.role_name == "cluster-admin")
            || self.rules.iter().any(Rule::is_full_wildcard)
    }
}

/// Every RoleBinding and ClusterRoleBinding among the objects, with its role's rules.
pub fn bindings(objects: &[KubeObject]) -> Vec<Binding<'_>> {
    objects
        .iter()
        .filter(|object| object.kind == "RoleBinding" || object.kind == "ClusterRoleBinding")
        .filter_map(|object| {
            let role_ref = object.value.get("roleRef")?;
            let role_kind = role_ref.get("kind")?.as_str()?.to_owned();
            let role_name = role_ref.get("name")?.as_str()?.to_owned();
            let namespace = (object.kind == "RoleBinding")
                .then(|| object.namespace.clone().unwrap_or_else(|| "default".into()));
            let role = find_role(objects, &role_kind, &role_name, namespace.as_deref());
            let rules = role
                .map(|role| role_rules(objects, role))
                .unwrap_or_default();
            let subjects = object
                .value
                .get("subjects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|subject| Subject::from_value(subject, namespace.as_deref()))
                .collect();
            Some(Binding {
                object,
                namespace,
                role_kind,
                role_name,
                role,
                rules,
                subjects,
            })
        })
        .collect()
}

fn find_role<'a>(
    objects: &'a [KubeObject],
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> Option<&'a KubeObject> {
    objects.iter().find(|object| {
        object.kind == kind
            && object.name == name
            && (kind == "ClusterRole"
                || object.namespace.as_deref().or(Some("default")) == namespace)
    })
}

/// A role's rules; for an aggregated ClusterRole, also the rules of the ClusterRoles its
/// selectors pick (what the aggregation controller fills in on a live cluster).
pub fn role_rules(objects: &[KubeObject], role: &KubeObject) -> Vec<Rule> {
    let mut rules: Vec<Rule> = role
        .value
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(Rule::from_value)
        .collect();
    let selectors = role
        .value
        .get("aggregationRule")
        .and_then(|a| a.get("clusterRoleSelectors"))
        .and_then(Value::as_array);
    for selector in selectors.into_iter().flatten() {
        let Some(match_labels) = selector.get("matchLabels").and_then(Value::as_object) else {
            continue;
        };
        for other in objects
            .iter()
            .filter(|o| o.kind == "ClusterRole" && o.name != role.name)
        {
            let labels = other.value.get("metadata").and_then(|m| m.get("labels"));
            let selected = match_labels
                .iter()
                .all(|(key, value)| labels.and_then(|l| l.get(key)) == Some(value));
            if selected && other.value.get("aggregationRule").is_none() {
                rules.extend(
                    other
                        .value
                        .get("rules")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(Rule::from_value),
                );
            }
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Rule {
        Rule {
            api_groups: groups.iter().map(|s| (*s).to_owned()).collect(),
            resources: resources.iter().map(|s| (*s).to_owned()).collect(),
            verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
            resource_names: Vec::new(),
        }
    }

    #[test]
    fn rules_match_verbs_groups_resources_and_subresources_as_rbac_does() {
        let pods = rule(&[""], &["pods", "pods/log"], &["get", "list", "watch"]);
        assert!(pods.allows("list", "", "pods"));
        assert!(pods.allows("get", "", "pods/log"));
        assert!(!pods.allows("get", "", "pods/exec"));
        assert!(!pods.allows("list", "", "services"));
        assert!(!pods.allows("list", "apps", "pods"));
        let any_log = rule(&[""], &["*/log"], &["get"]);
        assert!(any_log.allows("get", "", "pods/log"));
        assert!(!any_log.allows("get", "", "pods"));
        assert!(rule(&["*"], &["*"], &["*"]).is_full_wildcard());
        let mut named = rule(&[""], &["secrets"], &["get"]);
        named.resource_names = vec!["one".into()];
        assert!(!named.allows("get", "", "secrets"));
    }
}
