//! The Docker provider: one labelled bridge network, one `/var` volume and one control-plane node
//! container per cluster, created through the Docker API the way kind runs them
//! (`providers/docker/provision.go`), plus a named volume and a memory limit as minikube does.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ExecConfig, HostConfig, HostConfigCgroupnsModeEnum, NetworkCreateRequest,
    PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder, ResizeExecOptions,
};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use hardlab_grader::target::NodeAccess;
use hardlab_grader::target::docker::{DockerNode, NodeLimits};

use super::bootstrap;
use super::credentials::{ClusterAddress, ClusterCredentials};
use super::{
    Bootstrap, ClusterProvider, ClusterSpec, CreatedCluster, Error, ExecOutput, NodeInfo,
    Ownership, Phase, PhaseSink, Result, labels, network_name, node_container_name, volume_name,
};
use crate::terminal::{self, SpawnedShell, TerminalError};

pub const API_SERVER_PORT: &str = "6443/tcp";
/// etcd's client port, published so the grader reads etcd with the certificates captured at
/// creation instead of running `etcdctl` inside a node the learner controls.
pub const ETCD_PORT: &str = "2379/tcp";
pub const DEFAULT_INSTANCE: &str = "hardlab";
/// A command's output kept at most (setup scripts, the admin CLI's exec); past it the command is
/// reported as failed instead of filling the server's memory.
pub const MAX_EXEC_OUTPUT: usize = 16 << 20;

/// Turns a bollard error into ours: no answer at all means the engine is unreachable.
pub(crate) fn docker_error(action: &str) -> impl Fn(bollard::errors::Error) -> Error + '_ {
    move |error| match error {
        bollard::errors::Error::DockerResponseServerError { message, .. } => Error::Docker {
            action: action.to_owned(),
            message,
        },
        other => Error::DockerUnreachable(other.to_string()),
    }
}

fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The labels on everything created for one cluster by the server instance `instance`.
pub fn resource_labels(instance: &str, spec: &ClusterSpec) -> HashMap<String, String> {
    let ownership = &spec.ownership;
    HashMap::from([
        (labels::MANAGED.to_owned(), instance.to_owned()),
        (labels::CLUSTER.to_owned(), spec.name.clone()),
        (labels::OWNER.to_owned(), ownership.owner.clone()),
        (labels::LAB.to_owned(), ownership.lab.clone()),
        (labels::SESSION.to_owned(), ownership.session.clone()),
        (labels::EXPIRY.to_owned(), ownership.expiry_ms.to_string()),
    ])
}

/// kind's network, one per cluster so clusters cannot reach each other (Docker isolates bridge
/// networks from one another). Without `egress` nothing is masqueraded: the node reaches no
/// address beyond its host (no image pulls, no cloud metadata service).
pub fn network_request(instance: &str, spec: &ClusterSpec, egress: bool) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: network_name(&spec.name),
        driver: Some("bridge".to_owned()),
        options: Some(HashMap::from([(
            "com.docker.network.bridge.enable_ip_masquerade".to_owned(),
            egress.to_string(),
        )])),
        labels: Some(resource_labels(instance, spec)),
        ..Default::default()
    }
}

pub fn volume_request(instance: &str, spec: &ClusterSpec) -> VolumeCreateRequest {
    VolumeCreateRequest {
        name: Some(volume_name(&spec.name)),
        labels: Some(resource_labels(instance, spec)),
        ..Default::default()
    }
}

/// The node container: kind's `docker run` arguments, with the API server published on a port
/// Docker picks on 127.0.0.1, a named `/var` volume (so it can be found and removed by label) and
/// a memory limit. Without privileges the security options stay at Docker's defaults.
pub fn container_body(instance: &str, spec: &ClusterSpec) -> ContainerCreateBody {
    container_body_on(instance, spec, "127.0.0.1")
}

