//! Roles and clusters: which Kubernetes user and groups a hardlab role maps to, and on which
//! clusters (by label). Field names follow Teleport's (`kubernetes_labels`, `kubernetes_groups`,
//! `kubernetes_users`, `max_session_ttl`) so the lab can compare the two.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::Duration;

use super::ProxyError;

/// Teleport's default certificate lifetime, and ours.
pub const DEFAULT_TTL: Duration = Duration::hours(12);
/// Kubernetes adds this group to every authenticated user; discovery (`kubectl api-resources`)
/// needs it, so the proxy sends it too (as Teleport and kube-oidc-proxy do).
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

pub use hardlab_grader::labels::LabelValues;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub name: String,
    /// Which clusters the role reaches. Every key must be on the cluster with a matching value;
    /// `{"*": "*"}` reaches all clusters, an empty map none.
    #[serde(default)]
    pub kubernetes_labels: BTreeMap<String, LabelValues>,
    #[serde(default)]
    pub kubernetes_groups: Vec<String>,
    #[serde(default)]
    pub kubernetes_users: Vec<String>,
    /// Caps the lifetime of a certificate issued to a holder of this role, e.g. `12h`, `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_session_ttl: Option<String>,
}

impl Role {
    /// The one rule, shared with the lab 6 checks (`hardlab_grader::labels`).
    pub fn reaches(&self, cluster_labels: &BTreeMap<String, String>) -> bool {
        hardlab_grader::labels::reaches(&self.kubernetes_labels, cluster_labels)
    }

    pub fn max_ttl(&self) -> Result<Option<Duration>, ProxyError> {
        self.max_session_ttl
            .as_deref()
            .map(|text| {
                parse_duration(text).ok_or_else(|| {
                    ProxyError::Config(format!(
                        "role {}: max_session_ttl {text:?} is not a duration like 12h or 30m",
                        self.name
                    ))
                })
            })
            .transpose()
    }

    pub fn validate(&self) -> Result<(), ProxyError> {
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return Err(ProxyError::Config(format!(
                "role name {:?}: use letters, digits and - _ . :",
                self.name
            )));
        }
        self.max_ttl()?;
        Ok(())
    }
}

/// A cluster the proxy fronts: its labels and the kubeconfig with the proxy's own credentials
/// (an identity allowed to `impersonate` users and groups, nothing else needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Path of the kubeconfig file (in a config file) whose current context the proxy uses
    /// upstream. Empty in what a tenant's admin applies: there only the labels may change.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubeconfig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRoles {
    pub name: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The proxy's config file: roles, clusters, and which hardlab users hold which roles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub clusters: Vec<ClusterSpec>,
    #[serde(default)]
    pub users: Vec<UserRoles>,
}

impl ProxyConfig {
    /// Parses and validates a config file's text; errors name the file, line and field.
    pub fn parse(file: &str, text: &str) -> Result<Self, ProxyError> {
        let config: ProxyConfig = serde_yaml::from_str(text).map_err(|error| {
            let line = error
                .location()
                .map(|l| format!(":{}", l.line()))
                .unwrap_or_default();
            ProxyError::Config(format!("{file}{line}: {error}"))
        })?;
        for role in &config.roles {
            role.validate()
                .map_err(|error| ProxyError::Config(format!("{file}: {error}")))?;
        }
        for user in &config.users {
            for role in &user.roles {
                if !config.roles.iter().any(|r| &r.name == role) {
                    return Err(ProxyError::Config(format!(
                        "{file}: user {} has role {role}, which the file does not define",
                        user.name
                    )));
                }
            }
        }
        Ok(config)
    }
}

/// Who the proxy tells the API server the caller is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principals {
    pub user: String,
    pub groups: Vec<String>,
    /// Every user the caller may pick with `kubectl --as` (their roles' `kubernetes_users`).
    pub allowed_users: Vec<String>,
}

/// Why the proxy refuses a caller a cluster before asking the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    NoRoles,
    NoRoleForCluster,
    AmbiguousUser(Vec<String>),
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denial::NoRoles => f.write_str(
                "your hardlab roles do not allow Kubernetes access: ask an admin for a role",
            ),
            // The same words for a forbidden and a missing cluster: a refused user learns nothing
            // about which clusters exist.
            Denial::NoRoleForCluster => f.write_str("no cluster by that name is available to you"),
            Denial::AmbiguousUser(users) => write!(
                f,
                "your roles map to several Kubernetes users ({}); pick one with --as",
                users.join(", ")
            ),
        }
    }
}

