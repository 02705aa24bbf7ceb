//! Wiring clusters and the terminal into the web app: settings, start-up (adoption, background
//! reaping and pool refill), who is signed in (from the session layer) and what a lab asks for.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::http::{Extensions, HeaderMap};
use sqlx::AnyPool;

use super::lifecycle::LabClusterRequest;
use super::routes::{ClustersState, Site, Viewer};
use super::{ClusterManager, DockerProvider, ManagerConfig};
use crate::db::seal::Sealer;
use crate::labs::Labs;
use crate::terminal::{TerminalConfig, TerminalHub};
use crate::web::AppState;
use crate::web::accounts::Role;
use crate::web::session::Visitor;

/// Cluster settings of `hardlab serve` and `hardlab clusters` (flags or `HARDLAB_*` variables).
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Node image for learners' clusters (see docker/node/README.md).
    #[arg(
        long,
        env = "HARDLAB_NODE_IMAGE",
        default_value = "hardlab/node:v1.36.1"
    )]
    pub node_image: String,
    /// Run node containers without privileges (only for images that need none).
    #[arg(long, env = "HARDLAB_NODE_UNPRIVILEGED")]
    pub node_unprivileged: bool,
    /// Memory limit per node container, in MiB (0: none).
    #[arg(long, env = "HARDLAB_NODE_MEMORY_MB", default_value_t = 2048)]
    pub node_memory_mb: i64,
    /// Processes per node container at most (0: none); stops a fork bomb in a node there.
    #[arg(long, env = "HARDLAB_NODE_PIDS_LIMIT", default_value_t = 4096)]
    pub node_pids_limit: i64,
    /// CPUs per node container at most, e.g. 1.5 (0: none).
    #[arg(long, env = "HARDLAB_NODE_CPUS", default_value_t = 2.0)]
    pub node_cpus: f64,
    /// Live clusters one learner may have at once, over all labs.
    #[arg(long, env = "HARDLAB_MAX_CLUSTERS_PER_USER", default_value_t = 3)]
    pub max_clusters_per_user: usize,
    /// Hours a cluster may live in all, however often it is extended.
    #[arg(long, env = "HARDLAB_CLUSTER_MAX_HOURS", default_value_t = 4)]
    pub cluster_max_hours: u64,
    /// Minutes a cluster lives before it is removed (learners can extend).
    #[arg(long, env = "HARDLAB_CLUSTER_TTL_MINUTES", default_value_t = 60)]
    pub cluster_ttl_minutes: u64,
    /// Minutes without terminal input after which a learner's cluster is removed.
    #[arg(long, env = "HARDLAB_CLUSTER_IDLE_MINUTES", default_value_t = 30)]
    pub cluster_idle_minutes: u64,
    /// Clusters this host runs at most (warm pool included).
    #[arg(long, env = "HARDLAB_MAX_CLUSTERS", default_value_t = 20)]
    pub max_clusters: usize,
    /// Ready clusters kept warm per lab, so Start is instant.
    #[arg(long, env = "HARDLAB_POOL_SIZE", default_value_t = 0)]
    pub pool_size: usize,
    /// Labs whose pool is kept warm (comma-separated IDs; default: every lab when pool-size > 0).
    #[arg(long, env = "HARDLAB_POOL_LABS", value_delimiter = ',')]
    pub pool_labs: Vec<String>,
    /// Name on the labels of everything this server creates [default: this installation's id,
    /// made at first start and kept in its database]. Only servers given the same name (or sharing
    /// a database) manage each other's clusters; a second installation on the same engine sees
    /// nothing of the first.
    #[arg(long, env = "HARDLAB_DOCKER_INSTANCE")]
    pub docker_instance: Option<String>,
    /// A Docker engine on another machine, `tcp://HOST:2376`, reached over TLS with the three
    /// `--docker-tls-*` files [default: the local engine (`DOCKER_HOST` or its unix socket)].
    /// Keeps the server, its database and keys off the host whose root learners effectively hold.
    #[arg(long, env = "HARDLAB_DOCKER_HOST", value_name = "URL")]
    pub docker_host: Option<String>,
    /// The CA that signed the remote engine's certificate (PEM).
    #[arg(long, env = "HARDLAB_DOCKER_TLS_CA", value_name = "FILE")]
    pub docker_tls_ca: Option<std::path::PathBuf>,
    /// The server's client certificate for the remote engine (PEM).
    #[arg(long, env = "HARDLAB_DOCKER_TLS_CERT", value_name = "FILE")]
    pub docker_tls_cert: Option<std::path::PathBuf>,
    /// The key of that client certificate (PEM).
    #[arg(long, env = "HARDLAB_DOCKER_TLS_KEY", value_name = "FILE")]
    pub docker_tls_key: Option<std::path::PathBuf>,
    /// The address of the engine's host that node ports (API server, etcd) are published on and
    /// that the server dials [default: 127.0.0.1]. With a remote engine: that host's private address.
    #[arg(long, env = "HARDLAB_NODE_PUBLISH_IP", value_name = "IP")]
    pub node_publish_ip: Option<std::net::IpAddr>,
    /// Whether nodes reach addresses beyond their host: the internet (image pulls, which labs 2, 3
    /// and 5 need unless the node image carries their images) and, on a cloud VM, its metadata
    /// service unless the host's firewall drops it (docs/security.md).
    #[arg(long, env = "HARDLAB_NODE_EGRESS", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub node_egress: bool,
    /// Terminal shells with no browser attached are closed after this many seconds.
    #[arg(long, env = "HARDLAB_TERMINAL_GRACE_SECONDS", default_value_t = 120)]
    pub terminal_grace_seconds: u64,
}

