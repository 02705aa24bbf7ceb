use std::path::PathBuf;

/// Everything that stops the grader from grading (exit code 2), as opposed to a finding.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An input file was read but is not what it claims to be; `location` is `file:line[:col]`.
    #[error("{location}: {message}")]
    Invalid { location: String, message: String },
    /// The cluster (API server, node or etcd) could not be reached.
    #[error("cannot reach {what}: {message}")]
    Unreachable { what: String, message: String },
    /// The Kubernetes API answered with an error.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Access to a node (docker exec, local files, pod exec) failed.
    #[error("node access: {0}")]
    Node(String),
    /// etcd could not be read.
    #[error("etcd: {0}")]
    Etcd(String),
    /// A value read from etcd could not be decoded or decrypted.
    #[error("decode: {0}")]
    Decode(String),
    /// Wrong use of the library or CLI (unknown check ID, missing argument).
    #[error("{0}")]
    Usage(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            location: location.into(),
            message: message.into(),
        }
    }
}
