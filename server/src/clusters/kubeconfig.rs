//! The node's admin.conf, rewritten the way `kind export kubeconfig` does: the server becomes the
//! port published on 127.0.0.1, so a client on the host reaches the API server.

use serde_yaml::Value;

use super::{Error, Result};

/// Points every cluster entry of `admin_conf` at `https://127.0.0.1:<port>` and renames the
/// cluster, user and context to `hardlab-<cluster>`.
pub fn rewrite(admin_conf: &str, cluster: &str, port: u16) -> Result<String> {
    let mut config: Value = serde_yaml::from_str(admin_conf)
        .map_err(|e| Error::Kubeconfig(format!("admin.conf is not YAML: {e}")))?;
    let key = format!("hardlab-{cluster}");
    let server = format!("https://127.0.0.1:{port}");
    for (list, inner) in [
        ("clusters", "cluster"),
        ("users", "user"),
        ("contexts", "context"),
    ] {
        let entries = config
            .get_mut(list)
            .and_then(Value::as_sequence_mut)
            .ok_or_else(|| Error::Kubeconfig(format!("admin.conf has no {list} list")))?;
        if entries.len() != 1 {
            return Err(Error::Kubeconfig(format!(
                "admin.conf has {} {list}, expected exactly one",
                entries.len()
            )));
        }
        let entry = &mut entries[0];
        entry["name"] = Value::from(key.clone());
        match inner {
            "cluster" => entry[inner]["server"] = Value::from(server.clone()),
            "context" => {
                entry[inner]["cluster"] = Value::from(key.clone());
                entry[inner]["user"] = Value::from(key.clone());
            }
            _ => {}
        }
    }
    config["current-context"] = Value::from(key);
    serde_yaml::to_string(&config).map_err(|e| Error::Kubeconfig(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ADMIN_CONF: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://hardlab-c-1-control-plane:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
users:
- name: kubernetes-admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
";

    #[test]
    fn the_server_becomes_the_published_loopback_port_and_names_are_the_clusters() {
        let rewritten: Value =
            serde_yaml::from_str(&rewrite(ADMIN_CONF, "c-1", 41234).unwrap()).unwrap();
        assert_eq!(
            rewritten["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:41234"
        );
        assert_eq!(
            rewritten["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0E="
        );
        assert_eq!(rewritten["clusters"][0]["name"], "hardlab-c-1");
        assert_eq!(rewritten["contexts"][0]["context"]["user"], "hardlab-c-1");
        assert_eq!(rewritten["users"][0]["user"]["client-key-data"], "S0VZ");
        assert_eq!(rewritten["current-context"], "hardlab-c-1");
    }

    #[test]
    fn a_kubeconfig_with_two_clusters_is_refused_like_kind_refuses_it() {
        let two = ADMIN_CONF.replace(
            "clusters:\n",
            "clusters:\n- cluster: {server: x}\n  name: other\n",
        );
        assert!(
            matches!(rewrite(&two, "c", 1), Err(Error::Kubeconfig(message)) if message.contains("2 clusters"))
        );
        assert!(rewrite("{not yaml", "c", 1).is_err());
    }
}
