//! The proxy's state in the database: the user CA, roles, clusters, role assignments, TOTP
//! enrolments, invited users and issued certificates. Everything but the CA belongs to a
//! [`Tenant`], and every function here takes the tenant it reads or writes.

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::{AnyPool, Row};
use time::{Duration, OffsetDateTime};

use super::ProxyError;
use super::ca::{IssuedCert, UserCa};
use super::kube::{Catalog, ClusterSpecWithConfig};
use super::roles::{self, ClusterSpec, ProxyConfig, Role};
use super::tenant::Tenant;
use super::totp;
use crate::db::seal::Sealer;

fn now_ms() -> i64 {
    let ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The associated data each sealed secret is bound to: table and row, so a sealed value copied
/// into another row does not open there.
const CA_ROW: &str = "proxy_ca:1";

fn totp_row(tenant: &Tenant, user: &str) -> String {
    tenant.row_id("proxy_totp", user)
}

fn cluster_row(tenant: &Tenant, name: &str) -> String {
    tenant.row_id("proxy_clusters", name)
}

fn seal(sealer: &Sealer, row: &str, plaintext: &str) -> Result<String, ProxyError> {
    sealer
        .seal_for(row, plaintext.as_bytes())
        .map_err(|error| ProxyError::Internal(format!("sealing {row}: {error}")))
}

fn open(sealer: &Sealer, row: &str, sealed: &str) -> Result<String, ProxyError> {
    let bytes = sealer.open_for(row, sealed).map_err(|error| {
        ProxyError::Internal(format!(
            "{row} does not open with this server's key ({error}): was it copied from another row or another server?"
        ))
    })?;
    String::from_utf8(bytes).map_err(|_| ProxyError::Internal(format!("{row}: not UTF-8")))
}

/// The user CA, made on first use, its key sealed. Two servers starting at once both try to
/// insert row 1; the loser reads the winner's CA.
pub async fn load_or_create_ca(pool: &AnyPool, sealer: &Sealer) -> Result<UserCa, ProxyError> {
    if let Some(ca) = load_ca(pool, sealer).await? {
        return Ok(ca);
    }
    let ca = UserCa::generate("hardlab user CA")?;
    let inserted = sqlx::query(
        "INSERT INTO proxy_ca (id, cert_pem, key_pem, created_at) VALUES (1, $1, $2, $3)",
    )
    .bind(ca.cert_pem())
    .bind(seal(sealer, CA_ROW, ca.key_pem())?)
    .bind(now_ms())
    .execute(pool)
    .await;
    match inserted {
        Ok(_) => Ok(ca),
        Err(_) => load_ca(pool, sealer)
            .await?
            .ok_or_else(|| ProxyError::Internal("the user CA could not be stored".into())),
    }
}

async fn load_ca(pool: &AnyPool, sealer: &Sealer) -> Result<Option<UserCa>, ProxyError> {
    let row = sqlx::query("SELECT cert_pem, key_pem FROM proxy_ca WHERE id = 1")
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let key_pem = open(sealer, CA_ROW, &row.try_get::<String, _>(1)?)?;
    UserCa::from_pem(&row.try_get::<String, _>(0)?, &key_pem).map(Some)
}

/// Seals the secrets of rows written before they were sealed (servers before migration 0006
/// stored the CA key, TOTP secrets and kubeconfigs in plaintext). Idempotent; each row is
/// rewritten only while it still holds plaintext, so two servers starting at once agree.
pub async fn seal_plaintext_rows(pool: &AnyPool, sealer: &Sealer) -> Result<u64, ProxyError> {
    let mut sealed = 0;
    for row in sqlx::query("SELECT key_pem FROM proxy_ca WHERE id = 1")
        .fetch_all(pool)
        .await?
    {
        let key_pem: String = row.try_get(0)?;
        if !Sealer::is_sealed_for(&key_pem) {
            sealed += sqlx::query("UPDATE proxy_ca SET key_pem = $1 WHERE id = 1 AND key_pem = $2")
                .bind(seal(sealer, CA_ROW, &key_pem)?)
                .bind(&key_pem)
                .execute(pool)
                .await?
                .rows_affected();
        }
    }
    for row in sqlx::query("SELECT tenant, user_name, secret FROM proxy_totp")
        .fetch_all(pool)
        .await?
    {
        let tenant = Tenant::from_row(row.try_get(0)?);
        let (user, secret): (String, String) = (row.try_get(1)?, row.try_get(2)?);
        if !Sealer::is_sealed_for(&secret) {
            sealed += sqlx::query(
                "UPDATE proxy_totp SET secret = $1 WHERE tenant = $2 AND user_name = $3 AND secret = $4",
            )
            .bind(seal(sealer, &totp_row(&tenant, &user), &secret)?)
            .bind(tenant.as_str())
            .bind(&user)
            .bind(&secret)
            .execute(pool)
            .await?
            .rows_affected();
        }
    }
    for row in sqlx::query("SELECT tenant, name, kubeconfig FROM proxy_clusters")
        .fetch_all(pool)
        .await?
    {
        let tenant = Tenant::from_row(row.try_get(0)?);
        let (name, kubeconfig): (String, String) = (row.try_get(1)?, row.try_get(2)?);
        if !Sealer::is_sealed_for(&kubeconfig) {
            sealed += sqlx::query(
                "UPDATE proxy_clusters SET kubeconfig = $1 WHERE tenant = $2 AND name = $3 AND kubeconfig = $4",
            )
            .bind(seal(sealer, &cluster_row(&tenant, &name), &kubeconfig)?)
            .bind(tenant.as_str())
            .bind(&name)
            .bind(&kubeconfig)
            .execute(pool)
            .await?
            .rows_affected();
        }
    }
    if sealed > 0 {
        tracing::info!(
            rows = sealed,
            "sealed the access proxy's secrets stored in plaintext"
        );
    }
    Ok(sealed)
}

pub async fn put_role(pool: &AnyPool, tenant: &Tenant, role: &Role) -> Result<(), ProxyError> {
    role.validate()?;
    let spec = serde_json::to_string(role)
        .map_err(|error| ProxyError::Internal(format!("role {}: {error}", role.name)))?;
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM proxy_roles WHERE tenant = $1 AND name = $2")
        .bind(tenant.as_str())
        .bind(&role.name)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO proxy_roles (tenant, name, spec_json, updated_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(tenant.as_str())
    .bind(&role.name)
    .bind(spec)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn delete_role(pool: &AnyPool, tenant: &Tenant, name: &str) -> Result<(), ProxyError> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM proxy_roles WHERE tenant = $1 AND name = $2")
        .bind(tenant.as_str())
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM proxy_user_roles WHERE tenant = $1 AND role_name = $2")
        .bind(tenant.as_str())
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

fn role_from_row(row: &sqlx::any::AnyRow, name_column: usize) -> Result<Role, ProxyError> {
    let name: String = row.try_get(name_column)?;
    let spec: String = row.try_get(name_column + 1)?;
    serde_json::from_str(&spec)
        .map_err(|error| ProxyError::Config(format!("stored role {name}: {error}")))
}

pub async fn list_roles(pool: &AnyPool, tenant: &Tenant) -> Result<Vec<Role>, ProxyError> {
    let rows =
        sqlx::query("SELECT name, spec_json FROM proxy_roles WHERE tenant = $1 ORDER BY name")
            .bind(tenant.as_str())
            .fetch_all(pool)
            .await?;
    rows.iter().map(|row| role_from_row(row, 0)).collect()
}

/// Every tenant's roles, for the proxy's catalog.
pub async fn list_all_roles(pool: &AnyPool) -> Result<Vec<(Tenant, Role)>, ProxyError> {
    let rows = sqlx::query("SELECT tenant, name, spec_json FROM proxy_roles ORDER BY tenant, name")
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| Ok((Tenant::from_row(row.try_get(0)?), role_from_row(row, 1)?)))
        .collect()
}

pub async fn set_user_roles(
    pool: &AnyPool,
    tenant: &Tenant,
    user: &str,
    role_names: &[String],
) -> Result<(), ProxyError> {
    let known = list_roles(pool, tenant).await?;
    for name in role_names {
        if !known.iter().any(|role| &role.name == name) {
            return Err(ProxyError::Config(format!("there is no role {name}")));
        }
    }
    let user = user.trim().to_ascii_lowercase();
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM proxy_user_roles WHERE tenant = $1 AND user_name = $2")
        .bind(tenant.as_str())
        .bind(&user)
        .execute(&mut *tx)
        .await?;
    for name in role_names {
        sqlx::query(
            "INSERT INTO proxy_user_roles (tenant, user_name, role_name) VALUES ($1, $2, $3)",
        )
        .bind(tenant.as_str())
        .bind(&user)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn user_roles(
    pool: &AnyPool,
    tenant: &Tenant,
    user: &str,
) -> Result<Vec<String>, ProxyError> {
    let rows = sqlx::query(
        "SELECT role_name FROM proxy_user_roles WHERE tenant = $1 AND user_name = $2 ORDER BY role_name",
    )
    .bind(tenant.as_str())
    .bind(user)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?)
}

/// Every user of the tenant with roles, and the roles.
pub async fn all_user_roles(
    pool: &AnyPool,
    tenant: &Tenant,
) -> Result<BTreeMap<String, Vec<String>>, ProxyError> {
    let rows = sqlx::query(
        "SELECT user_name, role_name FROM proxy_user_roles WHERE tenant = $1 ORDER BY user_name, role_name",
    )
    .bind(tenant.as_str())
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

fn check_cluster_name(name: &str) -> Result<(), ProxyError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ProxyError::Config(format!(
            "cluster name {name:?}: use letters, digits and -"
        )));
    }
    Ok(())
}

/// Puts a cluster behind the proxy in `tenant`. Only the server calls this with a kubeconfig it
/// holds itself (the config file, or a learner's lab cluster at Start): a kubeconfig is a request
/// the server makes on its own credentials, never something a tenant's admin supplies.
pub async fn put_cluster(
    pool: &AnyPool,
    sealer: &Sealer,
    tenant: &Tenant,
    name: &str,
    labels: &BTreeMap<String, String>,
    kubeconfig_yaml: &str,
) -> Result<(), ProxyError> {
    check_cluster_name(name)?;
    // Refuse a kubeconfig the proxy could not use now rather than at the first request.
    super::kube::UpstreamCluster::from_kubeconfig(name, labels.clone(), kubeconfig_yaml).await?;
    let labels_json = serde_json::to_string(labels)
        .map_err(|error| ProxyError::Internal(format!("labels: {error}")))?;
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM proxy_clusters WHERE tenant = $1 AND name = $2")
        .bind(tenant.as_str())
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO proxy_clusters (tenant, name, labels_json, kubeconfig, updated_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tenant.as_str())
    .bind(name)
    .bind(labels_json)
    .bind(seal(sealer, &cluster_row(tenant, name), kubeconfig_yaml)?)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Changes the labels of a cluster already behind the proxy in `tenant` (what a tenant's admin
/// may do to a cluster: its credentials stay the server's).
pub async fn set_cluster_labels(
    pool: &AnyPool,
    tenant: &Tenant,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), ProxyError> {
    for (key, value) in labels {
        if key.is_empty() || key.len() > 63 || value.len() > 63 {
            return Err(ProxyError::Config(format!(
                "label {key:?}: {value:?}: keys of 1 to 63 characters, values up to 63"
            )));
        }
    }
    let labels_json = serde_json::to_string(labels)
        .map_err(|error| ProxyError::Internal(format!("labels: {error}")))?;
    let updated = sqlx::query(
        "UPDATE proxy_clusters SET labels_json = $1, updated_at = $2 WHERE tenant = $3 AND name = $4",
    )
    .bind(labels_json)
    .bind(now_ms())
    .bind(tenant.as_str())
    .bind(name)
    .execute(pool)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(ProxyError::NotFound(format!("cluster {name}")));
    }
    Ok(())
}

pub async fn delete_cluster(pool: &AnyPool, tenant: &Tenant, name: &str) -> Result<(), ProxyError> {
    sqlx::query("DELETE FROM proxy_clusters WHERE tenant = $1 AND name = $2")
        .bind(tenant.as_str())
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

fn cluster_from_row(
    sealer: &Sealer,
    tenant: &Tenant,
    row: &sqlx::any::AnyRow,
    first: usize,
) -> Result<ClusterSpecWithConfig, ProxyError> {
    let name: String = row.try_get(first)?;
    let labels_json: String = row.try_get(first + 1)?;
    let labels = serde_json::from_str(&labels_json)
        .map_err(|error| ProxyError::Config(format!("stored labels of cluster {name}: {error}")))?;
    let kubeconfig_yaml = open(
        sealer,
        &cluster_row(tenant, &name),
        &row.try_get::<String, _>(first + 2)?,
    )?;
    Ok(ClusterSpecWithConfig {
        spec: ClusterSpec {
            name,
            labels,
            kubeconfig: String::new(),
        },
        kubeconfig_yaml,
    })
}

/// The tenant's clusters with their kubeconfigs opened. A row that does not open (sealed by
/// another key, or copied from another row) is an error, not a silently missing cluster.
pub async fn list_clusters(
    pool: &AnyPool,
    sealer: &Sealer,
    tenant: &Tenant,
) -> Result<Vec<ClusterSpecWithConfig>, ProxyError> {
    let rows = sqlx::query(
        "SELECT name, labels_json, kubeconfig FROM proxy_clusters WHERE tenant = $1 ORDER BY name",
    )
    .bind(tenant.as_str())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| cluster_from_row(sealer, tenant, row, 0))
        .collect()
}

/// Every tenant's clusters, for the proxy's catalog.
pub async fn list_all_clusters(
    pool: &AnyPool,
    sealer: &Sealer,
) -> Result<Vec<(Tenant, ClusterSpecWithConfig)>, ProxyError> {
    let rows = sqlx::query(
        "SELECT tenant, name, labels_json, kubeconfig FROM proxy_clusters ORDER BY tenant, name",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let tenant = Tenant::from_row(row.try_get(0)?);
            let cluster = cluster_from_row(sealer, &tenant, row, 1)?;
            Ok((tenant, cluster))
        })
        .collect()
}

/// Roles and clusters of every tenant from the database, ready for the proxy.
pub async fn build_catalog(
    pool: &AnyPool,
    sealer: &Sealer,
    previous: Option<&Catalog>,
) -> Result<Catalog, ProxyError> {
    let roles = list_all_roles(pool).await?;
    let clusters = list_all_clusters(pool, sealer).await?;
    Ok(Catalog::build(roles, clusters, previous).await)
}

/// Applies a config file to the site's proxy: its roles, clusters and user assignments replace
/// those of the same name; kubeconfig paths are relative to the file. Nothing is written unless
/// all of it is valid.
pub async fn import_config(pool: &AnyPool, sealer: &Sealer, path: &Path) -> Result<(), ProxyError> {
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
    let site = Tenant::site();
    for role in &config.roles {
        put_role(pool, &site, role).await?;
    }
    for (cluster, yaml) in config.clusters.iter().zip(&kubeconfigs) {
        put_cluster(pool, sealer, &site, &cluster.name, &cluster.labels, yaml).await?;
    }
    for user in &config.users {
        set_user_roles(pool, &site, &user.name, &user.roles).await?;
    }
    Ok(())
}

/// What a tenant's admin applies (the web page's editor, `hardlab proxy apply` in their
/// terminal): roles, who holds them, and labels of clusters already in the tenant. Kubeconfigs
/// are refused: a cluster's credentials are the server's, not the admin's. Everything is
/// checked before anything is written; users must exist in the tenant.
pub async fn apply_to_tenant(
    pool: &AnyPool,
    tenant: &Tenant,
    config: &ProxyConfig,
) -> Result<(), ProxyError> {
    for role in &config.roles {
        role.validate()?;
    }
    let existing = list_cluster_names(pool, tenant).await?;
    for cluster in &config.clusters {
        if !cluster.kubeconfig.is_empty() {
            return Err(ProxyError::Config(format!(
                "cluster {}: a kubeconfig cannot be given here; hardlab holds each cluster's credentials and only its labels can be changed",
                cluster.name
            )));
        }
        if !existing.contains(&cluster.name) {
            return Err(ProxyError::NotFound(format!(
                "cluster {} (this tenant has: {})",
                cluster.name,
                existing.join(", ")
            )));
        }
    }
    let owner = super::tenant::owner_name(pool, tenant).await?;
    for user in &config.users {
        let name = user.name.trim().to_ascii_lowercase();
        if !tenant.is_site()
            && owner.as_deref() != Some(name.as_str())
            && !tenant_user_exists(pool, tenant, &name).await?
        {
            return Err(ProxyError::NotFound(format!(
                "user {name} in this tenant: invite them first (hardlab proxy invite {name})"
            )));
        }
        let mut known: Vec<&str> = config.roles.iter().map(|r| r.name.as_str()).collect();
        let stored = list_roles(pool, tenant).await?;
        known.extend(stored.iter().map(|r| r.name.as_str()));
        if let Some(missing) = user.roles.iter().find(|r| !known.contains(&r.as_str())) {
            return Err(ProxyError::Config(format!(
                "user {name}: there is no role {missing}"
            )));
        }
    }
    for role in &config.roles {
        put_role(pool, tenant, role).await?;
    }
    for cluster in &config.clusters {
        set_cluster_labels(pool, tenant, &cluster.name, &cluster.labels).await?;
    }
    for user in &config.users {
        set_user_roles(pool, tenant, &user.name, &user.roles).await?;
    }
    Ok(())
}

async fn list_cluster_names(pool: &AnyPool, tenant: &Tenant) -> Result<Vec<String>, ProxyError> {
    let rows = sqlx::query("SELECT name FROM proxy_clusters WHERE tenant = $1 ORDER BY name")
        .bind(tenant.as_str())
        .fetch_all(pool)
        .await?;
    Ok(rows
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?)
}

/// A simulated user the tenant's admin invites (lab 6's bob): a new random password and an
/// authenticator whose secret goes to the admin, who plays that user in the lab. Inviting again
/// gives new credentials and revokes the old certificates. Returns (password, TOTP secret).
pub async fn invite_tenant_user(
    pool: &AnyPool,
    sealer: &Sealer,
    tenant: &Tenant,
    user: &str,
) -> Result<(String, String), ProxyError> {
    if tenant.is_site() {
        return Err(ProxyError::BadRequest(
            "the site's users are hardlab accounts: create them with hardlab admin create-user"
                .into(),
        ));
    }
    let user = user.trim().to_ascii_lowercase();
    if user.is_empty()
        || user.len() > 32
        || !user
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(ProxyError::BadRequest(format!(
            "user name {user:?}: 1 to 32 lowercase letters, digits, - or _"
        )));
    }
    if super::tenant::owner_name(pool, tenant).await?.as_deref() == Some(user.as_str()) {
        return Err(ProxyError::BadRequest(format!(
            "{user} is this tenant's admin and signs in with their hardlab account"
        )));
    }
    let password = crate::db::random_id();
    let hash = crate::web::accounts::hash_password(&password)
        .await
        .map_err(|error| ProxyError::Internal(format!("hashing a password: {error}")))?;
    let secret = totp::new_secret();
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM proxy_tenant_users WHERE tenant = $1 AND user_name = $2")
        .bind(tenant.as_str())
        .bind(&user)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO proxy_tenant_users (tenant, user_name, password_hash, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(tenant.as_str())
    .bind(&user)
    .bind(hash)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM proxy_totp WHERE tenant = $1 AND user_name = $2")
        .bind(tenant.as_str())
        .bind(&user)
        .execute(&mut *tx)
        .await?;
    // Confirmed at once: the admin who holds the secret is the one playing this user.
    sqlx::query(
        "INSERT INTO proxy_totp (tenant, user_name, secret, confirmed, last_step) VALUES ($1, $2, $3, 1, NULL)",
    )
    .bind(tenant.as_str())
    .bind(&user)
    .bind(seal(sealer, &totp_row(tenant, &user), &secret)?)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    revoke_user_certificates(pool, tenant, &user).await?;
    Ok((password, secret))
}

pub async fn tenant_user_exists(
    pool: &AnyPool,
    tenant: &Tenant,
    user: &str,
) -> Result<bool, ProxyError> {
    Ok(
        sqlx::query("SELECT 1 FROM proxy_tenant_users WHERE tenant = $1 AND user_name = $2")
            .bind(tenant.as_str())
            .bind(user)
            .fetch_optional(pool)
            .await?
            .is_some(),
    )
}

/// The users invited into a tenant.
pub async fn tenant_users(pool: &AnyPool, tenant: &Tenant) -> Result<Vec<String>, ProxyError> {
    let rows = sqlx::query(
        "SELECT user_name FROM proxy_tenant_users WHERE tenant = $1 ORDER BY user_name",
    )
    .bind(tenant.as_str())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?)
}

