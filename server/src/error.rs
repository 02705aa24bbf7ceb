//! The library's error type. Web handlers wrap it in [`crate::web::error::WebError`].

use std::path::PathBuf;

use crate::labs::LabProblem;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("database: {0}")]
    Database(#[from] sqlx::Error),

    #[error("database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// Every problem found in the labs folder, one per line with file, line and field.
    #[error("{} problem(s) in the labs:\n{}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Labs(Vec<LabProblem>),

    #[error("password hashing: {0}")]
    PasswordHash(String),

    #[error("{0}")]
    InvalidInput(String),

    #[error("sealed data cannot be opened (wrong server key or corrupted row)")]
    Unseal,

    /// A cluster operation failed (the admin CLI, the harness, Start).
    #[error("cluster: {0}")]
    Clusters(#[from] crate::clusters::Error),

    /// A step could not be graded; the learner reads the message.
    #[error("{0}")]
    Grading(#[from] crate::web::check::GradingError),

    #[error("a background task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),

    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),

    #[error("access proxy: {0}")]
    Proxy(#[from] crate::proxy::ProxyError),

    /// The KMS plugin could not start or serve: its key file, its socket, or the gRPC server.
    #[error("kms plugin: {0}")]
    Kms(#[from] hardlab_kms::Error),

    #[error("templates: {0}")]
    Template(#[from] askama::Error),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