/// The Kubernetes user and groups for `user` holding `held_roles` on a cluster with `labels`:
/// the union over the roles that reach the cluster. Computed per request, so an edited role takes
/// effect at once and a certificate for one cluster cannot carry groups meant for another.
pub fn principals(
    user: &str,
    held_roles: &[&Role],
    labels: &BTreeMap<String, String>,
) -> Result<Principals, Denial> {
    if held_roles.is_empty() {
        return Err(Denial::NoRoles);
    }
    let reaching: Vec<&&Role> = held_roles.iter().filter(|r| r.reaches(labels)).collect();
    if reaching.is_empty() {
        return Err(Denial::NoRoleForCluster);
    }
    let mut groups = Vec::new();
    let mut users = Vec::new();
    for role in &reaching {
        for group in &role.kubernetes_groups {
            if !groups.contains(group) {
                groups.push(group.clone());
            }
        }
        for kube_user in &role.kubernetes_users {
            if !users.contains(kube_user) {
                users.push(kube_user.clone());
            }
        }
    }
    if groups.is_empty() && users.is_empty() {
        return Err(Denial::NoRoles);
    }
    let kube_user = match users.as_slice() {
        [] => user.to_owned(),
        [only] => only.clone(),
        _ => String::new(),
    };
    if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.to_owned());
    }
    if users.is_empty() {
        users.push(user.to_owned());
    }
    Ok(Principals {
        user: kube_user,
        groups,
        allowed_users: users,
    })
}

/// Applies a client's `Impersonate-User`/`Impersonate-Group` headers: they may only narrow the
/// identity to users and groups the roles already grant. `Ok` holds the identity to send.
pub fn narrow(
    principals: &Principals,
    requested_user: Option<&str>,
    requested_groups: &[String],
) -> Result<Principals, String> {
    let mut narrowed = principals.clone();
    if let Some(user) = requested_user.filter(|u| !u.is_empty()) {
        if !principals.allowed_users.iter().any(|u| u == user) {
            return Err(format!(
                "impersonating user {user:?} is not allowed by your roles"
            ));
        }
        narrowed.user = user.to_owned();
    }
    if narrowed.user.is_empty() {
        return Err(Denial::AmbiguousUser(principals.allowed_users.clone()).to_string());
    }
    if !requested_groups.is_empty() {
        for group in requested_groups {
            if group != AUTHENTICATED_GROUP && !principals.groups.contains(group) {
                return Err(format!(
                    "impersonating group {group:?} is not allowed by your roles"
                ));
            }
        }
        narrowed.groups = requested_groups.to_vec();
        if !narrowed.groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            narrowed.groups.push(AUTHENTICATED_GROUP.to_owned());
        }
    }
    Ok(narrowed)
}

/// Certificate lifetime: the request (or 12 h), capped by the site's maximum and by the smallest
/// `max_session_ttl` among the roles, never below a minute.
pub fn certificate_ttl(
    requested: Option<Duration>,
    roles: &[&Role],
    site_max: Duration,
) -> Result<Duration, ProxyError> {
    let mut ttl = requested.unwrap_or(DEFAULT_TTL).min(site_max);
    for role in roles {
        if let Some(max) = role.max_ttl()? {
            ttl = ttl.min(max);
        }
    }
    Ok(ttl.max(Duration::minutes(1)))
}