/// Checks an invited user's password. Wrong ones count towards the same throttle as wrong codes.
pub async fn check_tenant_user_password(
    pool: &AnyPool,
    tenant: &Tenant,
    user: &str,
    password: &str,
) -> Result<bool, ProxyError> {
    let now = now_ms();
    if code_blocked_for(pool, tenant, user, now).await? > 0 {
        return Ok(false);
    }
    let row = sqlx::query(
        "SELECT password_hash FROM proxy_tenant_users WHERE tenant = $1 AND user_name = $2",
    )
    .bind(tenant.as_str())
    .bind(user)
    .fetch_optional(pool)
    .await?;
    let stored: Option<String> = row.map(|row| row.try_get(0)).transpose()?;
    let valid = crate::web::accounts::password_matches(password, stored.as_deref()).await;
    if !valid {
        record_code_failure(pool, tenant, user, now).await?;
    }
    Ok(valid)
}

/// Wrong codes a user may enter before waiting; then the wait doubles from [`FIRST_BLOCK_MS`]
/// up to [`MAX_BLOCK_MS`]. Six digits are a million guesses: unthrottled, a script finds a code
/// within a day; throttled, never within a code's 90-second life.
const FREE_CODE_FAILURES: i64 = 5;
const FIRST_BLOCK_MS: i64 = 30_000;
const MAX_BLOCK_MS: i64 = 15 * 60_000;
/// Failures older than this are forgotten.
const CODE_FAILURE_WINDOW_MS: i64 = 60 * 60_000;

