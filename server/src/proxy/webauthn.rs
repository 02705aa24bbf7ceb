//! Security keys and passkeys (WebAuthn, through webauthn-rs) as the second factor of a hardlab
//! account, beside the authenticator app ([`super::totp`]).
//!
//! Every ceremony is two requests: the server makes a challenge and keeps its state in
//! `proxy_webauthn_ceremonies`, bound to the browser that asked (the SHA-256 of its session
//! token, or of the sign-in cookie set once the password was right), to one user and one purpose,
//! for [`CEREMONY_LIFETIME_MS`]; the answer takes the row (delete and read in one statement), so a
//! ceremony is finished at most once and never from another browser. Credentials keep only public
//! data: webauthn-rs's record of the public key, the signature counter and the backup flags,
//! which the library checks at every sign-in (a counter that does not grow: a cloned key) and
//! which is written back after each use.
//!
//! Credentials are webauthn-rs's passkeys: any authenticator the browser offers (a USB or NFC
//! key, a phone, the laptop's platform authenticator), with user verification required (the
//! key's PIN or a fingerprint), which webauthn-rs recommends over presence-only "security keys"
//! and which Chromium's credProtect rules need. They are used as the second factor after the
//! password; passwordless sign-in with a discoverable passkey is not offered.

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid,
    Webauthn, WebauthnBuilder,
};

use super::ProxyError;
use super::store;
use super::tenant::Tenant;

/// How long a challenge may be answered: enough to find the key and touch it.
pub const CEREMONY_LIFETIME_MS: i64 = 5 * 60 * 1000;
/// The longest name a credential may have.
const MAX_KEY_NAME: usize = 64;
/// How many credentials one account may hold.
const MAX_KEYS_PER_USER: i64 = 10;

/// What a ceremony is for; a challenge made for one purpose does not finish another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Adding a credential to a signed-in account.
    Register,
    /// A signed-in user proving they hold a key (before adding or removing a factor).
    StepUp,
    /// The second step of a web sign-in whose password was right.
    SignIn,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Register => "register",
            Purpose::StepUp => "step-up",
            Purpose::SignIn => "sign-in",
        }
    }
}

/// The relying party: this server as WebAuthn knows it, from its public URL.
pub struct SecurityKeys {
    webauthn: Result<Webauthn, String>,
}

impl std::fmt::Debug for SecurityKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityKeys")
            .field("available", &self.webauthn.is_ok())
            .finish_non_exhaustive()
    }
}

impl SecurityKeys {
    /// The relying party for the server's public URL (`--public-url`): its host name is the
    /// relying party's id, its origin the only one accepted. Without a public URL, `localhost`
    /// on any port (a server tried out on one machine). Browsers do not allow WebAuthn on an IP
    /// address, so a public URL naming one leaves security keys unavailable, and says why.
    pub fn for_server_url(server_url: Option<&str>) -> Self {
        let webauthn = Self::relying_party(server_url);
        if let Err(reason) = &webauthn {
            tracing::warn!(%reason, "security keys and passkeys are unavailable");
        }
        Self { webauthn }
    }

    fn relying_party(server_url: Option<&str>) -> Result<Webauthn, String> {
        let (origin, any_port) = match server_url {
            Some(url) => (url.trim_end_matches('/').to_owned(), false),
            None => ("http://localhost".to_owned(), true),
        };
        let origin =
            Url::parse(&origin).map_err(|error| format!("public URL {origin}: {error}"))?;
        let host = origin
            .domain()
            .ok_or_else(|| {
                format!("public URL {origin}: WebAuthn needs a host name, not an IP address")
            })?
            .to_owned();
        WebauthnBuilder::new(&host, &origin)
            .and_then(|builder| builder.rp_name("hardlab").allow_any_port(any_port).build())
            .map_err(|error| format!("WebAuthn relying party {host}: {error}"))
    }