/// [`container_body`] with the ports published on `publish_ip` of the engine's host.
pub fn container_body_on(
    instance: &str,
    spec: &ClusterSpec,
    publish_ip: &str,
) -> ContainerCreateBody {
    let node = node_container_name(&spec.name);
    let mut container_labels = resource_labels(instance, spec);
    container_labels.insert(labels::ROLE.to_owned(), "control-plane".to_owned());

    let mut env = vec!["KUBECONFIG=/etc/kubernetes/admin.conf".to_owned()];
    if spec.bootstrap == Bootstrap::SelfStarting && !spec.apiserver_flags.is_empty() {
        let flags: Vec<String> = spec
            .apiserver_flags
            .iter()
            .map(|(name, value)| format!("--{name}={value}"))
            .collect();
        env.push(format!("HARDLAB_APISERVER_FLAGS={}", flags.join("\n")));
    }

    let mut binds = vec![format!("{}:/var", volume_name(&spec.name))];
    if spec.bootstrap == Bootstrap::Kind {
        binds.push("/lib/modules:/lib/modules:ro".to_owned());
    }
    for mount in &spec.apiserver_mounts {
        binds.push(format!(
            "{}:{}{}",
            mount.host_path,
            mount.node_path,
            if mount.read_only { ":ro" } else { "" }
        ));
    }
    let security_opt = spec.privileged.then(|| {
        vec![
            "seccomp=unconfined".to_owned(),
            "apparmor=unconfined".to_owned(),
        ]
    });

    ContainerCreateBody {
        hostname: Some(node),
        image: Some(spec.image.clone()),
        tty: Some(true),
        env: Some(env),
        labels: Some(container_labels),
        exposed_ports: Some(vec![API_SERVER_PORT.to_owned(), ETCD_PORT.to_owned()]),
        host_config: Some(HostConfig {
            privileged: Some(spec.privileged),
            security_opt,
            tmpfs: Some(HashMap::from([
                ("/tmp".to_owned(), String::new()),
                ("/run".to_owned(), String::new()),
            ])),
            binds: Some(binds),
            network_mode: Some(network_name(&spec.name)),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: Some(1),
            }),
            init: Some(false),
            cgroupns_mode: Some(HostConfigCgroupnsModeEnum::PRIVATE),
            port_bindings: Some(HashMap::from([API_SERVER_PORT, ETCD_PORT].map(|port| {
                (
                    port.to_owned(),
                    Some(vec![PortBinding {
                        host_ip: Some(publish_ip.to_owned()),
                        host_port: Some(String::new()),
                    }]),
                )
            }))),
            memory: spec.memory_bytes,
            memory_swap: spec.memory_bytes,
            pids_limit: spec.pids_limit,
            nano_cpus: spec.nano_cpus,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ownership_from(container_labels: &HashMap<String, String>) -> Ownership {
    let get = |key: &str| container_labels.get(key).cloned().unwrap_or_default();
    Ownership {
        owner: get(labels::OWNER),
        lab: get(labels::LAB),
        session: get(labels::SESSION),
        expiry_ms: get(labels::EXPIRY).parse().unwrap_or(0),
    }
}

fn managed_filter(instance: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        vec![format!("{}={instance}", labels::MANAGED)],
    )])
}

/// Clusters through the Docker Engine API.
#[derive(Clone)]
pub struct DockerProvider {
    docker: Docker,
    /// The value of `io.hardlab.managed` on everything this provider creates: servers sharing a
    /// Docker host with different instance names leave each other's clusters alone.
    instance: String,
    /// How long a new cluster may take to answer `/readyz`.
    pub ready_timeout: Duration,
    /// Where node ports are published on the engine's host, and the host the server dials for
    /// them (both 127.0.0.1 for the local engine).
    pub publish_ip: String,
    pub dial_host: String,
    /// What the grader reads of a node at most, and how long it waits.
    pub node_limits: NodeLimits,
    /// Whether nodes reach addresses beyond their host (image pulls need it).
    pub egress: bool,
    /// A registry the nodes' containerd asks first for Docker Hub images.
    pub registry_mirror: Option<String>,
    /// Where a missing node image is built from; `None`: a missing image is an error.
    pub image_source: Option<super::node_image::NodeImageSource>,
    /// One build at a time: Starts that arrive meanwhile wait for it.
    image_build: Arc<tokio::sync::Mutex<()>>,
}

impl DockerProvider {
    /// Connects as the docker CLI would (`DOCKER_HOST` or the local socket) and settles on the
    /// engine's API version (1.41 for Debian's Docker 20.10).
    pub async fn connect() -> Result<Self> {
        let docker = Docker::connect_with_local_defaults().map_err(docker_error("connecting"))?;
        Self::negotiated(docker).await
    }

    /// Like `connect`, but an engine that does not answer yet is not an error: the client then
    /// speaks API 1.41 (Docker 20.10; newer engines accept it) and `health()` reports the engine
    /// as unreachable until it answers.
    pub async fn connect_lenient() -> Result<Self> {
        match Self::connect().await {
            Ok(provider) => Ok(provider),
            Err(error) => {
                tracing::warn!(%error, "the Docker engine does not answer; clusters are unavailable until it does");
                let socket = std::env::var("DOCKER_HOST")
                    .ok()
                    .filter(|host| host.starts_with("unix://"))
                    .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
                let version = bollard::ClientVersion {
                    major_version: 1,
                    minor_version: 41,
                };
                let docker = Docker::connect_with_unix(&socket, 30, &version)
                    .map_err(docker_error("connecting"))?;
                Ok(DockerProvider::over(docker))
            }
        }
    }