/// The words for a wrong, replayed or missing code on a form that asks only for the code.
pub const WRONG_CODE: &str = "that code is not right, or was already used: enter the current code from your authenticator app";

/// Starts (or restarts) TOTP enrolment of a site account: a new secret, not yet usable for
/// login until confirmed with a code from the authenticator app. A user who already has a
/// confirmed authenticator must give its current code first: otherwise a stolen password (or an
/// unattended session) would be enough to move the second factor to the thief's phone. Returns
/// the secret. (A learner's second factor is their account's, in every tenant they own.)
pub async fn enroll_totp(
    pool: &AnyPool,
    sealer: &Sealer,
    user: &str,
    current_code: Option<&str>,
) -> Result<String, ProxyError> {
    let site = Tenant::site();
    if totp_enrolled(pool, &site, user).await? {
        let code = current_code
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| {
                ProxyError::Unauthorized(
                    "you already have an authenticator: enter its current code to replace it"
                        .into(),
                )
            })?;
        check_totp(pool, sealer, &site, user, code, false).await?;
    }
    enroll_totp_proven(pool, sealer, user).await
}

/// [`enroll_totp`] for a caller that has checked the user's current second factor itself (a
/// code, or a security key: [`super::webauthn::require_current_factor`]).
pub async fn enroll_totp_proven(
    pool: &AnyPool,
    sealer: &Sealer,
    user: &str,
) -> Result<String, ProxyError> {
    let site = Tenant::site();
    let secret = totp::new_secret();
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM proxy_totp WHERE tenant = $1 AND user_name = $2")
        .bind(site.as_str())
        .bind(user)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO proxy_totp (tenant, user_name, secret, confirmed, last_step) VALUES ($1, $2, $3, 0, NULL)",
    )
    .bind(site.as_str())
    .bind(user)
    .bind(seal(sealer, &totp_row(&site, user), &secret)?)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(secret)
}

