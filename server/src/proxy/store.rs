//! The proxy's state in the database: the user CA, roles, clusters, role assignments, TOTP
//! enrolments and issued certificates.

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::{AnyPool, Row};
use time::{Duration, OffsetDateTime};

use super::ProxyError;
use super::ca::{IssuedCert, UserCa};
use super::kube::{Catalog, ClusterSpecWithConfig};
use super::roles::{self, ClusterSpec, ProxyConfig, Role};
use super::totp;

fn now_ms() -> i64 {
    let ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The user CA, made on first use. Two servers starting at once both try to insert row 1; the
/// loser reads the winner's CA.
pub async fn load_or_create_ca(pool: &AnyPool) -> Result<UserCa, ProxyError> {
    if let Some(ca) = load_ca(pool).await? {
        return Ok(ca);
    }
    let ca = UserCa::generate("hardlab user CA")?;
    let inserted = sqlx::query(
        "INSERT INTO proxy_ca (id, cert_pem, key_pem, created_at) VALUES (1, $1, $2, $3)",
    )
    .bind(ca.cert_pem())
    .bind(ca.key_pem())
    .bind(now_ms())
    .execute(pool)
    .await;
    match inserted {
        Ok(_) => Ok(ca),
        Err(_) => load_ca(pool)
            .await?
            .ok_or_else(|| ProxyError::Internal("the user CA could not be stored".into())),
    }
}

async fn load_ca(pool: &AnyPool) -> Result<Option<UserCa>, ProxyError> {
    let row = sqlx::query("SELECT cert_pem, key_pem FROM proxy_ca WHERE id = 1")
        .fetch_optional(pool)
        .await?;
    row.map(|row| UserCa::from_pem(&row.try_get::<String, _>(0)?, &row.try_get::<String, _>(1)?))
        .transpose()
}

pub async fn put_role(pool: &AnyPool, role: &Role) -> Result<(), ProxyError> {
    role.validate()?;
    let spec = serde_json::to_string(role)
        .map_err(|error| ProxyError::Internal(format!("role {}: {error}", role.name)))?;
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM proxy_roles WHERE name = $1")
        .bind(&role.name)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO proxy_roles (name, spec_json, updated_at) VALUES ($1, $2, $3)")
        .bind(&role.name)
        .bind(spec)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn delete_role(pool: &AnyPool, name: &str) -> Result<(), ProxyError> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM proxy_roles WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM proxy_user_roles WHERE role_name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn list_roles(pool: &AnyPool) -> Result<Vec<Role>, ProxyError> {
    let rows = sqlx::query("SELECT name, spec_json FROM proxy_roles ORDER BY name")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            let name: String = row.try_get(0)?;
            let spec: String = row.try_get(1)?;
            serde_json::from_str(&spec)
                .map_err(|error| ProxyError::Config(format!("stored role {name}: {error}")))
        })
        .collect()
}

pub async fn set_user_roles(
    pool: &AnyPool,
    user: &str,
    role_names: &[String],
) -> Result<(), ProxyError> {
    let known = list_roles(pool).await?;
    for name in role_names {
        if !known.iter().any(|role| &role.name == name) {
            return Err(ProxyError::Config(format!("there is no role {name}")));
        }
    }
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM proxy_user_roles WHERE user_name = $1")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    for name in role_names {
        sqlx::query("INSERT INTO proxy_user_roles (user_name, role_name) VALUES ($1, $2)")
            .bind(user)
            .bind(name)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn user_roles(pool: &AnyPool, user: &str) -> Result<Vec<String>, ProxyError> {
    let rows = sqlx::query(
        "SELECT role_name FROM proxy_user_roles WHERE user_name = $1 ORDER BY role_name",
    )
    .bind(user)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?)
}

/// Every user with roles, and the roles.
pub async fn all_user_roles(pool: &AnyPool) -> Result<BTreeMap<String, Vec<String>>, ProxyError> {
    let rows = sqlx::query(
        "SELECT user_name, role_name FROM proxy_user_roles ORDER BY user_name, role_name",
    )
    .fetch_all(pool)
    .await?;
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in &rows {
        users
            .entry(row.try_get(0)?)
            .or_default()
            .push(row.try_get(1)?);
    }
    Ok(users)
}

