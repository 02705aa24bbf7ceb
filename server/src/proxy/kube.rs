//! The impersonating Kubernetes proxy. Clients connect with mTLS (a certificate from the user CA),
//! address a cluster as `/k8s/<cluster>/<API path>`, and the proxy forwards with its own
//! credentials plus `Impersonate-User`/`Impersonate-Group` computed from the caller's roles and
//! the cluster's labels, so the cluster's RBAC decides as if the caller were that user.
//!
//! Bodies are streamed frame by frame in both directions (watch, `logs -f`), and upgraded
//! connections (exec, attach, port-forward; SPDY or WebSocket) become an opaque byte tunnel over
//! a dedicated HTTP/1.1 upstream connection. Every connection, tunnels included, is closed when
//! the client certificate expires or is revoked.
//!
//! The certificate says who the caller is, nothing more: the caller's roles are read from the
//! database for every request (so a role taken away applies at the next one), the certificate
//! must be on record and not revoked when the connection opens, and a sweep cuts open
//! connections (watches, exec tunnels) whose certificate has been revoked since.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration as StdDuration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sqlx::AnyPool;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::ProxyError;
use super::audit::{AuditEvent, AuditWriter, Decision, now_rfc3339};
use super::ca::{ClientIdentity, UserCa, client_identity, pem_body};
use super::recording::Recorder;
use super::request_info::{RequestInfo, request_info};
use super::roles::{self, ClusterSpec, Principals, Role};
use super::tenant::Tenant;

pub type ProxyBody = BoxBody<Bytes, hyper::Error>;
type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Incoming>;

/// How long a client may take to finish the TLS handshake; a stalled one must not hold a slot.
const HANDSHAKE_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// How often open connections are checked against revocations made by other servers; a
/// revocation through this server is applied at once.
const REVOCATION_SWEEP: StdDuration = StdDuration::from_secs(2);
pub const PATH_PREFIX: &str = "/k8s/";

/// A cluster as the proxy uses it: its labels and a client holding the proxy's own credentials.
pub struct UpstreamCluster {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    base: Uri,
    bearer: Option<HeaderValue>,
    client: UpstreamClient,
    /// The kubeconfig it was built from, so a reload can keep it (and its open connections).
    source: String,
}