    /// Connects to the engine at a unix socket path.
    pub async fn connect_to_socket(path: &str) -> Result<Self> {
        let docker = Docker::connect_with_unix(path, 30, bollard::API_DEFAULT_VERSION)
            .map_err(docker_error("connecting"))?;
        Self::negotiated(docker).await
    }

    /// A remote engine at `tcp://HOST:PORT` over TLS: the engine's certificate must chain to `ca`,
    /// and the server proves itself with `cert` and `key` (the engine's `--tlsverify`).
    pub async fn connect_tls(
        address: &str,
        ca: &std::path::Path,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<Self> {
        for (flag, path) in [("CA", ca), ("certificate", cert), ("key", key)] {
            if !path.is_file() {
                return Err(Error::Invalid(format!(
                    "the Docker TLS {flag} {} does not exist",
                    path.display()
                )));
            }
        }
        let docker =
            Docker::connect_with_ssl(address, key, cert, ca, 30, bollard::API_DEFAULT_VERSION)
                .map_err(docker_error("connecting over TLS"))?;
        Self::negotiated(docker).await
    }

    /// Whether new nodes reach addresses beyond their host.
    pub fn with_egress(mut self, egress: bool) -> Self {
        self.egress = egress;
        self
    }

    /// Builds a missing node image from this checkout on first need.
    pub fn with_image_source(mut self, source: Option<super::node_image::NodeImageSource>) -> Self {
        self.image_source = source;
        self
    }

    /// Points the nodes' containerd at a registry mirror for Docker Hub images.
    pub fn with_registry_mirror(mut self, mirror: Option<String>) -> Self {
        self.registry_mirror = mirror;
        self
    }

    /// Publishes node ports on `ip` of the engine's host and dials them there.
    pub fn publishing_on(mut self, ip: std::net::IpAddr) -> Self {
        self.publish_ip = ip.to_string();
        self.dial_host = ip.to_string();
        self
    }

    async fn negotiated(docker: Docker) -> Result<Self> {
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| Error::DockerUnreachable(e.to_string()))?;
        Ok(DockerProvider::over(docker))
    }