impl Default for ClusterArgs {
    fn default() -> Self {
        ClusterArgs {
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
        }
    }
}

impl ClusterArgs {
    pub fn manager_config(&self, labs: &Labs) -> ManagerConfig {
        let pool_labs = if self.pool_size == 0 {
            Vec::new()
        } else {
            labs.all()
                .iter()
                .filter(|lab| self.pool_labs.is_empty() || self.pool_labs.contains(&lab.id))
                .map(|lab| lab_request(lab))
                .collect()
        };
        ManagerConfig {
            image: self.node_image.clone(),
            privileged: self.node_unprivileged.then_some(false),
            ttl: Duration::from_secs(self.cluster_ttl_minutes * 60),
            idle_timeout: Duration::from_secs(self.cluster_idle_minutes * 60),
            max_clusters: self.max_clusters,
            memory_bytes: (self.node_memory_mb > 0).then_some(self.node_memory_mb << 20),
            pids_limit: (self.node_pids_limit > 0).then_some(self.node_pids_limit),
            // Whole billionths of a CPU; the cast saturates and the setting is a small number.
            #[allow(clippy::cast_possible_truncation)]
            nano_cpus: (self.node_cpus > 0.0).then_some((self.node_cpus * 1e9) as i64),
            pool_size: self.pool_size,
            pool_labs,
            max_clusters_per_user: self.max_clusters_per_user,
            max_lifetime: Duration::from_secs(self.cluster_max_hours * 60 * 60),
            ..ManagerConfig::default()
        }
    }
}

fn lab_request(lab: &crate::labs::Lab) -> LabClusterRequest {
    LabClusterRequest {
        lab_id: lab.id.clone(),
        apiserver_flags: lab.cluster.apiserver_flags.clone(),
        setup: lab.setup.clone(),
        solutions: lab
            .steps
            .iter()
            .filter_map(|step| step.solution.clone())
            .collect(),
    }
}

/// The web app's side of the cluster routes.
pub struct AppSite {
    labs: Arc<Labs>,
}

#[async_trait]
impl Site for AppSite {
    async fn viewer(&self, _headers: &HeaderMap, extensions: &Extensions) -> Option<Viewer> {
        let user = extensions.get::<Visitor>()?.user()?.clone();
        Some(Viewer {
            user_id: user.id,
            staff: user.role >= Role::Instructor,
        })
    }

    fn lab_request(&self, lab_id: &str) -> Option<LabClusterRequest> {
        self.labs.get(lab_id).map(|lab| lab_request(lab))
    }
}