    fn webauthn(&self) -> Result<&Webauthn, ProxyError> {
        self.webauthn.as_ref().map_err(|reason| {
            ProxyError::BadRequest(format!(
                "security keys are not available on this server ({reason})"
            ))
        })
    }

    pub fn available(&self) -> bool {
        self.webauthn.is_ok()
    }
}

/// One credential of an account, as its owner sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeySummary {
    pub credential_id: String,
    pub name: String,
    pub created: String,
    pub last_used: String,
}

fn now_ms() -> i64 {
    let ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn format_ms(ms: Option<i64>) -> String {
    ms.and_then(|ms| time::OffsetDateTime::from_unix_timestamp(ms / 1000).ok())
        .map(super::audit::format_time)
        .unwrap_or_else(|| "never".to_owned())
}

/// The binding of a ceremony to a browser: the SHA-256 of a token only that browser holds.
pub fn binding_of(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn credential_id_text(id: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

fn json_error(what: &str, error: &serde_json::Error) -> ProxyError {
    ProxyError::Internal(format!("{what}: {error}"))
}

/// The account's credentials, newest last.
pub async fn list_keys(pool: &AnyPool, user: &str) -> Result<Vec<KeySummary>, ProxyError> {
    let rows = sqlx::query(
        "SELECT credential_id, name, created_at, last_used_at FROM proxy_webauthn_keys \
         WHERE user_name = $1 ORDER BY created_at, credential_id",
    )
    .bind(user)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(KeySummary {
                credential_id: row.try_get(0)?,
                name: row.try_get(1)?,
                created: format_ms(Some(row.try_get(2)?)),
                last_used: format_ms(row.try_get(3)?),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(ProxyError::Db)
}

pub async fn has_keys(pool: &AnyPool, user: &str) -> Result<bool, ProxyError> {
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM proxy_webauthn_keys WHERE user_name = $1")
            .bind(user)
            .fetch_one(pool)
            .await?;
    Ok(count > 0)
}

async fn load_keys(pool: &AnyPool, user: &str) -> Result<Vec<Passkey>, ProxyError> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT credential_json FROM proxy_webauthn_keys WHERE user_name = $1")
            .bind(user)
            .fetch_all(pool)
            .await?;
    rows.iter()
        .map(|(json,)| {
            serde_json::from_str(json).map_err(|error| json_error("a stored security key", &error))
        })
        .collect()
}

/// The user handle the authenticator keeps: derived from the account's id, not its name, so it
/// says nothing about the person and stays the same if the name is respelled.
async fn user_handle(pool: &AnyPool, user: &str) -> Result<Uuid, ProxyError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT id FROM users WHERE username = $1")
        .bind(user)
        .fetch_optional(pool)
        .await?;
    let (id,) = row.ok_or_else(|| ProxyError::NotFound(format!("account {user}")))?;
    let digest = Sha256::digest(format!("hardlab webauthn user handle\n{id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Ok(Uuid::from_bytes(bytes))
}

/// Keeps a ceremony's state, replacing an earlier one of the same browser and purpose.
async fn store_ceremony(
    pool: &AnyPool,
    binding: &str,
    purpose: Purpose,
    user: &str,
    name: &str,
    state_json: &str,
) -> Result<(), ProxyError> {
    let now = now_ms();
    let mut tx = pool.begin().await?;
    // Old ceremonies of anyone are cleared here, so the table holds only live ones.
    sqlx::query("DELETE FROM proxy_webauthn_ceremonies WHERE expires_at < $1 OR (binding = $2 AND purpose = $3)")
        .bind(now)
        .bind(binding)
        .bind(purpose.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO proxy_webauthn_ceremonies \
         (binding, purpose, user_name, name, state_json, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(binding)
    .bind(purpose.as_str())
    .bind(user)
    .bind(name)
    .bind(state_json)
    .bind(now + CEREMONY_LIFETIME_MS)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A ceremony taken for finishing.
struct Ceremony {
    user: String,
    name: String,
    state_json: String,
}

/// Takes (deletes) the browser's ceremony of `purpose`: whatever the answer turns out to be, the
/// challenge is not answerable again. Expired ones are as good as absent.
async fn take_ceremony(
    pool: &AnyPool,
    binding: &str,
    purpose: Purpose,
) -> Result<Ceremony, ProxyError> {
    let row = sqlx::query(
        "DELETE FROM proxy_webauthn_ceremonies WHERE binding = $1 AND purpose = $2 \
         RETURNING user_name, name, state_json, expires_at",
    )
    .bind(binding)
    .bind(purpose.as_str())
    .fetch_optional(pool)
    .await?;
    let expired = || {
        ProxyError::Unauthorized(
            "no security key challenge is waiting (it was used, or it expired after 5 minutes): start again".into(),
        )
    };
    let row = row.ok_or_else(expired)?;
    let expires_at: i64 = row.try_get(3)?;
    if expires_at < now_ms() {
        return Err(expired());
    }
    Ok(Ceremony {
        user: row.try_get(0)?,
        name: row.try_get(1)?,
        state_json: row.try_get(2)?,
    })
}

/// Starts proving that `user` holds one of their keys (sign-in or step-up): the options for the
/// browser's `navigator.credentials.get`.
pub async fn start_authentication(
    pool: &AnyPool,
    keys: &SecurityKeys,
    user: &str,
    binding: &str,
    purpose: Purpose,
) -> Result<RequestChallengeResponse, ProxyError> {
    let webauthn = keys.webauthn()?;
    let credentials = load_keys(pool, user).await?;
    if credentials.is_empty() {
        return Err(ProxyError::NotFound(
            "a security key of this account".into(),
        ));
    }
    let (options, state) = webauthn
        .start_passkey_authentication(&credentials)
        .map_err(|error| ProxyError::Internal(format!("WebAuthn challenge: {error}")))?;
    let state_json = serde_json::to_string(&state).map_err(|e| json_error("ceremony", &e))?;
    store_ceremony(pool, binding, purpose, user, "", &state_json).await?;
    Ok(options)
}

/// Finishes a sign-in or step-up ceremony: the assertion must answer this browser's challenge,
/// with a key of the ceremony's user (and of `expected_user`, when the caller knows who is
/// signed in), its signature counter moving forward. A failure counts as a wrong code against
/// the user (the same throttle as codes). Returns the user and the name of the key used.
pub async fn finish_authentication(
    pool: &AnyPool,
    keys: &SecurityKeys,
    binding: &str,
    purpose: Purpose,
    expected_user: Option<&str>,
    assertion: &PublicKeyCredential,
) -> Result<(String, String), ProxyError> {
    let webauthn = keys.webauthn()?;
    let ceremony = take_ceremony(pool, binding, purpose).await?;
    let user = ceremony.user;
    if expected_user.is_some_and(|expected| expected != user) {
        return Err(ProxyError::Unauthorized(
            "this security key challenge was made for another account".into(),
        ));
    }
    let site = Tenant::site();
    let now = now_ms();
    let wait_ms = store::code_blocked_for(pool, &site, &user, now).await?;
    if wait_ms > 0 {
        return Err(ProxyError::Throttled {
            retry_after_secs: u64::try_from((wait_ms + 999) / 1000).unwrap_or(1),
        });
    }
    let state: PasskeyAuthentication = serde_json::from_str(&ceremony.state_json)
        .map_err(|error| json_error("a stored ceremony", &error))?;
    let result = match webauthn.finish_passkey_authentication(assertion, &state) {
        Ok(result) => result,
        Err(error) => {
            tracing::info!(%user, %error, "security key refused");
            store::record_code_failure(pool, &site, &user, now).await?;
            return Err(ProxyError::Unauthorized(
                "the security key's answer was not accepted: use a key registered to this account"
                    .into(),
            ));
        }
    };
    let credential_id = credential_id_text(result.cred_id().as_ref());
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT name, credential_json FROM proxy_webauthn_keys WHERE credential_id = $1 AND user_name = $2",
    )
    .bind(&credential_id)
    .bind(&user)
    .fetch_optional(pool)
    .await?;
    let (name, json) =
        row.ok_or_else(|| ProxyError::Unauthorized("this key was removed meanwhile".into()))?;
    let mut credential: Passkey =
        serde_json::from_str(&json).map_err(|error| json_error("a stored security key", &error))?;
    // The new counter and backup state; the next sign-in is checked against them.
    credential.update_credential(&result);
    let updated = serde_json::to_string(&credential).map_err(|e| json_error("key", &e))?;
    sqlx::query(
        "UPDATE proxy_webauthn_keys SET credential_json = $1, last_used_at = $2 WHERE credential_id = $3",
    )
    .bind(updated)
    .bind(now)
    .bind(&credential_id)
    .execute(pool)
    .await?;
    store::clear_code_failures(pool, &site, &user).await?;
    Ok((user, name))
}

/// A credential's name as its owner typed it: trimmed, not empty, printable, at most 64
/// characters.
pub fn key_name(name: &str) -> Result<String, ProxyError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ProxyError::BadRequest(
            "name: give the key a name (for example \"yubikey\" or \"laptop\")".into(),
        ));
    }
    if name.chars().count() > MAX_KEY_NAME || name.chars().any(char::is_control) {
        return Err(ProxyError::BadRequest(format!(
            "name: at most {MAX_KEY_NAME} printable characters"
        )));
    }
    Ok(name.to_owned())
}

/// Starts adding a credential named `name` to `user` (whose current factor the caller has
/// checked): the options for `navigator.credentials.create`. The account's own keys are
/// excluded, so one authenticator is not registered twice.
pub async fn start_registration(
    pool: &AnyPool,
    keys: &SecurityKeys,
    user: &str,
    name: &str,
    binding: &str,
) -> Result<CreationChallengeResponse, ProxyError> {
    let webauthn = keys.webauthn()?;
    let name = key_name(name)?;
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM proxy_webauthn_keys WHERE user_name = $1")
            .bind(user)
            .fetch_one(pool)
            .await?;
    if count >= MAX_KEYS_PER_USER {
        return Err(ProxyError::BadRequest(format!(
            "an account holds at most {MAX_KEYS_PER_USER} keys: remove one first"
        )));
    }
    let existing: Vec<_> = load_keys(pool, user)
        .await?
        .iter()
        .map(|key| key.cred_id().clone())
        .collect();
    let handle = user_handle(pool, user).await?;
    let (options, state) = webauthn
        .start_passkey_registration(handle, user, user, Some(existing))
        .map_err(|error| ProxyError::Internal(format!("WebAuthn registration: {error}")))?;
    let state_json = serde_json::to_string(&state).map_err(|e| json_error("ceremony", &e))?;
    store_ceremony(pool, binding, Purpose::Register, user, &name, &state_json).await?;
    Ok(options)
}

/// Finishes adding a credential to the signed-in `user`: the browser's answer to its own
/// registration challenge. A credential already registered (to anyone) is refused.
pub async fn finish_registration(
    pool: &AnyPool,
    keys: &SecurityKeys,
    user: &str,
    binding: &str,
    answer: &RegisterPublicKeyCredential,
) -> Result<KeySummary, ProxyError> {
    let webauthn = keys.webauthn()?;
    let ceremony = take_ceremony(pool, binding, Purpose::Register).await?;
    if ceremony.user != user {
        return Err(ProxyError::Unauthorized(
            "this registration was started by another account".into(),
        ));
    }
    let state: PasskeyRegistration = serde_json::from_str(&ceremony.state_json)
        .map_err(|error| json_error("a stored ceremony", &error))?;
    let credential = webauthn
        .finish_passkey_registration(answer, &state)
        .map_err(|error| {
            tracing::info!(%user, %error, "security key registration refused");
            ProxyError::BadRequest(format!("the key's registration was not accepted: {error}"))
        })?;
    let credential_id = credential_id_text(credential.cred_id().as_ref());
    let json = serde_json::to_string(&credential).map_err(|e| json_error("key", &e))?;
    let now = now_ms();
    let inserted = sqlx::query(
        "INSERT INTO proxy_webauthn_keys (credential_id, user_name, name, credential_json, created_at, last_used_at) \
         VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT (credential_id) DO NOTHING",
    )
    .bind(&credential_id)
    .bind(user)
    .bind(&ceremony.name)
    .bind(json)
    .bind(now)
    .execute(pool)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(ProxyError::BadRequest(
            "this key is registered already".into(),
        ));
    }
    Ok(KeySummary {
        credential_id,
        name: ceremony.name,
        created: format_ms(Some(now)),
        last_used: format_ms(None),
    })
}

/// Removes one of `user`'s credentials (the caller has checked the current factor). Returns
/// its name.
pub async fn remove_key(
    pool: &AnyPool,
    user: &str,
    credential_id: &str,
) -> Result<String, ProxyError> {
    let row: Option<(String,)> = sqlx::query_as(
        "DELETE FROM proxy_webauthn_keys WHERE credential_id = $1 AND user_name = $2 RETURNING name",
    )
    .bind(credential_id)
    .bind(user)
    .fetch_optional(pool)
    .await?;
    row.map(|(name,)| name)
        .ok_or_else(|| ProxyError::NotFound(format!("security key {credential_id}")))
}

/// Removes every credential of `user` and their ceremonies (an admin's reset).
pub async fn remove_all(pool: &AnyPool, user: &str) -> Result<(), ProxyError> {
    sqlx::query("DELETE FROM proxy_webauthn_keys WHERE user_name = $1")
        .bind(user)
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM proxy_webauthn_ceremonies WHERE user_name = $1")
        .bind(user)
        .execute(pool)
        .await?;
    Ok(())
}

/// How a signed-in user proves they still hold their second factor before adding or removing
/// one: a current code of their authenticator app, or a security key's answer to a step-up
/// challenge made for this session.
#[derive(Debug, Default, Deserialize)]
pub struct FactorProof {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub assertion: Option<Box<PublicKeyCredential>>,
}

/// What the proof was, for the audit event.
pub const NO_FACTOR_YET: &str = "no second factor before";

/// Checks `proof` when `user` has a second factor; a user without one needs none (their first
/// one is being added). Returns how the user proved it.
pub async fn require_current_factor(
    pool: &AnyPool,
    sealer: &crate::db::seal::Sealer,
    keys: &SecurityKeys,
    user: &str,
    binding: &str,
    proof: &FactorProof,
) -> Result<String, ProxyError> {
    let site = Tenant::site();
    let has_totp = store::totp_enrolled(pool, &site, user).await?;
    let has_key = has_keys(pool, user).await?;
    if !has_totp && !has_key {
        return Ok(NO_FACTOR_YET.to_owned());
    }
    if let Some(code) = proof.code.as_deref().filter(|c| !c.trim().is_empty())
        && has_totp
    {
        store::check_totp(pool, sealer, &site, user, code, false).await?;
        return Ok("authenticator code".to_owned());
    }
    if let Some(assertion) = &proof.assertion
        && has_key
    {
        let (_, name) =
            finish_authentication(pool, keys, binding, Purpose::StepUp, Some(user), assertion)
                .await?;
        return Ok(format!("security key {name}"));
    }
    let what = match (has_totp, has_key) {
        (true, true) => "the current code of your authenticator app, or one of your security keys",
        (true, false) => "the current code of your authenticator app",
        _ => "one of your security keys",
    };
    Err(ProxyError::Unauthorized(format!(
        "you already have a second factor: prove you still hold it first ({what})"
    )))
}
