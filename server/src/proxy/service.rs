//! The proxy as one running service: the CA, the listener, the catalog kept fresh, login, and the
//! state the grader reads for lab 6.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use sqlx::AnyPool;
use time::Duration;

use super::ProxyError;
use super::audit::{self, AuditFilter, AuditKeys, AuditWriter};
use super::ca::UserCa;
use super::client::{LoginRequest, LoginResponse};
use super::kube::{self, KubeProxy};
use super::recording::Recorder;
use super::roles::{DEFAULT_TTL, parse_duration};
use super::store;
use super::tenant::Tenant;
use super::webauthn::SecurityKeys;
use crate::db::seal::Sealer;

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
    /// The longest certificate the proxy issues, whatever the request or the roles say.
    pub max_certificate_ttl: Duration,
    /// Where the audit chain's signed checkpoints go; default: next to the server key.
    pub audit_checkpoint_file: Option<std::path::PathBuf>,
    /// The hardlab server's own URL as learners reach it, for `hardlab login --server` in the
    /// pages' hints and the lab node's configuration; default: the address the browser used.
    pub server_url: Option<String>,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            public_url: None,
            config_file: None,
            max_certificate_ttl: DEFAULT_TTL,
            audit_checkpoint_file: None,
            server_url: None,
        }
    }
}

impl ProxySettings {
    /// The proxy's settings from the server's configuration (the `proxy:` section, its flags and
    /// `HARDLAB_PROXY_*` variables) and the server's public URL for the login hints.
    /// (`HARDLAB_PROXY_RECORDING_MAX_BYTES`, the bytes kept of each exec session, is read when the
    /// recorder starts.)
    pub fn from_config(config: &crate::config::Config) -> Result<Self, ProxyError> {
        let proxy = &config.proxy;
        let max_certificate_ttl = match &proxy.max_cert_ttl {
            Some(text) => parse_duration(text).ok_or_else(|| {
                ProxyError::Config(format!(
                    "proxy max_cert_ttl (--proxy-max-cert-ttl, HARDLAB_PROXY_MAX_CERT_TTL) {text:?}: not a duration like 12h or 30m"
                ))
            })?,
            None => DEFAULT_TTL,
        };
        Ok(Self {
            listen: proxy.listen,
            public_url: proxy.public_url.clone(),
            config_file: proxy.config_file.clone(),
            max_certificate_ttl,
            audit_checkpoint_file: None,
            server_url: config.public_url.clone(),
        })
    }
}

pub struct ProxyService {
    pub pool: AnyPool,
    /// Seals the CA key, TOTP secrets and upstream kubeconfigs in the database.
    pub sealer: Arc<Sealer>,
    pub audit_keys: AuditKeys,
    pub max_certificate_ttl: Duration,
    /// See [`ProxySettings::server_url`].
    pub server_url: Option<String>,
    pub ca: Arc<UserCa>,
    pub kube: Arc<KubeProxy>,
    pub public_url: String,
    pub listen: SocketAddr,
    /// The WebAuthn relying party (security keys and passkeys), for the server's public URL.
    pub security_keys: SecurityKeys,
}

