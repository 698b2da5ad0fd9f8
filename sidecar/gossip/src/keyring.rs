//! Authenticated encryption of every gossip packet and frame with a keyring:
//! the primary key seals, every key opens, so keys rotate without downtime
//! (add the new key, make it primary everywhere, then drop the old one).
//!
//! Sealed layout: `[SEAL_VERSION][24-byte random nonce][ciphertext + 16-byte tag]`,
//! XChaCha20-Poly1305 (RustCrypto). The 192-bit nonce is safe to pick at random.
//! The version byte and a channel byte (UDP or TCP) are authenticated as
//! associated data, so a UDP packet cannot be replayed into a TCP stream.

use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};
use rand::TryRng as _;

/// First byte of every sealed message; bumped if the layout ever changes.
pub const SEAL_VERSION: u8 = 1;
/// Bytes a seal adds: version + nonce + tag.
pub const SEAL_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Most keys a keyring may hold; rotation needs two or three.
pub const MAX_KEYS: usize = 16;
/// Largest keyring file accepted.
const MAX_KEYRING_FILE: u64 = 64 * 1024;

/// The development key: public, for `insecure_dev_mode` only.
const DEV_KEY: [u8; 32] = *b"shardmesh-insecure-dev-key-00000";

/// Which transport a sealed message belongs to (authenticated, not secret).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// UDP probe and gossip packets.
    Udp = 1,
    /// TCP push-pull frames.
    Tcp = 2,
}

/// A set of 32-byte keys; the first one seals.
#[derive(Clone)]
pub struct Keyring {
    ciphers: Vec<XChaCha20Poly1305>,
}

/// Why a keyring could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The file could not be read.
    #[error("cannot read keyring file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is too large to be a keyring.
    #[error("keyring file {0} is larger than {MAX_KEYRING_FILE} bytes")]
    TooLarge(String),
    /// A line is not base64 of exactly 32 bytes.
    #[error("keyring line {line}: not a base64-encoded 32-byte key")]
    BadKey {
        /// 1-based line number.
        line: usize,
    },
    /// No key at all.
    #[error("keyring has no key")]
    Empty,
    /// More keys than [`MAX_KEYS`].
    #[error("keyring has more than {MAX_KEYS} keys")]
    TooManyKeys,
    /// Neither a keyring file nor the insecure development flag was given.
    #[error("gossip needs a keyring (membership.gossip.keyringFile); refusing to run unencrypted")]
    NotConfigured,
}

/// Why a sealed message was refused; each maps to a bad-packet metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// Shorter than a seal's overhead.
    Truncated,
    /// Unknown seal version.
    Version,
    /// No key in the ring authenticates it.
    Auth,
}

// === impl Keyring ===

impl Keyring {
    /// Builds a keyring from raw keys, primary first.
    pub fn new(keys: &[[u8; 32]]) -> Result<Self, KeyringError> {
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        if keys.len() > MAX_KEYS {
            return Err(KeyringError::TooManyKeys);
        }
        let ciphers = keys
            .iter()
            .map(|k| XChaCha20Poly1305::new(&Key::from(*k)))
            .collect();
        Ok(Self { ciphers })
    }

    /// Parses the file format: one base64 key per line, primary first;
    /// blank lines and lines starting with `#` are ignored.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(line)
                .map_err(|_| KeyringError::BadKey { line: i + 1 })?;
            let key: [u8; 32] = raw
                .try_into()
                .map_err(|_| KeyringError::BadKey { line: i + 1 })?;
            keys.push(key);
        }
        Self::new(&keys)
    }

    /// Loads a keyring file (a mounted Secret in a cluster).
    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        let shown = path.display().to_string();
        let read_err = |source| KeyringError::Read {
            path: shown.clone(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read_err)?.len();
        if len > MAX_KEYRING_FILE {
            return Err(KeyringError::TooLarge(shown));
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        Self::parse(&text)
    }

    /// The keyring the config asks for: the file when given; otherwise a
    /// fixed, publicly known development key when `insecure_dev_mode` is set
    /// (packets are still authenticated against accidents, not attackers);
    /// otherwise an error, because gossip never runs unencrypted by default.
    pub fn configured(file: Option<&Path>, insecure_dev_mode: bool) -> Result<Self, KeyringError> {
        match file {
            Some(path) => Self::load(path),
            None if insecure_dev_mode => {
                tracing::warn!(
                    "gossip uses the public development key: anyone can read and forge membership"
                );
                Self::new(&[DEV_KEY])
            }
            None => Err(KeyringError::NotConfigured),
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.ciphers.len()
    }

    /// Always false: a keyring has at least one key.
    pub fn is_empty(&self) -> bool {
        self.ciphers.is_empty()
    }

    /// Seals `plain` with the primary key.
    pub fn seal(&self, channel: Channel, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // The OS RNG does not fail on supported platforms; if it ever did,
        // fall back to a counter-free fresh read rather than panic.
        if rand::rngs::SysRng.try_fill_bytes(&mut nonce).is_err() {
            nonce = fallback_nonce();
        }
        let aad = [SEAL_VERSION, channel as u8];
        let mut out = Vec::with_capacity(plain.len() + SEAL_OVERHEAD);
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        // Encryption only fails for messages beyond 256 GiB; ours are bounded.
        if let Some(primary) = self.ciphers.first() {
            if let Ok(ct) = primary.encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            ) {
                out.extend_from_slice(&ct);
            }
        }
        out
    }

    /// Opens a sealed message with any key of the ring.
    pub fn open(&self, channel: Channel, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(OpenError::Truncated);
        }
        if sealed[0] != SEAL_VERSION {
            return Err(OpenError::Version);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1..1 + NONCE_LEN]);
        let nonce = XNonce::from(nonce);
        let aad = [SEAL_VERSION, channel as u8];
        let ct = &sealed[1 + NONCE_LEN..];
        self.ciphers
            .iter()
            .find_map(|c| c.decrypt(&nonce, Payload { msg: ct, aad: &aad }).ok())
            .ok_or(OpenError::Auth)
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "Keyring({} keys)", self.ciphers.len())
    }
}

/// A nonce from the clock and a process-wide counter, used only if the OS
/// RNG fails; unique within a process, which is what XChaCha needs.
fn fallback_nonce() -> [u8; NONCE_LEN] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut n = [0u8; NONCE_LEN];
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    n[..8].copy_from_slice(&t.to_le_bytes());
    n[8..16].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    n[16..].copy_from_slice(&std::process::id().to_le_bytes().repeat(2));
    n
}

#[cfg(test)]
mod tests;