/// Removes a site account's authenticator app (the caller has checked the user's current second
/// factor); their security keys stay.
pub async fn remove_totp(pool: &AnyPool, user: &str) -> Result<(), ProxyError> {
    sqlx::query("DELETE FROM proxy_totp WHERE tenant = $1 AND user_name = $2")
        .bind(Tenant::site().as_str())
        .bind(user)
        .execute(pool)
        .await?;
    Ok(())
}

/// Removes a site account's second factors (authenticator app and security keys) without a
/// code: only for an admin's reset, which the caller audits. The user signs in with the password alone until they enrol again.
pub async fn reset_second_factor(pool: &AnyPool, user: &str) -> Result<(), ProxyError> {
    let site = Tenant::site();
    sqlx::query("DELETE FROM proxy_totp WHERE tenant = $1 AND user_name = $2")
        .bind(site.as_str())
        .bind(user)
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM proxy_code_failures WHERE tenant = $1 AND user_name = $2")
        .bind(site.as_str())
        .bind(user)
        .execute(pool)
        .await?;
    super::webauthn::remove_all(pool, user).await
}

pub async fn totp_enrolled(
    pool: &AnyPool,
    tenant: &Tenant,
    user: &str,
) -> Result<bool, ProxyError> {
    let row = sqlx::query("SELECT confirmed FROM proxy_totp WHERE tenant = $1 AND user_name = $2")
        .bind(tenant.as_str())
        .bind(user)
        .fetch_optional(pool)
        .await?;
    Ok(row.is_some_and(|row| row.try_get::<i64, _>(0).unwrap_or(0) == 1))
}