impl std::fmt::Debug for ProxyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyService")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl ProxyService {
    /// Seals plaintext secrets left by older versions, takes over an unkeyed audit chain, loads
    /// (or makes) the CA, imports the config file, binds the listener and starts serving.
    pub async fn start(
        pool: AnyPool,
        sealer: Arc<Sealer>,
        settings: ProxySettings,
    ) -> Result<Arc<Self>, ProxyError> {
        store::seal_plaintext_rows(&pool, &sealer).await?;
        let audit_keys = AuditKeys::from_sealer(&sealer, settings.audit_checkpoint_file.clone())?;
        audit::adopt_unkeyed_chain(&pool, &audit_keys).await?;
        let ca = Arc::new(store::load_or_create_ca(&pool, &sealer).await?);
        if let Some(file) = &settings.config_file {
            store::import_config(&pool, &sealer, file).await?;
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
        let catalog = store::build_catalog(&pool, &sealer, None).await?;
        let kube = KubeProxy::new(
            catalog,
            AuditWriter::spawn(pool.clone(), audit_keys.clone()),
            Recorder::spawn(pool.clone())
                .with_session_limit(super::recording::session_limit_from_env()?),
            pool.clone(),
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
            sealer,
            audit_keys,
            max_certificate_ttl: settings.max_certificate_ttl,
            server_url: settings.server_url.clone(),
            ca,
            kube,
            public_url,
            listen,
            security_keys: SecurityKeys::for_server_url(settings.server_url.as_deref()),
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
        match store::build_catalog(&self.pool, &self.sealer, Some(previous.as_ref())).await {
            Ok(catalog) => self.kube.replace_catalog(catalog),
            Err(error) => {
                tracing::error!(%error, "could not reload the proxy's roles and clusters");
            }
        }
    }

    /// Finishes a login into `tenant` whose password the caller has already checked: the second
    /// factor (the account's own for the site and a tenant's owner, the invited user's in their
    /// tenant: `factor_tenant`), then the certificate, recorded in `tenant`. The same refusal for
    /// a bad password and a bad code, so a guesser learns nothing; throttling (too many wrong
    /// codes) is said as such.
    pub async fn login(
        &self,
        request: &LoginRequest,
        tenant: &Tenant,
        factor_tenant: &Tenant,
        password_ok: bool,
    ) -> Result<LoginResponse, ProxyError> {
        let refused = || ProxyError::Unauthorized("wrong user name, password or code".into());
        if !password_ok {
            return Err(refused());
        }
        // The account store's spelling of the name, so roles and the certificate's CN agree.
        let user = request.user.trim().to_ascii_lowercase();
        // The request is checked before the code, so a typo in --ttl does not burn a code.
        let ttl = request
            .ttl
            .as_deref()
            .map(|text| {
                parse_duration(text).ok_or_else(|| {
                    ProxyError::BadRequest(format!(
                        "ttl {text:?} is not a duration like 1h or 30m (the longest is {})",
                        format_ttl(self.max_certificate_ttl)
                    ))
                })
            })
            .transpose()?;
        // A command line cannot hold a security key up to a browser: an account whose only second
        // factor is a key is told to add an authenticator app, never let in on the password.
        if factor_tenant.is_site()
            && !store::totp_enrolled(&self.pool, factor_tenant, &user).await?
            && super::webauthn::has_keys(&self.pool, &user).await?
        {
            return Err(ProxyError::Unauthorized(
                "this account's second factor is a security key, which hardlab login cannot use: \
                 add an authenticator app on the Access page and log in with its code"
                    .into(),
            ));
        }
        match store::check_totp(
            &self.pool,
            &self.sealer,
            factor_tenant,
            &user,
            &request.totp,
            false,
        )
        .await
        {
            Ok(()) => {}
            Err(ProxyError::Unauthorized(_)) => return Err(refused()),
            Err(error) => return Err(error),
        }
        let (issued, api_token) = store::issue_certificate(
            &self.pool,
            &self.ca,
            tenant,
            &user,
            &request.csr_pem,
            ttl,
            self.max_certificate_ttl,
        )
        .await?;
        let roles = store::user_roles(&self.pool, tenant, &user).await?;
        Ok(LoginResponse {
            cert_pem: issued.cert_pem,
            proxy_ca_pem: self.ca.cert_pem().to_owned(),
            proxy_url: self.public_url.clone(),
            roles,
            not_after: audit::format_time(issued.not_after),
            api_token,
            tenant: tenant.as_str().to_owned(),
        })
    }

    /// Revokes one certificate; its open connections are cut at once.
    pub async fn revoke_certificate(&self, serial: &str) -> Result<(Tenant, String), ProxyError> {
        let owner = store::revoke_certificate(&self.pool, serial).await?;
        self.kube.revocations_changed();
        Ok(owner)
    }

    /// Revokes every certificate `user` of `tenant` holds; their open connections are cut at once.
    pub async fn revoke_user(&self, tenant: &Tenant, user: &str) -> Result<(), ProxyError> {
        store::revoke_user_certificates(&self.pool, tenant, user).await?;
        self.kube.revocations_changed();
        Ok(())
    }

    /// What lab 6's checks need from hardlab for one cluster of a tenant, passed to the grader
    /// as `Params.extra["proxy_state"]`: the cluster's labels, the tenant's roles, who holds
    /// them, and the tenant's audit events on that cluster (oldest first) with the chain's
    /// verification.
    pub async fn grading_state(
        &self,
        tenant: &Tenant,
        cluster: &str,
    ) -> Result<serde_json::Value, ProxyError> {
        grading_state(&self.pool, &self.sealer, &self.audit_keys, tenant, cluster).await
    }
}

/// `12h`, `90m`: how the proxy writes a lifetime in its messages.
fn format_ttl(ttl: Duration) -> String {
    let minutes = ttl.whole_minutes();
    if minutes % 60 == 0 {
        format!("{}h", minutes / 60)
    } else {
        format!("{minutes}m")
    }
}

pub async fn grading_state(
    pool: &AnyPool,
    sealer: &Sealer,
    keys: &AuditKeys,
    tenant: &Tenant,
    cluster: &str,
) -> Result<serde_json::Value, ProxyError> {
    let roles = store::list_roles(pool, tenant).await?;
    let users = store::all_user_roles(pool, tenant).await?;
    let labels = store::list_clusters(pool, sealer, tenant)
        .await?
        .into_iter()
        .find(|c| c.spec.name == cluster)
        .map(|c| c.spec.labels)
        .unwrap_or_default();
    let mut events = audit::list(
        pool,
        &AuditFilter {
            tenant: tenant.clone(),
            cluster: cluster.to_owned(),
            limit: Some(2000),
            ..AuditFilter::default()
        },
    )
    .await?;
    events.reverse();
    let verification = audit::verify(pool, keys).await?;
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
pub async fn verify_report(pool: &AnyPool, keys: &AuditKeys) -> Result<(bool, String), ProxyError> {
    let verification = audit::verify(pool, keys).await?;
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
pub async fn import(pool: &AnyPool, sealer: &Sealer, file: &Path) -> Result<(), ProxyError> {
    store::import_config(pool, sealer, file).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_ceiling_comes_from_the_config_and_a_bad_one_names_the_setting() {
        let defaults = ProxySettings::from_config(&crate::config::Config::default()).unwrap();
        assert_eq!(defaults.max_certificate_ttl, Duration::hours(12));
        let mut config = crate::config::Config {
            public_url: Some("https://lab.example.org".into()),
            ..crate::config::Config::default()
        };
        config.proxy.max_cert_ttl = Some("90m".into());
        let settings = ProxySettings::from_config(&config).unwrap();
        assert_eq!(settings.max_certificate_ttl, Duration::minutes(90));
        assert_eq!(
            settings.server_url.as_deref(),
            Some("https://lab.example.org")
        );
        config.proxy.max_cert_ttl = Some("forever".into());
        let error = ProxySettings::from_config(&config).unwrap_err().to_string();
        assert!(
            error.contains("--proxy-max-cert-ttl") && error.contains("forever"),
            "{error}"
        );
    }
}
