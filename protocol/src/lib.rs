//! The chunk wire format and its sealing, shared by the capture agent and the server.
//!
//! Everything here is pure: bytes in, bytes or a typed error out (destruction receipts
//! included: signed and checked here, the key kept by the server). No I/O, no async,
//! no GStreamer, no SQL. Keys are zeroized on drop and never printed.

mod activity;
pub mod api;
mod audit_segment;
pub mod channel;
mod error;
mod header;
mod keys;
mod launch;
pub mod launch_code;
pub mod notice;
mod opening;
mod payload;
mod receipt;
mod seal;
mod verify;

pub use activity::{
    activity_points_allowed, open_activity, parse_activity, read_activity, seal_activity,
    MAX_ACTIVITY_POINTS,
};
pub use audit_segment::{sign_segment, verify_segment, AuditSegment, SignedSegment};
pub use ed25519_dalek::SigningKey as ReceiptSigningKey;
pub use error::Error;
pub use header::{ChunkHeader, Digest, HEADER_LEN, MAGIC, VERSION};
pub use keys::{AttemptKey, KeyFingerprint, StreamKey, StreamSalt, KEY_LEN};
pub use launch::LaunchToken;
pub use opening::{
    open_from_attempt, seal_to_attempt, seal_to_attempt_with_rng, AttemptPublicKey, AttemptSecret,
    StreamOpening, OPENING_LEN,
};
pub use payload::{decode_payload, encode_payload, Activity, Payload, PAYLOAD_MAGIC};
pub use receipt::{
    check_chain, public_key_text, receipt_hash, receipt_key_id, sign_receipt, verify_receipt,
    verify_receipt_pinned, ChainReport, Receipt, SignedReceipt, RECEIPT_VERSION,
};
pub use seal::{
    chunk_digest, open_chunk, seal_chunk, Fragment, OpenedChunk, StreamOpener, StreamSealer,
    TAG_LEN,
};
pub use verify::{verify_chunk, VerifiedChunk};

/// Ids travel as UUIDs; a bare alias keeps signatures readable.
pub type Id = uuid::Uuid;
