//! `hardlab kms-plugin`: a KMS v2 plugin for kube-apiserver, for lab 1's "encrypt Secrets with KMS"
//! step.
//!
//! It speaks the real `v2.KeyManagementService` gRPC API (Status, Encrypt, Decrypt) on a unix
//! socket, exactly as a cloud KMS plugin (AWS, GCP, Azure) or Vault's would, but holds its key in
//! a local file. It stands in for those so the lab runs offline; the API server cannot tell the
//! difference. In production the key must live in an HSM or a cloud KMS, never on the
//! control-plane node next to etcd: a file key only moves the secret one directory over.
//!
//! - Key: 32 random bytes, base64 in `--key-file` (mode 0600), created on first start; a key file
//!   others can read is refused. `key_id` is a hash of the key, so it changes exactly when the key
//!   does (the API server then rotates its data keys).
//! - Encrypt: AES-256-GCM with a random nonce (see [`key`] for the layout); Decrypt refuses
//!   ciphertexts that do not authenticate, and ones made under another `key_id`.
//! - Status: `version: v2`, `healthz: ok` only when an encrypt/decrypt round trip with the key
//!   succeeds, and the `key_id`.
//!
//! Run it on the control-plane node (kind: inside the node container) and point the API server at
//! it with an EncryptionConfiguration such as:
//!
//! ```yaml
//! apiVersion: apiserver.config.k8s.io/v1
//! kind: EncryptionConfiguration
//! resources:
//!   - resources: [secrets]
//!     providers:
//!       - kms:
//!           apiVersion: v2
//!           name: hardlab-kms
//!           endpoint: unix:///var/run/hardlab-kms.sock
//!           timeout: 3s
//!       # Reads Secrets written before KMS was turned on; rewrite them all, then remove it.
//!       - identity: {}
//! ```
//!
//! ```text
//! hardlab kms-plugin --socket /var/run/hardlab-kms.sock --key-file /etc/kubernetes/hardlab-kms.key
//! kube-apiserver ... --encryption-provider-config=/etc/kubernetes/encryption-config.yaml
//! ```
//!
//! Secrets written afterwards are stored in etcd as `k8s:enc:kms:v2:hardlab-kms:` followed by an
//! `EncryptedObject` whose `keyID` is this plugin's key ID.

pub mod api;
pub mod key;
pub mod service;

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the plugin could not start or serve. Each names the file it is about, so the API server's
/// operator knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key file holds no usable key: readable by others, or not 32 bytes of base64.
    #[error("key file {}: {problem}", path.display())]
    KeyFile { path: PathBuf, problem: String },

    #[error("key file {}: cannot {action}: {source}", path.display())]
    KeyFileIo {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// The socket's path is taken: by another kind of file, or by a plugin that still answers.
    #[error("socket {}: {problem}", path.display())]
    SocketTaken {
        path: PathBuf,
        problem: &'static str,
    },

    #[error("socket {}: cannot {action}: {source}", path.display())]
    SocketIo {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

pub use key::LocalKey;
pub use service::KmsService;

/// Serves the plugin on `socket` with the key in `key_file` until SIGINT or SIGTERM.
pub async fn serve(socket: &Path, key_file: &Path) -> Result<()> {
    serve_until(socket, key_file, shutdown_signal()).await
}

/// Serves until `shutdown` completes, then removes the socket.
pub async fn serve_until(
    socket: &Path,
    key_file: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let key = LocalKey::load_or_create(key_file)?;
    let listener = bind(socket)?;
    tracing::info!(socket = %socket.display(), key_id = %key.key_id(), "KMS v2 plugin listening");
    let served = tonic::transport::Server::builder()
        .add_service(KmsService::new(key))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    let _ = std::fs::remove_file(socket);
    Ok(served?)
}

/// Binds the socket, replacing a stale one left by a plugin that died, but never another file
/// or a socket a live plugin still answers on. Only the owner may connect (the API server runs
/// as root): whoever reaches the socket can decrypt.
fn bind(socket: &Path) -> Result<UnixListener> {
    let taken = |problem| Error::SocketTaken {
        path: socket.to_path_buf(),
        problem,
    };
    let failed = |action| {
        move |source| Error::SocketIo {
            path: socket.to_path_buf(),
            action,
            source,
        }
    };
    if let Ok(metadata) = std::fs::symlink_metadata(socket) {
        if !metadata.file_type().is_socket() {
            return Err(taken("exists and is not a socket; not replacing it"));
        }
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(taken("another process is serving on it"));
        }
        std::fs::remove_file(socket).map_err(failed("remove the stale socket"))?;
    }
    let listener = UnixListener::bind(socket).map_err(failed("bind"))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(failed("restrict permissions"))?;
    Ok(listener)
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            // Without a SIGTERM handler, Ctrl-C still stops the plugin.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
