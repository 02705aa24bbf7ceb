//! Clusters and the terminal from the settings: the engine to drive, this installation's label,
//! the manager's limits, start-up (adoption, background reaping and pool refill) and the admin CLI.
//! Who is signed in and which labs exist come in through [`Site`], which the web app provides.

use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyPool;

use super::docker::DockerShells;
use super::kubernetes::KubernetesProvider;
use super::lifecycle::LabClusterRequest;
use super::routes::{ClustersState, Site};
use super::{ClusterManager, ClusterProvider, DockerProvider, ManagerConfig};
use crate::config::ClusterSettings;
use crate::config::ProviderKind;
use crate::db::seal::Sealer;
use crate::labs::Labs;
use crate::terminal::{TerminalConfig, TerminalHub};

/// The manager's limits and warm pool from the settings.
pub fn manager_config(
    settings: &ClusterSettings,
    labs: &Labs,
    sealer: Arc<Sealer>,
) -> ManagerConfig {
    let pool_labs = if settings.pool_size == 0 {
        Vec::new()
    } else {
        labs.all()
            .iter()
            .filter(|lab| settings.pool_labs.is_empty() || settings.pool_labs.contains(&lab.id))
            .map(|lab| lab_request(lab))
            .collect()
    };
    ManagerConfig {
        image: settings.node_image.clone(),
        privileged: settings.node_unprivileged.then_some(false),
        ttl: Duration::from_secs(settings.cluster_ttl_minutes * 60),
        idle_timeout: Duration::from_secs(settings.cluster_idle_minutes * 60),
        max_clusters: settings.max_clusters,
        memory_bytes: (settings.node_memory_mb > 0).then_some(settings.node_memory_mb << 20),
        pids_limit: (settings.node_pids_limit > 0).then_some(settings.node_pids_limit),
        // Whole billionths of a CPU; the cast saturates and the setting is a small number.
        #[allow(clippy::cast_possible_truncation)]
        nano_cpus: (settings.node_cpus > 0.0).then_some((settings.node_cpus * 1e9) as i64),
        pool_size: settings.pool_size,
        pool_labs,
        max_clusters_per_user: settings.max_clusters_per_user,
        max_lifetime: Duration::from_secs(settings.cluster_max_hours * 60 * 60),
        sealer,
        holder: settings
            .server_id
            .clone()
            .unwrap_or_else(super::lifecycle::default_holder),
        lease: Duration::from_secs(settings.cluster_lease_seconds.max(1)),
        // Reaping and taking over follow the lease: a stopped server's clusters are someone
        // else's within about one lease period.
        reap_interval: Duration::from_secs(15).min(Duration::from_millis(
            settings.cluster_lease_seconds.max(1) * 500,
        )),
        ..ManagerConfig::default()
    }
}

/// What a lab asks of a new cluster.
pub fn lab_request(lab: &crate::labs::Lab) -> LabClusterRequest {
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

/// Connects to Docker, adopts the clusters a previous run left, and starts reaping and the pool.
/// A Docker engine that is down does not stop the server: clusters fail with a clear message and
/// `/readyz` reports it until the engine is back.
pub async fn start(
    db: AnyPool,
    labs: &Labs,
    args: &ClusterSettings,
    sealer: Arc<Sealer>,
    site: Arc<dyn Site>,
) -> crate::clusters::Result<ClustersState> {
    let instance = instance_name(&db, args).await?;
    let terminal_config = TerminalConfig {
        grace: Duration::from_secs(args.terminal_grace_seconds),
        persistent_shells: args.terminal_persistent_shells,
        ..TerminalConfig::default()
    };
    let (provider, terminals): (Arc<dyn ClusterProvider>, _) = match args.provider {
        ProviderKind::Docker => {
            tracing::info!(%instance, "clusters on the Docker engine carry this installation's label");
            let provider = connect(args, true).await?.with_instance(&instance);
            let terminals = TerminalHub::new(
                DockerShells::new(provider.docker().clone()),
                terminal_config,
            );
            (Arc::new(provider), terminals)
        }
        ProviderKind::Kubernetes => {
            tracing::info!(%instance, "clusters are pods on the host cluster, one namespace each");
            let provider = Arc::new(
                KubernetesProvider::connect(args.host.clone())
                    .await?
                    .with_instance(&instance),
            );
            let terminals = TerminalHub::new(provider.clone(), terminal_config);
            (provider, terminals)
        }
    };
    terminals.spawn_sweeper();
    let manager = ClusterManager::new(db, provider, manager_config(args, labs, sealer));
    manager.notify_site(Arc::clone(&site));
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
        site,
    })
}

/// The engine the settings name: a remote one over TLS, else the local one (`lenient`: a local
/// engine that does not answer yet is not an error, `/readyz` says so until it does).
pub async fn connect(
    args: &ClusterSettings,
    lenient: bool,
) -> crate::clusters::Result<DockerProvider> {
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
    let provider = provider
        .with_egress(args.node_egress)
        .with_registry_mirror(args.registry_mirror.clone())
        .with_image_source(super::node_image::NodeImageSource::discover(
            args.node_image_source.as_deref(),
        ));
    Ok(match args.node_publish_ip {
        Some(ip) => provider.publishing_on(ip),
        None => provider,
    })
}

/// The label value of this installation: the explicit setting, else the id in its database.
pub async fn instance_name(
    db: &AnyPool,
    args: &ClusterSettings,
) -> crate::clusters::Result<String> {
    match &args.docker_instance {
        Some(name) => Ok(name.clone()),
        None => crate::db::installation_id(db)
            .await
            .map_err(|e| crate::clusters::Error::Invalid(format!("this installation's id: {e}"))),
    }
}

/// `hardlab clusters ...`: works on the same database and Docker host as the server.
pub async fn cli(
    command: super::cli::ClustersCommand,
    config: &crate::config::Config,
) -> crate::Result<()> {
    let manager = cli_manager(config).await?;
    match super::cli::run(command, &manager).await {
        Ok(0) => Ok(()),
        // `exec` passes the command's exit code on, like `docker exec`.
        Ok(code) => std::process::exit(code),
        Err(error) => Err(error.into()),
    }
}

/// A manager of this installation's clusters for an admin command (no background work): the
/// settings' provider, the server's key, the database.
pub async fn cli_manager(config: &crate::config::Config) -> crate::Result<Arc<ClusterManager>> {
    let args = config.clusters.clone().unwrap_or_default();
    let args = &args;
    let db = crate::db::connect(&config.database_url).await?;
    let instance = instance_name(&db, args).await?;
    let provider: Arc<dyn ClusterProvider> = match args.provider {
        ProviderKind::Docker => Arc::new(connect(args, false).await?.with_instance(&instance)),
        ProviderKind::Kubernetes => Arc::new(
            KubernetesProvider::connect(args.host.clone())
                .await?
                .with_instance(&instance),
        ),
    };
    // The same key as the server's, so both open the same stored credentials.
    let sealer = Arc::new(Sealer::new(config.secret_key_file.clone()));
    Ok(ClusterManager::new(
        db,
        provider,
        manager_config(args, &Labs::from_labs(Vec::new()), sealer),
    ))
}