impl std::fmt::Debug for UpstreamCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCluster")
            .field("name", &self.name)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl UpstreamCluster {
    /// Builds the upstream client from the kubeconfig text of the proxy's identity on the cluster.
    pub async fn from_kubeconfig(
        name: &str,
        labels: BTreeMap<String, String>,
        kubeconfig_yaml: &str,
    ) -> Result<Self, ProxyError> {
        use kube::client::ConfigExt;
        let bad = |what: String| ProxyError::Config(format!("cluster {name}: kubeconfig: {what}"));
        let kubeconfig =
            kube::config::Kubeconfig::from_yaml(kubeconfig_yaml).map_err(|e| bad(e.to_string()))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(|e| bad(e.to_string()))?;
        let tls = config
            .rustls_client_config()
            .map_err(|e| bad(e.to_string()))?;
        let bearer = match &config.auth_info.token {
            Some(token) => {
                use secrecy::ExposeSecret;
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                    .map_err(|_| bad("the token is not a valid header value".into()))?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        // HTTP/1.1 only: an upgrade (exec, port-forward) cannot ride on HTTP/2.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(StdDuration::from_secs(90))
            .build(connector);
        Ok(Self {
            name: name.to_owned(),
            labels,
            base: config.cluster_url,
            bearer,
            client,
            source: kubeconfig_yaml.to_owned(),
        })
    }

    fn uri(&self, path_and_query: &str) -> Result<Uri, ProxyError> {
        let base = self.base.to_string();
        let base = base.trim_end_matches('/');
        format!("{base}{path_and_query}")
            .parse()
            .map_err(|_| ProxyError::BadRequest(format!("bad request path {path_and_query:?}")))
    }
}

/// A role's or cluster's key: its tenant and its name (names repeat across tenants).
pub type TenantKey = (Tenant, String);

/// Every tenant's roles and clusters as of the last reload; swapped whole so a request sees one
/// consistent view. A request looks up only keys of its own tenant.
#[derive(Debug, Default)]
pub struct Catalog {
    pub roles: BTreeMap<TenantKey, Role>,
    pub clusters: BTreeMap<TenantKey, Arc<UpstreamCluster>>,
}

impl Catalog {
    /// Builds the catalog, reusing `previous`'s upstream clients where a cluster's kubeconfig
    /// and labels did not change, so a reload does not drop kept-alive connections.
    pub async fn build(
        roles: Vec<(Tenant, Role)>,
        clusters: Vec<(Tenant, ClusterSpecWithConfig)>,
        previous: Option<&Catalog>,
    ) -> Self {
        let mut catalog = Catalog {
            roles: roles
                .into_iter()
                .map(|(tenant, r)| ((tenant, r.name.clone()), r))
                .collect(),
            clusters: BTreeMap::new(),
        };
        for (tenant, cluster) in clusters {
            let key = (tenant, cluster.spec.name.clone());
            if let Some(kept) = previous
                .and_then(|p| p.clusters.get(&key))
                .filter(|c| c.source == cluster.kubeconfig_yaml && c.labels == cluster.spec.labels)
            {
                catalog.clusters.insert(key, Arc::clone(kept));
                continue;
            }
            match UpstreamCluster::from_kubeconfig(
                &cluster.spec.name,
                cluster.spec.labels.clone(),
                &cluster.kubeconfig_yaml,
            )
            .await
            {
                Ok(upstream) => {
                    catalog.clusters.insert(key, Arc::new(upstream));
                }
                Err(error) => tracing::error!(%error, "cluster left out of the proxy"),
            }
        }
        catalog
    }
}

/// A cluster spec with its kubeconfig's text (the spec's `kubeconfig` may be a path).
#[derive(Debug, Clone)]
pub struct ClusterSpecWithConfig {
    pub spec: ClusterSpec,
    pub kubeconfig_yaml: String,
}

/// What the proxy needs at request time.
pub struct KubeProxy {
    catalog: RwLock<Arc<Catalog>>,
    audit: AuditWriter,
    recorder: Recorder,
    /// Roles, certificates and revocations are read from here on every request or connection.
    pool: AnyPool,
    open: OpenConnections,
    /// Wakes the revocation sweep early (a revocation made through this server).
    revoked: Arc<tokio::sync::Notify>,
}

/// Every open client connection, by certificate, so a revocation can cut it.
#[derive(Default)]
struct OpenConnections {
    next_id: AtomicU64,
    by_id: Mutex<HashMap<u64, OpenConnection>>,
}

struct OpenConnection {
    serial: String,
    user: String,
    cut: CancellationToken,
}

/// Removes its connection from [`OpenConnections`] when the connection's task ends.
struct Registration {
    proxy: Arc<KubeProxy>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.proxy
            .open
            .by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl std::fmt::Debug for KubeProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeProxy").finish_non_exhaustive()
    }
}

impl KubeProxy {
    /// The proxy, with its revocation sweep running for as long as the proxy lives.
    pub fn new(
        catalog: Catalog,
        audit: AuditWriter,
        recorder: Recorder,
        pool: AnyPool,
    ) -> Arc<Self> {
        let proxy = Arc::new(Self {
            catalog: RwLock::new(Arc::new(catalog)),
            audit,
            recorder,
            pool,
            open: OpenConnections::default(),
            revoked: Arc::new(tokio::sync::Notify::new()),
        });
        tokio::spawn(sweep_revoked(Arc::downgrade(&proxy)));
        proxy
    }

    /// Tells the sweep that certificates were revoked, so it cuts their connections now.
    pub fn revocations_changed(&self) {
        self.revoked.notify_one();
    }

    /// How many client connections are open (for tests and metrics).
    pub fn open_connections(&self) -> usize {
        self.open
            .by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    fn register(self: &Arc<Self>, identity: &ClientIdentity) -> (Registration, CancellationToken) {
        let id = self.open.next_id.fetch_add(1, Ordering::Relaxed);
        let cut = CancellationToken::new();
        self.open
            .by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                id,
                OpenConnection {
                    serial: identity.serial_hex.clone(),
                    user: identity.user.clone(),
                    cut: cut.clone(),
                },
            );
        (
            Registration {
                proxy: Arc::clone(self),
                id,
            },
            cut,
        )
    }

    pub fn replace_catalog(&self, catalog: Catalog) {
        match self.catalog.write() {
            Ok(mut guard) => *guard = Arc::new(catalog),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(catalog),
        }
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn audit(&self) -> &AuditWriter {
        &self.audit
    }
}

/// Cuts open connections whose certificate was revoked: every [`REVOCATION_SWEEP`], or at once
/// when this server revoked one. Ends when the proxy is dropped.
async fn sweep_revoked(proxy: Weak<KubeProxy>) {
    loop {
        {
            let Some(proxy) = proxy.upgrade() else {
                return;
            };
            let open: Vec<(String, String, CancellationToken)> = proxy
                .open
                .by_id
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .values()
                .map(|c| (c.serial.clone(), c.user.clone(), c.cut.clone()))
                .collect();
            let mut checked: HashMap<String, bool> = HashMap::new();
            for (serial, user, cut) in open {
                let refused = match checked.get(&serial) {
                    Some(refused) => *refused,
                    None => {
                        let refused = match super::store::certificate_refusal(
                            &proxy.pool,
                            &serial,
                            &user,
                        )
                        .await
                        {
                            Ok(refusal) => refusal.is_some(),
                            Err(error) => {
                                tracing::warn!(%error, "proxy: revocation sweep could not read the database");
                                false
                            }
                        };
                        checked.insert(serial.clone(), refused);
                        refused
                    }
                };
                if refused && !cut.is_cancelled() {
                    tracing::info!(%user, %serial, "proxy: certificate revoked, connection cut");
                    cut.cancel();
                }
            }
            let revoked = Arc::clone(&proxy.revoked);
            drop(proxy);
            tokio::select! {
                () = revoked.notified() => {}
                () = tokio::time::sleep(REVOCATION_SWEEP) => {}
            }
        }
    }
}

/// TLS for the proxy's listener: the serving certificate, and client certificates required and
/// verified against the user CA (expiry included) before any request is read.
pub fn server_tls_config(
    ca: &UserCa,
    serving_cert_pem: &str,
    serving_key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, ProxyError> {
    let tls_error = |what: &str, e: String| ProxyError::Certificate(format!("{what}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(pem_body(
            ca.cert_pem(),
            "CERTIFICATE",
        )?))
        .map_err(|e| tls_error("user CA", e.to_string()))?;
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| tls_error("client verifier", e.to_string()))?;
    let chain = vec![CertificateDer::from(pem_body(
        serving_cert_pem,
        "CERTIFICATE",
    )?)];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pem_body(
        serving_key_pem,
        "PRIVATE KEY",
    )?));
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_error("serving certificate", e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts connections until the listener fails. Each handshake runs in its own task with a
/// timeout, so one slow client cannot stall the others.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    proxy: Arc<KubeProxy>,
) -> Result<(), ProxyError> {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, remote) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::info!(%remote, %error, "proxy: TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::info!(%remote, "proxy: TLS handshake timed out");
                    return;
                }
            };
            let identity = match tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| client_identity(cert.as_ref()))
            {
                Some(Ok(identity)) => Arc::new(identity),
                Some(Err(error)) => {
                    tracing::info!(%remote, %error, "proxy: unusable client certificate");
                    return;
                }
                None => return,
            };
            // Checked once per connection; the sweep covers the connection's later life. The
            // tenant is the record's, never anything the certificate or client says.
            let standing = match super::store::certificate_standing(
                &proxy.pool,
                &identity.serial_hex,
                &identity.user,
            )
            .await
            {
                Ok(standing) => standing,
                Err(error) => {
                    tracing::error!(%error, "proxy: cannot check the certificate's revocation");
                    super::store::Standing {
                        tenant: Tenant::site(),
                        refusal: Some(
                            "the proxy cannot check certificates right now; try again".into(),
                        ),
                    }
                }
            };
            serve_connection(tls, remote, identity, standing, proxy).await;
        });
    }
}