    fn over(docker: Docker) -> Self {
        DockerProvider {
            docker,
            instance: DEFAULT_INSTANCE.to_owned(),
            ready_timeout: Duration::from_secs(180),
            publish_ip: "127.0.0.1".to_owned(),
            dial_host: "127.0.0.1".to_owned(),
            node_limits: NodeLimits::default(),
            egress: true,
            registry_mirror: None,
            image_source: None,
            image_build: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The same engine, managing only the clusters labelled with `instance`.
    pub fn with_instance(mut self, instance: &str) -> Self {
        instance.clone_into(&mut self.instance);
        self
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    async fn image_labels(&self, image: &str) -> Result<(Bootstrap, bool)> {
        let inspected = self.docker.inspect_image(image).await.map_err(|e| {
            if is_not_found(&e) {
                Error::ImageMissing(image.to_owned())
            } else {
                docker_error("inspecting the image")(e)
            }
        })?;
        let image_labels = inspected.config.and_then(|c| c.labels).unwrap_or_default();
        let bootstrap = Bootstrap::from_label(
            image_labels
                .get(labels::IMAGE_BOOTSTRAP)
                .map(String::as_str),
        );
        let privileged = image_labels
            .get(labels::IMAGE_PRIVILEGED)
            .map(String::as_str)
            != Some("false");
        Ok((bootstrap, privileged))
    }

    /// Makes sure the image is present: kind inspects it and pulls it when missing.
    async fn image_present(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(docker_error("inspecting the image")(e)),
        }
    }

    async fn pull(&self, image: &str) -> std::result::Result<(), String> {
        let options = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let mut pull = self.docker.create_image(Some(options), None, None);
        while let Some(step) = pull.next().await {
            step.map_err(|error| error.to_string())?;
        }
        Ok(())
    }

    async fn ensure_image(&self, image: &str, progress: PhaseSink<'_>) -> Result<()> {
        if self.image_present(image).await? {
            return Ok(());
        }
        let pulled = self.pull(image).await;
        let Err(error) = pulled else { return Ok(()) };
        tracing::warn!(image, %error, "pulling the node image failed");
        let Some(source) = &self.image_source else {
            return Err(Error::ImageMissing(image.to_owned()));
        };
        let _building = self.image_build.lock().await;
        // Built by a Start that held the lock before this one.
        if self.image_present(image).await? {
            return Ok(());
        }
        progress(Phase::BuildingNodeImage);
        tracing::info!(image, source = %source.dir.display(), "building the node image from the checkout");
        self.build_node_image(source, image)
            .await
            .map_err(|message| {
                tracing::error!(image, %message, "building the node image failed");
                Error::ImageBuild {
                    image: image.to_owned(),
                    message,
                }
            })?;
        tracing::info!(image, "the node image is built");
        Ok(())
    }

    /// `docker/node/build.sh` through the API: the lab images pulled and saved, the context
    /// written to a temporary file and streamed to `/build`.
    async fn build_node_image(
        &self,
        source: &super::node_image::NodeImageSource,
        image: &str,
    ) -> std::result::Result<(), String> {
        let work = tempfile::tempdir().map_err(|e| format!("a temporary folder: {e}"))?;
        let mut saved = Vec::new();
        for lab_image in source
            .lab_images()
            .map_err(|e| format!("{}: {e}", super::node_image::IMAGE_LIST))?
        {
            if !self
                .image_present(&lab_image)
                .await
                .map_err(|e| e.to_string())?
            {
                tracing::info!(image = %lab_image, "pulling a lab image for the node image");
                self.pull(&lab_image)
                    .await
                    .map_err(|e| format!("pulling the lab image {lab_image}: {e}"))?;
            }
            let path = work.path().join(format!("{}.tar", saved.len()));
            let mut file = tokio::fs::File::create(&path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let mut export = self.docker.export_image(&lab_image);
            while let Some(chunk) = export.next().await {
                let chunk = chunk.map_err(|e| format!("saving {lab_image}: {e}"))?;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            file.flush()
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            saved.push((lab_image, path));
        }
        let context = work.path().join("context.tar");
        {
            let source = source.clone();
            let context = context.clone();
            tokio::task::spawn_blocking(move || {
                let file = std::fs::File::create(&context)?;
                let mut out = std::io::BufWriter::new(file);
                source.write_context(&mut out, &saved)?;
                std::io::Write::flush(&mut out)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("writing the build context: {e}"))?;
        }
        let file = tokio::fs::File::open(&context)
            .await
            .map_err(|e| format!("{}: {e}", context.display()))?;
        let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(file));
        let options = bollard::query_parameters::BuildImageOptionsBuilder::default()
            .t(image)
            .dockerfile(super::node_image::DOCKERFILE)
            .rm(true)
            .build();
        let mut build = self.docker.build_image(options, None, Some(body));
        let mut last = String::new();
        while let Some(step) = build.next().await {
            let info = step.map_err(|e| format!("{e} (last output: {last})"))?;
            if let Some(detail) = info.error_detail.and_then(|detail| detail.message) {
                return Err(detail);
            }
            if let Some(text) = info.stream {
                let text = text.trim();
                if !text.is_empty() {
                    tracing::info!(image, "{text}");
                    last = text.to_owned();
                }
            }
        }
        Ok(())
    }

    /// Runs a command in a container; `privileged` as kind's `docker exec --privileged`.
    pub async fn exec_in(
        &self,
        container: &str,
        argv: &[String],
        stdin: Option<Vec<u8>>,
        privileged: bool,
    ) -> Result<ExecOutput> {
        let created = self
            .docker
            .create_exec(
                container,
                ExecConfig {
                    attach_stdin: Some(stdin.is_some()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    privileged: Some(privileged),
                    cmd: Some(argv.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    Error::NotFound(container.to_owned())
                } else {
                    docker_error("running a command")(e)
                }
            })?;
        let mut result = ExecOutput::default();
        match self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(docker_error("running a command"))?
        {
            StartExecResults::Attached {
                mut output,
                mut input,
            } => {
                // Fed from a task so a command that talks before it has read all of stdin cannot block us.
                let writer = tokio::spawn(async move {
                    if let Some(bytes) = stdin {
                        let _ = input.write_all(&bytes).await;
                    }
                    let _ = input.shutdown().await;
                });
                while let Some(chunk) = output.next().await {
                    match chunk.map_err(docker_error("reading a command's output"))? {
                        LogOutput::StdErr { message } => result.stderr.extend_from_slice(&message),
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            result.stdout.extend_from_slice(&message);
                        }
                        LogOutput::StdIn { .. } => {}
                    }
                    if result.stdout.len() + result.stderr.len() > MAX_EXEC_OUTPUT {
                        writer.abort();
                        return Err(Error::OutputTooLarge {
                            command: argv.first().cloned().unwrap_or_default(),
                            limit: MAX_EXEC_OUTPUT,
                        });
                    }
                }
                writer.abort();
            }
            StartExecResults::Detached => {}
        }
        let inspected = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(docker_error("inspecting a command"))?;
        result.exit_code = inspected.exit_code.unwrap_or(-1);
        Ok(result)
    }

    async fn inspect_node(&self, cluster: &str) -> Result<NodeInfo> {
        let container = node_container_name(cluster);
        let inspected = self
            .docker
            .inspect_container(&container, None)
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    Error::NotFound(cluster.to_owned())
                } else {
                    docker_error("inspecting the node")(e)
                }
            })?;
        let container_labels = inspected
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let published = |port: &str| -> Option<u16> {
            inspected
                .network_settings
                .as_ref()
                .and_then(|n| n.ports.as_ref())
                .and_then(|ports| ports.get(port).cloned().flatten())
                .and_then(|bindings| bindings.into_iter().find_map(|b| b.host_port?.parse().ok()))
        };
        let api_port = published(API_SERVER_PORT);
        let etcd_port = published(ETCD_PORT);
        Ok(NodeInfo {
            cluster: cluster.to_owned(),
            container,
            running: inspected
                .state
                .as_ref()
                .and_then(|s| s.running)
                .unwrap_or(false),
            api_port,
            etcd_port,
            ownership: ownership_from(&container_labels),
            exit_code: inspected.state.as_ref().and_then(|s| s.exit_code),
        })
    }

    /// Reads the certificates the server will use for this cluster from its node. Called while
    /// the cluster is being created, before any learner has a shell in it; later reads would take
    /// whatever the learner put there.
    pub async fn capture_credentials(&self, cluster: &str) -> Result<ClusterCredentials> {
        let node = DockerNode::with_client(
            self.docker.clone(),
            node_container_name(cluster),
            self.node_limits,
        );
        ClusterCredentials::capture(&node).await
    }

    async fn node_ip(&self, cluster: &str) -> Result<String> {
        let inspected = self
            .docker
            .inspect_container(&node_container_name(cluster), None)
            .await
            .map_err(docker_error("inspecting the node"))?;
        inspected
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|networks| networks.get(&network_name(cluster)).cloned())
            .and_then(|endpoint| endpoint.ip_address)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| Error::NotReady("the node has no address on its network".to_owned()))
    }

    /// kind waits for systemd in the node to reach multi-user before it runs anything.
    async fn wait_for_systemd(&self, container: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let options = LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .build();
            let mut logs = self.docker.logs(container, Some(options));
            let mut text = String::new();
            while let Some(chunk) = logs.next().await {
                if let Ok(chunk) = chunk {
                    text.push_str(&chunk.to_string());
                }
            }
            if text.contains("detected cgroup v1")
                || (text.contains("Reached target") && text.contains("Multi-User System"))
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(Error::NotReady(
            "systemd in the node did not reach multi-user within 30 s".to_owned(),
        ))
    }

    async fn bootstrap_kind(
        &self,
        spec: &ClusterSpec,
        container: &str,
        progress: PhaseSink<'_>,
    ) -> Result<()> {
        self.wait_for_systemd(container).await?;
        let node_ip = self.node_ip(&spec.name).await?;
        let runner = DockerRunner {
            provider: self,
            container,
            privileged: spec.privileged,
        };
        let identity = bootstrap::NodeIdentity {
            node_name: container,
            node_ip: &node_ip,
            extra_sans: &[],
            registry_mirror: self.registry_mirror.as_deref(),
        };
        bootstrap::kind(&runner, spec, &identity, progress).await
    }

    async fn create_inner(
        &self,
        spec: &ClusterSpec,
        progress: PhaseSink<'_>,
    ) -> Result<CreatedCluster> {
        let container = node_container_name(&spec.name);
        self.docker
            .create_network(network_request(&self.instance, spec, self.egress))
            .await
            .map_err(docker_error("creating the network"))?;
        self.docker
            .create_volume(volume_request(&self.instance, spec))
            .await
            .map_err(docker_error("creating the /var volume"))?;
        let options = CreateContainerOptionsBuilder::default()
            .name(&container)
            .build();
        self.docker
            .create_container(
                Some(options),
                container_body_on(&self.instance, spec, &self.publish_ip),
            )
            .await
            .map_err(docker_error("creating the node container"))?;
        self.docker
            .start_container(&container, None)
            .await
            .map_err(docker_error("starting the node container"))?;

        match spec.bootstrap {
            Bootstrap::Kind => self.bootstrap_kind(spec, &container, progress).await?,
            Bootstrap::SelfStarting => progress(Phase::StartingControlPlane),
        }
        progress(Phase::WaitingForApiServer);
        let runner = DockerRunner {
            provider: self,
            container: &container,
            privileged: false,
        };
        bootstrap::wait_for_api_server(&runner, self.ready_timeout).await?;
        progress(Phase::ExportingKubeconfig);
        let credentials = self.capture_credentials(&spec.name).await?;
        let node = self.inspect_node(&spec.name).await?;
        Ok(CreatedCluster { node, credentials })
    }
}