/// Whether signing in to the site needs a second factor: the account has a confirmed
/// authenticator app or a security key.
pub async fn has_second_factor(pool: &AnyPool, user: &str) -> Result<bool, ProxyError> {
    Ok(totp_enrolled(pool, &Tenant::site(), user).await?
        || super::webauthn::has_keys(pool, user).await?)
}

/// The second step of a web sign-in whose password was right: nothing for a user without a
/// second factor (`false`); otherwise `code` must be a current, unused code (`true`). Errors say
/// what to do, and wrong codes count towards the same throttle as `hardlab login`'s.
pub async fn check_sign_in_second_factor(
    pool: &AnyPool,
    sealer: &Sealer,
    user: &str,
    code: &str,
) -> Result<bool, ProxyError> {
    if !has_second_factor(pool, user).await? {
        return Ok(false);
    }
    if !totp_enrolled(pool, &Tenant::site(), user).await? {
        // Security keys only: the sign-in page asks for one when no code is typed.
        return Err(ProxyError::Unauthorized(
            "This account signs in with a security key: leave the code empty and use the key."
                .into(),
        ));
    }
    if code.trim().is_empty() {
        return Err(ProxyError::Unauthorized(
            "This account has an authenticator: enter its current 6-digit code too.".into(),
        ));
    }
    match check_totp(pool, sealer, &Tenant::site(), user, code, false).await {
        Ok(()) => Ok(true),
        Err(ProxyError::Unauthorized(_)) => Err(ProxyError::Unauthorized(
            "Wrong username, password or code.".into(),
        )),
        Err(other) => Err(other),
    }
}

