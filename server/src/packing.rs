//! Packing: once a stream is complete, its fragments are copied end to end into a few
//! larger write-once objects and their own objects deleted (issue 22). A one-hour
//! recording is ~1,800 fragments: on S3 that many objects to PUT once (unavoidable: each
//! is acknowledged alone, durable) but also that many to delete when the recording is
//! destroyed, at the store's cost per object. Packed, it is ~10.
//!
//! Only ciphertext moves: the packer reads the sealed chunks and writes them again, it
//! holds no key. A chunk read from a pack is its row's `size` bytes from its offset, and is
//! checked by its tag and chain like any other. The rows switch to their packs in one
//! transaction, only if the attempt still lives and no other instance packed the stream
//! first (packs are named by a tag each packer draws: the loser deletes its own). The loose
//! objects go `loose_grace` later, so a reader that fetched a row before the switch still
//! finds its object; a crash in between leaves them to the next pass. Whatever is left
//! under the attempt's prefix, packs included, goes with its purge.
//!
//! A stream its agent never ended (a crash, a lost device) or that misses a fragment is
//! packed as it is once its attempt ended `incomplete_after` ago: a fragment arriving
//! later still is stored on its own, and read so.
//!
//! A local store appending each stream's chunks to a file of its own (the default,
//! `blobs::LocalFiles`) needs no packing: those files are packs already.

use crate::blobs::{chunk_path, pack_path, BlobError, BlobStore, PartWriter, PART_BYTES};
use crate::clock::SharedClock;
use crate::configuration::PackingSettings;
use crate::db::{AttemptId, ChunkRow, Database, DbError, PackPlace, Packed, StreamId};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::sync::Arc;