/// `docker exec` in one node, for the shared bootstrap sequence.
struct DockerRunner<'a> {
    provider: &'a DockerProvider,
    container: &'a str,
    privileged: bool,
}

#[async_trait]
impl bootstrap::NodeRunner for DockerRunner<'_> {
    async fn run(&self, argv: &[String], stdin: Option<Vec<u8>>) -> Result<ExecOutput> {
        self.provider
            .exec_in(self.container, argv, stdin, self.privileged)
            .await
    }
}

#[async_trait]
impl ClusterProvider for DockerProvider {
    async fn remove_strays(&self, keep: &HashSet<String>) -> Result<Vec<String>> {
        let mut strays: HashSet<String> = HashSet::new();
        for node in self.list_own().await? {
            if !keep.contains(&node.cluster) {
                strays.insert(node.cluster);
            }
        }
        let networks = self
            .docker
            .list_networks(Some(
                ListNetworksOptionsBuilder::default()
                    .filters(&managed_filter(&self.instance))
                    .build(),
            ))
            .await
            .map_err(docker_error("listing networks"))?;
        for network in networks {
            if let Some(cluster) = network.labels.and_then(|l| l.get(labels::CLUSTER).cloned())
                && !keep.contains(&cluster)
            {
                strays.insert(cluster);
            }
        }
        let volumes = self
            .docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::default()
                    .filters(&managed_filter(&self.instance))
                    .build(),
            ))
            .await
            .map_err(docker_error("listing volumes"))?;
        for volume in volumes.volumes.unwrap_or_default() {
            if let Some(cluster) = volume.labels.get(labels::CLUSTER)
                && !keep.contains(cluster)
            {
                strays.insert(cluster.clone());
            }
        }
        let mut removed: Vec<String> = strays.into_iter().collect();
        removed.sort();
        for cluster in &removed {
            self.delete(cluster).await?;
        }
        Ok(removed)
    }

    async fn create(&self, spec: &ClusterSpec, progress: PhaseSink<'_>) -> Result<CreatedCluster> {
        super::validate_name(&spec.name)?;
        progress(Phase::PreparingNode);
        self.health().await?;
        match self
            .docker
            .inspect_container(&node_container_name(&spec.name), None)
            .await
        {
            Ok(_) => return Err(Error::AlreadyExists(spec.name.clone())),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(docker_error("looking for the node")(e)),
        }
        self.ensure_image(&spec.image, progress).await?;
        match self.create_inner(spec, progress).await {
            Ok(node) => Ok(node),
            Err(error) => {
                tracing::warn!(cluster = %spec.name, %error, "cluster creation failed; removing what was created");
                if let Err(cleanup) = self.delete(&spec.name).await {
                    tracing::error!(cluster = %spec.name, error = %cleanup, "could not remove a failed cluster");
                }
                Err(error)
            }
        }
    }

    async fn delete(&self, cluster: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self
            .docker
            .remove_container(&node_container_name(cluster), Some(options))
            .await
        {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(docker_error("removing the node container")(e)),
        }
        let options = RemoveVolumeOptionsBuilder::default().force(true).build();
        match self
            .docker
            .remove_volume(&volume_name(cluster), Some(options))
            .await
        {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(docker_error("removing the /var volume")(e)),
        }
        // The engine may still be detaching the container that just went; ask again briefly.
        let mut attempts = 0;
        loop {
            match self.docker.remove_network(&network_name(cluster)).await {
                Ok(()) => return Ok(()),
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(_) if attempts < 5 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(200 * attempts)).await;
                }
                Err(e) => return Err(docker_error("removing the network")(e)),
            }
        }
    }

    async fn list_own(&self) -> Result<Vec<NodeInfo>> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&managed_filter(&self.instance))
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(docker_error("listing containers"))?;
        let mut nodes = Vec::new();
        for summary in containers {
            let container_labels = summary.labels.unwrap_or_default();
            let Some(cluster) = container_labels.get(labels::CLUSTER).cloned() else {
                continue;
            };
            let ports = summary.ports.unwrap_or_default();
            let published = |private: u16| {
                ports
                    .iter()
                    .find(|p| p.private_port == private)
                    .and_then(|p| p.public_port)
            };
            let api_port = published(6443);
            let etcd_port = published(2379);
            nodes.push(NodeInfo {
                container: node_container_name(&cluster),
                cluster,
                running: summary
                    .state
                    .map(|s| s.to_string() == "running")
                    .unwrap_or(false),
                api_port,
                etcd_port,
                ownership: ownership_from(&container_labels),
                exit_code: None,
            });
        }
        nodes.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        Ok(nodes)
    }

    async fn exec(
        &self,
        cluster: &str,
        command: &[String],
        stdin: Option<Vec<u8>>,
    ) -> Result<ExecOutput> {
        self.exec_in(&node_container_name(cluster), command, stdin, false)
            .await
    }

    async fn address(&self, cluster: &str) -> Result<ClusterAddress> {
        let node = self.inspect_node(cluster).await?;
        if !node.running {
            return Err(Error::NotReady(format!(
                "the node container of {cluster} is not running"
            )));
        }
        let api_port = node
            .api_port
            .ok_or_else(|| Error::Kubeconfig("the API server port is not published".to_owned()))?;
        Ok(ClusterAddress {
            host: self.dial_host.clone(),
            api_port,
            etcd_port: node.etcd_port,
        })
    }

    fn node_files(&self, cluster: &str) -> Arc<dyn NodeAccess> {
        Arc::new(DockerNode::with_client(
            self.docker.clone(),
            node_container_name(cluster),
            self.node_limits,
        ))
    }

    async fn inspect(&self, cluster: &str) -> Result<NodeInfo> {
        self.inspect_node(cluster).await
    }

    async fn image_defaults(&self, image: &str) -> Result<(Bootstrap, bool)> {
        self.image_labels(image).await
    }

    async fn health(&self) -> Result<()> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| Error::DockerUnreachable(e.to_string()))
    }
}