/// Checks a code of `user` in `tenant` and burns its time step, so it cannot be used again. With
/// `confirming`, an unconfirmed enrolment is accepted and becomes confirmed. Wrong codes count
/// against the user; past [`FREE_CODE_FAILURES`] every attempt is refused until the wait is
/// over, right code or not.
pub async fn check_totp(
    pool: &AnyPool,
    sealer: &Sealer,
    tenant: &Tenant,
    user: &str,
    code: &str,
    confirming: bool,
) -> Result<(), ProxyError> {
    let now = now_ms();
    let wait_ms = code_blocked_for(pool, tenant, user, now).await?;
    if wait_ms > 0 {
        return Err(ProxyError::Throttled {
            retry_after_secs: u64::try_from((wait_ms + 999) / 1000).unwrap_or(1),
        });
    }
    let refused = || ProxyError::Unauthorized(WRONG_CODE.into());
    let Some(row) = sqlx::query(
        "SELECT secret, confirmed, last_step FROM proxy_totp WHERE tenant = $1 AND user_name = $2",
    )
    .bind(tenant.as_str())
    .bind(user)
    .fetch_optional(pool)
    .await?
    else {
        record_code_failure(pool, tenant, user, now).await?;
        return Err(refused());
    };
    let secret = open(
        sealer,
        &totp_row(tenant, user),
        &row.try_get::<String, _>(0)?,
    )?;
    let confirmed: i64 = row.try_get(1)?;
    let last_step: Option<i64> = row.try_get(2)?;
    if confirmed == 0 && !confirming {
        record_code_failure(pool, tenant, user, now).await?;
        return Err(refused());
    }
    let unix_seconds = now.div_euclid(1000);
    let Some(step) = totp::verify(&secret, code, unix_seconds, last_step)? else {
        record_code_failure(pool, tenant, user, now).await?;
        return Err(refused());
    };
    // Compare-and-set on last_step: of two logins racing with one code, only one wins.
    let updated = sqlx::query(
        "UPDATE proxy_totp SET last_step = $1, confirmed = 1 \
         WHERE tenant = $2 AND user_name = $3 AND (last_step IS NULL OR last_step < $4)",
    )
    .bind(step)
    .bind(tenant.as_str())
    .bind(user)
    .bind(step)
    .execute(pool)
    .await?;
    if updated.rows_affected() == 0 {
        record_code_failure(pool, tenant, user, now).await?;
        return Err(refused());
    }
    clear_code_failures(pool, tenant, user).await
}

