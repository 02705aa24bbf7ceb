//! The settings of learners' clusters and of the access proxy: resolved values ([`ClusterSettings`],
//! [`ProxyConfig`]) and their optional layer ([`ClusterFlags`], [`ProxyFlags`]) that the YAML file
//! (`clusters:` and `proxy:` sections), the `HARDLAB_*` variables and the flags fill in, in that
//! order, like every other setting.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

/// Learners' clusters on a Docker engine.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    pub node_image: String,
    pub node_unprivileged: bool,
    pub node_memory_mb: i64,
    pub node_pids_limit: i64,
    pub node_cpus: f64,
    pub max_clusters_per_user: usize,
    pub cluster_max_hours: u64,
    pub cluster_ttl_minutes: u64,
    pub cluster_idle_minutes: u64,
    pub max_clusters: usize,
    pub pool_size: usize,
    pub pool_labs: Vec<String>,
    /// `None`: this installation's id from its database.
    pub docker_instance: Option<String>,
    pub docker_host: Option<String>,
    pub docker_tls_ca: Option<PathBuf>,
    pub docker_tls_cert: Option<PathBuf>,
    pub docker_tls_key: Option<PathBuf>,
    pub node_publish_ip: Option<IpAddr>,
    pub node_egress: bool,
    pub terminal_grace_seconds: u64,
    /// Shells live in a tmux session in the node, so any server can attach to the same one.
    pub terminal_persistent_shells: bool,
    /// A registry mirror for the images labs pull that the node image does not carry.
    pub registry_mirror: Option<String>,
    /// This server's name among those sharing the database; `None`: the host name.
    pub server_id: Option<String>,
    /// A hardlab checkout a missing node image is built from; `None`: the working directory
    /// when it is one.
    pub node_image_source: Option<PathBuf>,
    pub cluster_lease_seconds: u64,
    /// Where nodes run: the Docker engine (default) or a Kubernetes host cluster.
    pub provider: ProviderKind,
    /// The host cluster's placement settings, used when `provider` is `kubernetes`.
    pub host: KubernetesSettings,
}

/// The runtime learners' nodes run on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    #[default]
    Docker,
    Kubernetes,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            node_image: "hardlab/node:v1.36.1".to_owned(),
            node_unprivileged: false,
            node_memory_mb: 2048,
            node_pids_limit: 4096,
            node_cpus: 2.0,
            max_clusters_per_user: 3,
            cluster_max_hours: 4,
            cluster_ttl_minutes: 60,
            cluster_idle_minutes: 30,
            max_clusters: 20,
            pool_size: 0,
            pool_labs: Vec::new(),
            docker_instance: None,
            docker_host: None,
            docker_tls_ca: None,
            docker_tls_cert: None,
            docker_tls_key: None,
            node_publish_ip: None,
            node_egress: true,
            terminal_grace_seconds: 120,
            terminal_persistent_shells: false,
            registry_mirror: None,
            server_id: None,
            node_image_source: None,
            cluster_lease_seconds: 30,
            provider: ProviderKind::Docker,
            host: KubernetesSettings::default(),
        }
    }
}