/// Shells through the Docker engine: `docker exec -it` in the node container.
pub struct DockerShells {
    docker: Docker,
}

impl DockerShells {
    pub fn new(docker: Docker) -> Arc<Self> {
        Arc::new(DockerShells { docker })
    }
}

impl DockerShells {
    /// `docker exec` with a TTY in the cluster's node container, attached.
    async fn start(&self, cluster: &str, argv: Vec<String>) -> Result<SpawnedShell> {
        let container = node_container_name(cluster);

        let created = self
            .docker
            .create_exec(
                &container,
                ExecConfig {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(true),
                    env: Some(vec!["TERM=xterm-256color".to_owned()]),
                    cmd: Some(argv),
                    working_dir: Some("/root".to_owned()),
                    ..Default::default()
                },
            )
            .await
            .map_err(docker_error("opening a terminal"))?;
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: true,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(docker_error("opening a terminal"))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(Error::Invalid(
                "Docker started the shell detached".to_owned(),
            ));
        };
        let output = output
            .take_while(|chunk| std::future::ready(chunk.is_ok()))
            .filter_map(|chunk| std::future::ready(chunk.ok().map(|chunk| chunk.into_bytes())))
            .boxed();
        Ok(SpawnedShell {
            input,
            output,
            resizer: Box::new(DockerResizer {
                docker: self.docker.clone(),
                exec_id: created.id,
            }),
        })
    }
}

