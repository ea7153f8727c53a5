//! A finished stream's fragments packed into a few larger objects, as stored: which
//! streams are ready, where each chunk now lives, and when the loose objects went. The
//! packing itself is the server's (`server/src/packing.rs`).

use crate::{AttemptId, DbResult, StreamId};
use async_trait::async_trait;

/// Where a packed chunk's bytes are: the pack of its stream drawn with `tag` that starts
/// at index `first`, from `offset` on, for the row's `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackPlace {
    pub tag: u64,
    pub first: u32,
    pub offset: u64,
}

impl PackPlace {
    /// As stored: `pack_tag`, `pack_first`, `pack_offset`, each the column's signed 64-bit
    /// integer (the tag's high bit as its sign).
    pub fn columns(&self) -> [i64; 3] {
        [self.tag as i64, i64::from(self.first), self.offset as i64]
    }

    /// Read back from `columns`.
    pub fn from_columns([tag, first, offset]: [i64; 3]) -> Self {
        Self {
            tag: tag as u64,
            first: first as u32,
            offset: offset as u64,
        }
    }
}

/// What `set_packed` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packed {
    /// The rows point into the packs now.
    Done,
    /// Another instance packed the stream first: the packs just written are to be deleted.
    AlreadyPacked,
    /// The attempt was destroyed meanwhile: the packs just written are to be deleted.
    Destroyed,
}

#[async_trait]
pub trait PackStore: Send + Sync {
    /// Streams not packed yet, of an attempt not destroyed, that are either complete (the
    /// agent ended them: `final_index`, every index up to it present) and ended before
    /// `settled_before_ms`, or, complete or not, of an attempt that ended before
    /// `incomplete_before_ms` (a crash, a lost device, a fragment never sent); oldest
    /// first, at most `limit`.
    async fn streams_to_pack(
        &self,
        settled_before_ms: i64,
        incomplete_before_ms: i64,
        limit: u32,
    ) -> DbResult<Vec<(AttemptId, StreamId)>>;
    /// Points each listed chunk (by index) at its place in a pack and marks the stream
    /// packed, in one transaction, unless it was packed already or its attempt destroyed.
    async fn set_packed(
        &self,
        stream: StreamId,
        places: &[(u32, PackPlace)],
        at_ms: i64,
    ) -> DbResult<Packed>;
    /// Streams packed before `packed_before_ms` whose loose objects are still to delete.
    async fn loose_to_delete(
        &self,
        packed_before_ms: i64,
        limit: u32,
    ) -> DbResult<Vec<(AttemptId, StreamId)>>;
    /// The stream's loose objects are deleted.
    async fn finish_loose(&self, stream: StreamId, at_ms: i64) -> DbResult<()>;
}
