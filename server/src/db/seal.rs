//! Sealing secrets at rest (stored kubeconfigs, etcd client keys) with AES-256-GCM under a
//! server key kept in a file outside the database: a copy of the database alone opens nothing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::{Error, Result};

const NONCE_LEN: usize = 12;

/// Loads (or on first use creates, mode 0600) the 32-byte key file.
pub struct Sealer {
    path: PathBuf,
    cipher: OnceLock<Aes256Gcm>,
    /// HMAC-SHA256(key, "derive"): the root of [`Sealer::derive_key`], so derived keys never
    /// need the sealing key itself kept twice.
    derive_root: OnceLock<[u8; 32]>,
}

/// Marks a value sealed with associated data (`seal_for`), telling it from older plaintext.
const SEALED_FOR_PREFIX: &str = "sealed1:";

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Sealer {
            path: path.into(),
            cipher: OnceLock::new(),
            derive_root: OnceLock::new(),
        }
    }

    /// A key that lives only in this process (tests, and tools whose sealed data dies with them).
    pub fn ephemeral() -> Self {
        let key: [u8; 32] = rand::random();
        let cipher = OnceLock::new();
        let _ = cipher.set(Aes256Gcm::new(&key.into()));
        let derive_root = OnceLock::new();
        let _ = derive_root.set(derive_root_of(&key));
        Sealer {
            path: PathBuf::from("(in memory)"),
            cipher,
            derive_root,
        }
    }

    /// Reads or creates the key now, so `serve` fails at start rather than at first use.
    pub fn ensure_key(&self) -> Result<()> {
        self.cipher().map(|_| ())
    }

    fn cipher(&self) -> Result<&Aes256Gcm> {
        if let Some(cipher) = self.cipher.get() {
            return Ok(cipher);
        }
        let key = load_or_create(&self.path)?;
        let cipher = Aes256Gcm::new_from_slice(&key)
            .map_err(|_| Error::Config(format!("{}: not a 32-byte key", self.path.display())))?;
        let _ = self.derive_root.set(derive_root_of(&key));
        Ok(self.cipher.get_or_init(|| cipher))
    }

    pub fn seal(&self, plaintext: &[u8]) -> Result<String> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let ciphertext = self
            .cipher()?
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .map_err(|_| Error::Unseal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(STANDARD.encode(out))
    }

    /// Seals `plaintext` bound to `row_id` (associated data): the result opens only with the same
    /// id, so a sealed value copied into another row (another user's TOTP secret, another
    /// cluster's kubeconfig) is refused instead of used.
    pub fn seal_for(&self, row_id: &str, plaintext: &[u8]) -> Result<String> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let ciphertext = self
            .cipher()?
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: row_id.as_bytes(),
                },
            )
            .map_err(|_| Error::Unseal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(format!("{SEALED_FOR_PREFIX}{}", STANDARD.encode(out)))
    }

    /// Opens what [`Sealer::seal_for`] sealed for the same `row_id`.
    pub fn open_for(&self, row_id: &str, sealed: &str) -> Result<Vec<u8>> {
        let encoded = sealed
            .strip_prefix(SEALED_FOR_PREFIX)
            .ok_or(Error::Unseal)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| Error::Unseal)?;
        if bytes.len() < NONCE_LEN {
            return Err(Error::Unseal);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        self.cipher()?
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: row_id.as_bytes(),
                },
            )
            .map_err(|_| Error::Unseal)
    }

    /// Whether a stored value is already sealed by [`Sealer::seal_for`] (older rows hold plaintext
    /// until they are migrated).
    pub fn is_sealed_for(stored: &str) -> bool {
        stored.starts_with(SEALED_FOR_PREFIX)
    }

    /// A key for another purpose derived from the server key (HMAC-SHA256 of `label`), so a
    /// second secret outside the database needs no second file: the audit chain's key.
    pub fn derive_key(&self, label: &str) -> Result<[u8; 32]> {
        self.cipher()?;
        let root = self.derive_root.get().ok_or(Error::Unseal)?;
        Ok(hmac_sha256(root, label.as_bytes()))
    }

    /// The key file: the audit checkpoints live next to it, outside the database.
    pub fn key_path(&self) -> &Path {
        &self.path
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>> {
        let bytes = STANDARD.decode(sealed).map_err(|_| Error::Unseal)?;
        if bytes.len() < NONCE_LEN {
            return Err(Error::Unseal);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        self.cipher()?
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| Error::Unseal)
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length; this cannot fail.
    let Ok(mut mac) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn derive_root_of(key: &[u8]) -> [u8; 32] {
    hmac_sha256(key, b"hardlab: derive")
}

fn load_or_create(path: &Path) -> Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(key) if key.len() == 32 => Ok(key),
        Ok(_) => Err(Error::Config(format!(
            "{}: the server key must be exactly 32 bytes",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            let key: [u8; 32] = rand::random();
            write_private(path, &key)?;
            tracing::info!(path = %path.display(), "created the server key for sealed kubeconfigs");
            Ok(key.to_vec())
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| Error::io(path, e))?;
    file.write_all(bytes).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Sealer;

    #[test]
    fn sealed_text_opens_with_the_same_key_and_not_with_another() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::new(dir.path().join("key"));
        let sealed = sealer.seal(b"apiVersion: v1").unwrap();
        assert!(!sealed.contains("apiVersion"));
        assert_eq!(sealer.open(&sealed).unwrap(), b"apiVersion: v1");
        let other = Sealer::new(dir.path().join("other"));
        assert!(other.open(&sealed).is_err());
    }

    #[test]
    fn a_value_sealed_for_one_row_does_not_open_for_another() {
        let sealer = Sealer::ephemeral();
        let sealed = sealer.seal_for("proxy_totp:bob", b"JBSWY3DP").unwrap();
        assert!(Sealer::is_sealed_for(&sealed));
        assert_eq!(
            sealer.open_for("proxy_totp:bob", &sealed).unwrap(),
            b"JBSWY3DP"
        );
        assert!(sealer.open_for("proxy_totp:alice", &sealed).is_err());
        assert!(sealer.open_for("proxy_totp:bob", "JBSWY3DP").is_err());
    }

    #[test]
    fn derived_keys_differ_by_label_and_are_stable() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = Sealer::new(dir.path().join("key"));
        let audit = sealer.derive_key("audit").unwrap();
        assert_ne!(audit, sealer.derive_key("other").unwrap());
        let again = Sealer::new(dir.path().join("key"));
        assert_eq!(again.derive_key("audit").unwrap(), audit);
    }
}