struct DockerResizer {
    docker: Docker,
    exec_id: String,
}

#[async_trait]
impl terminal::Resizer for DockerResizer {
    async fn resize(&self, cols: u16, rows: u16) {
        let options = ResizeExecOptions {
            h: i32::from(rows),
            w: i32::from(cols),
        };
        if let Err(error) = self.docker.resize_exec(&self.exec_id, options).await {
            tracing::debug!(%error, "resizing a terminal failed");
        }
    }
}

#[async_trait]
impl terminal::ShellBackend for DockerShells {
    async fn spawn(&self, cluster: &str, argv: Vec<String>) -> terminal::Result<SpawnedShell> {
        self.start(cluster, argv)
            .await
            .map_err(|error| TerminalError::Start(Box::new(error)))
    }

    async fn run_quietly(&self, cluster: &str, argv: Vec<String>) {
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(argv),
            ..Default::default()
        };
        let container = node_container_name(cluster);
        let Ok(created) = self.docker.create_exec(&container, config).await else {
            return;
        };
        if let Ok(StartExecResults::Attached { mut output, .. }) = self
            .docker
            .start_exec(&created.id, None::<StartExecOptions>)
            .await
        {
            while let Some(Ok(_)) = output.next().await {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn spec(bootstrap: Bootstrap, privileged: bool) -> ClusterSpec {
        ClusterSpec {
            name: "c-1".to_owned(),
            image: "kindest/node:v1.36.1".to_owned(),
            bootstrap,
            privileged,
            memory_bytes: Some(2 << 30),
            pids_limit: Some(4096),
            nano_cpus: Some(2_000_000_000),
            ownership: Ownership {
                owner: "u1".to_owned(),
                lab: "etcd-secrets".to_owned(),
                session: "s1".to_owned(),
                expiry_ms: 1_700_000_000_000,
            },
            apiserver_flags: BTreeMap::from([("anonymous-auth".to_owned(), "false".to_owned())]),
            apiserver_mounts: vec![],
        }
    }

    #[test]
    fn a_kind_node_is_run_with_kinds_arguments_on_its_own_network() {
        let body = container_body("hardlab", &spec(Bootstrap::Kind, true));
        let host = body.host_config.clone().unwrap();
        assert_eq!(body.hostname.as_deref(), Some("hardlab-c-1-control-plane"));
        assert_eq!(body.image.as_deref(), Some("kindest/node:v1.36.1"));
        assert_eq!(body.tty, Some(true));
        assert_eq!(
            body.env,
            Some(vec!["KUBECONFIG=/etc/kubernetes/admin.conf".to_owned()])
        );
        assert_eq!(host.privileged, Some(true));
        assert_eq!(
            host.security_opt,
            Some(vec![
                "seccomp=unconfined".to_owned(),
                "apparmor=unconfined".to_owned()
            ])
        );
        let tmpfs = host.tmpfs.unwrap();
        assert_eq!(
            tmpfs.keys().collect::<std::collections::BTreeSet<_>>(),
            ["/run", "/tmp"]
                .iter()
                .map(|s| s.to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .iter()
                .collect()
        );
        assert_eq!(
            host.binds,
            Some(vec![
                "hardlab-c-1-var:/var".to_owned(),
                "/lib/modules:/lib/modules:ro".to_owned()
            ])
        );
        assert_eq!(host.network_mode.as_deref(), Some("hardlab-c-1"));
        let restart = host.restart_policy.unwrap();
        assert_eq!(restart.name, Some(RestartPolicyNameEnum::ON_FAILURE));
        assert_eq!(restart.maximum_retry_count, Some(1));
        assert_eq!(host.init, Some(false));
        assert_eq!(
            host.cgroupns_mode,
            Some(HostConfigCgroupnsModeEnum::PRIVATE)
        );
        let binding = &host.port_bindings.unwrap()["6443/tcp"].clone().unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(binding.host_port.as_deref(), Some(""));
        assert_eq!(host.memory, Some(2 << 30));
        assert_eq!(host.memory_swap, Some(2 << 30));
        assert_eq!(host.pids_limit, Some(4096));
        assert_eq!(host.nano_cpus, Some(2_000_000_000));
        let container_labels = body.labels.unwrap();
        for (key, value) in [
            ("io.hardlab.managed", "hardlab"),
            ("io.hardlab.cluster", "c-1"),
            ("io.hardlab.owner", "u1"),
            ("io.hardlab.lab", "etcd-secrets"),
            ("io.hardlab.session", "s1"),
            ("io.hardlab.expiry", "1700000000000"),
            ("io.hardlab.role", "control-plane"),
        ] {
            assert_eq!(
                container_labels.get(key).map(String::as_str),
                Some(value),
                "label {key}"
            );
        }
    }

    #[test]
    fn the_json_sent_to_docker_has_kinds_fields() {
        let json =
            serde_json::to_value(container_body("hardlab", &spec(Bootstrap::Kind, true))).unwrap();
        assert_eq!(json["HostConfig"]["Privileged"], true);
        assert_eq!(json["HostConfig"]["CgroupnsMode"], "private");
        assert_eq!(json["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
        assert_eq!(
            json["HostConfig"]["PortBindings"]["6443/tcp"][0]["HostIp"],
            "127.0.0.1"
        );
        assert_eq!(json["ExposedPorts"]["6443/tcp"], serde_json::json!({}));
        assert_eq!(json["HostConfig"]["Tmpfs"]["/tmp"], "");
    }

    #[test]
    fn an_unprivileged_self_starting_node_keeps_dockers_default_confinement_and_gets_the_labs_flags()
     {
        let body = container_body("hardlab", &spec(Bootstrap::SelfStarting, false));
        let host = body.host_config.unwrap();
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.security_opt, None);
        assert_eq!(host.binds, Some(vec!["hardlab-c-1-var:/var".to_owned()]));
        assert!(
            body.env
                .unwrap()
                .contains(&"HARDLAB_APISERVER_FLAGS=--anonymous-auth=false".to_owned())
        );
    }

    #[test]
    fn the_network_and_volume_carry_the_clusters_labels() {
        let closed = network_request("hardlab", &spec(Bootstrap::Kind, true), false);
        assert_eq!(
            closed.options.unwrap()["com.docker.network.bridge.enable_ip_masquerade"],
            "false"
        );
        let network = network_request("hardlab", &spec(Bootstrap::Kind, true), true);
        assert_eq!(network.name, "hardlab-c-1");
        assert_eq!(network.driver.as_deref(), Some("bridge"));
        assert_eq!(
            network.options.unwrap()["com.docker.network.bridge.enable_ip_masquerade"],
            "true"
        );
        assert_eq!(network.labels.unwrap()["io.hardlab.owner"], "u1");
        let volume = volume_request("hardlab", &spec(Bootstrap::Kind, true));
        assert_eq!(volume.name.as_deref(), Some("hardlab-c-1-var"));
        assert_eq!(volume.labels.unwrap()["io.hardlab.cluster"], "c-1");
    }
}
