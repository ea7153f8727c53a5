//! STREAM-style segmented AEAD (as in age and Tink's streaming AEAD), one segment per
//! media fragment: nonce = 7-byte prefix ‖ u32 BE index ‖ last-flag byte, and the chunk
//! header (attempt, stream, index, media range, previous digest) as associated data.
//! `aead-stream`'s `StreamBE32` has the same nonce layout but no per-segment associated
//! data, which we need; so the construction is spelled out here on `aes-gcm`.

use crate::{ChunkHeader, Digest, Error, StreamKey, StreamOpening, HEADER_LEN};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

pub const TAG_LEN: usize = 16;

/// One media fragment as the capture pipeline hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Fragment<'a> {
    pub data: &'a [u8],
    pub media_start_us: u64,
    pub media_end_us: u64,
    pub last: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedChunk {
    pub header: ChunkHeader,
    pub plaintext: Vec<u8>,
    pub digest: Digest,
}

/// The digest that chains chunk i+1 to chunk i and identifies a stored chunk:
/// SHA-256(header ‖ tag). The GCM tag already authenticates the ciphertext under the stream
/// key, so binding the tag binds the whole chunk; hashing 112 bytes instead of the whole
/// fragment keeps sealing at raw AES-GCM speed. The header includes the stream's opening
/// when there is one. Input shorter than a header and a tag (never a valid chunk) is hashed
/// whole.
pub fn chunk_digest(chunk: &[u8]) -> Digest {
    let mut h = Sha256::new();
    let header_len = HEADER_LEN
        + if chunk.len() > 7 && chunk[7] & 0x02 != 0 {
            crate::OPENING_LEN
        } else {
            0
        };
    if chunk.len() >= header_len + TAG_LEN {
        h.update(&chunk[..header_len]);
        h.update(&chunk[chunk.len() - TAG_LEN..]);
    } else {
        h.update(chunk);
    }
    h.finalize().into()
}

pub(crate) fn nonce(key: &StreamKey, index: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(&key.nonce_prefix);
    n[7..11].copy_from_slice(&index.to_be_bytes());
    n[11] = last as u8;
    n
}

/// Seals one fragment into a chunk (header ‖ ciphertext ‖ tag).
pub fn seal_chunk(
    key: &StreamKey,
    attempt: Uuid,
    stream: Uuid,
    index: u32,
    prev_digest: Digest,
    frag: Fragment<'_>,
) -> Vec<u8> {
    seal_with_opening(key, attempt, stream, index, prev_digest, None, frag)
}

/// Seals a chunk; the stream's first chunk carries the opening when the agent keyed it.
fn seal_with_opening(
    key: &StreamKey,
    attempt: Uuid,
    stream: Uuid,
    index: u32,
    prev_digest: Digest,
    opening: Option<StreamOpening>,
    frag: Fragment<'_>,
) -> Vec<u8> {
    let header = ChunkHeader {
        attempt,
        stream,
        index,
        last: frag.last,
        media_start_us: frag.media_start_us,
        media_end_us: frag.media_end_us.max(frag.media_start_us),
        prev_digest: if index == 0 { [0; 32] } else { prev_digest },
        body_len: u32::try_from(frag.data.len() + TAG_LEN).expect("fragment under 4 GiB"),
        opening: if index == 0 { opening } else { None },
    };
    let aad = header.encode();
    let mut out = Vec::with_capacity(aad.len() + frag.data.len() + TAG_LEN);
    out.extend_from_slice(&aad);
    out.extend_from_slice(frag.data);
    let cipher = Aes256Gcm::new((&key.key).into());
    let tag = cipher
        .encrypt_in_place_detached(
            Nonce::from_slice(&nonce(key, index, frag.last)),
            &aad,
            &mut out[aad.len()..],
        )
        .expect("AES-GCM encrypts any buffer under 64 GiB");
    out.extend_from_slice(&tag);
    out
}

/// Parses a chunk sealed for this attempt and stream: (header, ciphertext, tag). The
/// associated data is `chunk[..header.encoded_len()]`.
pub(crate) fn parse_bound(
    chunk: &[u8],
    attempt: Uuid,
    stream: Uuid,
) -> Result<(ChunkHeader, &[u8], &[u8]), Error> {
    let (header, body) = ChunkHeader::parse(chunk)?;
    if header.attempt != attempt {
        return Err(Error::WrongAttempt);
    }
    if header.stream != stream {
        return Err(Error::WrongStream);
    }
    let (ct, tag) = body.split_at(body.len() - TAG_LEN);
    Ok((header, ct, tag))
}

