//! A real etcd and kube-apiserver (and, when asked, kube-controller-manager) on free loopback
//! ports, with generated PKI, a kubeconfig and a kubeadm-like folder describing them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use kube::config::{KubeConfigOptions, Kubeconfig};
use rcgen::ExtendedKeyUsagePurpose;
use serde_json::json;
use tokio::sync::OnceCell;

use crate::pki::Pki;
use crate::process::Supervised;
use crate::require::{asset, on_path};
use crate::{Error, Result};

const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// The version of the envtest binaries, for the static pod manifests' image names.
const IMAGE_TAG: &str = "v1.20.2";

/// What a test wants of its control plane. `{dir}` in a flag is replaced by the control plane's
/// temporary directory, where [`ControlPlaneBuilder::file`] writes its files.
#[derive(Debug, Clone, Default)]
pub struct ControlPlaneBuilder {
    apiserver_flags: Vec<String>,
    files: Vec<(String, Vec<u8>)>,
    controller_manager: bool,
    etcd_tls: bool,
    etcd_client_cert_auth: bool,
}

impl ControlPlaneBuilder {
    /// An extra kube-apiserver flag such as `--anonymous-auth=false`. Extra flags come after the
    /// defaults, so they override them (pflag: the last occurrence wins).
    pub fn apiserver_flag(mut self, flag: impl Into<String>) -> Self {
        self.apiserver_flags.push(flag.into());
        self
    }

    pub fn apiserver_flags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, flags: I) -> Self {
        self.apiserver_flags
            .extend(flags.into_iter().map(Into::into));
        self
    }

    /// A file written into the temporary directory before anything starts (`name` may contain
    /// `/`); refer to it in flags as `{dir}/name`.
    pub fn file(mut self, name: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        self.files.push((name.into(), contents.into()));
        self
    }

    /// Also run kube-controller-manager (service account tokens, namespace deletion, GC). Without
    /// it the ServiceAccount admission plugin is disabled so pods can be created.
    pub fn controller_manager(mut self, enabled: bool) -> Self {
        self.controller_manager = enabled;
        self
    }

    /// etcd serves clients and peers over TLS and demands client certificates (as kubeadm sets
    /// it up); the API server then talks to it with `--etcd-cafile/-certfile/-keyfile`.
    pub fn etcd_tls(mut self, enabled: bool) -> Self {
        self.etcd_tls = enabled;
        self.etcd_client_cert_auth = enabled;
        self
    }

    /// With [`Self::etcd_tls`]: whether etcd demands client certificates (`--client-cert-auth`).
    pub fn etcd_client_cert_auth(mut self, enabled: bool) -> Self {
        self.etcd_client_cert_auth = enabled;
        self
    }

    pub async fn start(self) -> Result<ControlPlane> {
        ControlPlane::start(self).await
    }
}

/// The paths of a client certificate that etcd accepts.
#[derive(Debug, Clone)]
pub struct EtcdClientCert {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running control plane. Dropping it stops the processes (also when a test panics).
pub struct ControlPlane {
    // Field order matters: the processes stop before the directory is removed.
    controller_manager: Option<Supervised>,
    apiserver: Option<Supervised>,
    etcd: Supervised,
    pki: Pki,
    etcd_endpoint: String,
    etcd_tls: bool,
    secure_port: u16,
    base_apiserver_flags: Vec<String>,
    apiserver_flags: Vec<String>,
    kubeconfig_path: PathBuf,
    dir: tempfile::TempDir,
}

static SHARED: OnceCell<ControlPlane> = OnceCell::const_new();

/// One control plane per test binary, for tests that do not change its flags (each test then
/// works in its own namespace). Panics when it cannot start; call [`crate::require`] first.
pub async fn shared_control_plane() -> &'static ControlPlane {
    SHARED
        .get_or_init(|| async {
            match ControlPlane::builder().start().await {
                Ok(plane) => plane,
                Err(error) => panic!("the shared control plane did not start: {error}"),
            }
        })
        .await
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Io {
        path: "127.0.0.1:0".into(),
        source,
    })?;
    let address = listener.local_addr().map_err(|source| Error::Io {
        path: "127.0.0.1:0".into(),
        source,
    })?;
    Ok(address.port())
}