async fn serve_connection(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    remote: SocketAddr,
    identity: Arc<ClientIdentity>,
    standing: super::store::Standing,
    proxy: Arc<KubeProxy>,
) {
    let deadline = deadline_of(&identity);
    let (_registration, cut) = proxy.register(&identity);
    let refusal = standing.refusal.map(Arc::new);
    let tenant = Arc::new(standing.tenant);
    let service = {
        let identity = Arc::clone(&identity);
        let cut = cut.clone();
        hyper::service::service_fn(move |request| {
            let proxy = Arc::clone(&proxy);
            let identity = Arc::clone(&identity);
            let refusal = refusal.clone();
            let tenant = Arc::clone(&tenant);
            let cut = cut.clone();
            async move {
                let connection = Connection {
                    identity: &identity,
                    tenant: &tenant,
                    remote,
                    refusal: refusal.as_deref().map(String::as_str),
                    cut,
                };
                Ok::<_, Infallible>(handle(proxy, connection, request).await)
            }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades();
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%remote, %error, "proxy: connection ended with an error");
            }
        }
        () = tokio::time::sleep_until(deadline) => {
            tracing::info!(%remote, user = %identity.user, "proxy: certificate expired, connection closed");
        }
        () = cut.cancelled() => {
            tracing::info!(%remote, user = %identity.user, "proxy: certificate revoked, connection closed");
        }
    }
}