/// The cluster settings as flags, `HARDLAB_*` variables and the file's `clusters:` section.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFlags {
    /// Node image for learners' clusters (see docker/node/README.md) [default: hardlab/node:v1.36.1].
    #[arg(long, env = "HARDLAB_NODE_IMAGE", value_name = "IMAGE")]
    pub node_image: Option<String>,
    /// Run node containers without privileges (only for images that need none).
    #[arg(long, env = "HARDLAB_NODE_UNPRIVILEGED", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub node_unprivileged: Option<bool>,
    /// Memory limit per node container, in MiB (0: none) [default: 2048].
    #[arg(long, env = "HARDLAB_NODE_MEMORY_MB", value_name = "MIB")]
    pub node_memory_mb: Option<i64>,
    /// Processes per node container at most (0: none); stops a fork bomb in a node there
    /// [default: 4096].
    #[arg(long, env = "HARDLAB_NODE_PIDS_LIMIT", value_name = "N")]
    pub node_pids_limit: Option<i64>,
    /// CPUs per node container at most, e.g. 1.5 (0: none) [default: 2].
    #[arg(long, env = "HARDLAB_NODE_CPUS", value_name = "CPUS")]
    pub node_cpus: Option<f64>,
    /// Live clusters one learner may have at once, over all labs [default: 3].
    #[arg(long, env = "HARDLAB_MAX_CLUSTERS_PER_USER", value_name = "N")]
    pub max_clusters_per_user: Option<usize>,
    /// Hours a cluster may live in all, however often it is extended [default: 4].
    #[arg(long, env = "HARDLAB_CLUSTER_MAX_HOURS", value_name = "HOURS")]
    pub cluster_max_hours: Option<u64>,
    /// Minutes a cluster lives before it is removed (learners can extend) [default: 60].
    #[arg(long, env = "HARDLAB_CLUSTER_TTL_MINUTES", value_name = "MINUTES")]
    pub cluster_ttl_minutes: Option<u64>,
    /// Minutes without terminal input after which a learner's cluster is removed [default: 30].
    #[arg(long, env = "HARDLAB_CLUSTER_IDLE_MINUTES", value_name = "MINUTES")]
    pub cluster_idle_minutes: Option<u64>,
    /// Clusters this host runs at most (warm pool included) [default: 20].
    #[arg(long, env = "HARDLAB_MAX_CLUSTERS", value_name = "N")]
    pub max_clusters: Option<usize>,
    /// Ready clusters kept warm per lab, so Start is instant [default: 0].
    #[arg(long, env = "HARDLAB_POOL_SIZE", value_name = "N")]
    pub pool_size: Option<usize>,
    /// Labs whose pool is kept warm (comma-separated IDs; default: every lab when pool-size > 0).
    #[arg(
        long,
        env = "HARDLAB_POOL_LABS",
        value_delimiter = ',',
        value_name = "LABS"
    )]
    pub pool_labs: Option<Vec<String>>,
    /// Name on the labels of everything this server creates [default: this installation's id,
    /// made at first start and kept in its database]. Only servers given the same name (or sharing
    /// a database) manage each other's clusters; a second installation on the same engine sees
    /// nothing of the first.
    #[arg(long, env = "HARDLAB_DOCKER_INSTANCE", value_name = "NAME")]
    pub docker_instance: Option<String>,
    /// A Docker engine on another machine, `tcp://HOST:2376`, reached over TLS with the three
    /// `--docker-tls-*` files [default: the local engine (`DOCKER_HOST` or its unix socket)].
    /// Keeps the server, its database and keys off the host whose root learners effectively hold.
    #[arg(long, env = "HARDLAB_DOCKER_HOST", value_name = "URL")]
    pub docker_host: Option<String>,
    /// The CA that signed the remote engine's certificate (PEM).
    #[arg(long, env = "HARDLAB_DOCKER_TLS_CA", value_name = "FILE")]
    pub docker_tls_ca: Option<PathBuf>,
    /// The server's client certificate for the remote engine (PEM).
    #[arg(long, env = "HARDLAB_DOCKER_TLS_CERT", value_name = "FILE")]
    pub docker_tls_cert: Option<PathBuf>,
    /// The key of that client certificate (PEM).
    #[arg(long, env = "HARDLAB_DOCKER_TLS_KEY", value_name = "FILE")]
    pub docker_tls_key: Option<PathBuf>,
    /// The address of the engine's host that node ports (API server, etcd) are published on and
    /// that the server dials [default: 127.0.0.1]. With a remote engine: that host's private address.
    #[arg(long, env = "HARDLAB_NODE_PUBLISH_IP", value_name = "IP")]
    pub node_publish_ip: Option<IpAddr>,
    /// Whether nodes reach addresses beyond their host: the internet (image pulls, which labs 2, 3
    /// and 5 need unless the node image carries their images) and, on a cloud VM, its metadata
    /// service unless the host's firewall drops it (docs/security.md) [default: true].
    #[arg(long, env = "HARDLAB_NODE_EGRESS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub node_egress: Option<bool>,
    /// Terminal shells with no browser attached are closed after this many seconds [default: 120].
    #[arg(long, env = "HARDLAB_TERMINAL_GRACE_SECONDS", value_name = "SECONDS")]
    pub terminal_grace_seconds: Option<u64>,
    /// Run each learner's shell in a tmux session inside the node (when the node has tmux), so a
    /// terminal opened through any server sharing the database, or after the grace period, is the
    /// same shell with its history and jobs [default: false].
    #[arg(long, env = "HARDLAB_TERMINAL_PERSISTENT_SHELLS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub terminal_persistent_shells: Option<bool>,
    /// A registry the nodes ask first for Docker Hub images (`https://mirror.internal:5000`), for
    /// images the node image does not carry (docker/node/images.txt) at an offline event.
    #[arg(long, env = "HARDLAB_REGISTRY_MIRROR", value_name = "URL")]
    pub registry_mirror: Option<String>,
    /// This server's name among the servers sharing one database; the name on the cluster leases
    /// it holds [default: the host name (in Kubernetes, the pod's)]. A server restarted under the
    /// same name takes its clusters back at once.
    #[arg(long, env = "HARDLAB_SERVER_ID", value_name = "NAME")]
    pub server_id: Option<String>,
    /// A hardlab checkout to build the node image from when it is missing and cannot be pulled
    /// (docker/node/Dockerfile, through the Docker API) [default: the working directory when it
    /// is a checkout].
    #[arg(long, env = "HARDLAB_NODE_IMAGE_SOURCE", value_name = "DIR")]
    pub node_image_source: Option<PathBuf>,
    /// Seconds a server's hold on its clusters lasts unless renewed: how soon another server
    /// takes over the clusters of one that stopped [default: 30].
    #[arg(long, env = "HARDLAB_CLUSTER_LEASE_SECONDS", value_name = "SECONDS")]
    pub cluster_lease_seconds: Option<u64>,
    /// Where learners' nodes run: `docker` (the engine above) or `kubernetes` (kind-node pods on a
    /// host cluster, one namespace each; deploy/ runs hardlab there) [default: docker].
    #[arg(long, env = "HARDLAB_CLUSTER_PROVIDER", value_name = "PROVIDER")]
    pub provider: Option<ProviderKind>,
    /// With the Kubernetes provider: a kubeconfig for the host cluster [default: the in-cluster
    /// ServiceAccount].
    #[arg(long, env = "HARDLAB_HOST_KUBECONFIG", value_name = "FILE")]
    pub host_kubeconfig: Option<PathBuf>,
    /// With the Kubernetes provider: cluster namespaces are PREFIX<cluster> [default: hardlab-].
    #[arg(long, env = "HARDLAB_HOST_NAMESPACE_PREFIX", value_name = "PREFIX")]
    pub host_namespace_prefix: Option<String>,
    /// With the Kubernetes provider: the namespace hardlab runs in (the only one whose hardlab
    /// pods may reach nodes; its ServiceAccount `hardlab` is the provider) [default: hardlab].
    #[arg(long, env = "HARDLAB_HOST_SERVER_NAMESPACE", value_name = "NAMESPACE")]
    pub host_server_namespace: Option<String>,
    /// With the Kubernetes provider: node pods go to nodes with these labels (`key=value`,
    /// comma-separated), a pool set aside for learners' privileged nodes.
    #[arg(
        long,
        env = "HARDLAB_HOST_NODE_SELECTOR",
        value_delimiter = ',',
        value_name = "LABELS"
    )]
    pub host_node_selector: Option<Vec<String>>,
    /// With the Kubernetes provider: tolerations of node pods, in taint syntax
    /// (`key=value:NoSchedule`, comma-separated).
    #[arg(
        long,
        env = "HARDLAB_HOST_TOLERATIONS",
        value_delimiter = ',',
        value_name = "TAINTS"
    )]
    pub host_tolerations: Option<Vec<String>>,
    /// With the Kubernetes provider: address ranges nodes may reach besides the host's DNS
    /// (a registry mirror, say; comma-separated CIDRs) [default: none].
    #[arg(
        long,
        env = "HARDLAB_HOST_EGRESS_CIDRS",
        value_delimiter = ',',
        value_name = "CIDRS"
    )]
    pub host_egress_cidrs: Option<Vec<String>>,
}