fn write(path: &Path, contents: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, contents).map_err(io)
}

/// A static pod manifest as kubeadm writes one, whose command is exactly what runs.
fn static_pod(component: &str, command: &[String]) -> Result<String> {
    let mut full = vec![component.to_owned()];
    full.extend(command.iter().cloned());
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": component,
            "namespace": "kube-system",
            "labels": {"component": component, "tier": "control-plane"},
        },
        "spec": {
            "hostNetwork": true,
            "priorityClassName": "system-node-critical",
            "containers": [{
                "name": component,
                "image": format!("registry.k8s.io/{component}:{IMAGE_TAG}"),
                "command": full,
            }],
        },
    });
    Ok(serde_yaml::to_string(&pod)?)
}

impl ControlPlane {
    pub fn builder() -> ControlPlaneBuilder {
        ControlPlaneBuilder::default()
    }

    async fn start(builder: ControlPlaneBuilder) -> Result<Self> {
        let apiserver_binary =
            asset("kube-apiserver").ok_or_else(|| Error::MissingBinary("kube-apiserver".into()))?;
        let etcd_binary = on_path("etcd").ok_or_else(|| Error::MissingBinary("etcd".into()))?;
        let dir = tempfile::Builder::new()
            .prefix("hardlab-cp-")
            .tempdir()
            .map_err(|source| Error::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let root = dir.path().to_path_buf();
        let dir_text = root.display().to_string();
        for (name, contents) in &builder.files {
            write(&root.join(name), contents)?;
        }
        let kubernetes = root.join("kubernetes");
        let pki = Pki::generate(&kubernetes.join("pki"))?;

        let (client_port, peer_port, secure_port) = (free_port()?, free_port()?, free_port()?);
        let scheme = if builder.etcd_tls { "https" } else { "http" };
        let etcd_endpoint = format!("{scheme}://127.0.0.1:{client_port}");
        let peer_url = format!("{scheme}://127.0.0.1:{peer_port}");
        let mut etcd_flags = vec![
            "--name=default".to_owned(),
            format!("--data-dir={dir_text}/etcd-data"),
            format!("--listen-client-urls={etcd_endpoint}"),
            format!("--advertise-client-urls={etcd_endpoint}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=default={peer_url}"),
        ];
        if builder.etcd_tls {
            let auth = builder.etcd_client_cert_auth;
            etcd_flags.extend([
                format!("--cert-file={}", pki.path("etcd/server.crt")),
                format!("--key-file={}", pki.path("etcd/server.key")),
                format!("--client-cert-auth={auth}"),
                format!("--trusted-ca-file={}", pki.path("etcd/ca.crt")),
                format!("--peer-cert-file={}", pki.path("etcd/peer.crt")),
                format!("--peer-key-file={}", pki.path("etcd/peer.key")),
                "--peer-client-cert-auth=true".to_owned(),
                format!("--peer-trusted-ca-file={}", pki.path("etcd/ca.crt")),
            ]);
        }
        write(
            &kubernetes.join("manifests/etcd.yaml"),
            static_pod("etcd", &etcd_flags)?.as_bytes(),
        )?;
        // etcd stops last; it takes the directory with it, which matters for the shared control
        // plane, a static that is never dropped.
        let etcd = Supervised::spawn_removing(
            &etcd_binary,
            &etcd_flags,
            &root.join("etcd.log"),
            Some(&root),
        )?;

        let mut base_apiserver_flags = vec![
            "--advertise-address=127.0.0.1".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={secure_port}"),
            format!("--cert-dir={dir_text}/apiserver-certs"),
            format!("--tls-cert-file={}", pki.path("apiserver.crt")),
            format!("--tls-private-key-file={}", pki.path("apiserver.key")),
            format!("--client-ca-file={}", pki.path("ca.crt")),
            format!("--etcd-servers={etcd_endpoint}"),
            format!("--service-account-key-file={}", pki.path("sa.pub")),
            format!("--service-account-signing-key-file={}", pki.path("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
            "--authorization-mode=RBAC".to_owned(),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--allow-privileged=true".to_owned(),
        ];
        if builder.etcd_tls {
            base_apiserver_flags.extend([
                format!("--etcd-cafile={}", pki.path("etcd/ca.crt")),
                format!("--etcd-certfile={}", pki.path("apiserver-etcd-client.crt")),
                format!("--etcd-keyfile={}", pki.path("apiserver-etcd-client.key")),
            ]);
        }
        if !builder.controller_manager {
            // Nobody would create service account tokens, so pods could never be admitted.
            base_apiserver_flags.push("--disable-admission-plugins=ServiceAccount".to_owned());
        }
        let apiserver_flags = builder
            .apiserver_flags
            .iter()
            .map(|flag| flag.replace("{dir}", &dir_text))
            .collect();

        let kubeconfig_path = kubernetes.join("admin.conf");
        let mut plane = ControlPlane {
            controller_manager: None,
            apiserver: None,
            etcd,
            etcd_endpoint,
            etcd_tls: builder.etcd_tls,
            secure_port,
            base_apiserver_flags,
            apiserver_flags,
            kubeconfig_path,
            pki,
            dir,
        };
        plane.write_kubeconfig()?;
        plane.launch_apiserver(&apiserver_binary).await?;
        if builder.controller_manager {
            plane.launch_controller_manager()?;
        }
        Ok(plane)
    }

    fn write_kubeconfig(&self) -> Result<()> {
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let (cert, key) = &self.pki.admin;
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: hardlab-test\nclusters:\n- name: hardlab-test\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: kubernetes-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: hardlab-test\n  context: {{cluster: hardlab-test, user: kubernetes-admin}}\n",
            self.server_url(),
            b64(&self.pki.cluster_ca.cert_pem),
            b64(cert),
            b64(key)
        );
        write(&self.kubeconfig_path, kubeconfig.as_bytes())
    }

    fn all_apiserver_flags(&self) -> Vec<String> {
        let mut flags = self.base_apiserver_flags.clone();
        flags.extend(self.apiserver_flags.iter().cloned());
        flags
    }

    async fn launch_apiserver(&mut self, binary: &Path) -> Result<()> {
        let flags = self.all_apiserver_flags();
        write(
            &self.dir().join("kubernetes/manifests/kube-apiserver.yaml"),
            static_pod("kube-apiserver", &flags)?.as_bytes(),
        )?;
        let log = self.dir().join("apiserver.log");
        self.apiserver = Some(Supervised::spawn(binary, &flags, &log)?);
        self.wait_ready().await
    }

    fn launch_controller_manager(&mut self) -> Result<()> {
        let binary = asset("kube-controller-manager")
            .ok_or_else(|| Error::MissingBinary("kube-controller-manager".into()))?;
        let kubeconfig = self.kubeconfig_path.display().to_string();
        let flags = vec![
            format!("--kubeconfig={kubeconfig}"),
            "--leader-elect=false".to_owned(),
            // Both serving ports off: parallel tests would collide on the defaults.
            "--port=0".to_owned(),
            "--secure-port=0".to_owned(),
            format!(
                "--service-account-private-key-file={}",
                self.pki.path("sa.key")
            ),
            format!("--root-ca-file={}", self.pki.path("ca.crt")),
            format!("--cluster-signing-cert-file={}", self.pki.path("ca.crt")),
            format!("--cluster-signing-key-file={}", self.pki.path("ca.key")),
            "--use-service-account-credentials=true".to_owned(),
        ];
        let log = self.dir().join("controller-manager.log");
        self.controller_manager = Some(Supervised::spawn(&binary, &flags, &log)?);
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        let client = self.client_result().await?;
        loop {
            // Ready for tests means /readyz and the `default` namespace, which the API server's
            // bootstrap controller creates a moment after /readyz first answers (tests create
            // objects in it, and one listing namespaces lost that race on a loaded machine).
            let mut answered = true;
            for path in ["/readyz", "/api/v1/namespaces/default"] {
                let request = http::Request::get(path)
                    .body(Vec::new())
                    .map_err(|error| Error::Kubeconfig(error.to_string()))?;
                if client.request_text(request).await.is_err() {
                    answered = false;
                    break;
                }
            }
            if answered {
                return Ok(());
            }
            let exited = self.apiserver.as_mut().is_none_or(Supervised::exited);
            if exited || started.elapsed() > READY_TIMEOUT {
                let log_tail = self
                    .apiserver
                    .as_ref()
                    .map(|process| process.log_tail(30))
                    .unwrap_or_default();
                let etcd_tail = self.etcd.log_tail(10);
                return Err(Error::NotReady {
                    what: if exited {
                        "kube-apiserver (it exited)".into()
                    } else {
                        "kube-apiserver".into()
                    },
                    seconds: started.elapsed().as_secs(),
                    log_tail: format!("{log_tail}\n--- etcd ---\n{etcd_tail}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the API server and starts it again on the same port with the default flags plus
    /// `flags` (which replace the earlier extra flags; `{dir}` is substituted). Also rewrites the
    /// static pod manifest. Returns once `/readyz` answers.
    pub async fn restart_apiserver<I: IntoIterator<Item = S>, S: Into<String>>(
        &mut self,
        flags: I,
    ) -> Result<()> {
        let dir_text = self.dir().display().to_string();
        self.apiserver_flags = flags
            .into_iter()
            .map(|flag| flag.into().replace("{dir}", &dir_text))
            .collect();
        if let Some(mut apiserver) = self.apiserver.take() {
            apiserver.stop();
        }
        let binary =
            asset("kube-apiserver").ok_or_else(|| Error::MissingBinary("kube-apiserver".into()))?;
        self.launch_apiserver(&binary).await
    }

    /// Writes (or overwrites) a file in the temporary directory and returns its path.
    pub fn write_file(&self, name: &str, contents: impl AsRef<[u8]>) -> Result<PathBuf> {
        let path = self.dir().join(name);
        write(&path, contents.as_ref())?;
        Ok(path)
    }

    /// The path of a file in the temporary directory (written or not).
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// The temporary directory: `kubernetes/` (like `/etc/kubernetes`: `manifests/`, `pki/`,
    /// `admin.conf`), `etcd-data/`, the processes' logs and the test's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The kubeadm-like folder to give the grader as `local:DIR`.
    pub fn kubernetes_dir(&self) -> PathBuf {
        self.dir().join("kubernetes")
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.secure_port)
    }

    /// The cluster CA certificate (PEM), which signed the serving and client certificates.
    pub fn ca_pem(&self) -> &str {
        &self.pki.cluster_ca.cert_pem
    }

    /// A client certificate for `user` with `groups` (`O=` entries), signed by the cluster CA:
    /// `(cert_pem, key_pem)`.
    pub fn issue_client_cert(&self, user: &str, groups: &[&str]) -> (String, String) {
        match self
            .pki
            .cluster_ca
            .issue(user, groups, &[], &[ExtendedKeyUsagePurpose::ClientAuth])
        {
            Ok(pair) => pair,
            Err(error) => panic!("signing a client certificate for {user}: {error}"),
        }
    }

    /// etcd's client URL (`http://` or, with [`ControlPlaneBuilder::etcd_tls`], `https://`).
    pub fn etcd_endpoint(&self) -> &str {
        &self.etcd_endpoint
    }

    /// A client certificate etcd accepts (the API server's), when etcd uses TLS.
    pub fn etcd_client_cert(&self) -> Option<EtcdClientCert> {
        self.etcd_tls.then(|| EtcdClientCert {
            ca: PathBuf::from(self.pki.path("etcd/ca.crt")),
            cert: PathBuf::from(self.pki.path("apiserver-etcd-client.crt")),
            key: PathBuf::from(self.pki.path("apiserver-etcd-client.key")),
        })
    }

    /// The kube-apiserver flags it runs with now (without the program name).
    pub fn apiserver_command(&self) -> Vec<String> {
        self.all_apiserver_flags()
    }

    /// The admin's client configuration (from the kubeconfig file).
    pub async fn config(&self) -> Result<kube::Config> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig_path)
            .map_err(|error| Error::Kubeconfig(error.to_string()))?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|error| Error::Kubeconfig(error.to_string()))
    }

    async fn client_result(&self) -> Result<kube::Client> {
        Ok(kube::Client::try_from(self.config().await?)?)
    }

    /// An admin client (`O=system:masters`). Make one per test: a client belongs to the tokio
    /// runtime that made it, and each `#[tokio::test]` has its own.
    pub async fn client(&self) -> kube::Client {
        match self.client_result().await {
            Ok(client) => client,
            Err(error) => panic!("admin client: {error}"),
        }
    }
}
