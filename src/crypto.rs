//! Encryption at rest for client secrets, access tokens and webhook passwords:
//! AES-256-GCM with a random 96-bit nonce per value, stored as
//! `v1:<base64(nonce || ciphertext)>`.

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;

use crate::config::{Environment, Settings};

const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("encryption key must be 32 bytes encoded as base64")]
    BadKey,
    #[error("stored value is not in the expected encrypted format")]
    Malformed,
    #[error("stored value could not be decrypted (wrong key or tampered data)")]
    Decrypt,
    #[error("key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Encrypts and decrypts secrets with the service key. Cheap to clone.
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher([REDACTED])")
    }
}

impl Cipher {
    pub fn from_base64_key(key: &str) -> Result<Self, CryptoError> {
        let bytes = B64.decode(key.trim()).map_err(|_| CryptoError::BadKey)?;
        if bytes.len() != 32 {
            return Err(CryptoError::BadKey);
        }
        let aead = Aes256Gcm::new_from_slice(&bytes).map_err(|_| CryptoError::BadKey)?;
        Ok(Cipher { aead })
    }

    /// A fresh random key, base64-encoded.
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        B64.encode(key)
    }

    /// The configured key; outside production, a key kept in `security.key_file`
    /// (generated on first use, with a warning).
    pub fn from_settings(settings: &Settings) -> Result<Self, CryptoError> {
        let configured = settings.security.encryption_key.expose();
        if !configured.is_empty() || settings.environment == Environment::Production {
            return Cipher::from_base64_key(configured);
        }
        let path = Path::new(&settings.security.key_file);
        let io_err = |source| CryptoError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(key) => Cipher::from_base64_key(&key),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(io_err)?;
                }
                let key = Cipher::generate_key();
                write_private(path, &key).map_err(io_err)?;
                tracing::warn!(
                    key_file = %path.display(),
                    "no security.encryption_key configured: generated a development key; \
                     set SYNC_HOSTAWAY__SECURITY__ENCRYPTION_KEY in production"
                );
                Cipher::from_base64_key(&key)
            }
            Err(err) => Err(io_err(err)),
        }
    }

    pub fn encrypt(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption with a valid key and a 12-byte nonce cannot fail for inputs
        // far below AES-GCM's 64 GiB message limit.
        let ciphertext = self
            .aead
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .expect("AES-GCM encryption of a short secret cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", B64.encode(out))
    }

    pub fn decrypt(&self, stored: &str) -> Result<String, CryptoError> {
        let encoded = stored.strip_prefix(PREFIX).ok_or(CryptoError::Malformed)?;
        let bytes = B64.decode(encoded).map_err(|_| CryptoError::Malformed)?;
        if bytes.len() <= NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = self
            .aead
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Decrypt)
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// A random URL-safe string for generated credentials.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let cipher = Cipher::from_base64_key(&Cipher::generate_key()).unwrap();
        let sealed = cipher.encrypt("s3cret");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("s3cret"));
        assert_eq!(cipher.decrypt(&sealed).unwrap(), "s3cret");
        assert_ne!(cipher.encrypt("s3cret"), sealed, "nonce must differ");
        let other = Cipher::from_base64_key(&Cipher::generate_key()).unwrap();
        assert!(matches!(other.decrypt(&sealed), Err(CryptoError::Decrypt)));
        assert!(matches!(
            cipher.decrypt("plain"),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn bad_keys_are_rejected() {
        assert!(Cipher::from_base64_key("short").is_err());
        assert!(Cipher::from_base64_key(&B64.encode([0u8; 16])).is_err());
    }
}