/// Copies every value that is set over the settings.
macro_rules! apply_set {
    ($from:expr, $to:expr, $($field:ident),+ $(,)?) => {
        $( if let Some(value) = &$from.$field { $to.$field = value.clone(); } )+
    };
}

/// The same for the settings whose resolved value is itself optional.
macro_rules! apply_optional {
    ($from:expr, $to:expr, $($field:ident),+ $(,)?) => {
        $( if let Some(value) = &$from.$field { $to.$field = Some(value.clone()); } )+
    };
}

impl ClusterFlags {
    pub fn apply(&self, settings: &mut ClusterSettings) {
        apply_set!(
            self,
            settings,
            node_image,
            node_unprivileged,
            node_memory_mb,
            node_pids_limit,
            node_cpus,
            max_clusters_per_user,
            cluster_max_hours,
            cluster_ttl_minutes,
            cluster_idle_minutes,
            max_clusters,
            pool_size,
            pool_labs,
            node_egress,
            cluster_lease_seconds,
            terminal_grace_seconds,
            terminal_persistent_shells,
        );
        apply_optional!(
            self,
            settings,
            docker_instance,
            docker_host,
            docker_tls_ca,
            docker_tls_cert,
            docker_tls_key,
            node_publish_ip,
            registry_mirror,
            server_id,
            node_image_source,
        );
        settings
            .host
            .registry_mirror
            .clone_from(&settings.registry_mirror);
        if let Some(provider) = self.provider {
            settings.provider = provider;
        }
        let host = &mut settings.host;
        if let Some(path) = &self.host_kubeconfig {
            host.kubeconfig = Some(path.clone());
        }
        if let Some(prefix) = &self.host_namespace_prefix {
            host.namespace_prefix.clone_from(prefix);
        }
        if let Some(namespace) = &self.host_server_namespace {
            host.server_namespace.clone_from(namespace);
        }
        if let Some(selector) = &self.host_node_selector {
            host.node_selector = selector
                .iter()
                .filter_map(|pair| pair.split_once('='))
                .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
                .collect();
        }
        if let Some(tolerations) = &self.host_tolerations {
            host.tolerations.clone_from(tolerations);
        }
        if let Some(cidrs) = &self.host_egress_cidrs {
            host.egress_cidrs.clone_from(cidrs);
        }
    }

