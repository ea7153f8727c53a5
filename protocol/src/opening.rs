//! Stream keys without the server (DESIGN.md, "Stream keys without the server").
//!
//! Each attempt's data key yields an X25519 key pair (HKDF, then HPKE's `DeriveKeyPair`);
//! only its public key leaves the server, inside the launch token. The agent draws a random
//! stream key and seals it to that public key with HPKE (RFC 9180, base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM). The result, the stream's
//! *opening*, rides in the stream's first chunk, right after its header, and is part of
//! that chunk's associated data. The server opens it with the private key it re-derives
//! from the data key: destroying the data key still shreds every stream.
//!
//! ```text
//! off len field (the opening, 95 bytes)
//!   0   8 wall-clock start of the stream, ms since the Unix epoch, u64 big-endian (agent's clock)
//!   8  32 HPKE encapsulated key
//!  40  55 HPKE ciphertext of stream key ‖ nonce prefix (39 bytes + 16-byte tag)
//! ```
//! The HPKE `info` binds the attempt and the stream; the start time is its `aad`.

use crate::{AttemptKey, Error, StreamKey, KEY_LEN};
use hpke::{
    aead::AesGcm256, kdf::HkdfSha256, kem::X25519HkdfSha256, Deserializable, Kem as _, OpModeR,
    OpModeS, Serializable,
};
use rand::RngCore;
use std::fmt;
use uuid::Uuid;

pub const OPENING_LEN: usize = 8 + 32 + SEALED_KEY_LEN;
const SEALED_KEY_LEN: usize = KEY_LEN + 7 + 16;
const STREAM_INFO: &[u8] = b"cloe-connect/stream-opening/v1";

/// The attempt's public key: what an agent seals its stream keys (and its offline consent) to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AttemptPublicKey(pub [u8; 32]);

/// The private half, derived from the data key when needed; zeroized on drop (x25519-dalek).
pub struct AttemptSecret(<X25519HkdfSha256 as hpke::Kem>::PrivateKey);

/// A stream's opening, as carried in its first chunk.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamOpening {
    pub started_at_ms: u64,
    encapped: [u8; 32],
    sealed_key: [u8; SEALED_KEY_LEN],
}

impl AttemptKey {
    /// The attempt's X25519 key pair: HPKE `DeriveKeyPair` of
    /// HKDF-SHA256(data key, info = tag ‖ attempt id).
    pub fn recipient(&self, attempt: &Uuid) -> (AttemptSecret, AttemptPublicKey) {
        let ikm = self.subkey(b"cloe-connect/attempt-recipient/v1", attempt);
        let (sk, pk) = X25519HkdfSha256::derive_keypair(ikm.as_ref());
        let mut public = [0u8; 32];
        public.copy_from_slice(&pk.to_bytes());
        (AttemptSecret(sk), AttemptPublicKey(public))
    }
}

impl AttemptPublicKey {
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let b: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::InvalidOpening("a public key is 32 bytes"))?;
        <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(&b)
            .map_err(|_| Error::InvalidOpening("not an X25519 public key"))?;
        Ok(Self(b))
    }
    fn hpke(&self) -> <X25519HkdfSha256 as hpke::Kem>::PublicKey {
        <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(&self.0)
            .expect("checked when parsed; any 32 bytes are an X25519 point")
    }
}

fn stream_info(attempt: &Uuid, stream: &Uuid) -> Vec<u8> {
    [STREAM_INFO, attempt.as_bytes(), stream.as_bytes()].concat()
}

impl StreamKey {
    /// A fresh random stream key, drawn by the agent for a stream it opens itself.
    pub fn generate() -> Self {
        let mut k = StreamKey {
            key: [0; KEY_LEN],
            nonce_prefix: [0; 7],
        };
        rand::rngs::OsRng.fill_bytes(&mut k.key);
        rand::rngs::OsRng.fill_bytes(&mut k.nonce_prefix);
        k
    }
}