/// Streams handled per pass (a pass with a full batch is followed by another at once).
const BATCH: u32 = 100;
/// Fragments read at once for one stream.
const AT_ONCE: usize = 8;
/// Streams packed at once: a sitting's end makes hundreds ready together, and one stream
/// alone waits on the store's latency more than it uses it.
const STREAMS_AT_ONCE: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PackingError {
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("object store: {0}")]
    Blob(#[from] BlobError),
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PackReport {
    pub streams_packed: usize,
    pub fragments_packed: usize,
    pub packs_written: usize,
    pub loose_deleted: usize,
}

pub struct Packer {
    db: Arc<dyn Database>,
    blobs: BlobStore,
    clock: SharedClock,
    settings: PackingSettings,
}

impl Packer {
    pub fn new(
        db: Arc<dyn Database>,
        blobs: BlobStore,
        clock: SharedClock,
        settings: PackingSettings,
    ) -> Self {
        Self {
            db,
            blobs,
            clock,
            settings,
        }
    }

    /// One pass: packs up to a batch of settled complete streams, then deletes the loose
    /// objects of up to a batch of streams packed more than `loose_grace` ago. A stream
    /// whose packing fails is logged and left for a later pass.
    pub async fn run_once(&self) -> Result<PackReport, PackingError> {
        let mut report = PackReport::default();
        let now = self.clock.now_ms();
        let settled = now - self.settings.after.as_millis() as i64;
        let incomplete = now - self.settings.incomplete_after.as_millis() as i64;
        // Chunks appended to their stream's file are packed as they arrive; streams stored
        // loose before (a store switched to stream files) stay loose, read and purged so.
        let ready = if self.blobs.appends_to_stream_files() {
            Vec::new()
        } else {
            self.db.streams_to_pack(settled, incomplete, BATCH).await?
        };
        let mut packed = futures::stream::iter(ready)
            .map(|(attempt, stream)| async move {
                (attempt, stream, self.pack_stream(attempt, stream).await)
            })
            .buffer_unordered(STREAMS_AT_ONCE);
        while let Some((attempt, stream, outcome)) = packed.next().await {
            match outcome {
                Ok(Some((fragments, packs))) => {
                    report.streams_packed += 1;
                    report.fragments_packed += fragments;
                    report.packs_written += packs;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(attempt = %attempt, stream = %stream, error = %e, "packing a stream failed; retried at the next pass");
                }
            }
        }
        let packed_before = now - self.settings.loose_grace.as_millis() as i64;
        for (attempt, stream) in self.db.loose_to_delete(packed_before, BATCH).await? {
            match self.delete_loose(attempt, stream).await {
                Ok(n) => report.loose_deleted += n,
                Err(e) => {
                    tracing::error!(attempt = %attempt, stream = %stream, error = %e, "deleting a packed stream's loose objects failed; retried at the next pass");
                }
            }
        }
        Ok(report)
    }

    /// Copies the stream's chunks into packs and points its rows at them: `(fragments,
    /// packs)`, or `None` when another instance did, or the attempt went, meanwhile. A
    /// chunk missing from the store stays a row without a pack (read as missing, as before).
    async fn pack_stream(
        &self,
        attempt: AttemptId,
        stream: StreamId,
    ) -> Result<Option<(usize, usize)>, PackingError> {
        let rows = self.db.chunks_of(stream).await?;
        let tag: u64 = rand::random();
        let (mut places, mut written) = (Vec::with_capacity(rows.len()), Vec::new());
        for group in groups(rows, self.settings.max_pack_bytes) {
            let path = pack_path(attempt, stream, tag, group[0].index);
            // Listed before it is written: a failure half-way deletes whatever landed.
            written.push(path.clone());
            match self.write_pack(attempt, tag, &path, group).await {
                Ok(in_pack) if in_pack.is_empty() => drop(written.pop()),
                Ok(in_pack) => places.extend(in_pack),
                Err(e) => return Err(self.abandon(written, e).await),
            }
        }
        let outcome = match self
            .db
            .set_packed(stream, &places, self.clock.now_ms())
            .await
        {
            Ok(o) => o,
            Err(e) => return Err(self.abandon(written, e.into()).await),
        };
        match outcome {
            Packed::Done => {
                crate::metrics::stream_packed(places.len(), written.len());
                tracing::info!(attempt = %attempt, stream = %stream, fragments = places.len(), packs = written.len(), "stream packed");
                Ok(Some((places.len(), written.len())))
            }
            Packed::AlreadyPacked | Packed::Destroyed => {
                self.blobs.delete_many(&written).await?;
                Ok(None)
            }
        }
    }

    /// Writes one pack of `group` at `path`, in parts when it is large: each chunk's
    /// index and place in it; nothing written when every chunk is missing.
    async fn write_pack(
        &self,
        attempt: AttemptId,
        tag: u64,
        path: &object_store::path::Path,
        group: Vec<ChunkRow>,
    ) -> Result<Vec<(u32, PackPlace)>, PackingError> {
        let first = group[0].index;
        let planned: u64 = group.iter().map(|r| r.size).sum();
        let mut out = if planned > PART_BYTES as u64 {
            Out::Parts(self.blobs.write_in_parts(path).await?)
        } else {
            Out::Whole(BytesMut::with_capacity(planned as usize))
        };
        let (mut places, mut offset) = (Vec::with_capacity(group.len()), 0u64);
        // Owned futures: a spawned task cannot hold a stream of futures borrowing `self`.
        let store = self.blobs.clone();
        let mut blobs = futures::stream::iter(group)
            .map(move |row| {
                let store = store.clone();
                async move {
                    let blob = store.read_chunk(attempt, &row).await;
                    (row, blob)
                }
            })
            .buffered(AT_ONCE);
        while let Some((row, blob)) = blobs.next().await {
            let blob = match blob {
                Ok(b) if b.len() as u64 == row.size => b,
                // Acknowledged, then lost or damaged in the store: left as it is, so that
                // a read says missing or altered exactly as before.
                Ok(_) | Err(BlobError::NotFound) => {
                    tracing::error!(attempt = %attempt, stream = %row.stream_id, index = row.index, "a fragment to pack is missing or damaged in the store; left out of its pack");
                    continue;
                }
                Err(e) => {
                    out.abort().await;
                    return Err(e.into());
                }
            };
            places.push((row.index, PackPlace { tag, first, offset }));
            offset += row.size;
            if let Err(e) = out.write(blob).await {
                out.abort().await;
                return Err(e.into());
            }
        }
        if places.is_empty() {
            out.abort().await;
            return Ok(places);
        }
        match out {
            Out::Whole(bytes) => {
                self.blobs.put_durable(path, bytes.freeze()).await?;
            }
            Out::Parts(w) => w.finish().await?,
        }
        Ok(places)
    }

    /// A packing that failed half-way deletes what it wrote (a crash leaves it to the
    /// attempt's purge: nothing points at it) and returns the error.
    async fn abandon(
        &self,
        written: Vec<object_store::path::Path>,
        e: PackingError,
    ) -> PackingError {
        if let Err(d) = self.blobs.delete_many(&written).await {
            tracing::warn!(error = %d, "deleting an abandoned pack failed; it goes with the attempt's purge");
        }
        e
    }

    /// Deletes the loose objects of a packed stream's packed chunks (a chunk left out of
    /// its pack keeps its object).
    async fn delete_loose(
        &self,
        attempt: AttemptId,
        stream: StreamId,
    ) -> Result<usize, PackingError> {
        let loose: Vec<_> = self
            .db
            .chunks_of(stream)
            .await?
            .into_iter()
            .filter(|r| r.pack.is_some())
            .map(|r| chunk_path(attempt, stream, r.index, &r.content_sha256))
            .collect();
        self.blobs.delete_many(&loose).await?;
        self.db.finish_loose(stream, self.clock.now_ms()).await?;
        Ok(loose.len())
    }
}

/// Where a pack's bytes go: kept whole and put at once when small, sent in parts as they
/// come when large.
enum Out {
    Whole(BytesMut),
    Parts(PartWriter),
}

impl Out {
    async fn write(&mut self, blob: Bytes) -> Result<(), BlobError> {
        match self {
            Out::Whole(b) => {
                b.extend_from_slice(&blob);
                Ok(())
            }
            Out::Parts(w) => w.write(blob).await,
        }
    }

    async fn abort(self) {
        if let Out::Parts(w) = self {
            w.abort().await;
        }
    }
}

/// The stream's rows in index order, cut into packs of at most `max` bytes by their sizes
/// (a chunk larger than `max` is a pack of its own).
fn groups(rows: Vec<ChunkRow>, max: u64) -> Vec<Vec<ChunkRow>> {
    let mut groups: Vec<Vec<ChunkRow>> = Vec::new();
    let mut size = 0;
    for row in rows {
        match groups.last_mut() {
            Some(g) if size + row.size <= max => {
                size += row.size;
                g.push(row);
            }
            _ => {
                size = row.size;
                groups.push(vec![row]);
            }
        }
    }
    groups
}

/// The packer's loop: a pass every `interval` (at once again after a full batch); none
/// when `[packing] enabled` is off.
pub fn spawn(packer: Arc<Packer>) -> Option<tokio::task::JoinHandle<()>> {
    packer.settings.enabled.then(|| tokio::spawn(async move {
        loop {
            let full = match packer.run_once().await {
                Ok(r) => r.streams_packed >= BATCH as usize,
                Err(e) => {
                    tracing::error!(error = %e, "a packing pass failed; retried at the next one");
                    false
                }
            };
            if !full {
                tokio::time::sleep(packer.settings.interval).await;
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(index: u32, size: u64) -> ChunkRow {
        ChunkRow {
            stream_id: StreamId::random(),
            index,
            digest: [0; 32],
            content_sha256: [0; 32],
            prev_digest: [0; 32],
            size,
            media_start_us: 0,
            media_end_us: 0,
            last: false,
            pack: None,
        }
    }

    #[test]
    fn packs_are_cut_by_size_in_index_order() {
        let sizes = [40, 50, 20, 90, 200, 10, 10];
        let rows = sizes
            .iter()
            .enumerate()
            .map(|(i, s)| row(i as u32, *s))
            .collect();
        let cut: Vec<Vec<u32>> = groups(rows, 100)
            .iter()
            .map(|g| g.iter().map(|r| r.index).collect())
            .collect();
        // 40+50 fits, +20 does not; 20 then 90 does not fit with it; 200 alone (too big
        // for any pack); 10+10.
        assert_eq!(cut, vec![vec![0, 1], vec![2], vec![3], vec![4], vec![5, 6]]);
        assert!(groups(Vec::new(), 100).is_empty());
    }
}
