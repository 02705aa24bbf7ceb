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
use crate::db::seal::Sealer;

fn now_ms() -> i64 {
    let ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The associated data each sealed secret is bound to: table and row, so a sealed value copied
/// into another row does not open there.
const CA_ROW: &str = "proxy_ca:1";

fn totp_row(user: &str) -> String {
    format!("proxy_totp:{user}")
}

fn cluster_row(name: &str) -> String {
    format!("proxy_clusters:{name}")
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
    for row in sqlx::query("SELECT user_name, secret FROM proxy_totp")
        .fetch_all(pool)
        .await?
    {
        let (user, secret): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        if !Sealer::is_sealed_for(&secret) {
            sealed += sqlx::query(
                "UPDATE proxy_totp SET secret = $1 WHERE user_name = $2 AND secret = $3",
            )
            .bind(seal(sealer, &totp_row(&user), &secret)?)
            .bind(&user)
            .bind(&secret)
            .execute(pool)
            .await?
            .rows_affected();
        }
    }
    for row in sqlx::query("SELECT name, kubeconfig FROM proxy_clusters")
        .fetch_all(pool)
        .await?
    {
        let (name, kubeconfig): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        if !Sealer::is_sealed_for(&kubeconfig) {
            sealed += sqlx::query(
                "UPDATE proxy_clusters SET kubeconfig = $1 WHERE name = $2 AND kubeconfig = $3",
            )
            .bind(seal(sealer, &cluster_row(&name), &kubeconfig)?)
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
    sealer: &Sealer,
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
    .bind(seal(sealer, &cluster_row(name), kubeconfig_yaml)?)
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

/// Every cluster with its kubeconfig opened. A row that does not open (sealed by another key,
/// or copied from another row) is an error, not a silently missing cluster.
pub async fn list_clusters(
    pool: &AnyPool,
    sealer: &Sealer,
) -> Result<Vec<ClusterSpecWithConfig>, ProxyError> {
    let rows =
        sqlx::query("SELECT name, labels_json, kubeconfig FROM proxy_clusters ORDER BY name")
            .fetch_all(pool)
            .await?;
    rows.iter()
        .map(|row| {
            let name: String = row.try_get(0)?;
            let name_for_row = name.clone();
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
                kubeconfig_yaml: open(
                    sealer,
                    &cluster_row(&name_for_row),
                    &row.try_get::<String, _>(2)?,
                )?,
            })
        })
        .collect()
}

/// Roles and clusters from the database, ready for the proxy.
pub async fn build_catalog(
    pool: &AnyPool,
    sealer: &Sealer,
    previous: Option<&Catalog>,
) -> Result<Catalog, ProxyError> {
    let roles = list_roles(pool).await?;
    let clusters = list_clusters(pool, sealer).await?;
    Ok(Catalog::build(roles, clusters, previous).await)
}

/// Applies a config file: its roles, clusters and user assignments replace those of the same
/// name; kubeconfig paths are relative to the file. Nothing is written unless all of it is valid.
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
    for role in &config.roles {
        put_role(pool, role).await?;
    }
    for (cluster, yaml) in config.clusters.iter().zip(&kubeconfigs) {
        put_cluster(pool, sealer, &cluster.name, &cluster.labels, yaml).await?;
    }
    for user in &config.users {
        set_user_roles(pool, &user.name, &user.roles).await?;
    }
    Ok(())
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

/// Starts (or restarts) TOTP enrolment: a new secret, not yet usable for login until confirmed
/// with a code from the authenticator app. A user who already has a confirmed authenticator must
/// give its current code first: otherwise a stolen password (or an unattended session) would be
/// enough to move the second factor to the thief's phone. Returns the secret.
pub async fn enroll_totp(
    pool: &AnyPool,
    sealer: &Sealer,
    user: &str,
    current_code: Option<&str>,
) -> Result<String, ProxyError> {
    if totp_enrolled(pool, user).await? {
        let code = current_code
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| {
                ProxyError::Unauthorized(
                    "you already have an authenticator: enter its current code to replace it"
                        .into(),
                )
            })?;
        check_totp(pool, sealer, user, code, false).await?;
    }
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
    .bind(seal(sealer, &totp_row(user), &secret)?)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(secret)
}

/// Removes a user's authenticator after checking its current code.
pub async fn remove_totp(
    pool: &AnyPool,
    sealer: &Sealer,
    user: &str,
    code: &str,
) -> Result<(), ProxyError> {
    check_totp(pool, sealer, user, code, false).await?;
    reset_second_factor(pool, user).await
}

/// Removes a user's second factor without a code: only for an admin's reset, which the caller
/// audits. The user signs in with the password alone until they enrol again.
pub async fn reset_second_factor(pool: &AnyPool, user: &str) -> Result<(), ProxyError> {
    sqlx::query("DELETE FROM proxy_totp WHERE user_name = $1")
        .bind(user)
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM proxy_code_failures WHERE user_name = $1")
        .bind(user)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn totp_enrolled(pool: &AnyPool, user: &str) -> Result<bool, ProxyError> {
    let row = sqlx::query("SELECT confirmed FROM proxy_totp WHERE user_name = $1")
        .bind(user)
        .fetch_optional(pool)
        .await?;
    Ok(row.is_some_and(|row| row.try_get::<i64, _>(0).unwrap_or(0) == 1))
}

/// Whether signing in needs a second factor: the user has a confirmed one.
pub async fn has_second_factor(pool: &AnyPool, user: &str) -> Result<bool, ProxyError> {
    totp_enrolled(pool, user).await
}

/// The second step of a web sign-in whose password was right: nothing for a user without a
/// second factor; otherwise `code` must be a current, unused code. Errors say what to do, and
/// wrong codes count towards the same throttle as `hardlab login`'s.
pub async fn check_sign_in_second_factor(
    pool: &AnyPool,
    sealer: &Sealer,
    user: &str,
    code: &str,
) -> Result<(), ProxyError> {
    if !has_second_factor(pool, user).await? {
        return Ok(());
    }
    if code.trim().is_empty() {
        return Err(ProxyError::Unauthorized(
            "This account has an authenticator: enter its current 6-digit code too.".into(),
        ));
    }
    match check_totp(pool, sealer, user, code, false).await {
        Err(ProxyError::Unauthorized(_)) => Err(ProxyError::Unauthorized(
            "Wrong username, password or code.".into(),
        )),
        other => other,
    }
}

/// Checks a code and burns its time step, so it cannot be used again. With `confirming`, an
/// unconfirmed enrolment is accepted and becomes confirmed. Wrong codes count against the user;
/// past [`FREE_CODE_FAILURES`] every attempt is refused until the wait is over, right code or not.
pub async fn check_totp(
    pool: &AnyPool,
    sealer: &Sealer,
    user: &str,
    code: &str,
    confirming: bool,
) -> Result<(), ProxyError> {
    let now = now_ms();
    let wait_ms = code_blocked_for(pool, user, now).await?;
    if wait_ms > 0 {
        return Err(ProxyError::Throttled {
            retry_after_secs: u64::try_from((wait_ms + 999) / 1000).unwrap_or(1),
        });
    }
    let refused = || ProxyError::Unauthorized(WRONG_CODE.into());
    let Some(row) =
        sqlx::query("SELECT secret, confirmed, last_step FROM proxy_totp WHERE user_name = $1")
            .bind(user)
            .fetch_optional(pool)
            .await?
    else {
        record_code_failure(pool, user, now).await?;
        return Err(refused());
    };
    let secret = open(sealer, &totp_row(user), &row.try_get::<String, _>(0)?)?;
    let confirmed: i64 = row.try_get(1)?;
    let last_step: Option<i64> = row.try_get(2)?;
    if confirmed == 0 && !confirming {
        record_code_failure(pool, user, now).await?;
        return Err(refused());
    }
    let unix_seconds = now.div_euclid(1000);
    let Some(step) = totp::verify(&secret, code, unix_seconds, last_step)? else {
        record_code_failure(pool, user, now).await?;
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
        record_code_failure(pool, user, now).await?;
        return Err(refused());
    }
    sqlx::query("DELETE FROM proxy_code_failures WHERE user_name = $1")
        .bind(user)
        .execute(pool)
        .await?;
    Ok(())
}

async fn code_blocked_for(pool: &AnyPool, user: &str, now: i64) -> Result<i64, ProxyError> {
    let row = sqlx::query("SELECT blocked_until FROM proxy_code_failures WHERE user_name = $1")
        .bind(user)
        .fetch_optional(pool)
        .await?;
    Ok(match row {
        Some(row) => (row.try_get::<i64, _>(0)? - now).max(0),
        None => 0,
    })
}

async fn record_code_failure(pool: &AnyPool, user: &str, now: i64) -> Result<(), ProxyError> {
    sqlx::query(
        "DELETE FROM proxy_code_failures WHERE user_name = $1 AND last_failure_at < $2 AND blocked_until < $3",
    )
    .bind(user)
    .bind(now - CODE_FAILURE_WINDOW_MS)
    .bind(now)
    .execute(pool)
    .await?;
    // Counted in the database, atomically, so several servers count one user together.
    sqlx::query(
        "INSERT INTO proxy_code_failures (user_name, failures, last_failure_at, blocked_until) \
         VALUES ($1, 1, $2, 0) ON CONFLICT (user_name) DO UPDATE \
         SET failures = proxy_code_failures.failures + 1, last_failure_at = $2",
    )
    .bind(user)
    .bind(now)
    .execute(pool)
    .await?;
    let row = sqlx::query("SELECT failures FROM proxy_code_failures WHERE user_name = $1")
        .bind(user)
        .fetch_one(pool)
        .await?;
    let failures: i64 = row.try_get(0)?;
    if failures >= FREE_CODE_FAILURES {
        let doublings = u32::try_from((failures - FREE_CODE_FAILURES).min(10)).unwrap_or(10);
        let block = (FIRST_BLOCK_MS << doublings).min(MAX_BLOCK_MS);
        sqlx::query("UPDATE proxy_code_failures SET blocked_until = $1 WHERE user_name = $2")
            .bind(now + block)
            .bind(user)
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Signs a certificate for `user` (already authenticated) for the key in `csr_pem`, with their
/// current roles as `O=` and a lifetime capped by the site's maximum and those roles, and records
/// it: the proxy refuses certificates it has no record of, and revokes by that record.
pub async fn issue_certificate(
    pool: &AnyPool,
    ca: &UserCa,
    user: &str,
    csr_pem: &str,
    requested_ttl: Option<Duration>,
    site_max_ttl: Duration,
) -> Result<IssuedCert, ProxyError> {
    let role_names = user_roles(pool, user).await?;
    let all_roles = list_roles(pool).await?;
    let held: Vec<&Role> = all_roles
        .iter()
        .filter(|role| role_names.contains(&role.name))
        .collect();
    let ttl = roles::certificate_ttl(requested_ttl, &held, site_max_ttl)?;
    let issued = ca.issue_client_cert(csr_pem, user, &role_names, ttl)?;
    record_certificate(pool, &issued, user, &role_names).await?;
    Ok(issued)
}

/// Puts an issued certificate on record (the proxy accepts only recorded ones).
pub async fn record_certificate(
    pool: &AnyPool,
    issued: &IssuedCert,
    user: &str,
    role_names: &[String],
) -> Result<(), ProxyError> {
    let roles_json = serde_json::to_string(role_names)
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
    Ok(())
}

/// Revokes one certificate by serial (hex, as `hardlab login` and the audit log show it).
/// Returns the user it was issued to.
pub async fn revoke_certificate(pool: &AnyPool, serial: &str) -> Result<String, ProxyError> {
    let serial = serial.trim().to_ascii_lowercase();
    let row = sqlx::query("SELECT user_name FROM proxy_certificates WHERE serial = $1")
        .bind(&serial)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| ProxyError::NotFound(format!("certificate with serial {serial}")))?;
    sqlx::query(
        "UPDATE proxy_certificates SET revoked_at = $1 WHERE serial = $2 AND revoked_at IS NULL",
    )
    .bind(now_ms())
    .bind(&serial)
    .execute(pool)
    .await?;
    Ok(row.try_get(0)?)
}

/// Who a certificate was issued to, if it is on record.
pub async fn certificate_owner(pool: &AnyPool, serial: &str) -> Result<Option<String>, ProxyError> {
    let serial = serial.trim().to_ascii_lowercase();
    let row = sqlx::query("SELECT user_name FROM proxy_certificates WHERE serial = $1")
        .bind(&serial)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// Revokes every certificate issued to `user` until now; later logins get working ones.
pub async fn revoke_user_certificates(pool: &AnyPool, user: &str) -> Result<(), ProxyError> {
    let now = now_ms();
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM proxy_user_revocations WHERE user_name = $1")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO proxy_user_revocations (user_name, revoked_before) VALUES ($1, $2)")
        .bind(user)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Why a certificate the TLS layer accepted may not be used, or `None` when it may: it must be on
/// record for this user, not revoked, and not issued before a revocation of all the user's.
pub async fn certificate_refusal(
    pool: &AnyPool,
    serial: &str,
    user: &str,
) -> Result<Option<String>, ProxyError> {
    let row = sqlx::query(
        "SELECT c.user_name, c.issued_at, c.revoked_at, r.revoked_before \
         FROM proxy_certificates c LEFT JOIN proxy_user_revocations r ON r.user_name = c.user_name \
         WHERE c.serial = $1",
    )
    .bind(serial)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(Some(
            "this certificate is not on record at this hardlab server: run `hardlab login`".into(),
        ));
    };
    let owner: String = row.try_get(0)?;
    let issued_at: i64 = row.try_get(1)?;
    let revoked_at: Option<i64> = row.try_get(2)?;
    let revoked_before: Option<i64> = row.try_get(3)?;
    Ok(if owner != user {
        Some("this certificate is not on record for its holder".into())
    } else if revoked_at.is_some() {
        Some("your certificate was revoked: run `hardlab login` for a new one".into())
    } else if revoked_before.is_some_and(|before| issued_at <= before) {
        Some("your certificates were revoked: run `hardlab login` for a new one".into())
    } else {
        None
    })
}
