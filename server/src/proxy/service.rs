//! The proxy as one running service: the CA, the listener, the catalog kept fresh, login, and the
//! state the grader reads for lab 6.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use sqlx::AnyPool;
use time::Duration;

use super::ProxyError;
use super::audit::{self, AuditFilter, AuditWriter};
use super::ca::UserCa;
use super::client::{LoginRequest, LoginResponse};
use super::kube::{self, KubeProxy};
use super::recording::Recorder;
use super::roles::parse_duration;
use super::store;

/// How often each server re-reads roles and clusters, so an edit made through another instance
/// behind the load balancer takes effect everywhere.
const CATALOG_REFRESH: StdDuration = StdDuration::from_secs(5);

/// Where the proxy listens and how clients reach it.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub listen: SocketAddr,
    /// The URL written into kubeconfigs; defaults to `https://<listen>`.
    pub public_url: Option<String>,
    /// A roles/clusters/users file imported at start.
    pub config_file: Option<std::path::PathBuf>,
}

impl ProxySettings {
    /// `HARDLAB_PROXY_LISTEN` (default 127.0.0.1:8443), `HARDLAB_PROXY_URL`, `HARDLAB_PROXY_CONFIG`.
    /// (`HARDLAB_PROXY_RECORDING_MAX_BYTES`, the bytes kept of each exec session, is read when the
    /// recorder starts.)
    pub fn from_env() -> Result<Self, ProxyError> {
        let listen = match std::env::var("HARDLAB_PROXY_LISTEN") {
            Ok(text) => text.parse().map_err(|_| {
                ProxyError::Config(format!(
                    "HARDLAB_PROXY_LISTEN={text:?} is not an address like 127.0.0.1:8443"
                ))
            })?,
            Err(_) => SocketAddr::from(([127, 0, 0, 1], 8443)),
        };
        Ok(Self {
            listen,
            public_url: std::env::var("HARDLAB_PROXY_URL").ok(),
            config_file: std::env::var_os("HARDLAB_PROXY_CONFIG").map(std::path::PathBuf::from),
        })
    }
}

pub struct ProxyService {
    pub pool: AnyPool,
    pub ca: Arc<UserCa>,
    pub kube: Arc<KubeProxy>,
    pub public_url: String,
    pub listen: SocketAddr,
}