impl StreamOpening {
    /// Seals `key` to the attempt's public key, for this attempt and stream only.
    pub fn seal(
        public: &AttemptPublicKey,
        attempt: &Uuid,
        stream: &Uuid,
        started_at_ms: u64,
        key: &StreamKey,
    ) -> Self {
        Self::seal_with_rng(
            public,
            attempt,
            stream,
            started_at_ms,
            key,
            &mut rand::rngs::OsRng,
        )
    }

    /// As [`StreamOpening::seal`], with the randomness given: the cross-implementation
    /// vectors fix the ephemeral key with it. Anything but a CSPRNG here breaks the seal.
    pub fn seal_with_rng<R: rand::RngCore + rand::CryptoRng>(
        public: &AttemptPublicKey,
        attempt: &Uuid,
        stream: &Uuid,
        started_at_ms: u64,
        key: &StreamKey,
        rng: &mut R,
    ) -> Self {
        let secret = key.to_bytes();
        let (encapped, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, X25519HkdfSha256, _>(
            &OpModeS::Base,
            &public.hpke(),
            &stream_info(attempt, stream),
            &secret,
            &started_at_ms.to_be_bytes(),
            rng,
        )
        .expect("HPKE base-mode sealing of 39 bytes cannot fail");
        let mut o = StreamOpening {
            started_at_ms,
            encapped: [0; 32],
            sealed_key: [0; SEALED_KEY_LEN],
        };
        o.encapped.copy_from_slice(&encapped.to_bytes());
        o.sealed_key.copy_from_slice(&ct);
        o
    }

    /// The stream key, for the holder of the attempt's data key only.
    pub fn open(
        &self,
        secret: &AttemptSecret,
        attempt: &Uuid,
        stream: &Uuid,
    ) -> Result<StreamKey, Error> {
        let encapped = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(&self.encapped)
            .map_err(|_| Error::DecryptionFailed)?;
        let plain = zeroize::Zeroizing::new(
            hpke::single_shot_open::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
                &OpModeR::Base,
                &secret.0,
                &encapped,
                &stream_info(attempt, stream),
                &self.sealed_key,
                &self.started_at_ms.to_be_bytes(),
            )
            .map_err(|_| Error::DecryptionFailed)?,
        );
        StreamKey::from_bytes(&plain).ok_or(Error::DecryptionFailed)
    }

    pub fn encode(&self) -> [u8; OPENING_LEN] {
        let mut b = [0u8; OPENING_LEN];
        b[..8].copy_from_slice(&self.started_at_ms.to_be_bytes());
        b[8..40].copy_from_slice(&self.encapped);
        b[40..].copy_from_slice(&self.sealed_key);
        b
    }

    pub fn parse(b: &[u8]) -> Result<Self, Error> {
        if b.len() != OPENING_LEN {
            return Err(Error::InvalidOpening("wrong length"));
        }
        let started_at_ms = u64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
        if started_at_ms > i64::MAX as u64 {
            return Err(Error::InvalidOpening("start time out of range"));
        }
        let mut o = StreamOpening {
            started_at_ms,
            encapped: [0; 32],
            sealed_key: [0; SEALED_KEY_LEN],
        };
        o.encapped.copy_from_slice(&b[8..40]);
        o.sealed_key.copy_from_slice(&b[40..]);
        Ok(o)
    }
}

/// Seals a small record (the offline consent) to the attempt's public key, so that the
/// agent's spool keeps it unreadable and the server alone can open it. `purpose` binds it.
pub fn seal_to_attempt(
    public: &AttemptPublicKey,
    attempt: &Uuid,
    purpose: &str,
    plaintext: &[u8],
) -> Vec<u8> {
    seal_to_attempt_with_rng(public, attempt, purpose, plaintext, &mut rand::rngs::OsRng)
}

/// As [`seal_to_attempt`], with the randomness given (the cross-implementation vectors).
pub fn seal_to_attempt_with_rng<R: rand::RngCore + rand::CryptoRng>(
    public: &AttemptPublicKey,
    attempt: &Uuid,
    purpose: &str,
    plaintext: &[u8],
    rng: &mut R,
) -> Vec<u8> {
    let info = [
        b"cloe-connect/sealed-record/v1/".as_slice(),
        purpose.as_bytes(),
        attempt.as_bytes(),
    ]
    .concat();
    let (encapped, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &public.hpke(),
        &info,
        plaintext,
        &[],
        rng,
    )
    .expect("HPKE base-mode sealing cannot fail");
    [encapped.to_bytes().as_slice(), &ct].concat()
}