/// Forgets `user`'s wrong codes (and failed security keys) after a right one.
pub(crate) async fn clear_code_failures(
    pool: &AnyPool,
    tenant: &Tenant,
    user: &str,
) -> Result<(), ProxyError> {
    sqlx::query("DELETE FROM proxy_code_failures WHERE tenant = $1 AND user_name = $2")
        .bind(tenant.as_str())
        .bind(user)
        .execute(pool)
        .await?;
    Ok(())
}

pub(crate) async fn code_blocked_for(
    pool: &AnyPool,
    tenant: &Tenant,
    user: &str,
    now: i64,
) -> Result<i64, ProxyError> {
    let row = sqlx::query(
        "SELECT blocked_until FROM proxy_code_failures WHERE tenant = $1 AND user_name = $2",
    )
    .bind(tenant.as_str())
    .bind(user)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some(row) => (row.try_get::<i64, _>(0)? - now).max(0),
        None => 0,
    })
}

pub(crate) async fn record_code_failure(
    pool: &AnyPool,
    tenant: &Tenant,
    user: &str,
    now: i64,
) -> Result<(), ProxyError> {
    sqlx::query(
        "DELETE FROM proxy_code_failures WHERE tenant = $1 AND user_name = $2 AND last_failure_at < $3 AND blocked_until < $4",
    )
    .bind(tenant.as_str())
    .bind(user)
    .bind(now - CODE_FAILURE_WINDOW_MS)
    .bind(now)
    .execute(pool)
    .await?;
    // Counted in the database, atomically, so several servers count one user together.
    sqlx::query(
        "INSERT INTO proxy_code_failures (tenant, user_name, failures, last_failure_at, blocked_until) \
         VALUES ($1, $2, 1, $3, 0) ON CONFLICT (tenant, user_name) DO UPDATE \
         SET failures = proxy_code_failures.failures + 1, last_failure_at = $3",
    )
    .bind(tenant.as_str())
    .bind(user)
    .bind(now)
    .execute(pool)
    .await?;
    let row = sqlx::query(
        "SELECT failures FROM proxy_code_failures WHERE tenant = $1 AND user_name = $2",
    )
    .bind(tenant.as_str())
    .bind(user)
    .fetch_one(pool)
    .await?;
    let failures: i64 = row.try_get(0)?;
    if failures >= FREE_CODE_FAILURES {
        let doublings = u32::try_from((failures - FREE_CODE_FAILURES).min(10)).unwrap_or(10);
        let block = (FIRST_BLOCK_MS << doublings).min(MAX_BLOCK_MS);
        sqlx::query(
            "UPDATE proxy_code_failures SET blocked_until = $1 WHERE tenant = $2 AND user_name = $3",
        )
        .bind(now + block)
        .bind(tenant.as_str())
        .bind(user)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Signs a certificate for `user` of `tenant` (already authenticated) for the key in `csr_pem`,
/// with their current roles as `O=` and a lifetime capped by the site's maximum and those roles,
/// and records it: the proxy refuses certificates it has no record of, takes the tenant from
/// that record, and revokes by it. Returns the certificate and the API token that goes with it.
pub async fn issue_certificate(
    pool: &AnyPool,
    ca: &UserCa,
    tenant: &Tenant,
    user: &str,
    csr_pem: &str,
    requested_ttl: Option<Duration>,
    site_max_ttl: Duration,
) -> Result<(IssuedCert, String), ProxyError> {
    let role_names = user_roles(pool, tenant, user).await?;
    let all_roles = list_roles(pool, tenant).await?;
    let held: Vec<&Role> = all_roles
        .iter()
        .filter(|role| role_names.contains(&role.name))
        .collect();
    let ttl = roles::certificate_ttl(requested_ttl, &held, site_max_ttl)?;
    let issued = ca.issue_client_cert(csr_pem, user, &role_names, ttl)?;
    let token = format!("hlt_{}{}", crate::db::random_id(), crate::db::random_id());
    record_certificate(pool, tenant, &issued, user, &role_names, Some(&token)).await?;
    Ok((issued, token))
}

fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Puts an issued certificate on record (the proxy accepts only recorded ones), with the hash of
/// its API token when it has one.
pub async fn record_certificate(
    pool: &AnyPool,
    tenant: &Tenant,
    issued: &IssuedCert,
    user: &str,
    role_names: &[String],
    api_token: Option<&str>,
) -> Result<(), ProxyError> {
    let roles_json = serde_json::to_string(role_names)
        .map_err(|error| ProxyError::Internal(format!("roles: {error}")))?;
    sqlx::query(
        "INSERT INTO proxy_certificates (serial, tenant, user_name, roles_json, issued_at, not_after, api_token_hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&issued.serial_hex)
    .bind(tenant.as_str())
    .bind(user)
    .bind(roles_json)
    .bind(now_ms())
    .bind(i64::try_from(issued.not_after.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
    .bind(api_token.map(token_hash))
    .execute(pool)
    .await?;
    Ok(())
}

/// Revokes one certificate by serial (hex, as `hardlab login` and the audit log show it).
/// Returns the tenant and user it was issued to.
pub async fn revoke_certificate(
    pool: &AnyPool,
    serial: &str,
) -> Result<(Tenant, String), ProxyError> {
    let serial = serial.trim().to_ascii_lowercase();
    let (tenant, user) = certificate_owner(pool, &serial)
        .await?
        .ok_or_else(|| ProxyError::NotFound(format!("certificate with serial {serial}")))?;
    sqlx::query(
        "UPDATE proxy_certificates SET revoked_at = $1 WHERE serial = $2 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(&serial)
    .execute(pool)
    .await?;
    Ok((tenant, user))
}

/// Whose a certificate is (tenant and user), if it is on record.
pub async fn certificate_owner(
    pool: &AnyPool,
    serial: &str,
) -> Result<Option<(Tenant, String)>, ProxyError> {
    let serial = serial.trim().to_ascii_lowercase();
    let row = sqlx::query("SELECT tenant, user_name FROM proxy_certificates WHERE serial = $1")
        .bind(&serial)
        .fetch_optional(pool)
        .await?;
    row.map(|row| Ok((Tenant::from_row(row.try_get(0)?), row.try_get(1)?)))
        .transpose()
}

/// Revokes every certificate `user` of `tenant` holds until now; later logins get working ones.
pub async fn revoke_user_certificates(
    pool: &AnyPool,
    tenant: &Tenant,
    user: &str,
) -> Result<(), ProxyError> {
    let now = now_ms();
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM proxy_user_revocations WHERE tenant = $1 AND user_name = $2")
        .bind(tenant.as_str())
        .bind(user)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO proxy_user_revocations (tenant, user_name, revoked_before) VALUES ($1, $2, $3)",
    )
    .bind(tenant.as_str())
    .bind(user)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What the record says of a certificate the TLS layer accepted: its tenant, and why it may not
/// be used (`None` when it may). It must be on record for this user, not revoked, and not issued
/// before a revocation of all the user's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub tenant: Tenant,
    pub refusal: Option<String>,
}

pub async fn certificate_standing(
    pool: &AnyPool,
    serial: &str,
    user: &str,
) -> Result<Standing, ProxyError> {
    let row = sqlx::query(
        "SELECT c.tenant, c.user_name, c.issued_at, c.revoked_at, r.revoked_before \
         FROM proxy_certificates c LEFT JOIN proxy_user_revocations r \
         ON r.tenant = c.tenant AND r.user_name = c.user_name \
         WHERE c.serial = $1",
    )
    .bind(serial)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(Standing {
            tenant: Tenant::site(),
            refusal: Some(
                "this certificate is not on record at this hardlab server: run `hardlab login`"
                    .into(),
            ),
        });
    };
    let tenant = Tenant::from_row(row.try_get(0)?);
    let owner: String = row.try_get(1)?;
    let issued_at: i64 = row.try_get(2)?;
    let revoked_at: Option<i64> = row.try_get(3)?;
    let revoked_before: Option<i64> = row.try_get(4)?;
    let refusal = if owner != user {
        Some("this certificate is not on record for its holder".into())
    } else if revoked_at.is_some() {
        Some("your certificate was revoked: run `hardlab login` for a new one".into())
    } else if revoked_before.is_some_and(|before| issued_at <= before) {
        Some("your certificates were revoked: run `hardlab login` for a new one".into())
    } else {
        None
    };
    Ok(Standing { tenant, refusal })
}

/// Why a certificate may not be used, or `None` when it may (see [`certificate_standing`]).
pub async fn certificate_refusal(
    pool: &AnyPool,
    serial: &str,
    user: &str,
) -> Result<Option<String>, ProxyError> {
    Ok(certificate_standing(pool, serial, user).await?.refusal)
}

/// Who holds an API token from `hardlab login`: the tenant and user of its certificate, while
/// that certificate is valid (not expired, not revoked). Anything else is `Unauthorized`.
pub async fn token_holder(pool: &AnyPool, token: &str) -> Result<(Tenant, String), ProxyError> {
    let refused = |why: &str| ProxyError::Unauthorized(format!("{why}: run `hardlab login`"));
    let row = sqlx::query(
        "SELECT serial, user_name, not_after FROM proxy_certificates WHERE api_token_hash = $1",
    )
    .bind(token_hash(token.trim()))
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| refused("this token is not on record"))?;
    let serial: String = row.try_get(0)?;
    let user: String = row.try_get(1)?;
    let not_after: i64 = row.try_get(2)?;
    if not_after <= now_ms() {
        return Err(refused("your login has expired"));
    }
    let standing = certificate_standing(pool, &serial, &user).await?;
    if let Some(refusal) = standing.refusal {
        return Err(ProxyError::Unauthorized(refusal));
    }
    Ok((standing.tenant, user))
}
