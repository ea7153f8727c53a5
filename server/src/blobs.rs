//! Sealed chunk blobs in an object store, write-once.
//!
//! Each object is named by the SHA-256 of its bytes as well as its place, so two different
//! chunks offered for one index never share a name: whichever row the database commits
//! decides which chunk the index holds, and the other object is deleted. A name is written
//! with a conditional create and never replaced, so an acknowledged chunk cannot be
//! overwritten by a later or concurrent upload, even one forged with the same chain digest.
//!
//! Any `object_store` backend serves. The local one (`LocalFileSystem`) renames into place
//! but does not fsync; the durability rule (acknowledge only what survives a power cut)
//! needs the `sync` added here, which the group commit runs for a batch of chunks at once. An S3
//! store answers a PUT only once the object is durable; some S3 servers (Garage 2.5)
//! ignore `If-None-Match`, so there the name alone keeps an object from being replaced by
//! different bytes.
//!
//! Locally, a chunk is by default appended to its stream's file (`stream_files`) rather
//! than written as an object of its own: its row then points at its place, as a packed
//! chunk's does.

mod stream_files;

use crate::db::{AttemptId, ChunkRow, PackPlace, StreamId};
use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the blobs go: `[object_store]` in the configuration.
#[derive(Clone, Default, serde::Deserialize)]
pub struct ObjectStoreSettings {
    /// Unset: a local directory, `data_dir/blobs`. Otherwise `s3://BUCKET`.
    #[serde(default)]
    pub url: Option<String>,
    /// The S3 endpoint, e.g. `https://s3.fr-par.example` or `http://127.0.0.1:3900`.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// How a local store keeps chunks (S3 ignores it).
    #[serde(default)]
    pub local_files: LocalFiles,
}

/// How a local store keeps a stream's chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalFiles {
    /// Appended to one file per stream: no file created per chunk (issue 22). Packing has
    /// nothing left to do for them.
    #[default]
    PerStream,
    /// One file per chunk, as on S3 (and as every chunk stored before issue 22 is).
    PerChunk,
}

impl std::fmt::Debug for ObjectStoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreSettings")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("local_files", &self.local_files)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob not found")]
    NotFound,
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("blob I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("object store configuration: {0}")]
    Config(&'static str),
}

#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    local: Option<Local>,
}

/// The local backend, kept apart for its fsyncs.
#[derive(Clone)]
struct Local {
    fs: Arc<LocalFileSystem>,
    /// Absolute and canonical, so that walking up from a blob meets it.
    root: PathBuf,
    /// Set for `LocalFiles::PerStream`.
    streams: Option<Arc<stream_files::StreamFiles>>,
}

/// A large object goes up in parts of this size (S3's smallest but the last is 5 MiB)...
pub const PART_BYTES: usize = 5 << 20;
/// ...at most this many at once: what a writer holds in memory is about one part more.
const PARTS_AT_ONCE: usize = 2;

/// The syncs of one batch in flight at once: enough for the journal to commit them
/// together, few enough not to grow the blocking pool by a thread per chunk.
const SYNCS_AT_ONCE: usize = 64;

/// A chunk's object: its place, and the SHA-256 of its whole bytes, so that different bytes
/// never share a name, even where the store cannot refuse an overwrite.
pub fn chunk_path(
    attempt: AttemptId,
    stream: StreamId,
    index: u32,
    content_sha256: &[u8; 32],
) -> ObjectPath {
    ObjectPath::from(format!(
        "attempts/{attempt}/{stream}/{index:010}-{}.chunk",
        hex::encode(content_sha256)
    ))
}

/// A pack's object: the stream's chunks from index `first` on, end to end (issue 22),
/// under the tag its packer drew, so that two instances packing one stream at once never
/// write one name (the loser deletes its own). Each chunk read from it is still checked by
/// its GCM tag and its chain against its row.
pub fn pack_path(attempt: AttemptId, stream: StreamId, tag: u64, first: u32) -> ObjectPath {
    ObjectPath::from(format!(
        "attempts/{attempt}/{stream}/pack-{tag:016x}-{first:010}.pack"
    ))
}

/// Whether a put wrote the object or found it already there (locally; on S3 a put always
/// writes, over the same bytes if the object was there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    AlreadyThere,
}

