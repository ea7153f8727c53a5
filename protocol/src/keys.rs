use hkdf::Hkdf;
use rand::RngCore;
use sha2::{Digest as _, Sha256};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub const KEY_LEN: usize = 32;
const PRODUCT_TAG: &[u8] = b"cloe-connect/proctor/stream/v1";

/// The per-attempt data key (DEK). Exists in clear only in the server's memory.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AttemptKey([u8; KEY_LEN]);

/// The per-stream key derived from the attempt key; the only key the agent ever holds.
/// The last 7 bytes are the STREAM nonce prefix.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct StreamKey {
    pub(crate) key: [u8; KEY_LEN],
    pub(crate) nonce_prefix: [u8; 7],
}

/// Random per-stream salt: a fresh stream key per agent run, so a crash can never reuse a nonce.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StreamSalt(pub [u8; 32]);

/// SHA-256 of a key with a domain tag: safe to log and to keep in receipts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyFingerprint(pub [u8; 32]);

impl AttemptKey {
    pub fn generate() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }
    /// Only for wrapping under a KEK; the borrow keeps the key from being copied out.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
    pub fn fingerprint(&self) -> KeyFingerprint {
        let mut h = Sha256::new();
        h.update(b"cloe-connect/fingerprint/v1");
        h.update(self.0);
        KeyFingerprint(h.finalize().into())
    }
    /// The launch token's secret for one issue (`generation`) of this attempt's token:
    /// HKDF-SHA256(attempt key, info = tag ‖ attempt id ‖ generation). Deriving it lets the
    /// server answer a retried enrolment with the same token while storing only its hash;
    /// destroying the attempt key makes it underivable, like everything else of the attempt.
    pub fn launch_secret(
        &self,
        attempt: &uuid::Uuid,
        generation: u32,
    ) -> zeroize::Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(None, &self.0);
        let mut info = Vec::with_capacity(64);
        info.extend_from_slice(b"cloe-connect/launch-token/v1");
        info.extend_from_slice(attempt.as_bytes());
        info.extend_from_slice(&generation.to_be_bytes());
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        hk.expand(&info, out.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        out
    }
    /// The key that seals the attempt's connection data (address, agent version, OS) at
    /// rest: HKDF-SHA256(attempt key, info = tag ‖ attempt id). Shredded with the attempt.
    pub fn connection_key(&self, attempt: &uuid::Uuid) -> zeroize::Zeroizing<[u8; 32]> {
        self.subkey(b"cloe-connect/connection/v1", attempt)
    }
    /// The key that seals the reviewers' free-text notes on the attempt's flags: notes say
    /// things about the candidate, and die with the attempt key, backups included.
    pub fn note_key(&self, attempt: &uuid::Uuid) -> zeroize::Zeroizing<[u8; 32]> {
        self.subkey(b"cloe-connect/flag-note/v1", attempt)
    }
    /// The key that seals the platform's reference of the candidate at rest: a database
    /// copy names nobody once the attempt key is destroyed.
    pub fn reference_key(&self, attempt: &uuid::Uuid) -> zeroize::Zeroizing<[u8; 32]> {
        self.subkey(b"cloe-connect/reference/v1", attempt)
    }
    pub(crate) fn subkey(&self, tag: &[u8], attempt: &uuid::Uuid) -> zeroize::Zeroizing<[u8; 32]> {
        let hk = Hkdf::<Sha256>::new(None, &self.0);
        let info = [tag, attempt.as_bytes()].concat();
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        hk.expand(&info, out.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        out
    }
    /// Stream key = HKDF-SHA256(attempt key, salt, product tag ‖ attempt id ‖ stream id).
    pub fn derive_stream_key(
        &self,
        salt: &StreamSalt,
        attempt: &uuid::Uuid,
        stream: &uuid::Uuid,
    ) -> StreamKey {
        let hk = Hkdf::<Sha256>::new(Some(&salt.0), &self.0);
        let mut info = Vec::with_capacity(PRODUCT_TAG.len() + 32);
        info.extend_from_slice(PRODUCT_TAG);
        info.extend_from_slice(attempt.as_bytes());
        info.extend_from_slice(stream.as_bytes());
        let mut okm = [0u8; KEY_LEN + 7];
        hk.expand(&info, &mut okm)
            .expect("39 bytes is a valid HKDF-SHA256 length");
        let mut key = StreamKey {
            key: [0; KEY_LEN],
            nonce_prefix: [0; 7],
        };
        key.key.copy_from_slice(&okm[..KEY_LEN]);
        key.nonce_prefix.copy_from_slice(&okm[KEY_LEN..]);
        okm.zeroize();
        key
    }
}

impl StreamKey {
    /// Serialised form for transport to the agent over TLS (key ‖ prefix).
    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut v = zeroize::Zeroizing::new(Vec::with_capacity(KEY_LEN + 7));
        v.extend_from_slice(&self.key);
        v.extend_from_slice(&self.nonce_prefix);
        v
    }
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != KEY_LEN + 7 {
            return None;
        }
        let mut k = StreamKey {
            key: [0; KEY_LEN],
            nonce_prefix: [0; 7],
        };
        k.key.copy_from_slice(&bytes[..KEY_LEN]);
        k.nonce_prefix.copy_from_slice(&bytes[KEY_LEN..]);
        Some(k)
    }
}

impl StreamSalt {
    pub fn generate() -> Self {
        let mut s = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut s);
        Self(s)
    }
}

impl fmt::Debug for AttemptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AttemptKey(<redacted>)")
    }
}
impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamKey(<redacted>)")
    }
}
impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0[..16]))
    }
}
impl fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFingerprint({self})")
    }
}