/// What a request knows of its connection.
struct Connection<'a> {
    identity: &'a ClientIdentity,
    /// The tenant the certificate's record names: every role and cluster is looked up in it.
    tenant: &'a Tenant,
    remote: SocketAddr,
    /// Why this connection's certificate may not be used (revoked, not on record).
    refusal: Option<&'a str>,
    /// Cancelled when the certificate is revoked; tunnels end with it.
    cut: CancellationToken,
}

/// When the certificate stops being valid, as a tokio instant.
fn deadline_of(identity: &ClientIdentity) -> tokio::time::Instant {
    let left = identity.not_after - OffsetDateTime::now_utc();
    let left = StdDuration::try_from(left).unwrap_or(StdDuration::ZERO);
    tokio::time::Instant::now() + left
}

/// Everything known about a request for its audit event.
struct Exchange<'a> {
    identity: &'a ClientIdentity,
    tenant: &'a Tenant,
    remote: SocketAddr,
    cluster: String,
    method: String,
    path: String,
    info: RequestInfo,
    /// The roles the database gave the caller for this request (not the certificate's `O=`).
    roles: Vec<String>,
    principals: Option<Principals>,
}

impl Exchange<'_> {
    fn event(&self, code: StatusCode, decision: Decision, reason: &str) -> AuditEvent {
        let principals = self.principals.as_ref();
        AuditEvent {
            seq: 0,
            tenant: self.tenant.as_str().to_owned(),
            event: "kube.request".into(),
            time: now_rfc3339(),
            user: self.identity.user.clone(),
            user_roles: self.roles.clone(),
            cert_serial: self.identity.serial_hex.clone(),
            addr_remote: self.remote.to_string(),
            kubernetes_cluster: self.cluster.clone(),
            kubernetes_users: principals.map(|p| vec![p.user.clone()]).unwrap_or_default(),
            kubernetes_groups: principals.map(|p| p.groups.clone()).unwrap_or_default(),
            http_method: self.method.clone(),
            request_path: self.path.clone(),
            verb: self.info.verb.clone(),
            resource_api_group: self.info.api_group.clone(),
            resource_namespace: self.info.namespace.clone(),
            resource_kind: self.info.resource.clone(),
            resource_name: self.info.name.clone(),
            response_code: code.as_u16(),
            decision,
            reason: reason.to_owned(),
            session_id: String::new(),
        }
    }
}

/// The answer when an event cannot be stored: the request is refused, never served unaudited.
fn audit_unavailable(error: &ProxyError) -> Response<ProxyBody> {
    tracing::error!(%error, "proxy: request refused because its audit event could not be stored");
    status_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "the audit log cannot be written, so the request was refused; try again later",
    )
}