impl std::fmt::Debug for ProxyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyService")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl ProxyService {
    /// Loads (or makes) the CA, imports the config file, binds the listener and starts serving.
    pub async fn start(pool: AnyPool, settings: ProxySettings) -> Result<Arc<Self>, ProxyError> {
        let ca = Arc::new(store::load_or_create_ca(&pool).await?);
        if let Some(file) = &settings.config_file {
            store::import_config(&pool, file).await?;
        }
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .map_err(|error| {
                ProxyError::Io(std::io::Error::new(
                    error.kind(),
                    format!("proxy listener {}: {error}", settings.listen),
                ))
            })?;
        let listen = listener.local_addr()?;
        let public_url = settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("https://{listen}"));
        let mut hosts = vec!["localhost".to_owned(), listen.ip().to_string()];
        if let Some(host) = host_of(&public_url)
            && !hosts.contains(&host)
        {
            hosts.push(host);
        }
        let (serving, serving_key) = ca.issue_server_cert(&hosts, Duration::days(365))?;
        let tls = kube::server_tls_config(&ca, &serving.cert_pem, &serving_key)?;
        let catalog = store::build_catalog(&pool, None).await?;
        let kube = KubeProxy::new(
            catalog,
            AuditWriter::spawn(pool.clone()),
            Recorder::spawn(pool.clone())
                .with_session_limit(super::recording::session_limit_from_env()?),
        );
        tokio::spawn({
            let kube = Arc::clone(&kube);
            async move {
                if let Err(error) = kube::serve(listener, tls, kube).await {
                    tracing::error!(%error, "the access proxy stopped");
                }
            }
        });
        let service = Arc::new(Self {
            pool,
            ca,
            kube,
            public_url,
            listen,
        });
        tokio::spawn({
            let service = Arc::downgrade(&service);
            async move {
                loop {
                    tokio::time::sleep(CATALOG_REFRESH).await;
                    let Some(service) = service.upgrade() else {
                        return;
                    };
                    service.reload().await;
                }
            }
        });
        tracing::info!(listen = %listen, url = %service.public_url, "access proxy listening");
        Ok(service)
    }

    /// Re-reads roles and clusters from the database.
    pub async fn reload(&self) {
        let previous = self.kube.catalog();
        match store::build_catalog(&self.pool, Some(previous.as_ref())).await {
            Ok(catalog) => self.kube.replace_catalog(catalog),
            Err(error) => {
                tracing::error!(%error, "could not reload the proxy's roles and clusters");
            }
        }
    }

    /// Finishes a login whose password the caller has already checked: TOTP, then the
    /// certificate. The same refusal for a bad password and a bad code.
    pub async fn login(
        &self,
        request: &LoginRequest,
        password_ok: bool,
    ) -> Result<LoginResponse, ProxyError> {
        let refused = || ProxyError::Unauthorized("wrong user name, password or code".into());
        if !password_ok {
            return Err(refused());
        }
        // The account store's spelling of the name, so roles and the certificate's CN agree.
        let user = request.user.trim().to_ascii_lowercase();
        store::check_totp(&self.pool, &user, &request.totp, false).await?;
        let ttl = request
            .ttl
            .as_deref()
            .map(|text| {
                parse_duration(text).ok_or_else(|| {
                    ProxyError::BadRequest(format!("ttl {text:?} is not a duration like 1h"))
                })
            })
            .transpose()?;
        let issued =
            store::issue_certificate(&self.pool, &self.ca, &user, &request.csr_pem, ttl).await?;
        let roles = store::user_roles(&self.pool, &user).await?;
        Ok(LoginResponse {
            cert_pem: issued.cert_pem,
            proxy_ca_pem: self.ca.cert_pem().to_owned(),
            proxy_url: self.public_url.clone(),
            roles,
            not_after: audit::format_time(issued.not_after),
        })
    }

    /// What lab 6's checks need from hardlab for one cluster, passed to the grader as
    /// `Params.extra["proxy_state"]`: the cluster's labels, the roles, who holds them, and the
    /// cluster's audit events (oldest first) with the chain's verification.
    pub async fn grading_state(&self, cluster: &str) -> Result<serde_json::Value, ProxyError> {
        grading_state(&self.pool, cluster).await
    }
}

pub async fn grading_state(pool: &AnyPool, cluster: &str) -> Result<serde_json::Value, ProxyError> {
    let roles = store::list_roles(pool).await?;
    let users = store::all_user_roles(pool).await?;
    let labels = store::list_clusters(pool)
        .await?
        .into_iter()
        .find(|c| c.spec.name == cluster)
        .map(|c| c.spec.labels)
        .unwrap_or_default();
    let mut events = audit::list(
        pool,
        &AuditFilter {
            cluster: cluster.to_owned(),
            limit: Some(2000),
            ..AuditFilter::default()
        },
    )
    .await?;
    events.reverse();
    let verification = audit::verify(pool).await?;
    Ok(serde_json::json!({
        "cluster": cluster,
        "labels": labels,
        "roles": roles,
        "users": users,
        "audit": events,
        "audit_chain_intact": verification.broken_at.is_none(),
    }))
}

fn host_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    uri.host().map(|h| h.trim_matches(['[', ']']).to_owned())
}

/// For `hardlab audit verify` and tests: the chain's state as a sentence and a pass/fail.
pub async fn verify_report(pool: &AnyPool) -> Result<(bool, String), ProxyError> {
    let verification = audit::verify(pool).await?;
    Ok(match verification.broken_at {
        None => (
            true,
            format!(
                "audit chain intact: {} events, head {}",
                verification.events, verification.head_hash
            ),
        ),
        Some((seq, why)) => (
            false,
            format!(
                "audit chain BROKEN at event {seq}: {why} ({} events before it verify)",
                verification.events
            ),
        ),
    })
}

/// Lets `hardlab` subcommands import a file without starting the proxy.
pub async fn import(pool: &AnyPool, file: &Path) -> Result<(), ProxyError> {
    store::import_config(pool, file).await
}