/// Connects to Docker, adopts the clusters a previous run left, and starts reaping and the pool.
/// A Docker engine that is down does not stop the server: clusters fail with a clear message and
/// `/readyz` reports it until the engine is back.
pub async fn start(
    db: AnyPool,
    labs: Arc<Labs>,
    args: &ClusterArgs,
    sealer: Arc<Sealer>,
) -> crate::clusters::Result<ClustersState> {
    let instance = instance_name(&db, args).await?;
    tracing::info!(%instance, "clusters on the Docker engine carry this installation's label");
    let provider = connect(args, true).await?.with_instance(&instance);
    let terminals = TerminalHub::new(
        provider.docker().clone(),
        TerminalConfig {
            grace: Duration::from_secs(args.terminal_grace_seconds),
            ..TerminalConfig::default()
        },
    );
    terminals.spawn_sweeper();
    let mut config = args.manager_config(&labs);
    config.sealer = sealer;
    let manager = ClusterManager::new(db, Arc::new(provider), config);
    match manager.adopt().await {
        Ok(report) => {
            tracing::info!(adopted = ?report.adopted, removed = ?report.removed, "clusters after start-up");
        }
        Err(error) => tracing::warn!(%error, "could not adopt clusters at start-up"),
    }
    manager.spawn_background();
    Ok(ClustersState {
        manager,
        terminals,
        site: Arc::new(AppSite { labs }),
    })
}

/// The engine the settings name: a remote one over TLS, else the local one (`lenient`: a local
/// engine that does not answer yet is not an error, `/readyz` says so until it does).
pub async fn connect(args: &ClusterArgs, lenient: bool) -> crate::clusters::Result<DockerProvider> {
    let provider = match &args.docker_host {
        Some(host) if !host.starts_with("unix://") => {
            let (Some(ca), Some(cert), Some(key)) = (
                &args.docker_tls_ca,
                &args.docker_tls_cert,
                &args.docker_tls_key,
            ) else {
                return Err(crate::clusters::Error::Invalid(format!(
                    "--docker-host {host} needs --docker-tls-ca, --docker-tls-cert and --docker-tls-key: \
                     a Docker API reachable without a client certificate is root on its host for anyone who reaches it"
                )));
            };
            DockerProvider::connect_tls(host, ca, cert, key).await?
        }
        Some(socket) => {
            DockerProvider::connect_to_socket(socket.trim_start_matches("unix://")).await?
        }
        None if lenient => DockerProvider::connect_lenient().await?,
        None => DockerProvider::connect().await?,
    };
    let provider = provider.with_egress(args.node_egress);
    Ok(match args.node_publish_ip {
        Some(ip) => provider.publishing_on(ip),
        None => provider,
    })
}

/// The label value of this installation: the explicit setting, else the id in its database.
pub async fn instance_name(db: &AnyPool, args: &ClusterArgs) -> crate::clusters::Result<String> {
    match &args.docker_instance {
        Some(name) => Ok(name.clone()),
        None => crate::db::installation_id(db)
            .await
            .map_err(|e| crate::clusters::Error::Invalid(format!("this installation's id: {e}"))),
    }
}

/// The cluster routes for `app()`; none when clusters are not set up (tests of other parts).
pub fn routes(clusters: Option<&ClustersState>) -> Router<AppState> {
    match clusters {
        Some(state) => super::routes::router::<ClustersState>().with_state(state.clone()),
        None => Router::new(),
    }
}

/// For `/readyz`: `Err` with a message when clusters cannot be created now.
pub async fn readiness(clusters: Option<&ClustersState>) -> Result<(), String> {
    match clusters {
        Some(state) => state.manager.health().await.map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// `hardlab clusters ...`: works on the same database and Docker host as the server.
pub async fn cli(
    command: super::cli::ClustersCommand,
    config: &crate::config::Config,
    args: &ClusterArgs,
) -> crate::Result<()> {
    let db = crate::db::connect(&config.database_url).await?;
    let instance = instance_name(&db, args)
        .await
        .map_err(|e| crate::Error::Cluster(e.to_string()))?;
    let provider = connect(args, false)
        .await
        .map_err(|e| crate::Error::Cluster(e.to_string()))?
        .with_instance(&instance);
    let mut manager_config = args.manager_config(&Labs::from_labs(Vec::new()));
    // The same key as the server's, so both open the same stored credentials.
    manager_config.sealer = Arc::new(Sealer::new(config.secret_key_file.clone()));
    let manager = ClusterManager::new(db, Arc::new(provider), manager_config);
    match super::cli::run(command, &manager).await {
        Ok(0) => Ok(()),
        // `exec` passes the command's exit code on, like `docker exec`.
        Ok(code) => std::process::exit(code),
        Err(error) => Err(crate::Error::Cluster(error.to_string())),
    }
}