/// `90s`, `30m`, `12h`, `1h30m`, `2d`. `None` for anything else, a zero total, or a total too
/// large to represent (checked arithmetic: `--ttl 99999999999999999h` is refused, not a panic).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total_seconds: i64 = 0;
    let mut number = String::new();
    let mut saw_unit = false;
    for ch in text.trim().chars() {
        if ch.is_ascii_digit() {
            number.push(ch);
            continue;
        }
        let value: i64 = number.parse().ok()?;
        number.clear();
        let unit_seconds = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        total_seconds = total_seconds.checked_add(value.checked_mul(unit_seconds)?)?;
        saw_unit = true;
    }
    (number.is_empty() && saw_unit && total_seconds > 0).then(|| Duration::seconds(total_seconds))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn role(yaml: &str) -> Role {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn label_matching_needs_every_key_and_accepts_wildcards_and_lists() {
        let dev = labels(&[("env", "dev"), ("region", "eu-west")]);
        assert!(role("{name: a, kubernetes_labels: {'*': '*'}}").reaches(&dev));
        assert!(role("{name: a, kubernetes_labels: {env: dev}}").reaches(&dev));
        assert!(!role("{name: a, kubernetes_labels: {env: prod}}").reaches(&dev));
        assert!(role("{name: a, kubernetes_labels: {env: [prod, dev]}}").reaches(&dev));
        assert!(role("{name: a, kubernetes_labels: {region: 'eu-*'}}").reaches(&dev));
        assert!(!role("{name: a, kubernetes_labels: {env: dev, team: x}}").reaches(&dev));
        assert!(!role("{name: a}").reaches(&dev));
    }

    #[test]
    fn principals_are_the_union_of_the_roles_that_reach_the_cluster() {
        let developer = role(
            "{name: developer, kubernetes_labels: {env: dev}, kubernetes_groups: [developer-read]}",
        );
        let prod =
            role("{name: prod, kubernetes_labels: {env: prod}, kubernetes_groups: [prod-read]}");
        let got = principals("bob", &[&developer, &prod], &labels(&[("env", "dev")])).unwrap();
        assert_eq!(got.user, "bob");
        assert_eq!(got.groups, ["developer-read", AUTHENTICATED_GROUP]);
    }

    #[test]
    fn a_user_without_roles_or_without_a_matching_role_is_denied() {
        let prod = role("{name: prod, kubernetes_labels: {env: prod}, kubernetes_groups: [x]}");
        let dev = labels(&[("env", "dev")]);
        assert_eq!(principals("bob", &[], &dev), Err(Denial::NoRoles));
        assert_eq!(
            principals("bob", &[&prod], &dev),
            Err(Denial::NoRoleForCluster)
        );
    }

    #[test]
    fn client_impersonation_may_only_narrow_to_granted_groups() {
        let developer = role(
            "{name: developer, kubernetes_labels: {'*': '*'}, kubernetes_groups: [developer-read, viewers]}",
        );
        let base = principals("bob", &[&developer], &labels(&[])).unwrap();
        let narrowed = narrow(&base, None, &["viewers".into()]).unwrap();
        assert_eq!(narrowed.groups, ["viewers", AUTHENTICATED_GROUP]);
        let error = narrow(&base, None, &["system:masters".into()]).unwrap_err();
        assert!(error.contains("system:masters"), "{error}");
        assert!(narrow(&base, Some("alice"), &[]).is_err());
        assert_eq!(narrow(&base, Some("bob"), &[]).unwrap().user, "bob");
    }

    #[test]
    fn several_kubernetes_users_need_an_explicit_choice() {
        let ops =
            role("{name: ops, kubernetes_labels: {'*': '*'}, kubernetes_users: [ops-a, ops-b]}");
        let base = principals("carol", &[&ops], &labels(&[])).unwrap();
        assert!(narrow(&base, None, &[]).is_err());
        assert_eq!(narrow(&base, Some("ops-b"), &[]).unwrap().user, "ops-b");
    }

    #[test]
    fn the_certificate_lifetime_defaults_to_12h_and_is_capped_by_the_roles() {
        let short = role("{name: short, max_session_ttl: 1h30m}");
        let open = role("{name: open}");
        let site = Duration::hours(12);
        assert_eq!(
            certificate_ttl(None, &[&open], site).unwrap(),
            Duration::hours(12)
        );
        assert_eq!(
            certificate_ttl(None, &[&open, &short], site).unwrap(),
            Duration::minutes(90)
        );
        assert_eq!(
            certificate_ttl(Some(Duration::minutes(10)), &[&short], site).unwrap(),
            Duration::minutes(10)
        );
        // Asking for more than the site allows gets the site's maximum, whatever the roles say.
        assert_eq!(
            certificate_ttl(Some(Duration::days(365)), &[&open], site).unwrap(),
            site
        );
        assert_eq!(
            certificate_ttl(Some(Duration::days(3)), &[&open], Duration::hours(2)).unwrap(),
            Duration::hours(2)
        );
    }

    #[test]
    fn a_config_file_with_a_typo_names_the_file_and_line() {
        let text = "roles:\n  - name: dev\n    kubernetes_group: [x]\n";
        let error = ProxyConfig::parse("proxy.yaml", text)
            .unwrap_err()
            .to_string();
        assert!(error.contains("proxy.yaml:3"), "{error}");
        assert!(error.contains("kubernetes_group"), "{error}");
        let text = "users:\n  - {name: bob, roles: [ghost]}\n";
        let error = ProxyConfig::parse("proxy.yaml", text)
            .unwrap_err()
            .to_string();
        assert!(error.contains("ghost"), "{error}");
    }

    #[test]
    fn durations_parse_in_go_style_units() {
        assert_eq!(parse_duration("12h"), Some(Duration::hours(12)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::minutes(90)));
        assert_eq!(parse_duration("12"), None);
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("3w"), None);
        // Too large to represent: refused, never a panic.
        assert_eq!(parse_duration("99999999999999999h"), None);
        assert_eq!(parse_duration("9223372036854775807d"), None);
        assert_eq!(parse_duration("99999999999999999999s"), None);
    }
}