/// Opens one chunk on its own: checks the header, its binding to the expected attempt
/// and stream, and the tag. Ordering and chaining are the `StreamOpener`'s job.
pub fn open_chunk(
    key: &StreamKey,
    attempt: Uuid,
    stream: Uuid,
    chunk: &[u8],
) -> Result<OpenedChunk, Error> {
    let (header, ct, tag) = parse_bound(chunk, attempt, stream)?;
    let mut plaintext = ct.to_vec();
    let cipher = Aes256Gcm::new((&key.key).into());
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(&nonce(key, header.index, header.last)),
            &chunk[..header.encoded_len()],
            &mut plaintext,
            Tag::from_slice(tag),
        )
        .map_err(|_| Error::DecryptionFailed)?;
    Ok(OpenedChunk {
        header,
        plaintext,
        digest: chunk_digest(chunk),
    })
}

/// Seals a stream's fragments in order, keeping the index and the digest chain.
pub struct StreamSealer {
    key: StreamKey,
    attempt: Uuid,
    stream: Uuid,
    opening: Option<StreamOpening>,
    next_index: u32,
    prev_digest: Digest,
    finished: bool,
}

impl StreamSealer {
    pub fn new(key: StreamKey, attempt: Uuid, stream: Uuid) -> Self {
        Self {
            key,
            attempt,
            stream,
            opening: None,
            next_index: 0,
            prev_digest: [0; 32],
            finished: false,
        }
    }
    /// A stream the agent keyed itself: its first chunk carries `opening`.
    pub fn with_opening(
        key: StreamKey,
        attempt: Uuid,
        stream: Uuid,
        opening: StreamOpening,
    ) -> Self {
        Self {
            opening: Some(opening),
            ..Self::new(key, attempt, stream)
        }
    }
    pub fn stream(&self) -> Uuid {
        self.stream
    }
    pub fn next_index(&self) -> u32 {
        self.next_index
    }
    /// Returns the chunk's index and bytes. Sealing after the final fragment is refused.
    pub fn seal(&mut self, frag: Fragment<'_>) -> Result<(u32, Vec<u8>), Error> {
        if self.finished {
            return Err(Error::AfterFinal {
                index: self.next_index,
            });
        }
        let index = self.next_index;
        let chunk = seal_with_opening(
            &self.key,
            self.attempt,
            self.stream,
            index,
            self.prev_digest,
            self.opening.clone(),
            frag,
        );
        self.prev_digest = chunk_digest(&chunk);
        self.next_index = index.checked_add(1).ok_or(Error::IndexOverflow)?;
        self.finished = frag.last;
        Ok((index, chunk))
    }
}

/// Opens a stream's chunks in order and detects reordering, truncation and splicing.
pub struct StreamOpener {
    key: StreamKey,
    attempt: Uuid,
    stream: Uuid,
    next_index: u32,
    prev_digest: Digest,
    finished: bool,
}

impl StreamOpener {
    pub fn new(key: StreamKey, attempt: Uuid, stream: Uuid) -> Self {
        Self {
            key,
            attempt,
            stream,
            next_index: 0,
            prev_digest: [0; 32],
            finished: false,
        }
    }
    pub fn open_next(&mut self, chunk: &[u8]) -> Result<OpenedChunk, Error> {
        let opened = open_chunk(&self.key, self.attempt, self.stream, chunk)?;
        let h = &opened.header;
        if self.finished {
            return Err(Error::AfterFinal { index: h.index });
        }
        if h.index != self.next_index {
            return Err(Error::OutOfOrder {
                expected: self.next_index,
                actual: h.index,
            });
        }
        if h.prev_digest != self.prev_digest {
            return Err(Error::BrokenChain { index: h.index });
        }
        self.prev_digest = opened.digest;
        self.next_index += 1;
        self.finished = h.last;
        Ok(opened)
    }
    /// Call once the last chunk has been opened: a stream without its final chunk was cut short.
    pub fn finish(&self) -> Result<(), Error> {
        if self.finished {
            Ok(())
        } else {
            Err(Error::MissingFinal)
        }
    }
}
