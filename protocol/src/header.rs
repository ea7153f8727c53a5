//! Chunk wire format v1: a fixed 96-byte header, the stream's opening when the agent drew
//! the stream key itself (index 0 only, 95 bytes, see `opening.rs`), then the AES-256-GCM
//! ciphertext.
//!
//! ```text
//! off len field
//!   0   6 magic "CLOEPC"
//!   6   1 version (1)
//!   7   1 flags (bit 0: final chunk of its stream; bit 1: an opening follows the header;
//!         other bits must be 0)
//!   8  16 attempt id (UUID)
//!  24  16 stream id (UUID)
//!  40   4 index, u32 big-endian (0 = initialisation segment)
//!  44   8 media start, µs since stream start, u64 big-endian
//!  52   8 media end, µs since stream start, u64 big-endian
//!  60  32 digest of the previous chunk, SHA-256(header ‖ tag) (zeros for index 0)
//!  92   4 body length (ciphertext + 16-byte tag), u32 big-endian
//!  96  95 opening (only with flag bit 1)
//!  96|191 … body
//! ```
//! The whole header, opening included, is the AEAD associated data, so every field is
//! authenticated.

use crate::{Error, StreamOpening, OPENING_LEN};
use uuid::Uuid;

pub const MAGIC: &[u8; 6] = b"CLOEPC";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 96;
const FLAG_FINAL: u8 = 0x01;
const FLAG_OPENING: u8 = 0x02;

/// SHA-256 of a sealed chunk; chains each chunk to its predecessor.
pub type Digest = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkHeader {
    pub attempt: Uuid,
    pub stream: Uuid,
    pub index: u32,
    pub last: bool,
    pub media_start_us: u64,
    pub media_end_us: u64,
    pub prev_digest: Digest,
    pub body_len: u32,
    /// The sealed stream key, in the first chunk of a stream the agent keyed itself.
    pub opening: Option<StreamOpening>,
}

impl ChunkHeader {
    /// Bytes before the body: the fixed header, and the opening if there is one.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + if self.opening.is_some() {
                OPENING_LEN
            } else {
                0
            }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[0..6].copy_from_slice(MAGIC);
        b[6] = VERSION;
        b[7] = if self.last { FLAG_FINAL } else { 0 }
            | if self.opening.is_some() {
                FLAG_OPENING
            } else {
                0
            };
        b[8..24].copy_from_slice(self.attempt.as_bytes());
        b[24..40].copy_from_slice(self.stream.as_bytes());
        b[40..44].copy_from_slice(&self.index.to_be_bytes());
        b[44..52].copy_from_slice(&self.media_start_us.to_be_bytes());
        b[52..60].copy_from_slice(&self.media_end_us.to_be_bytes());
        b[60..92].copy_from_slice(&self.prev_digest);
        b[92..96].copy_from_slice(&self.body_len.to_be_bytes());
        if let Some(o) = &self.opening {
            b.extend_from_slice(&o.encode());
        }
        b
    }

    /// Total parse: any byte string yields a header or a typed error, never a panic.
    /// Checks the header alone and that the body length matches what follows it.
    pub fn parse(chunk: &[u8]) -> Result<(ChunkHeader, &[u8]), Error> {
        if chunk.len() < HEADER_LEN {
            return Err(Error::Truncated(chunk.len()));
        }
        let (h, body) = chunk.split_at(HEADER_LEN);
        if &h[0..6] != MAGIC {
            return Err(Error::InvalidHeader("bad magic"));
        }
        if h[6] != VERSION {
            return Err(Error::UnsupportedVersion(h[6]));
        }
        if h[7] & !(FLAG_FINAL | FLAG_OPENING) != 0 {
            return Err(Error::InvalidHeader("unknown flag bits"));
        }
        let u32_at = |o: usize| u32::from_be_bytes(h[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_be_bytes(h[o..o + 8].try_into().expect("8 bytes"));
        let uuid_at = |o: usize| Uuid::from_bytes(h[o..o + 16].try_into().expect("16 bytes"));
        let header = ChunkHeader {
            attempt: uuid_at(8),
            stream: uuid_at(24),
            index: u32_at(40),
            last: h[7] & FLAG_FINAL != 0,
            media_start_us: u64_at(44),
            media_end_us: u64_at(52),
            prev_digest: h[60..92].try_into().expect("32 bytes"),
            body_len: u32_at(92),
            opening: None,
        };
        let (header, body) = if h[7] & FLAG_OPENING != 0 {
            if header.index != 0 {
                return Err(Error::InvalidHeader(
                    "only a stream's first chunk carries an opening",
                ));
            }
            if body.len() < OPENING_LEN {
                return Err(Error::Truncated(chunk.len()));
            }
            let (o, rest) = body.split_at(OPENING_LEN);
            (
                ChunkHeader {
                    opening: Some(StreamOpening::parse(o)?),
                    ..header
                },
                rest,
            )
        } else {
            (header, body)
        };
        if header.media_end_us < header.media_start_us {
            return Err(Error::InvalidHeader("media end before media start"));
        }
        if (header.body_len as usize) < crate::TAG_LEN {
            return Err(Error::InvalidHeader(
                "body shorter than the authentication tag",
            ));
        }
        if header.index == 0 && header.prev_digest != [0u8; 32] {
            return Err(Error::InvalidHeader("first chunk has a predecessor digest"));
        }
        if body.len() as u64 != header.body_len as u64 {
            return Err(Error::LengthMismatch {
                declared: header.body_len as u64,
                actual: body.len() as u64,
            });
        }
        Ok((header, body))
    }
}
