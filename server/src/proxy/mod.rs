//! The identity-aware access proxy (lab 6): a user CA and login with password plus TOTP,
//! short-lived revocable client certificates, roles that map hardlab users to Kubernetes users
//! and groups per cluster label (read per request), the impersonating Kubernetes proxy, an audit
//! log chained under a key outside the database with checkpoints next to the server key, and exec
//! session recordings. Its secrets (CA key, TOTP secrets, upstream kubeconfigs) are sealed.

pub mod audit;
pub mod ca;
pub mod cli;
pub mod client;
pub mod kube;
pub mod recording;
pub mod request_info;
pub mod roles;
pub mod service;
pub mod store;
pub mod tenant;
pub mod totp;
pub mod web;
pub mod webauthn;

/// Why a proxy operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A certificate or key could not be made, read or used.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The caller sent something unusable (a bad CSR, a malformed secret).
    #[error("{0}")]
    BadRequest(String),
    /// Wrong password or TOTP code; deliberately the same words for both.
    #[error("{0}")]
    Unauthorized(String),
    /// A role or cluster definition is invalid.
    #[error("{0}")]
    Config(String),
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// Too many wrong codes: wait before trying again.
    #[error("too many wrong codes: try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// The certificate was revoked, or this server never issued it.
    #[error("{0}")]
    Revoked(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("internal: {0}")]
    Internal(String),
}