pub fn open_from_attempt(
    secret: &AttemptSecret,
    attempt: &Uuid,
    purpose: &str,
    sealed: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
    if sealed.len() < 32 + 16 {
        return Err(Error::DecryptionFailed);
    }
    let info = [
        b"cloe-connect/sealed-record/v1/".as_slice(),
        purpose.as_bytes(),
        attempt.as_bytes(),
    ]
    .concat();
    let encapped = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(&sealed[..32])
        .map_err(|_| Error::DecryptionFailed)?;
    hpke::single_shot_open::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &secret.0,
        &encapped,
        &info,
        &sealed[32..],
        &[],
    )
    .map(zeroize::Zeroizing::new)
    .map_err(|_| Error::DecryptionFailed)
}

impl fmt::Debug for AttemptSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AttemptSecret(<redacted>)")
    }
}
impl fmt::Debug for AttemptPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AttemptPublicKey({})", hex::encode(self.0))
    }
}
impl fmt::Debug for StreamOpening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamOpening")
            .field("started_at_ms", &self.started_at_ms)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_opens_what_the_agent_sealed_to_the_public_key_alone() {
        let dek = AttemptKey::generate();
        let (attempt, stream) = (Uuid::new_v4(), Uuid::new_v4());
        let (_, public) = dek.recipient(&attempt);
        let key = StreamKey::generate();
        let opening = StreamOpening::parse(
            &StreamOpening::seal(&public, &attempt, &stream, 1_764_000_000_000, &key).encode(),
        )
        .unwrap();
        let (secret, again) = dek.recipient(&attempt);
        assert_eq!(again, public, "the key pair is derived, not drawn");
        assert_eq!(
            opening.open(&secret, &attempt, &stream).unwrap().to_bytes(),
            key.to_bytes()
        );
        // Bound to its attempt, its stream and its start time; another data key cannot open it.
        assert_eq!(
            opening
                .open(&secret, &attempt, &Uuid::new_v4())
                .unwrap_err(),
            Error::DecryptionFailed
        );
        let (other_attempt_secret, _) = dek.recipient(&Uuid::new_v4());
        assert_eq!(
            opening
                .open(&other_attempt_secret, &attempt, &stream)
                .unwrap_err(),
            Error::DecryptionFailed
        );
        let (other_dek_secret, _) = AttemptKey::generate().recipient(&attempt);
        assert_eq!(
            opening
                .open(&other_dek_secret, &attempt, &stream)
                .unwrap_err(),
            Error::DecryptionFailed
        );
        let mut moved = opening.encode();
        moved[7] ^= 1;
        assert_eq!(
            StreamOpening::parse(&moved)
                .unwrap()
                .open(&secret, &attempt, &stream)
                .unwrap_err(),
            Error::DecryptionFailed
        );
    }

    #[test]
    fn a_sealed_record_opens_only_for_its_purpose() {
        let dek = AttemptKey::generate();
        let attempt = Uuid::new_v4();
        let (secret, public) = dek.recipient(&attempt);
        let sealed = seal_to_attempt(&public, &attempt, "consent", b"{\"given_at\":1}");
        assert_eq!(
            open_from_attempt(&secret, &attempt, "consent", &sealed)
                .unwrap()
                .as_slice(),
            b"{\"given_at\":1}"
        );
        assert!(open_from_attempt(&secret, &attempt, "withdrawal", &sealed).is_err());
        assert!(open_from_attempt(&secret, &attempt, "consent", &sealed[..40]).is_err());
    }

    #[test]
    fn parsing_refuses_wrong_sizes_and_keys_never_print() {
        assert!(StreamOpening::parse(&[0u8; OPENING_LEN - 1]).is_err());
        assert!(AttemptPublicKey::parse(&[1u8; 31]).is_err());
        let (secret, _) = AttemptKey::generate().recipient(&Uuid::new_v4());
        assert_eq!(format!("{secret:?}"), "AttemptSecret(<redacted>)");
    }
}
