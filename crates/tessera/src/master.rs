//! The master key: seals private signing keys at rest with AES-256-GCM, each bound to its kid,
//! and derives the server's other secrets (refresh-token successors, CSRF tokens).

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::config::{Config, Environment, decode_master_key};

/// File under `data_dir` holding the development master key.
pub const DEV_KEY_FILE: &str = "master.key";

/// Why the master key is unusable.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    /// The configured or stored key is not 32 bytes of base64.
    #[error("master key {origin}: {reason}")]
    Invalid {
        /// Where it came from.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// None configured and none may be generated here.
    #[error(
        "no master key: set TESSERA_MASTER_KEY (32 random bytes, base64); only development \
         generates one"
    )]
    Missing,
    /// The development key file could not be read or written.
    #[error("master key file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A sealed key did not open: wrong master key, or tampered data.
    #[error(
        "the master key cannot decrypt signing key {0} (wrong master key, or the stored key was altered)"
    )]
    Unseal(String),
    /// Sealing failed (random generator).
    #[error("sealing failed")]
    Seal,
}

/// The 256-bit key that encrypts private signing keys.
pub struct MasterKey {
    key: LessSafeKey,
    /// HMAC keyed by the same bytes, for deriving purpose-bound secrets.
    derive: hmac::Key,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// Whether a missing development key may be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generate {
    /// `serve` and `keys rotate` in development.
    IfMissing,
    /// `check`: report, never write.
    Never,
}

impl MasterKey {
    /// A master key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).expect("32 bytes is an AES-256 key");
        Self {
            key: LessSafeKey::new(unbound),
            derive: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// A 256-bit secret for one purpose (`label`), derived from the master key, so each use
    /// gets its own key and none of them reveals the master key or another.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let tag = hmac::sign(&self.derive, label.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// The configured key; in development without one, the key in `data_dir/master.key`,
    /// generated there on first use (with a warning) when `generate` allows.
    pub fn load(config: &Config, generate: Generate) -> Result<Self, MasterKeyError> {
        if let Some(secret) = &config.master_key {
            let bytes =
                decode_master_key(secret.expose()).map_err(|reason| MasterKeyError::Invalid {
                    origin: "master_key".into(),
                    reason,
                })?;
            return Ok(Self::from_bytes(&bytes));
        }
        if config.environment != Environment::Development {
            return Err(MasterKeyError::Missing);
        }
        let path = config.data_dir.join(DEV_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = decode_master_key(&text).map_err(|reason| MasterKeyError::Invalid {
                    origin: path.display().to_string(),
                    reason,
                })?;
                Ok(Self::from_bytes(&bytes))
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && generate == Generate::IfMissing =>
            {
                Self::generate_into(&path)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(MasterKeyError::Missing),
            Err(source) => Err(MasterKeyError::File { path, source }),
        }
    }

    fn generate_into(path: &Path) -> Result<Self, MasterKeyError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| MasterKeyError::Seal)?;
        let file_error = |source| MasterKeyError::File {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(file_error)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(file_error)?;
        writeln!(file, "{}", STANDARD.encode(bytes)).map_err(file_error)?;
        tracing::warn!(
            path = %path.display(),
            "DEVELOPMENT ONLY: generated a master key on disk next to the data it protects. \
             Anyone who can read this folder can read the signing keys. Outside development, \
             set TESSERA_MASTER_KEY from a secret manager."
        );
        Ok(Self::from_bytes(&bytes))
    }

    /// Encrypts `plaintext` for storage under `kid`: nonce followed by ciphertext and tag.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<Vec<u8>, MasterKeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| MasterKeyError::Seal)?;
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| MasterKeyError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts what [`MasterKey::seal`] produced for the same `kid`.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, MasterKeyError> {
        let unseal_error = || MasterKeyError::Unseal(kid.to_owned());
        if sealed.len() < NONCE_LEN {
            return Err(unseal_error());
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unseal_error())?;
        let mut buffer = ciphertext.to_vec();
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buffer)
            .map_err(|_| unseal_error())?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_the_same_master_key_and_kid() {
        let master = MasterKey::from_bytes(&[1; 32]);
        let sealed = master.seal("kid-1", b"private").expect("seal");
        assert_ne!(&sealed[NONCE_LEN..], b"private");
        assert_eq!(master.open("kid-1", &sealed).expect("open"), b"private");
        assert!(master.open("kid-2", &sealed).is_err(), "bound to the kid");
        assert!(
            MasterKey::from_bytes(&[2; 32])
                .open("kid-1", &sealed)
                .is_err()
        );
        let mut tampered = sealed.clone();
        tampered[NONCE_LEN] ^= 1;
        assert!(master.open("kid-1", &tampered).is_err());
        assert!(master.open("kid-1", &sealed[..4]).is_err());
    }

    #[test]
    fn development_generates_a_key_once_and_reuses_it() {
        let dir = tempfile::tempdir().expect("dir");
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        assert!(matches!(
            MasterKey::load(&config, Generate::Never),
            Err(MasterKeyError::Missing)
        ));
        let first = MasterKey::load(&config, Generate::IfMissing).expect("generated");
        let sealed = first.seal("k", b"x").expect("seal");
        let second = MasterKey::load(&config, Generate::Never).expect("read back");
        assert_eq!(second.open("k", &sealed).expect("same key"), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("data").join(DEV_KEY_FILE))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn outside_development_a_key_is_never_generated() {
        let dir = tempfile::tempdir().expect("dir");
        let config = Config {
            environment: Environment::Staging,
            data_dir: dir.path().to_owned(),
            ..Config::default()
        };
        assert!(matches!(
            MasterKey::load(&config, Generate::IfMissing),
            Err(MasterKeyError::Missing)
        ));
        assert!(!dir.path().join(DEV_KEY_FILE).exists());
    }
}
