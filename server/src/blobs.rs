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
//! needs the `sync` added here, which the group commit runs once for many chunks. An S3
//! store answers a PUT only once the object is durable; some S3 servers (Garage 2.5)
//! ignore `If-None-Match`, so there the name alone keeps an object from being replaced by
//! different bytes.

use crate::db::{AttemptId, StreamId};
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
    /// Opened once: `syncfs` reports a write-back error met since *this* descriptor was
    /// opened, so a fresh one per sync could miss an error that came before it.
    root_fd: Arc<std::fs::File>,
}

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

/// Whether a put wrote the object or found it already there (locally; on S3 a put always
/// writes, over the same bytes if the object was there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    AlreadyThere,
}

impl BlobStore {
    /// The store the settings name: S3 for an `s3://` URL, else `data_dir/blobs`.
    pub fn open(settings: &ObjectStoreSettings, data_dir: &Path) -> Result<Self, BlobError> {
        match settings.url.as_deref() {
            None | Some("") => Self::open_local(&data_dir.join("blobs")),
            Some(url) => Self::open_s3(url, settings),
        }
    }

    pub fn open_local(root: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root)?;
        let root = std::fs::canonicalize(root)?;
        let fs = Arc::new(LocalFileSystem::new_with_prefix(&root)?);
        let root_fd = Arc::new(std::fs::File::open(&root)?);
        Ok(Self {
            store: fs.clone(),
            local: Some(Local { fs, root, root_fd }),
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
            .with_virtual_hosted_style_request(false);
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
    /// once the object is durable: nothing to do. Locally, on Linux, one `syncfs` of the
    /// blob directory's file system covers every file and directory entry written since
    /// the last one, however many uploaders wrote them: a batch costs one journal commit,
    /// where a file fsync each would cost a cache flush each. Elsewhere, one fsync per
    /// file and per distinct directory up to the root.
    pub async fn sync(&self, paths: &[ObjectPath]) -> Result<(), BlobError> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        if paths.is_empty() {
            return Ok(());
        }
        let files = paths
            .iter()
            .map(|p| local.fs.path_to_filesystem(p))
            .collect::<Result<Vec<_>, _>>()?;
        let (root, root_fd) = (local.root.clone(), local.root_fd.clone());
        tokio::task::spawn_blocking(move || sync_files(&root_fd, &root, &files))
            .await
            .expect("sync task does not panic")?;
        Ok(())
    }

    pub async fn get(&self, path: &ObjectPath) -> Result<Bytes, BlobError> {
        match self.store.get(path).await {
            Ok(r) => Ok(r.bytes().await?),
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
        mut each: impl FnMut(),
    ) -> Result<u64, BlobError> {
        use futures::{StreamExt, TryStreamExt};
        let prefix = ObjectPath::from(format!("attempts/{attempt}"));
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
            // A directory: one unlink after another (concurrency buys nothing here).
            let paths: Vec<ObjectPath> = self
                .store
                .list(Some(&prefix))
                .map_ok(|m| m.location)
                .try_collect()
                .await?;
            for p in paths {
                done(self.store.delete(&p).await.map(|()| p))?;
            }
        } else {
            // S3: batches of up to 1,000 keys per request.
            let locations = self
                .store
                .list(Some(&prefix))
                .map_ok(|m| m.location)
                .boxed();
            let mut deleted = self.store.delete_stream(locations);
            while let Some(r) = deleted.next().await {
                done(r)?;
            }
        }
        if let Some(local) = &self.local {
            match std::fs::remove_dir_all(local.root.join("attempts").join(attempt.to_string())) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(n)
    }

    /// Deletes an object that no row references (a refused duplicate).
    pub async fn delete(&self, path: &ObjectPath) -> Result<(), BlobError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(target_os = "linux")]
fn sync_files(root_fd: &std::fs::File, _root: &Path, _files: &[PathBuf]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // Since Linux 5.8 syncfs reports write-back errors, as fsync does for a file.
    if unsafe { libc::syncfs(root_fd.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn sync_files(_root_fd: &std::fs::File, root: &Path, files: &[PathBuf]) -> std::io::Result<()> {
    let mut dirs: Vec<PathBuf> = files.iter().flat_map(|f| dirs_to_sync(f, root)).collect();
    // Deepest first, so a directory is synced after the entries created in it.
    dirs.sort_by(|a, b| {
        b.components()
            .count()
            .cmp(&a.components().count())
            .then_with(|| a.cmp(b))
    });
    dirs.dedup();
    files
        .iter()
        .try_for_each(|f| std::fs::File::open(f)?.sync_all())?;
    dirs.iter().try_for_each(|d| crate::keys::sync_dir(d))
}

/// The directories whose entries must be synced for `file` to survive: its parent and each
/// ancestor up to and including `root`, never above it.
#[cfg_attr(target_os = "linux", allow(dead_code))]
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