/// Refuses a request itself (the API server never sees it), audited first.
///
/// kubectl starts every command with discovery (`/api`, `/apis`, `/api/v1`) and shows nothing of
/// a refused discovery request but "unknown". So a caller the proxy refuses is answered discovery
/// from a fixed list of core resources (the same for every cluster name, so it tells nothing
/// about which clusters exist); kubectl then sends the real request, and the refusal of that one
/// reaches it as a `Status` it prints: `Error from server (Forbidden): hardlab proxy: ...`.
async fn deny(
    proxy: &KubeProxy,
    exchange: &Exchange<'_>,
    code: StatusCode,
    reason: String,
) -> Response<ProxyBody> {
    if code == StatusCode::FORBIDDEN
        && exchange.method == "GET"
        && let Some(discovery) = placeholder_discovery(&exchange.path)
    {
        return json_response(StatusCode::OK, &discovery);
    }
    match proxy
        .audit
        .record(exchange.event(code, Decision::ProxyDeny, &reason))
        .await
    {
        Ok(_) => status_response(code, &reason),
        Err(error) => audit_unavailable(&error),
    }
}

/// Splits `/k8s/<cluster>/<API path>` after percent-decoding, as the API server will decode it:
/// `/k8s/dev/%61pi/v1/...` is the resource request `/api/v1/...`, and is classified (and
/// audited) as one. Paths that decode ambiguously are refused.
fn split_path(raw_path: &str) -> Result<(String, String), String> {
    let decoded = percent_decode(raw_path)?;
    let Some(rest) = decoded.strip_prefix(PATH_PREFIX) else {
        return Ok((String::new(), decoded));
    };
    let (cluster, api_path) = match rest.split_once('/') {
        Some((cluster, path)) => (cluster.to_owned(), format!("/{path}")),
        None => (rest.to_owned(), "/".to_owned()),
    };
    let inner = api_path.trim_matches('/');
    if !inner.is_empty()
        && inner
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!(
            "the request path {raw_path:?} has empty, . or .. segments"
        ));
    }
    Ok((cluster, api_path))
}

