//! The local store's chunks appended to one file per stream (issue 22).
//!
//! A new file per chunk costs ext4 an inode, a directory entry and a journal commit at its
//! sync, and makes that sync wait for whatever other programs' write-back the same
//! transaction carries (`scripts/probe-sync-stall`: 0.51–0.66 ms at p50 against 0.28 ms for
//! an append, and longer stalls beside a writer). Appending writes only data and a size.
//!
//! Each file is a pack written as its chunks arrive: named like the packer's packs
//! (`pack_path`, under a tag drawn for the file and the index of its first chunk), and each
//! chunk's row points at its offset, so every read, check and purge works as for a pack.
//! A file holds one stream's chunks only, so destroying an attempt still deletes whole
//! files, never ranges of shared ones. Bytes are written once at an offset reserved under
//! the stream's entry and never rewritten; what no row references (a write that failed, the
//! loser of two uploads of one index, a tail a crash cut) stays unread ciphertext until the
//! attempt's purge deletes the file.

use super::{dirs_to_sync, pack_path, BlobError, StoredChunk};
use crate::db::{AttemptId, PackPlace, StreamId};
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Streams whose current file is remembered, at most: past it every entry is dropped and
/// the streams still recording start new files (an agent that vanished never ends its
/// stream, and its entry would stay otherwise).
const OPEN_STREAMS: usize = 16_384;

/// One stream's current file.
struct StreamFile {
    tag: u64,
    /// The index of the chunk that opened it.
    first: u32,
    path: ObjectPath,
    file: PathBuf,
    /// Where the next chunk goes.
    next: AtomicU64,
    /// Set once the file exists and its directory entries are durable: every chunk
    /// appended then needs only the file's own `fdatasync`.
    created: tokio::sync::OnceCell<()>,
}

pub(super) struct StreamFiles {
    root: PathBuf,
    open: Mutex<HashMap<StreamId, Arc<StreamFile>>>,
}

impl StreamFiles {
    pub(super) fn new(root: PathBuf) -> Self {
        Self {
            root,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Writes `bytes` at the end of the stream's file, creating the file (and making its
    /// name durable) first if the stream has none yet. Durable once the file is synced.
    pub(super) async fn append(
        &self,
        attempt: AttemptId,
        stream: StreamId,
        index: u32,
        last: bool,
        bytes: Bytes,
    ) -> Result<StoredChunk, BlobError> {
        let entry = self.entry(attempt, stream, index);
        entry
            .created
            .get_or_try_init(|| create(entry.file.clone(), self.root.clone()))
            .await?;
        let offset = entry.next.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let file = entry.file.clone();
        // Opened for each write, not kept open: a descriptor per recording stream would
        // count against the process's limit beside its connections.
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file)?
                .write_all_at(&bytes, offset)
        })
        .await
        .expect("a write task does not panic")?;
        if last {
            // Chunks before the last may still come (store-and-forward sends in any
            // order): they start a file of their own.
            self.open.lock().expect("not poisoned").remove(&stream);
        }
        Ok(StoredChunk {
            path: entry.path.clone(),
            place: Some(PackPlace {
                tag: entry.tag,
                first: entry.first,
                offset,
            }),
            created_alone: false,
        })
    }

    fn entry(&self, attempt: AttemptId, stream: StreamId, index: u32) -> Arc<StreamFile> {
        let mut open = self.open.lock().expect("not poisoned");
        if let Some(e) = open.get(&stream) {
            return e.clone();
        }
        if open.len() >= OPEN_STREAMS {
            open.clear();
        }
        // A tag of its own for each file: no two entries, in this process or another, or
        // before a restart, ever name one file.
        let tag = rand::random::<u64>();
        let path = pack_path(attempt, stream, tag, index);
        let file = self.root.join(path.as_ref());
        let e = Arc::new(StreamFile {
            tag,
            first: index,
            path,
            file,
            next: AtomicU64::new(0),
            created: tokio::sync::OnceCell::new(),
        });
        open.insert(stream, e.clone());
        e
    }
}