    /// Settings that cannot be used as given, named as the user wrote them.
    pub fn validate(&self) -> Result<(), String> {
        if self.cluster_lease_seconds == Some(0) {
            return Err(
                "cluster-lease-seconds: 0 would let every server take over every cluster at once"
                    .to_owned(),
            );
        }
        if let Some(mirror) = &self.registry_mirror
            && !(mirror.starts_with("https://") || mirror.starts_with("http://"))
        {
            return Err(format!(
                "registry-mirror: {mirror:?} is not a URL like https://mirror.internal:5000"
            ));
        }
        for pair in self.host_node_selector.iter().flatten() {
            if !pair.contains('=') {
                return Err(format!("host-node-selector: {pair:?} is not key=value"));
            }
        }
        for cidr in self.host_egress_cidrs.iter().flatten() {
            let valid = cidr.split_once('/').is_some_and(|(ip, bits)| {
                ip.parse::<IpAddr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 128)
            });
            if !valid {
                return Err(format!(
                    "host-egress-cidrs: {cidr:?} is not an address range like 10.0.0.0/8"
                ));
            }
        }
        Ok(())
    }
}

/// The access proxy: where it listens, the URL written into kubeconfigs, a file imported at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    /// `None`: `https://<listen>`.
    pub public_url: Option<String>,
    pub config_file: Option<PathBuf>,
    /// The longest client certificate the proxy issues (`12h`, `30m`); `None`: 12 h. Checked
    /// when the proxy starts, which names the setting when it is not a duration.
    pub max_cert_ttl: Option<String>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            public_url: None,
            config_file: None,
            max_cert_ttl: None,
        }
    }
}

