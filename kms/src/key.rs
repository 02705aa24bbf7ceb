//! The plugin's key: 32 random bytes in a file only its owner can read, created on first start.
//!
//! Ciphertext layout: `0x01` (format version) ‖ nonce (12 bytes) ‖ AES-256-GCM ciphertext and tag,
//! with the version byte as additional authenticated data so it cannot be swapped unnoticed.
//! The API server asks the plugin to encrypt only its data-encryption seeds (one per API server
//! start and key rotation), so random 96-bit nonces stay far below GCM's 2^32-message limit.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

const FORMAT_V1: u8 = 0x01;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;

/// The key the plugin encrypts with, and its public identifier.
pub struct LocalKey {
    cipher: Aes256Gcm,
    key_id: String,
    path: PathBuf,
}

impl std::fmt::Debug for LocalKey {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKey")
            .field("key_id", &self.key_id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LocalKey {
    /// Reads the key file, or creates it (mode 0600) with a new random key when it does not exist.
    /// A key file others can read is refused rather than used: the key would no longer be secret.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Self::load(path),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(error) => Err(io_error(path, "read", error)),
        }
    }

    fn load(path: &Path) -> Result<Self> {
        let metadata = std::fs::metadata(path).map_err(|e| io_error(path, "read", e))?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(key_error(
                path,
                format!("is accessible to others (mode {mode:04o}); run `chmod 600` on it"),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| io_error(path, "read", e))?;
        let key = BASE64
            .decode(text.trim())
            .map_err(|_| key_error(path, "line 1: not base64".to_owned()))?;
        if key.len() != KEY_LEN {
            return Err(key_error(
                path,
                format!("line 1: the key is {} bytes, expected {KEY_LEN}", key.len()),
            ));
        }
        Ok(Self::from_bytes(&key, path))
    }

    fn create(path: &Path) -> Result<Self> {
        let key = Aes256Gcm::generate_key(OsRng);
        // Written to a private temporary file and linked into place, so a crash never leaves a
        // half-written key and two plugins starting at once cannot end up with different keys.
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "kms-key".into());
        let temporary = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        let written = (|| -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(BASE64.encode(key.as_slice()).as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            std::fs::hard_link(&temporary, path)
        })();
        let _ = std::fs::remove_file(&temporary);
        match written {
            Ok(()) => Ok(Self::from_bytes(key.as_slice(), path)),
            // Another plugin created it first: use theirs.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
            Err(error) => Err(io_error(path, "create", error)),
        }
    }

    fn from_bytes(key: &[u8], path: &Path) -> Self {
        let digest = Sha256::new()
            .chain_update(b"hardlab kms key id\0")
            .chain_update(key)
            .finalize();
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
            key_id: format!("hardlab-local-{}", hex::encode(&digest[..16])),
            path: path.to_path_buf(),
        }
    }

    /// A public name for the key (a hash of it): the API server stores it next to each value and
    /// rotates its data keys when it changes.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn encrypt(&self, plaintext: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &[FORMAT_V1],
                },
            )
            .map_err(|_| "encryption failed".to_owned())?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn decrypt(&self, ciphertext: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let Some((&version, rest)) = ciphertext.split_first() else {
            return Err("empty ciphertext".into());
        };
        if version != FORMAT_V1 {
            return Err(format!("unknown ciphertext format {version:#04x}"));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(format!("ciphertext too short ({} bytes)", ciphertext.len()));
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &[version],
                },
            )
            .map_err(|_| {
                "the ciphertext does not authenticate under this key (tampered, or another key)"
                    .into()
            })
    }
}

fn key_error(path: &Path, problem: String) -> Error {
    Error::KeyFile {
        path: path.to_path_buf(),
        problem,
    }
}

fn io_error(path: &Path, action: &'static str, source: std::io::Error) -> Error {
    Error::KeyFileIo {
        path: path.to_path_buf(),
        action,
        source,
    }
}
