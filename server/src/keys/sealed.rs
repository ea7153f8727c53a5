//! What is sealed under keys derived from an attempt's data key (connection data, flag
//! notes, stream keys): it dies with the data key, in every copy of the database.

use super::KeyError;
use crate::db::{AttemptId, FlagId, StreamId};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use protocol::AttemptKey;
use rand::RngCore;
use zeroize::Zeroizing;

/// Connection data sealed under a key derived from the attempt's data key (bound to the
/// stream): no copy of the database keeps it readable past the key's destruction.
pub fn seal_connection(
    dek: &AttemptKey,
    attempt: &AttemptId,
    stream: &StreamId,
    conn: &crate::db::ConnectionInfo,
) -> Result<Vec<u8>, KeyError> {
    let json = Zeroizing::new(serde_json::to_vec(conn).expect("three strings serialise"));
    seal(
        &dek.connection_key(&attempt.as_uuid()),
        &json,
        stream.as_bytes(),
    )
}

pub fn open_connection(
    dek: &AttemptKey,
    attempt: &AttemptId,
    stream: &StreamId,
    sealed: &[u8],
) -> Result<crate::db::ConnectionInfo, KeyError> {
    let json = open(
        &dek.connection_key(&attempt.as_uuid()),
        sealed,
        stream.as_bytes(),
    )?;
    serde_json::from_slice(&json).map_err(|_| KeyError::UnwrapFailed)
}

/// How a sealed note is stored in the notes column (a note without it is an earlier
/// version's clear text, sealed by the worker).
pub const SEALED_NOTE: &str = "sealed:v1:";

/// A flag's note sealed under a key derived from the attempt's data key (bound to the flag).
pub fn seal_note(
    dek: &AttemptKey,
    attempt: &AttemptId,
    flag: &FlagId,
    note: &str,
) -> Result<String, KeyError> {
    use base64::Engine;
    if note.is_empty() {
        return Ok(String::new());
    }
    let sealed = seal(
        &dek.note_key(&attempt.as_uuid()),
        note.as_bytes(),
        flag.as_bytes(),
    )?;
    Ok(format!(
        "{SEALED_NOTE}{}",
        base64::engine::general_purpose::STANDARD.encode(sealed)
    ))
}

pub fn open_note(
    dek: &AttemptKey,
    attempt: &AttemptId,
    flag: &FlagId,
    stored: &str,
) -> Result<String, KeyError> {
    use base64::Engine;
    let Some(b64) = stored.strip_prefix(SEALED_NOTE) else {
        return Ok(stored.to_owned());
    };
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| KeyError::UnwrapFailed)?;
    String::from_utf8(open(&dek.note_key(&attempt.as_uuid()), &sealed, flag.as_bytes())?.to_vec())
        .map_err(|_| KeyError::UnwrapFailed)
}

/// The platform's reference sealed under a key derived from the attempt's data key.
pub fn seal_reference(
    dek: &AttemptKey,
    attempt: &AttemptId,
    reference: &str,
) -> Result<Vec<u8>, KeyError> {
    seal(
        &dek.reference_key(&attempt.as_uuid()),
        reference.as_bytes(),
        attempt.as_bytes(),
    )
}

pub fn open_reference(
    dek: &AttemptKey,
    attempt: &AttemptId,
    sealed: &[u8],
) -> Result<String, KeyError> {
    let clear = open(
        &dek.reference_key(&attempt.as_uuid()),
        sealed,
        attempt.as_bytes(),
    )?;
    String::from_utf8(clear.to_vec()).map_err(|_| KeyError::UnwrapFailed)
}

/// AES-256-GCM under a key of the store: a random nonce, then the ciphertext and tag.
pub(super) fn seal(key: &[u8; 32], msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = Aes256Gcm::new(key.into())
        .encrypt(Nonce::from_slice(&nonce), Payload { msg, aad })
        .map_err(|_| KeyError::UnwrapFailed)?;
    Ok([nonce.as_slice(), &ct].concat())
}

pub(super) fn open(
    key: &[u8; 32],
    sealed: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    if sealed.len() < 12 + 16 {
        return Err(KeyError::UnwrapFailed);
    }
    let (nonce, ct) = sealed.split_at(12);
    Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| KeyError::UnwrapFailed)
}

/// A stream's key: derived from the data key and the stream's salt (server-keyed streams),
/// or opened from the stream's opening with the attempt's private key (agent-keyed ones).
pub fn stream_key(
    dek: &AttemptKey,
    attempt: &AttemptId,
    stream: &crate::db::Stream,
) -> Result<protocol::StreamKey, KeyError> {
    match &stream.keying {
        crate::db::StreamKeying::Derived { salt } => Ok(dek.derive_stream_key(
            &protocol::StreamSalt(*salt),
            &attempt.as_uuid(),
            &stream.id.as_uuid(),
        )),
        crate::db::StreamKeying::Opening(bytes) => {
            let opening =
                protocol::StreamOpening::parse(bytes).map_err(|_| KeyError::UnwrapFailed)?;
            opening
                .open(
                    &dek.recipient(&attempt.as_uuid()).0,
                    &attempt.as_uuid(),
                    &stream.id.as_uuid(),
                )
                .map_err(|_| KeyError::UnwrapFailed)
        }
    }
}