/// A chunk written and not yet durable (`BlobStore::put_chunk`), until `sync_chunks`.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    /// Its object: its own, or its stream's file.
    pub path: ObjectPath,
    /// Its place in its stream's file, for its row; `None` for an object of its own.
    pub place: Option<PackPlace>,
    /// An object of its own this call created, to delete if its row is refused.
    pub created_alone: bool,
}

impl BlobStore {
    /// The store the settings name: S3 for an `s3://` URL, else `data_dir/blobs`.
    pub fn open(settings: &ObjectStoreSettings, data_dir: &Path) -> Result<Self, BlobError> {
        match settings.url.as_deref() {
            None | Some("") => Self::open_local_with(&data_dir.join("blobs"), settings.local_files),
            Some(url) => Self::open_s3(url, settings),
        }
    }

    /// A local store with the default layout (`LocalFiles::PerStream`).
    pub fn open_local(root: &Path) -> Result<Self, BlobError> {
        Self::open_local_with(root, LocalFiles::default())
    }

    pub fn open_local_with(root: &Path, files: LocalFiles) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root)?;
        let root = std::fs::canonicalize(root)?;
        let fs = Arc::new(LocalFileSystem::new_with_prefix(&root)?);
        let streams = (files == LocalFiles::PerStream)
            .then(|| Arc::new(stream_files::StreamFiles::new(root.clone())));
        Ok(Self {
            store: fs.clone(),
            local: Some(Local { fs, root, streams }),
        })
    }

    /// Whether chunks go to their stream's file, packed as they arrive: the packer then
    /// has nothing to do.
    pub fn appends_to_stream_files(&self) -> bool {
        self.local.as_ref().is_some_and(|l| l.streams.is_some())
    }

    /// Writes a chunk, not yet durable: appended to its stream's file, or as an object of
    /// its own named by `chunk_path`. `sync_chunks` makes a batch of them durable.
    pub async fn put_chunk(
        &self,
        attempt: AttemptId,
        row: &ChunkRow,
        bytes: Bytes,
    ) -> Result<StoredChunk, BlobError> {
        if let Some(streams) = self.local.as_ref().and_then(|l| l.streams.as_ref()) {
            return streams
                .append(attempt, row.stream_id, row.index, row.last, bytes)
                .await;
        }
        let path = chunk_path(attempt, row.stream_id, row.index, &row.content_sha256);
        let put = self.put(&path, bytes).await?;
        Ok(StoredChunk {
            path,
            place: None,
            created_alone: put == Put::Created,
        })
    }

    fn open_s3(url: &str, s: &ObjectStoreSettings) -> Result<Self, BlobError> {
        let bucket = url
            .strip_prefix("s3://")
            .filter(|b| !b.is_empty() && !b.contains('/'))
            .ok_or(BlobError::Config("object store URL must be s3://BUCKET"))?;
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_allow_http(s.allow_http)
            .with_virtual_hosted_style_request(false)
            // SigV4 over the body would hash every chunk once more on our two cores (and
            // once more on the store's): the transport is TLS, the content is checked by
            // its GCM tag at every read, and its name carries its SHA-256.
            .with_unsigned_payload(true);
        if let Some(e) = &s.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(r) = &s.region {
            b = b.with_region(r);
        }
        if let (Some(id), Some(secret)) = (&s.access_key_id, &s.secret_access_key) {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        Ok(Self {
            store: Arc::new(b.build()?),
            local: None,
        })
    }

    /// Durable, write-once put: `put` then `sync` of this one object.
    pub async fn put_durable(&self, path: &ObjectPath, data: Bytes) -> Result<Put, BlobError> {
        let put = self.put(path, data).await?;
        self.sync(std::slice::from_ref(path)).await?;
        Ok(put)
    }

    /// Write-once put, durable only after `sync` (on S3, at once). Callers name objects by
    /// their content (`chunk_path`), so an existing object under the name holds these very
    /// bytes and is left alone; other bytes there can only be damage, and are rewritten.
    pub async fn put(&self, path: &ObjectPath, data: Bytes) -> Result<Put, BlobError> {
        let Some(local) = &self.local else {
            // S3: conditional writes are not to be trusted, and need not be: the name is
            // the content's hash, so a PUT over an existing object rewrites the same bytes.
            // One request, not a HEAD first: the store's latency is most of ingest's there.
            self.store.put(path, PutPayload::from(data)).await?;
            return Ok(Put::Created);
        };
        Ok(
            match local
                .fs
                .put_opts(
                    path,
                    PutPayload::from(data.clone()),
                    PutOptions {
                        mode: PutMode::Create,
                        ..Default::default()
                    },
                )
                .await
            {
                Ok(_) => Put::Created,
                // object_store links the file into place before we fsync it: after a power cut
                // the name can hold a short or empty file. The name is the content's hash, so
                // other bytes there are damage, repaired here rather than acknowledged.
                Err(object_store::Error::AlreadyExists { .. }) if self.get(path).await? != data => {
                    local.fs.put(path, PutPayload::from(data)).await?;
                    Put::Created
                }
                Err(object_store::Error::AlreadyExists { .. }) => Put::AlreadyThere,
                Err(e) => return Err(e.into()),
            },
        )
    }

    /// Makes the objects `put` wrote survive a power cut. An S3 store answers a PUT only
    /// once the object is durable: nothing to do. Locally: each file and each distinct
    /// directory up to the root (`sync_all`).
    pub async fn sync(&self, paths: &[ObjectPath]) -> Result<(), BlobError> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        let files = paths
            .iter()
            .map(|p| local.fs.path_to_filesystem(p))
            .collect::<Result<Vec<_>, _>>()?;
        let dirs = local.dirs_of(&files);
        sync_all(files, dirs).await
    }

    /// Makes a batch of `put_chunk`'s writes durable: each stream file once (its name was
    /// made durable when it was created), each object of its own with its directories.
    pub async fn sync_chunks(&self, chunks: &[&StoredChunk]) -> Result<(), BlobError> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        let (mut files, mut alone) = (Vec::new(), Vec::new());
        for c in chunks {
            let file = local.fs.path_to_filesystem(&c.path)?;
            match c.place {
                Some(_) => files.push(file),
                None => alone.push(file),
            }
        }
        let dirs = local.dirs_of(&alone);
        files.append(&mut alone);
        files.sort_unstable();
        files.dedup();
        sync_all(files, dirs).await
    }

    pub async fn get(&self, path: &ObjectPath) -> Result<Bytes, BlobError> {
        match self.store.get(path).await {
            Ok(r) => Ok(r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// A chunk's bytes, from its own object or its pack's range.
    pub async fn read_chunk(&self, attempt: AttemptId, row: &ChunkRow) -> Result<Bytes, BlobError> {
        let Some(p) = row.pack else {
            return self
                .get(&chunk_path(
                    attempt,
                    row.stream_id,
                    row.index,
                    &row.content_sha256,
                ))
                .await;
        };
        let pack = pack_path(attempt, row.stream_id, p.tag, p.first);
        if let Some(local) = &self.local {
            let file = local.fs.path_to_filesystem(&pack)?;
            return read_range(file, p.offset, row.size as usize).await;
        }
        let range = p.offset as usize..(p.offset + row.size) as usize;
        match self.store.get_range(&pack, range).await {
            Ok(b) => Ok(b),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// How many objects the store holds under an attempt (after its destruction: none).
    pub async fn count_attempt_objects(&self, attempt: AttemptId) -> Result<usize, BlobError> {
        use futures::TryStreamExt;
        let prefix = ObjectPath::from(format!("attempts/{attempt}"));
        Ok(self
            .store
            .list(Some(&prefix))
            .try_collect::<Vec<_>>()
            .await?
            .len())
    }

    /// Deletes every object of a destroyed attempt: its chunks, and any a crash or a
    /// refused duplicate left behind. `each` runs after each deletion (crash tests).
    /// Returns how many were deleted; running it again after a crash finishes the job.
    pub async fn delete_attempt(
        &self,
        attempt: AttemptId,
        each: impl FnMut(),
    ) -> Result<u64, BlobError> {
        use futures::{StreamExt, TryStreamExt};
        let prefix = ObjectPath::from(format!("attempts/{attempt}"));
        let listed = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .boxed();
        let n = self.delete_each(listed, each).await?;
        if let Some(local) = &self.local {
            match std::fs::remove_dir_all(local.root.join("attempts").join(attempt.to_string())) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(n)
    }

    /// Deletes objects no row references any more (a packed stream's loose ones, packs
    /// abandoned). An object already gone counts as deleted.
    pub async fn delete_many(&self, paths: &[ObjectPath]) -> Result<(), BlobError> {
        use futures::StreamExt;
        let paths = futures::stream::iter(paths.iter().cloned().map(Ok)).boxed();
        self.delete_each(paths, || ()).await.map(drop)
    }

    /// Deletes each object `paths` yields, `each` after each one (an object already gone
    /// counts), and returns how many. A directory: one unlink after another, once the
    /// listing is read (concurrency buys nothing there); S3: up to 1,000 keys per request.
    async fn delete_each(
        &self,
        paths: futures::stream::BoxStream<'_, object_store::Result<ObjectPath>>,
        mut each: impl FnMut(),
    ) -> Result<u64, BlobError> {
        use futures::{StreamExt, TryStreamExt};
        let mut n = 0;
        let mut done = |r: object_store::Result<ObjectPath>| match r {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {
                n += 1;
                each();
                Ok(())
            }
            Err(e) => Err(BlobError::from(e)),
        };
        if self.local.is_some() {
            let paths: Vec<ObjectPath> = paths.try_collect().await?;
            for p in paths {
                done(self.store.delete(&p).await.map(|()| p))?;
            }
        } else {
            let mut deleted = self.store.delete_stream(paths);
            while let Some(r) = deleted.next().await {
                done(r)?;
            }
        }
        Ok(n)
    }

    /// A write-once object written part by part as its bytes come (a pack): its memory
    /// stays a few parts whatever its size; durable once `finish` answers.
    pub async fn write_in_parts(&self, path: &ObjectPath) -> Result<PartWriter, BlobError> {
        let upload = self.store.put_multipart(path).await?;
        Ok(PartWriter {
            store: self.clone(),
            path: path.clone(),
            upload: object_store::WriteMultipart::new_with_chunk_size(upload, PART_BYTES),
        })
    }

    /// Deletes an object that no row references (a refused duplicate).
    pub async fn delete(&self, path: &ObjectPath) -> Result<(), BlobError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// An object being written in parts (`BlobStore::write_in_parts`).
pub struct PartWriter {
    store: BlobStore,
    path: ObjectPath,
    upload: object_store::WriteMultipart,
}

impl PartWriter {
    /// Appends `bytes`, first waiting while `PARTS_AT_ONCE` parts are still going up.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), BlobError> {
        self.upload.wait_for_capacity(PARTS_AT_ONCE).await?;
        self.upload.put(bytes);
        Ok(())
    }

    /// The last part, the object put together, and (locally) synced.
    pub async fn finish(self) -> Result<(), BlobError> {
        self.upload.finish().await?;
        self.store.sync(std::slice::from_ref(&self.path)).await
    }

    /// Gives the object up: the parts sent are discarded, nothing appears under its name.
    pub async fn abort(self) {
        if let Err(e) = self.upload.abort().await {
            tracing::warn!(error = %e, "aborting a multipart upload failed; its parts are the store's to expire");
        }
    }
}

/// `len` bytes at `offset` of a local file. Bytes the file does not hold (a stream file
/// whose tail a disk lost, or someone cut) are missing, as an object gone is: `NotFound`,
/// not a storage failure.
async fn read_range(file: PathBuf, offset: u64, len: usize) -> Result<Bytes, BlobError> {
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt as _;
        let mut buf = vec![0; len];
        match std::fs::File::open(&file).and_then(|f| f.read_exact_at(&mut buf, offset)) {
            Ok(()) => Ok(Bytes::from(buf)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                Err(BlobError::NotFound)
            }
            Err(e) => Err(e.into()),
        }
    })
    .await
    .expect("a read task does not panic")
}

impl Local {
    /// The distinct directories, up to the root, of `files`.
    fn dirs_of(&self, files: &[PathBuf]) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = files
            .iter()
            .flat_map(|f| dirs_to_sync(f, &self.root))
            .collect();
        dirs.sort_unstable();
        dirs.dedup();
        dirs
    }
}

/// An `fdatasync` of each file and an `fsync` of each directory, all at once on the
/// blocking pool, so that the file system's journal commits them together. Only these
/// files are written back: what other programs left dirty on the same file system (a
/// build, a backup, logs) is not theirs to wait for, as it was with `syncfs`.
async fn sync_all(files: Vec<PathBuf>, dirs: Vec<PathBuf>) -> Result<(), BlobError> {
    use futures::{StreamExt, TryStreamExt};
    type Sync = fn(&std::fs::File) -> std::io::Result<()>;
    let syncs = (files
        .into_iter()
        .map(|f| (f, std::fs::File::sync_data as Sync)))
    .chain(
        dirs.into_iter()
            .map(|d| (d, std::fs::File::sync_all as Sync)),
    );
    futures::stream::iter(syncs)
        .map(|(path, sync)| async move {
            tokio::task::spawn_blocking(move || sync(&std::fs::File::open(&path)?))
                .await
                .expect("sync task does not panic")
        })
        .buffer_unordered(SYNCS_AT_ONCE)
        .try_collect::<()>()
        .await?;
    Ok(())
}

/// The directories whose entries must be synced for `file` to survive: its parent and each
/// ancestor up to and including `root`, never above it.
fn dirs_to_sync(file: &Path, root: &Path) -> Vec<PathBuf> {
    file.ancestors()
        .skip(1)
        .take_while(|d| d.starts_with(root))
        .map(Path::to_path_buf)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_stops_at_the_root_even_for_a_relative_data_dir() {
        let rel = PathBuf::from(format!("target/blobs-test-{}", uuid::Uuid::new_v4()));
        let store = BlobStore::open_local(&rel.join("blobs")).unwrap();
        let p = chunk_path(AttemptId::random(), StreamId::random(), 3, &[7; 32]);
        let local = store.local.unwrap();
        let file = local.fs.path_to_filesystem(&p).unwrap();
        let dirs = dirs_to_sync(&file, &local.root);
        assert_eq!(
            dirs.len(),
            4,
            "stream dir, attempt dir, attempts/, root: {dirs:?}"
        );
        assert!(dirs.iter().all(|d| d.starts_with(&local.root)), "{dirs:?}");
        assert_eq!(dirs.last().unwrap(), &local.root);
        std::fs::remove_dir_all(&rel).unwrap();
    }

    #[tokio::test]
    async fn a_damaged_object_is_repaired_not_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_local(dir.path()).unwrap();
        let p = chunk_path(AttemptId::random(), StreamId::random(), 1, &[1; 32]);
        // What a power cut between the link and the fsync can leave: the name, no bytes.
        let file = store
            .local
            .as_ref()
            .unwrap()
            .fs
            .path_to_filesystem(&p)
            .unwrap();
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"").unwrap();
        assert_eq!(
            store
                .put_durable(&p, Bytes::from_static(b"the chunk"))
                .await
                .unwrap(),
            Put::Created
        );
        assert_eq!(
            store.get(&p).await.unwrap(),
            Bytes::from_static(b"the chunk")
        );
    }

    /// Issue 22: the sync writes back the batch's own files (not the whole file system,
    /// as `syncfs` did), so a file missing from the batch is an error, not a silent pass.
    #[tokio::test]
    async fn a_sync_writes_back_each_file_of_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_local(dir.path()).unwrap();
        let (a, s) = (AttemptId::random(), StreamId::random());
        let paths: Vec<ObjectPath> = (0..100u32)
            .map(|i| chunk_path(a, s, i, &[i as u8; 32]))
            .collect();
        for p in &paths {
            store.put(p, Bytes::from_static(b"chunk")).await.unwrap();
        }
        store.sync(&paths).await.unwrap();
        let gone = store
            .local
            .as_ref()
            .unwrap()
            .fs
            .path_to_filesystem(&paths[42])
            .unwrap();
        std::fs::remove_file(gone).unwrap();
        let e = store.sync(&paths).await.unwrap_err();
        assert!(
            matches!(&e, BlobError::Io(io) if io.kind() == std::io::ErrorKind::NotFound),
            "{e}"
        );
    }

    #[tokio::test]
    async fn the_same_bytes_again_are_already_there() {
        use sha2::Digest as _;
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_local(dir.path()).unwrap();
        let bytes = Bytes::from_static(b"first");
        let p = chunk_path(
            AttemptId::random(),
            StreamId::random(),
            1,
            &sha2::Sha256::digest(&bytes).into(),
        );
        assert_eq!(
            store.put_durable(&p, bytes.clone()).await.unwrap(),
            Put::Created
        );
        assert_eq!(
            store.put_durable(&p, bytes.clone()).await.unwrap(),
            Put::AlreadyThere
        );
        assert_eq!(store.get(&p).await.unwrap(), bytes);
    }
}
