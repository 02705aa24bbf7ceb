//! The rule by which an access-proxy role reaches a cluster, by the cluster's labels. The access
//! proxy enforces it and the lab 6 checks judge with it, so both use this one definition.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A label value in a role: one value or a list of acceptable values; `*` matches any run of
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelValues {
    One(String),
    Any(Vec<String>),
}

impl LabelValues {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            LabelValues::One(wanted) => glob_matches(wanted, value),
            LabelValues::Any(wanted) => wanted.iter().any(|w| glob_matches(w, value)),
        }
    }
}

/// Whether a role with these `kubernetes_labels` reaches a cluster with `cluster_labels`: every
/// key must be on the cluster with a matching value; `{"*": "*"}` reaches every cluster and an
/// empty map none.
pub fn reaches(
    wanted: &BTreeMap<String, LabelValues>,
    cluster_labels: &BTreeMap<String, String>,
) -> bool {
    if wanted.is_empty() {
        return false;
    }
    wanted.iter().all(|(key, values)| {
        if key == "*" {
            return values.matches("*");
        }
        cluster_labels
            .get(key)
            .is_some_and(|value| values.matches(value))
    })
}

/// `*` anywhere in the pattern matches any run of characters; everything else literally. Each
/// middle part is matched at its first occurrence, which is enough for `*`-only patterns and
/// never backtracks.
pub fn glob_matches(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let mut rest = value;
    for (index, part) in parts.iter().enumerate() {
        if index == 0 {
            let Some(stripped) = rest.strip_prefix(part) else {
                return false;
            };
            rest = stripped;
        } else if index == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(found) = rest.find(part) {
            rest = &rest[found + part.len()..];
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn globs_match_any_run_of_characters_and_nothing_else() {
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("eu-*", "eu-west"));
        assert!(glob_matches("*-west", "eu-west"));
        assert!(glob_matches("a*b*c", "abXbc"));
        assert!(!glob_matches("*ab*b", "ab"));
        assert!(!glob_matches("eu-*", "us-east"));
        assert!(!glob_matches("dev", "dev2"));
    }

    #[test]
    fn a_role_reaches_a_cluster_only_with_every_key_matching() {
        let dev = labels(&[("env", "dev"), ("team", "core")]);
        let wanted = |pairs: &[(&str, LabelValues)]| -> BTreeMap<String, LabelValues> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect()
        };
        assert!(reaches(
            &wanted(&[("env", LabelValues::One("dev".into()))]),
            &dev
        ));
        assert!(reaches(
            &wanted(&[("env", LabelValues::Any(vec!["prod".into(), "d*".into()]))]),
            &dev
        ));
        assert!(!reaches(
            &wanted(&[
                ("env", LabelValues::One("dev".into())),
                ("region", LabelValues::One("*".into()))
            ]),
            &dev
        ));
        assert!(reaches(
            &wanted(&[("*", LabelValues::One("*".into()))]),
            &dev
        ));
        assert!(
            !reaches(&BTreeMap::new(), &dev),
            "an empty map reaches nothing"
        );
    }
}