/// Decodes `%XX` escapes. An encoded `/` (which would change how the path splits into segments),
/// a NUL, a malformed escape or bytes that are not UTF-8 are refused.
fn percent_decode(path: &str) -> Result<String, String> {
    if !path.contains('%') {
        return Ok(path.to_owned());
    }
    let bad = || format!("the request path {path:?} is not a valid percent-encoded path");
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let text = std::str::from_utf8(hex).map_err(|_| bad())?;
            let byte = u8::from_str_radix(text, 16).map_err(|_| bad())?;
            if byte == b'/' || byte == 0 {
                return Err(format!(
                    "the request path {path:?} encodes a / or NUL, which the proxy does not forward"
                ));
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

async fn handle(
    proxy: Arc<KubeProxy>,
    connection: Connection<'_>,
    mut request: Request<Incoming>,
) -> Response<ProxyBody> {
    let identity = connection.identity;
    let tenant = connection.tenant;
    let remote = connection.remote;
    let catalog = proxy.catalog();
    let raw_path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let method = request.method().as_str().to_owned();
    let (cluster_name, api_path, bad_path) = match split_path(&raw_path) {
        Ok((cluster, path)) => (cluster, path, None),
        Err(reason) => (String::new(), raw_path.clone(), Some(reason)),
    };
    let mut exchange = Exchange {
        identity,
        tenant,
        remote,
        cluster: cluster_name.clone(),
        method: method.clone(),
        info: request_info(&method, &api_path, query.as_deref()),
        path: api_path.clone(),
        roles: Vec::new(),
        principals: None,
    };
    if let Some(reason) = bad_path {
        return deny(&proxy, &exchange, StatusCode::BAD_REQUEST, reason).await;
    }
    if let Some(reason) = connection.refusal {
        return deny(
            &proxy,
            &exchange,
            StatusCode::UNAUTHORIZED,
            reason.to_owned(),
        )
        .await;
    }
    if cluster_name.is_empty() {
        return status_response(
            StatusCode::NOT_FOUND,
            "address a cluster as /k8s/<cluster>/...",
        );
    }
    // The roles as of now, not as of the login: a role taken away applies to this request.
    exchange.roles = match super::store::user_roles(&proxy.pool, tenant, &identity.user).await {
        Ok(roles) => roles,
        Err(error) => {
            tracing::error!(%error, "proxy: cannot read the caller's roles");
            return status_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "the proxy cannot read roles right now; try again",
            );
        }
    };
    let held: Vec<&Role> = exchange
        .roles
        .iter()
        .filter_map(|name| catalog.roles.get(&(tenant.clone(), name.clone())))
        .collect();
    let Some(cluster) = catalog
        .clusters
        .get(&(tenant.clone(), cluster_name.clone()))
    else {
        // Same answer as a cluster the caller may not reach, so nobody can probe for names.
        let reason = if held.is_empty() {
            roles::Denial::NoRoles
        } else {
            roles::Denial::NoRoleForCluster
        };
        return deny(&proxy, &exchange, StatusCode::FORBIDDEN, reason.to_string()).await;
    };
    let principals = match roles::principals(&identity.user, &held, &cluster.labels) {
        Ok(principals) => principals,
        Err(denial) => {
            return deny(&proxy, &exchange, StatusCode::FORBIDDEN, denial.to_string()).await;
        }
    };
    exchange.principals = Some(principals.clone());

    let (requested_user, requested_groups) = match client_impersonation(request.headers()) {
        Ok(requested) => requested,
        Err(reason) => return deny(&proxy, &exchange, StatusCode::FORBIDDEN, reason).await,
    };
    let principals = match roles::narrow(&principals, requested_user.as_deref(), &requested_groups)
    {
        Ok(principals) => principals,
        Err(reason) => return deny(&proxy, &exchange, StatusCode::FORBIDDEN, reason).await,
    };
    exchange.principals = Some(principals.clone());

    // The path that was classified, encoded again: the API server decodes it to the same.
    let path_and_query = match &query {
        Some(q) => format!("{}?{q}", percent_encode_path(&api_path)),
        None => percent_encode_path(&api_path),
    };
    let uri = match cluster.uri(&path_and_query) {
        Ok(uri) => uri,
        Err(error) => {
            return deny(
                &proxy,
                &exchange,
                StatusCode::BAD_REQUEST,
                error.to_string(),
            )
            .await;
        }
    };
    let upgrade = is_upgrade(request.headers());
    let changes_something = upgrade
        || matches!(
            exchange.info.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection" | "unknown"
        )
        || !matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS");
    if changes_something && let Err(error) = proxy.audit.ready().await {
        return audit_unavailable(&error);
    }
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    parts.uri = uri;
    if let Err(reason) =
        rewrite_request_headers(&mut parts.headers, &principals, cluster, remote, upgrade)
    {
        return deny(&proxy, &exchange, StatusCode::BAD_REQUEST, reason).await;
    }
    let upstream_request = Request::from_parts(parts, body);
    let mut response = match cluster.client.request(upstream_request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(cluster = %cluster.name, %error, "proxy: upstream request failed");
            let reason = format!("the cluster's API server could not be reached: {error}");
            if let Err(error) = proxy
                .audit
                .record(exchange.event(StatusCode::BAD_GATEWAY, Decision::Upstream, &reason))
                .await
            {
                return audit_unavailable(&error);
            }
            return status_response(StatusCode::BAD_GATEWAY, &reason);
        }
    };
    let status = response.status();
    let mut event = exchange.event(status, Decision::Upstream, "");
    // Discovery (`/api`, `/apis/...`, `/version`) is noise in an audit log, as Teleport found;
    // refusals of it are still recorded.
    let audited = exchange.info.is_resource || !status.is_success();

    if status == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let record = matches!(exchange.info.resource.as_str(), "pods/exec" | "pods/attach");
        let session = if record && client_upgrade.is_some() {
            proxy.recorder.start(
                tenant,
                &identity.user,
                &cluster.name,
                &api_path,
                response
                    .headers()
                    .get(header::UPGRADE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            )
        } else {
            None
        };
        if let Some(session) = &session {
            event.session_id = session.id().to_owned();
        }
        // Stored before the tunnel opens: no command runs unaudited.
        if let Err(error) = proxy.audit.record(event).await {
            return audit_unavailable(&error);
        }
        if let Some(client_upgrade) = client_upgrade {
            let deadline = deadline_of(identity);
            let cut = connection.cut.clone();
            tokio::spawn(async move {
                tunnel(client_upgrade, upstream_upgrade, deadline, cut, session).await;
            });
        }
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, empty_body());
    }

    if audited && let Err(error) = proxy.audit.record(event).await {
        return audit_unavailable(&error);
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    Response::from_parts(parts, body.boxed())
}

