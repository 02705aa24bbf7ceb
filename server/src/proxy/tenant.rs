//! Tenants: the one rule that keeps proxy state apart. Every proxy row carries a tenant and every
//! query names one; a request's tenant comes from the server's own record (the session's account,
//! or the certificate's record), never from the client or the learner's node.
//!
//! The site's proxy is [`Tenant::site`] (the empty name). A learner who starts lab 6 gets a tenant
//! named after their account ([`Tenant::for_learner`]): they administer it (roles, invited
//! simulated users such as bob, their lab cluster's labels) and nothing in it reaches the site's
//! real roles or another learner's tenant.

use std::fmt;

use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};

use super::ProxyError;

/// A tenant's name: empty for the site, else lowercase letters, digits and `-`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tenant(String);

impl Tenant {
    /// The site's own proxy: the roles and clusters site admins manage.
    pub fn site() -> Self {
        Tenant(String::new())
    }

    /// The lab tenant of the learner with this user name (the same DNS-safe spelling as their
    /// lab cluster's name).
    pub fn for_learner(username: &str) -> Self {
        Tenant(dns_safe(username))
    }

    /// A tenant named by a client (`hardlab login --tenant`). Only a name: who may act in it is
    /// decided by the credentials the login checks.
    pub fn parse(name: &str) -> Result<Self, ProxyError> {
        let name = name.trim();
        if name.is_empty() {
            return Ok(Self::site());
        }
        if name.len() > 63
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ProxyError::BadRequest(format!(
                "tenant {name:?}: use lowercase letters, digits and - (at most 63)"
            )));
        }
        Ok(Tenant(name.to_owned()))
    }

    /// From a stored column (written by this server, so already valid).
    pub fn from_row(name: String) -> Self {
        Tenant(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_site(&self) -> bool {
        self.0.is_empty()
    }

    /// The associated data a sealed value of `table` row `key` is bound to. The site's rows keep
    /// the spelling they had before tenants (`table:key`), so their sealed values still open.
    pub fn row_id(&self, table: &str, key: &str) -> String {
        if self.is_site() {
            format!("{table}:{key}")
        } else {
            format!("{table}:{}/{key}", self.0)
        }
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_site() {
            f.write_str("the site")
        } else {
            write!(f, "tenant {}", self.0)
        }
    }
}

/// Lowercase letters and digits kept, anything else `-`, no `-` at either end.
pub fn dns_safe(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    safe.trim_matches('-').to_owned()
}

fn now_ms() -> i64 {
    let ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// The learner's lab tenant, made on first use (Start of lab 6). Idempotent; two starts racing
/// agree on one row.
pub async fn ensure_learner_tenant(
    pool: &AnyPool,
    user_id: &str,
    username: &str,
) -> Result<Tenant, ProxyError> {
    let tenant = Tenant::for_learner(username);
    if tenant.is_site() {
        return Err(ProxyError::BadRequest(format!(
            "user name {username:?} has no letters or digits for a tenant name"
        )));
    }
    if let Some(owner) = owner_id(pool, &tenant).await? {
        if owner == user_id {
            return Ok(tenant);
        }
        return Err(ProxyError::Config(format!(
            "{tenant} belongs to another account"
        )));
    }
    let inserted = sqlx::query(
        "INSERT INTO proxy_tenants (name, owner_user_id, owner_name, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(tenant.as_str())
    .bind(user_id)
    .bind(username.trim().to_ascii_lowercase())
    .bind(now_ms())
    .execute(pool)
    .await;
    match inserted {
        Ok(_) => Ok(tenant),
        Err(_) if owner_id(pool, &tenant).await?.as_deref() == Some(user_id) => Ok(tenant),
        Err(error) => Err(error.into()),
    }
}

async fn owner_id(pool: &AnyPool, tenant: &Tenant) -> Result<Option<String>, ProxyError> {
    let row = sqlx::query("SELECT owner_user_id FROM proxy_tenants WHERE name = $1")
        .bind(tenant.as_str())
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// The user name of the tenant's owner, `None` for the site or a tenant nobody started.
pub async fn owner_name(pool: &AnyPool, tenant: &Tenant) -> Result<Option<String>, ProxyError> {
    if tenant.is_site() {
        return Ok(None);
    }
    let row = sqlx::query("SELECT owner_name FROM proxy_tenants WHERE name = $1")
        .bind(tenant.as_str())
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// The tenant a signed-in learner administers, if they started lab 6.
pub async fn owned_by(pool: &AnyPool, user_id: &str) -> Result<Option<Tenant>, ProxyError> {
    let row = sqlx::query("SELECT name FROM proxy_tenants WHERE owner_user_id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await?;
    Ok(row
        .map(|row| row.try_get::<String, _>(0))
        .transpose()?
        .map(Tenant))
}

/// Who may change a tenant's roles, users and labels: its owner; for the site, a site admin.
pub fn may_administer(
    tenant: &Tenant,
    actor: &str,
    actor_is_site_admin: bool,
    owner: Option<&str>,
) -> bool {
    if tenant.is_site() {
        actor_is_site_admin
    } else {
        owner == Some(actor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_checked_and_rows_of_different_tenants_never_share_an_identity() {
        assert!(Tenant::parse("").unwrap().is_site());
        assert_eq!(Tenant::parse("alice-2").unwrap().as_str(), "alice-2");
        assert!(Tenant::parse("../alice").is_err());
        assert!(Tenant::parse("Alice").is_err());
        assert_eq!(Tenant::for_learner("Alice.Smith").as_str(), "alice-smith");
        assert_eq!(Tenant::site().row_id("proxy_totp", "bob"), "proxy_totp:bob");
        assert_eq!(
            Tenant::for_learner("alice").row_id("proxy_totp", "bob"),
            "proxy_totp:alice/bob"
        );
    }

    #[test]
    fn only_the_owner_administers_a_lab_tenant_and_only_site_admins_the_site() {
        let alice = Tenant::for_learner("alice");
        assert!(may_administer(&alice, "alice", false, Some("alice")));
        assert!(!may_administer(&alice, "mallory", true, Some("alice")));
        assert!(!may_administer(&alice, "alice", false, None));
        assert!(may_administer(&Tenant::site(), "root", true, None));
        assert!(!may_administer(&Tenant::site(), "alice", false, None));
    }
}