/// The proxy settings as flags, `HARDLAB_PROXY_*` variables and the file's `proxy:` section.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFlags {
    /// Where the access proxy listens for kubectl [default: 127.0.0.1:8443].
    #[arg(
        long = "proxy-listen",
        env = "HARDLAB_PROXY_LISTEN",
        value_name = "ADDR"
    )]
    #[serde(rename = "listen")]
    pub proxy_listen: Option<SocketAddr>,
    /// The proxy's URL as kubectl reaches it, written into kubeconfigs [default: https://<listen>].
    #[arg(long = "proxy-url", env = "HARDLAB_PROXY_URL", value_name = "URL")]
    #[serde(rename = "url")]
    pub proxy_url: Option<String>,
    /// A roles/clusters/users file the proxy imports at start.
    #[arg(
        long = "proxy-config",
        env = "HARDLAB_PROXY_CONFIG",
        value_name = "FILE"
    )]
    #[serde(rename = "config")]
    pub proxy_config: Option<PathBuf>,
    /// Longest client certificate the access proxy issues, whatever a login asks for or a role
    /// allows, e.g. 8h or 30m [default: 12h].
    #[arg(
        long = "proxy-max-cert-ttl",
        env = "HARDLAB_PROXY_MAX_CERT_TTL",
        value_name = "DURATION"
    )]
    #[serde(rename = "max_cert_ttl")]
    pub proxy_max_cert_ttl: Option<String>,
}

impl ProxyFlags {
    pub fn apply(&self, settings: &mut ProxyConfig) {
        if let Some(listen) = self.proxy_listen {
            settings.listen = listen;
        }
        if let Some(url) = &self.proxy_url {
            settings.public_url = Some(url.clone());
        }
        if let Some(file) = &self.proxy_config {
            settings.config_file = Some(file.clone());
        }
        if let Some(ttl) = &self.proxy_max_cert_ttl {
            settings.max_cert_ttl = Some(ttl.clone());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn set_values_replace_the_defaults_and_unset_ones_leave_them() {
        let mut settings = ClusterSettings::default();
        ClusterFlags {
            node_image: Some("hardlab/testnode:latest".into()),
            node_egress: Some(false),
            docker_instance: Some("shared".into()),
            ..ClusterFlags::default()
        }
        .apply(&mut settings);
        assert_eq!(settings.node_image, "hardlab/testnode:latest");
        assert!(!settings.node_egress);
        assert_eq!(settings.docker_instance.as_deref(), Some("shared"));
        assert_eq!(settings.node_memory_mb, 2048);
    }
}

/// Where and how clusters are placed on the host cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesSettings {
    /// A kubeconfig for the host cluster; `None`: the in-cluster ServiceAccount (the server runs
    /// as the Deployment in `deploy/`).
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Cluster namespaces are `<prefix><cluster>`.
    pub namespace_prefix: String,
    /// The namespace hardlab's servers run in, and the labels of their pods: the only peers the
    /// NetworkPolicy lets reach a node.
    pub server_namespace: String,
    pub server_pod_labels: BTreeMap<String, String>,
    /// The ServiceAccount the provider runs as (`system:serviceaccount:<ns>:<name>`), bound to
    /// the ClusterRole `hardlab-node-manager` in each cluster namespace.
    pub service_account: String,
    /// Node placement: a dedicated node pool for privileged learner nodes.
    pub node_selector: BTreeMap<String, String>,
    /// `key=value:Effect`, `key:Effect` or `key=value` (any effect).
    pub tolerations: Vec<String>,
    /// Address ranges a node may reach besides the host cluster's DNS (its image registry mirror,
    /// say); empty: nothing else.
    pub egress_cidrs: Vec<String>,
    /// The host cluster's DNS domain, for the Service's names in the node's certificates.
    pub cluster_domain: String,
    /// A registry the nodes' containerd asks first for Docker Hub images.
    pub registry_mirror: Option<String>,
    /// How long the node pod may take to be scheduled and started.
    pub schedule_timeout: Duration,
    /// How long the API server in the node may take to answer after `kubeadm init`.
    pub ready_timeout: Duration,
}

impl Default for KubernetesSettings {
    fn default() -> Self {
        KubernetesSettings {
            kubeconfig: None,
            namespace_prefix: "hardlab-".to_owned(),
            server_namespace: "hardlab".to_owned(),
            server_pod_labels: BTreeMap::from([(
                "app.kubernetes.io/name".to_owned(),
                "hardlab".to_owned(),
            )]),
            service_account: "hardlab".to_owned(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            egress_cidrs: Vec::new(),
            cluster_domain: "cluster.local".to_owned(),
            registry_mirror: None,
            schedule_timeout: Duration::from_secs(300),
            ready_timeout: Duration::from_secs(240),
        }
    }
}