pub async fn put_cluster(
    pool: &AnyPool,
    name: &str,
    labels: &BTreeMap<String, String>,
    kubeconfig_yaml: &str,
) -> Result<(), ProxyError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ProxyError::Config(format!(
            "cluster name {name:?}: use letters, digits and -"
        )));
    }
    // Refuse a kubeconfig the proxy could not use now rather than at the first request.
    super::kube::UpstreamCluster::from_kubeconfig(name, labels.clone(), kubeconfig_yaml).await?;
    let labels_json = serde_json::to_string(labels)
        .map_err(|error| ProxyError::Internal(format!("labels: {error}")))?;
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM proxy_clusters WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO proxy_clusters (name, labels_json, kubeconfig, updated_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(name)
    .bind(labels_json)
    .bind(kubeconfig_yaml)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn delete_cluster(pool: &AnyPool, name: &str) -> Result<(), ProxyError> {
    sqlx::query("DELETE FROM proxy_clusters WHERE name = $1")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn list_clusters(pool: &AnyPool) -> Result<Vec<ClusterSpecWithConfig>, ProxyError> {
    let rows =
        sqlx::query("SELECT name, labels_json, kubeconfig FROM proxy_clusters ORDER BY name")
            .fetch_all(pool)
            .await?;
    rows.iter()
        .map(|row| {
            let name: String = row.try_get(0)?;
            let labels_json: String = row.try_get(1)?;
            let labels = serde_json::from_str(&labels_json).map_err(|error| {
                ProxyError::Config(format!("stored labels of cluster {name}: {error}"))
            })?;
            Ok(ClusterSpecWithConfig {
                spec: ClusterSpec {
                    name,
                    labels,
                    kubeconfig: String::new(),
                },
                kubeconfig_yaml: row.try_get(2)?,
            })
        })
        .collect()
}

/// Roles and clusters from the database, ready for the proxy.
pub async fn build_catalog(
    pool: &AnyPool,
    previous: Option<&Catalog>,
) -> Result<Catalog, ProxyError> {
    let roles = list_roles(pool).await?;
    let clusters = list_clusters(pool).await?;
    Ok(Catalog::build(roles, clusters, previous).await)
}

/// Applies a config file: its roles, clusters and user assignments replace those of the same
/// name; kubeconfig paths are relative to the file. Nothing is written unless all of it is valid.
pub async fn import_config(pool: &AnyPool, path: &Path) -> Result<(), ProxyError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|error| ProxyError::Config(format!("{display}: {error}")))?;
    let config = ProxyConfig::parse(&display, &text)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut kubeconfigs = Vec::new();
    for cluster in &config.clusters {
        let kubeconfig_path = base.join(&cluster.kubeconfig);
        let yaml = std::fs::read_to_string(&kubeconfig_path).map_err(|error| {
            ProxyError::Config(format!(
                "{display}: cluster {}: kubeconfig {}: {error}",
                cluster.name,
                kubeconfig_path.display()
            ))
        })?;
        super::kube::UpstreamCluster::from_kubeconfig(&cluster.name, cluster.labels.clone(), &yaml)
            .await
            .map_err(|error| ProxyError::Config(format!("{display}: {error}")))?;
        kubeconfigs.push(yaml);
    }
    for role in &config.roles {
        put_role(pool, role).await?;
    }
    for (cluster, yaml) in config.clusters.iter().zip(&kubeconfigs) {
        put_cluster(pool, &cluster.name, &cluster.labels, yaml).await?;
    }
    for user in &config.users {
        set_user_roles(pool, &user.name, &user.roles).await?;
    }
    Ok(())
}

/// Starts (or restarts) TOTP enrolment: a new secret, not yet usable for login until confirmed
/// with a code from the authenticator app. Returns the secret.
pub async fn enroll_totp(pool: &AnyPool, user: &str) -> Result<String, ProxyError> {
    let secret = totp::new_secret();
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM proxy_totp WHERE user_name = $1")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO proxy_totp (user_name, secret, confirmed, last_step) VALUES ($1, $2, 0, NULL)",
    )
    .bind(user)
    .bind(&secret)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(secret)
}

pub async fn totp_enrolled(pool: &AnyPool, user: &str) -> Result<bool, ProxyError> {
    let row = sqlx::query("SELECT confirmed FROM proxy_totp WHERE user_name = $1")
        .bind(user)
        .fetch_optional(pool)
        .await?;
    Ok(row.is_some_and(|row| row.try_get::<i64, _>(0).unwrap_or(0) == 1))
}

/// Checks a code and burns its time step, so it cannot be used again. With `confirming`, an
/// unconfirmed enrolment is accepted and becomes confirmed.
pub async fn check_totp(
    pool: &AnyPool,
    user: &str,
    code: &str,
    confirming: bool,
) -> Result<(), ProxyError> {
    let refused = || ProxyError::Unauthorized("wrong user name, password or code".into());
    let Some(row) =
        sqlx::query("SELECT secret, confirmed, last_step FROM proxy_totp WHERE user_name = $1")
            .bind(user)
            .fetch_optional(pool)
            .await?
    else {
        return Err(refused());
    };
    let secret: String = row.try_get(0)?;
    let confirmed: i64 = row.try_get(1)?;
    let last_step: Option<i64> = row.try_get(2)?;
    if confirmed == 0 && !confirming {
        return Err(refused());
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let Some(step) = totp::verify(&secret, code, now, last_step)? else {
        return Err(refused());
    };
    // Compare-and-set on last_step: of two logins racing with one code, only one wins.
    let updated = sqlx::query(
        "UPDATE proxy_totp SET last_step = $1, confirmed = 1 \
         WHERE user_name = $2 AND (last_step IS NULL OR last_step < $3)",
    )
    .bind(step)
    .bind(user)
    .bind(step)
    .execute(pool)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(refused());
    }
    Ok(())
}

/// Signs a certificate for `user` (already authenticated) for the key in `csr_pem`, with their
/// current roles as `O=` and a lifetime capped by those roles.
pub async fn issue_certificate(
    pool: &AnyPool,
    ca: &UserCa,
    user: &str,
    csr_pem: &str,
    requested_ttl: Option<Duration>,
) -> Result<IssuedCert, ProxyError> {
    let role_names = user_roles(pool, user).await?;
    let all_roles = list_roles(pool).await?;
    let held: Vec<&Role> = all_roles
        .iter()
        .filter(|role| role_names.contains(&role.name))
        .collect();
    let ttl = roles::certificate_ttl(requested_ttl, &held)?;
    let issued = ca.issue_client_cert(csr_pem, user, &role_names, ttl)?;
    let roles_json = serde_json::to_string(&role_names)
        .map_err(|error| ProxyError::Internal(format!("roles: {error}")))?;
    sqlx::query(
        "INSERT INTO proxy_certificates (serial, user_name, roles_json, issued_at, not_after) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&issued.serial_hex)
    .bind(user)
    .bind(roles_json)
    .bind(now_ms())
    .bind(i64::try_from(issued.not_after.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
    .execute(pool)
    .await?;
    Ok(issued)
}