/// Encodes what a path may not carry as is (RFC 3986 `pchar` and `/` stay).
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The client's own `Impersonate-*` headers. Only user and group are understood; anything else
/// (uid, extras) is refused rather than passed on or silently dropped.
fn client_impersonation(headers: &HeaderMap) -> Result<(Option<String>, Vec<String>), String> {
    let mut user = None;
    let mut groups = Vec::new();
    for (name, value) in headers {
        let name = name.as_str();
        if !name.starts_with("impersonate-") {
            continue;
        }
        let value = value
            .to_str()
            .map_err(|_| format!("header {name} is not valid text"))?
            .to_owned();
        match name {
            "impersonate-user" => user = Some(value),
            "impersonate-group" => groups.push(value),
            other => {
                return Err(format!(
                    "impersonation header {other} is not supported by the proxy"
                ));
            }
        }
    }
    Ok((user, groups))
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Headers a client must never get through to the API server: its own credentials, its own
/// impersonation, and forwarding headers it could spoof into the API server's audit `sourceIPs`.
fn is_client_controlled(name: &HeaderName) -> bool {
    let name = name.as_str();
    name == "authorization"
        || name == "proxy-authorization"
        || name.starts_with("impersonate-")
        || name.starts_with("x-forwarded-")
        || name == "forwarded"
        || name == "x-real-ip"
        || name == "x-remote-user"
        || name == "x-remote-group"
        || name.starts_with("x-remote-extra-")
}

fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named_in_connection: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named_in_connection {
        if !(keep_upgrade && name == header::UPGRADE) {
            headers.remove(&name);
        }
    }
    for name in [
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::PROXY_AUTHENTICATE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
    if !keep_upgrade {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

fn rewrite_request_headers(
    headers: &mut HeaderMap,
    principals: &Principals,
    cluster: &UpstreamCluster,
    remote: SocketAddr,
    upgrade: bool,
) -> Result<(), String> {
    let client_controlled: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_client_controlled(name))
        .cloned()
        .collect();
    for name in client_controlled {
        headers.remove(name);
    }
    strip_hop_by_hop(headers, upgrade);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    }
    headers.remove(header::HOST);
    let value = |text: &str| {
        HeaderValue::from_str(text).map_err(|_| format!("{text:?} cannot be sent as a header"))
    };
    headers.insert("impersonate-user", value(&principals.user)?);
    for group in &principals.groups {
        headers.append("impersonate-group", value(group)?);
    }
    headers.insert("x-forwarded-for", value(&remote.ip().to_string())?);
    if let Some(bearer) = &cluster.bearer {
        headers.insert(header::AUTHORIZATION, bearer.clone());
    }
    Ok(())
}

/// Copies bytes both ways between the client's and the API server's upgraded connections until
/// either side closes or the certificate expires; records exec/attach sessions on the way.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    deadline: tokio::time::Instant,
    cut: CancellationToken,
    session: Option<super::recording::Session>,
) {
    let (client, upstream) = match tokio::join!(client, upstream) {
        (Ok(client), Ok(upstream)) => (TokioIo::new(client), TokioIo::new(upstream)),
        (Err(error), _) | (_, Err(error)) => {
            tracing::info!(%error, "proxy: upgrade failed");
            return;
        }
    };
    let copy = super::recording::copy_both_ways(client, upstream, session.clone());
    tokio::select! {
        result = copy => {
            if let Err(error) = result {
                tracing::debug!(%error, "proxy: tunnel ended with an error");
            }
        }
        () = tokio::time::sleep_until(deadline) => {
            tracing::info!("proxy: certificate expired, tunnel closed");
        }
        () = cut.cancelled() => {
            tracing::info!("proxy: certificate revoked, tunnel closed");
        }
    }
    if let Some(session) = session {
        session.finish();
    }
}