/// Creates the file (its tag is its own: an existing one is a creation retried after its
/// syncs failed) and syncs the directories from its parent up to
/// the root, so that its name survives a power cut before any chunk in it is acknowledged.
async fn create(file: PathBuf, root: PathBuf) -> Result<(), BlobError> {
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let parent = file.parent().expect("a blob has a directory");
        std::fs::create_dir_all(parent)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&file)?;
        for dir in dirs_to_sync(&file, &root) {
            std::fs::File::open(&dir)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .expect("a create task does not panic")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{BlobStore, StoredChunk};
    use crate::db::{AttemptId, ChunkRow, StreamId};
    use bytes::Bytes;

    fn row(stream: StreamId, index: u32, size: usize, last: bool) -> ChunkRow {
        ChunkRow {
            stream_id: stream,
            index,
            digest: [0; 32],
            content_sha256: [index as u8; 32],
            prev_digest: [0; 32],
            size: size as u64,
            media_start_us: 0,
            media_end_us: 1,
            last,
            pack: None,
        }
    }

    async fn put(
        store: &BlobStore,
        attempt: AttemptId,
        row: &mut ChunkRow,
        bytes: Bytes,
    ) -> StoredChunk {
        let stored = store.put_chunk(attempt, row, bytes).await.unwrap();
        row.pack = stored.place;
        stored
    }

    fn files(p: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                out.extend(files(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }

    /// Many uploads of one stream at once: each chunk its own range of one file, read back
    /// as written, with no file created per chunk.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_one_file_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_local(dir.path()).unwrap();
        assert!(store.appends_to_stream_files());
        let (a, s) = (AttemptId::random(), StreamId::random());
        let tasks: Vec<_> = (0..48u32)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let bytes = Bytes::from(vec![i as u8; 1000 + 37 * i as usize]);
                    let mut row = row(s, i, bytes.len(), false);
                    let stored = put(&store, a, &mut row, bytes.clone()).await;
                    (row, stored, bytes)
                })
            })
            .collect();
        let mut written = Vec::new();
        for t in tasks {
            written.push(t.await.unwrap());
        }
        let stored: Vec<&StoredChunk> = written.iter().map(|(_, s, _)| s).collect();
        store.sync_chunks(&stored).await.unwrap();
        let mut ranges: Vec<(u64, u64)> = written
            .iter()
            .map(|(r, _, _)| (r.pack.unwrap().offset, r.size))
            .collect();
        ranges.sort_unstable();
        assert!(
            ranges.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0),
            "end to end, no overlap: {ranges:?}"
        );
        for (row, stored, bytes) in &written {
            assert!(!stored.created_alone);
            assert_eq!(&store.read_chunk(a, row).await.unwrap(), bytes);
        }
        let on_disk = files(dir.path());
        assert_eq!(on_disk.len(), 1, "{on_disk:?}");
        assert_eq!(
            std::fs::metadata(&on_disk[0]).unwrap().len(),
            ranges.iter().map(|r| r.1).sum::<u64>()
        );
        assert_eq!(store.count_attempt_objects(a).await.unwrap(), 1);
        assert_eq!(store.delete_attempt(a, || ()).await.unwrap(), 1);
        assert!(files(dir.path()).is_empty());
    }

    /// The last chunk closes its stream's file; a chunk that comes after it (sent late by
    /// store-and-forward) starts another; another stream never shares a file.
    #[tokio::test]
    async fn a_chunk_after_the_last_starts_a_file_and_streams_never_share_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_local(dir.path()).unwrap();
        let (a, s, other) = (AttemptId::random(), StreamId::random(), StreamId::random());
        let mut rows = vec![row(s, 0, 5, false), row(s, 2, 5, true), row(s, 1, 5, false)];
        let mut stored = Vec::new();
        for r in rows.iter_mut() {
            stored.push(put(&store, a, r, Bytes::from(vec![r.index as u8; 5])).await);
        }
        let mut theirs = row(other, 0, 5, false);
        stored.push(put(&store, a, &mut theirs, Bytes::from_static(b"other")).await);
        store
            .sync_chunks(&stored.iter().collect::<Vec<_>>())
            .await
            .unwrap();
        let place = |r: &ChunkRow| r.pack.unwrap();
        assert_eq!(place(&rows[0]).tag, place(&rows[1]).tag);
        assert_eq!((place(&rows[0]).first, place(&rows[1]).offset), (0, 5));
        assert_ne!(place(&rows[2]).tag, place(&rows[0]).tag, "a new file");
        assert_eq!((place(&rows[2]).first, place(&rows[2]).offset), (1, 0));
        assert_ne!(place(&theirs).tag, place(&rows[0]).tag);
        for r in &rows {
            assert_eq!(
                store.read_chunk(a, r).await.unwrap(),
                Bytes::from(vec![r.index as u8; 5])
            );
        }
        assert_eq!(files(dir.path()).len(), 3);
    }

    /// What a crash can leave after the last acknowledged chunk (bytes no row points at) is
    /// never read, and a restarted server appends to a file of its own.
    #[tokio::test]
    async fn a_torn_tail_is_never_read_and_a_restart_starts_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, s) = (AttemptId::random(), StreamId::random());
        let store = BlobStore::open_local(dir.path()).unwrap();
        let mut first = row(s, 0, 6, false);
        let stored = put(&store, a, &mut first, Bytes::from_static(b"acked!")).await;
        store.sync_chunks(&[&stored]).await.unwrap();
        let file = files(dir.path()).remove(0);
        {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&file)
                .unwrap();
            f.write_all(b"half a chu").unwrap();
        }
        let restarted = BlobStore::open_local(dir.path()).unwrap();
        let mut second = row(s, 1, 6, false);
        let stored = put(&restarted, a, &mut second, Bytes::from_static(b"second")).await;
        restarted.sync_chunks(&[&stored]).await.unwrap();
        assert_ne!(second.pack.unwrap().tag, first.pack.unwrap().tag);
        assert_eq!(second.pack.unwrap().offset, 0);
        assert_eq!(
            restarted.read_chunk(a, &first).await.unwrap(),
            Bytes::from_static(b"acked!")
        );
        assert_eq!(
            restarted.read_chunk(a, &second).await.unwrap(),
            Bytes::from_static(b"second")
        );
        assert_eq!(files(dir.path()).len(), 2);
    }

    /// One file per chunk, when asked: nothing appended, the object named by its hash.
    #[tokio::test]
    async fn per_chunk_files_write_an_object_each() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            BlobStore::open_local_with(dir.path(), super::super::LocalFiles::PerChunk).unwrap();
        assert!(!store.appends_to_stream_files());
        let (a, s) = (AttemptId::random(), StreamId::random());
        let mut r = row(s, 3, 5, false);
        let stored = put(&store, a, &mut r, Bytes::from_static(b"alone")).await;
        assert!(stored.created_alone && stored.place.is_none());
        store.sync_chunks(&[&stored]).await.unwrap();
        assert_eq!(
            stored.path,
            super::super::chunk_path(a, s, 3, &r.content_sha256)
        );
        assert_eq!(store.read_chunk(a, &r).await.unwrap(), "alone");
    }
}
