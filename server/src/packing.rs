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

use crate::blobs::{chunk_path, pack_path, BlobError, BlobStore};
use crate::clock::SharedClock;
use crate::configuration::PackingSettings;
use crate::db::{AttemptId, Database, DbError, Packed, StreamId};
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
        let ready = self.db.streams_to_pack(settled, BATCH).await?;
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
        drop(packed);
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
        let max = self.settings.max_pack_bytes.max(1);
        let (mut places, mut written) = (Vec::with_capacity(rows.len()), Vec::new());
        let mut pack = Pack::default();
        // Owned futures: a spawned task cannot hold a stream of futures borrowing `self`.
        let store = self.blobs.clone();
        let mut blobs = futures::stream::iter(rows)
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
                    tracing::error!(attempt = %attempt, stream = %stream, index = row.index, "a fragment to pack is missing or damaged in the store; left out of its pack");
                    continue;
                }
                Err(e) => return Err(self.abandon(written, e.into()).await),
            };
            if !pack.is_empty() && pack.bytes.len() as u64 + row.size > max {
                if let Err(e) = self
                    .write(attempt, stream, tag, &mut pack, &mut places, &mut written)
                    .await
                {
                    return Err(self.abandon(written, e).await);
                }
            }
            pack.push(row.index, blob);
        }
        drop(blobs);
        if !pack.is_empty() {
            if let Err(e) = self
                .write(attempt, stream, tag, &mut pack, &mut places, &mut written)
                .await
            {
                return Err(self.abandon(written, e).await);
            }
        }
        let outcome = match self
            .db
            .set_packed(stream, tag, &places, self.clock.now_ms())
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
                self.delete_all(&written).await?;
                Ok(None)
            }
        }
    }

    async fn write(
        &self,
        attempt: AttemptId,
        stream: StreamId,
        tag: u64,
        pack: &mut Pack,
        places: &mut Vec<(u32, u32, u64)>,
        written: &mut Vec<object_store::path::Path>,
    ) -> Result<(), PackingError> {
        let Pack { bytes, chunks } = std::mem::take(pack);
        let first = chunks[0].0;
        let path = pack_path(attempt, stream, tag, first);
        written.push(path.clone());
        self.blobs.put_durable(&path, bytes.freeze()).await?;
        places.extend(chunks.into_iter().map(|(i, off)| (i, first, off)));
        Ok(())
    }

    /// A packing that failed half-way deletes what it wrote (a crash leaves it to the
    /// attempt's purge: nothing points at it) and returns the error.
    async fn abandon(
        &self,
        written: Vec<object_store::path::Path>,
        e: PackingError,
    ) -> PackingError {
        if let Err(d) = self.delete_all(&written).await {
            tracing::warn!(error = %d, "deleting an abandoned pack failed; it goes with the attempt's purge");
        }
        e
    }

    async fn delete_all(&self, paths: &[object_store::path::Path]) -> Result<(), BlobError> {
        self.blobs.delete_many(paths.to_vec()).await
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
        self.delete_all(&loose).await?;
        self.db.finish_loose(stream, self.clock.now_ms()).await?;
        Ok(loose.len())
    }
}

/// The pack being filled: its bytes, and each chunk's (index, offset).
#[derive(Default)]
struct Pack {
    bytes: BytesMut,
    chunks: Vec<(u32, u64)>,
}

impl Pack {
    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    fn push(&mut self, index: u32, blob: Bytes) {
        self.chunks.push((index, self.bytes.len() as u64));
        self.bytes.extend_from_slice(&blob);
    }
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
