//! Verifying a chunk without decrypting it, for ingest.
//!
//! AES-GCM authenticates the *ciphertext*: tag = GHASH_H(aad, ciphertext) ⊕ AES_K(J0)
//! (NIST SP 800-38D, §7.2). Decryption is a separate CTR pass that only follows a good
//! tag. The server must check every chunk before it acknowledges it, but it has no use for
//! the plaintext then; so this computes exactly the first half of `aes-gcm`'s
//! `decrypt_in_place_detached` (same `aes` and `ghash` crates, same block layout) and never
//! produces plaintext: no second copy of an 8 MiB chunk, nothing to zeroize, and no
//! plaintext media in the server's memory at ingest at all. `tests/verify.rs` checks it
//! against `aes-gcm` on every length from 0 to 1 KiB and on tampered chunks.

use crate::seal::{nonce, parse_bound};
use crate::{chunk_digest, ChunkHeader, Digest, Error, StreamKey};
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes256;
use ghash::universal_hash::UniversalHash;
use ghash::GHash;
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// A chunk whose header, binding and tag were checked; its bytes were not decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChunk {
    pub header: ChunkHeader,
    pub digest: Digest,
}

/// Checks what `open_chunk` checks (header, attempt and stream binding, tag) without
/// decrypting.
pub fn verify_chunk(
    key: &StreamKey,
    attempt: Uuid,
    stream: Uuid,
    chunk: &[u8],
) -> Result<VerifiedChunk, Error> {
    let (header, ct, tag) = parse_bound(chunk, attempt, stream)?;
    let aad = &chunk[..header.encoded_len()];
    let cipher = Aes256::new((&key.key).into());
    let mut h = ghash::Block::default();
    cipher.encrypt_block(&mut h);
    let mut j0 = ghash::Block::default();
    j0[..12].copy_from_slice(&nonce(key, header.index, header.last));
    j0[15] = 1;
    cipher.encrypt_block(&mut j0);

    let mut gh = GHash::new(&h);
    gh.update_padded(aad);
    gh.update_padded(ct);
    let mut lengths = ghash::Block::default();
    lengths[..8].copy_from_slice(&((aad.len() as u64) * 8).to_be_bytes());
    lengths[8..].copy_from_slice(&((ct.len() as u64) * 8).to_be_bytes());
    gh.update(&[lengths]);
    let mut expected = gh.finalize();
    expected
        .iter_mut()
        .zip(j0.iter())
        .for_each(|(a, b)| *a ^= b);
    if !bool::from(expected.as_slice().ct_eq(tag)) {
        return Err(Error::DecryptionFailed);
    }
    Ok(VerifiedChunk {
        header,
        digest: chunk_digest(chunk),
    })
}