fn empty_body() -> ProxyBody {
    Full::new(Bytes::new())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// The discovery documents a refused caller gets (see [`deny`]): core/v1 and its common
/// resources, no API groups.
fn placeholder_discovery(path: &str) -> Option<serde_json::Value> {
    // (name, kind, namespaced, short names)
    const CORE: [(&str, &str, bool, &[&str]); 10] = [
        ("pods", "Pod", true, &["po"]),
        ("services", "Service", true, &["svc"]),
        ("configmaps", "ConfigMap", true, &["cm"]),
        ("secrets", "Secret", true, &[]),
        ("serviceaccounts", "ServiceAccount", true, &["sa"]),
        ("events", "Event", true, &["ev"]),
        ("endpoints", "Endpoints", true, &["ep"]),
        (
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            &["pvc"],
        ),
        ("namespaces", "Namespace", false, &["ns"]),
        ("nodes", "Node", false, &["no"]),
    ];
    match path.trim_end_matches('/') {
        "/api" => Some(serde_json::json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        })),
        "/apis" => Some(serde_json::json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [],
        })),
        "/api/v1" => Some(serde_json::json!({
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": CORE.iter().map(|(name, kind, namespaced, short)| serde_json::json!({
                "name": name,
                "singularName": kind.to_ascii_lowercase(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                "shortNames": short,
            })).collect::<Vec<_>>(),
        })),
        _ => None,
    }
}

fn json_response(code: StatusCode, body: &serde_json::Value) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A Kubernetes `Status` object, which kubectl prints as `Error from server (Forbidden): ...`.
pub fn status_response(code: StatusCode, message: &str) -> Response<ProxyBody> {
    let reason = match code {
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        _ => "InternalError",
    };
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("hardlab proxy: {message}"),
        "reason": reason,
        "code": code.as_u16(),
    });
    json_response(code, &body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn client_impersonation_headers_are_read_whatever_their_case_and_extras_refused() {
        let mut headers = HeaderMap::new();
        headers.insert("Impersonate-User", HeaderValue::from_static("bob"));
        headers.append("IMPERSONATE-GROUP", HeaderValue::from_static("a"));
        headers.append("impersonate-group", HeaderValue::from_static("b"));
        let (user, groups) = client_impersonation(&headers).unwrap();
        assert_eq!(user.as_deref(), Some("bob"));
        assert_eq!(groups, ["a", "b"]);
        headers.insert("Impersonate-Extra-Scopes", HeaderValue::from_static("x"));
        assert!(client_impersonation(&headers).is_err());
        let mut uid = HeaderMap::new();
        uid.insert("Impersonate-Uid", HeaderValue::from_static("1"));
        assert!(client_impersonation(&uid).is_err());
    }

    #[test]
    fn credentials_and_forwarding_headers_are_client_controlled() {
        for name in [
            "authorization",
            "impersonate-group",
            "x-forwarded-for",
            "x-forwarded-host",
            "forwarded",
            "x-real-ip",
            "x-remote-user",
        ] {
            assert!(
                is_client_controlled(&HeaderName::from_static(name)),
                "{name}"
            );
        }
        assert!(!is_client_controlled(&header::ACCEPT));
    }

    #[test]
    fn paths_are_decoded_before_they_are_split_and_ambiguous_ones_refused() {
        assert_eq!(
            split_path("/k8s/dev/%61pi/v1/namespaces/default/%73ervices").unwrap(),
            (
                "dev".to_owned(),
                "/api/v1/namespaces/default/services".to_owned()
            )
        );
        assert_eq!(
            split_path("/k8s/%64ev/api").unwrap(),
            ("dev".to_owned(), "/api".to_owned())
        );
        for bad in [
            "/k8s/dev/api/v1/namespaces/default%2Fpods",
            "/k8s/dev/api/v1/%00",
            "/k8s/dev/api/v1/%zz",
            "/k8s/dev/api/v1/%ff",
            "/k8s/dev/api/../v1",
            "/k8s/dev/api//v1",
        ] {
            assert!(split_path(bad).is_err(), "{bad}");
        }
        assert_eq!(
            percent_encode_path("/api/v1/namespaces/a b"),
            "/api/v1/namespaces/a%20b"
        );
    }

    #[test]
    fn an_upgrade_needs_both_the_upgrade_header_and_the_connection_token() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(!is_upgrade(&headers));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(is_upgrade(&headers));
    }
}
