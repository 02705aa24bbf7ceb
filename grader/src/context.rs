use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, OnceCell};

use crate::inputs::InputDocument;
use crate::inputs::objects::{KubeObject, objects_in_documents};
use crate::target::podexec::{KubePodExec, PodExec};
use crate::target::{EtcdAccess, NodeAccess};

/// Whether the grader looks at a running cluster or at files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Static,
}

/// Parameters a lab or the CLI gives the checks (which namespace is the lab's, which Secret to read).
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// The namespace the lab's workloads live in (network policies, mTLS, pod security).
    pub namespace: Option<String>,
    /// A Secret to read from etcd as `namespace/name`; without it the grader writes its own canary.
    pub secret: Option<String>,
    /// Free-form parameters a lab step sets (e.g. `group=developer-read`).
    pub extra: HashMap<String, String>,
}

/// Where the API server listens and which CA to trust, without any credentials: for probes that
/// must stay unauthenticated, such as the anonymous `GET /api` of `access.anonymous-auth-disabled`.
#[derive(Debug, Clone)]
pub struct ApiEndpoint {
    pub url: String,
    /// DER certificates to trust (the kubeconfig's certificate authority).
    pub root_certs: Vec<Vec<u8>>,
    pub accept_invalid_certs: bool,
}

impl ApiEndpoint {
    pub fn from_config(config: &kube::Config) -> Self {
        Self {
            url: config
                .cluster_url
                .to_string()
                .trim_end_matches('/')
                .to_owned(),
            root_certs: config.root_cert.clone().unwrap_or_default(),
            accept_invalid_certs: config.accept_invalid_certs,
        }
    }
}

/// What one grading run can reach, plus a cache so each input is collected once for all checks.
pub struct Context {
    pub mode: Mode,
    pub kube: Option<kube::Client>,
    /// The API server's address for unauthenticated probes (live mode, when known).
    pub endpoint: Option<ApiEndpoint>,
    pub node: Option<Arc<dyn NodeAccess>>,
    pub etcd: Option<Arc<dyn EtcdAccess>>,
    /// How probes run commands in pods; live mode without one uses the API's exec subresource.
    pub pod_exec: Option<Arc<dyn PodExec>>,
    /// Static mode: every object from the given files (`List` kinds expanded), with file and
    /// line. The documents are moved in, not copied: a large scan holds each object once.
    pub objects: Arc<Vec<KubeObject>>,
    pub params: Params,
    cache: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("mode", &self.mode)
            .field("kube", &self.kube.is_some())
            .field("node", &self.node.as_ref().map(|node| node.describe()))
            .field("etcd", &self.etcd.as_ref().map(|etcd| etcd.describe()))
            .field("objects", &self.objects.len())
            .finish()
    }
}

impl Context {
    pub fn live(kube: Option<kube::Client>) -> Self {
        Self::new(Mode::Live, kube, Vec::new())
    }

    pub fn from_documents(documents: Vec<InputDocument>) -> Self {
        Self::new(Mode::Static, None, documents)
    }

    fn new(mode: Mode, kube: Option<kube::Client>, documents: Vec<InputDocument>) -> Self {
        Self {
            objects: Arc::new(objects_in_documents(documents)),
            mode,
            kube,
            endpoint: None,
            node: None,
            etcd: None,
            pod_exec: None,
            params: Params::default(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_node(mut self, node: Arc<dyn NodeAccess>) -> Self {
        self.node = Some(node);
        self
    }

    pub fn with_etcd(mut self, etcd: Arc<dyn EtcdAccess>) -> Self {
        self.etcd = Some(etcd);
        self
    }

    /// Probes run their commands through this instead of the API's exec subresource (tests drive
    /// the probes' judging with recorded outputs this way).
    pub fn with_pod_exec(mut self, exec: Arc<dyn PodExec>) -> Self {
        self.pod_exec = Some(exec);
        self
    }

    /// The exec layer the probes use: the one given, else the API's, else none (no cluster).
    pub fn pod_exec(&self) -> Option<Arc<dyn PodExec>> {
        self.pod_exec.clone().or_else(|| {
            self.kube
                .as_ref()
                .map(|client| Arc::new(KubePodExec::new(client.clone())) as Arc<dyn PodExec>)
        })
    }

    pub fn with_endpoint(mut self, endpoint: ApiEndpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    pub fn with_params(mut self, params: Params) -> Self {
        self.params = params;
        self
    }

    /// Collects an input once per run: the first caller runs `collect`, the others wait for and
    /// share its value. The input is identified by its type, so each input gets a newtype.
    pub async fn input<T, F, Fut>(&self, collect: F) -> Arc<T>
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let cell = {
            let mut cache = self.cache.lock().await;
            let slot = cache
                .entry(TypeId::of::<OnceCell<Arc<T>>>())
                .or_insert_with(|| Arc::new(OnceCell::<Arc<T>>::new()));
            Arc::clone(slot)
        };
        let Ok(cell) = cell.downcast::<OnceCell<Arc<T>>>() else {
            unreachable!("the cache is keyed by the cell's own type")
        };
        Arc::clone(
            cell.get_or_init(|| async { Arc::new(collect().await) })
                .await,
        )
    }
}
