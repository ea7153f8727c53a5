//! Sealed chunk blobs in an object store, write-once.
//!
//! Each object is named by the SHA-256 of its bytes as well as its place, so two different
//! chunks offered for one index never share a name: whichever row the database commits
//! decides which chunk the index holds, and the other object is deleted. A name is written
//! with a conditional create and never replaced, so an acknowledged chunk cannot be
//! overwritten by a later or concurrent upload, even one forged with the same chain digest.
//!
//! The local backend is `object_store`'s `LocalFileSystem`, which renames into place but
//! does not fsync; the durability rule (acknowledge only what survives a power cut) needs
//! the fsyncs added here, of the file and of each directory from it up to the root.

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob not found")]
    NotFound,
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("blob I/O: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone)]
pub struct BlobStore {
    local: Arc<LocalFileSystem>,
    /// Absolute and canonical, so that walking up from a blob meets it.
    root: PathBuf,
}

/// A chunk's object: its place, and the SHA-256 of its whole bytes, so that different bytes
/// never share a name, even where the store cannot refuse an overwrite.
pub fn chunk_path(attempt: Uuid, stream: Uuid, index: u32, content_sha256: &[u8; 32]) -> ObjectPath {
    ObjectPath::from(format!("attempts/{attempt}/{stream}/{index:010}-{}.chunk", hex::encode(content_sha256)))
}

/// Whether a put wrote the object or found it already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    AlreadyThere,
}

impl BlobStore {
    pub fn open_local(root: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root)?;
        let root = std::fs::canonicalize(root)?;
        Ok(Self { local: Arc::new(LocalFileSystem::new_with_prefix(&root)?), root })
    }

    /// Durable, write-once put: an existing object is never replaced.
    pub async fn put_durable(&self, path: &ObjectPath, data: Bytes) -> Result<Put, BlobError> {
        let outcome = match self.local.put_opts(path, PutPayload::from(data), PutOptions { mode: PutMode::Create, ..Default::default() }).await {
            Ok(_) => Put::Created,
            Err(object_store::Error::AlreadyExists { .. }) => Put::AlreadyThere,
            Err(e) => return Err(e.into()),
        };
        self.fsync(path).await?;
        Ok(outcome)
    }

    pub async fn get(&self, path: &ObjectPath) -> Result<Bytes, BlobError> {
        match self.local.get(path).await {
            Ok(r) => Ok(r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an object that no row references (a refused duplicate).
    pub async fn delete(&self, path: &ObjectPath) -> Result<(), BlobError> {
        match self.local.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn fsync(&self, path: &ObjectPath) -> Result<(), BlobError> {
        let file = self.local.path_to_filesystem(path)?;
        let dirs = dirs_to_sync(&file, &self.root);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            // A fresh attempt/stream directory must survive a power cut too.
            dirs.iter().try_for_each(|d| crate::keys::sync_dir(d))
        })
        .await
        .expect("fsync task does not panic")?;
        Ok(())
    }
}

/// The directories whose entries must be synced for `file` to survive: its parent and each
/// ancestor up to and including `root`, never above it.
fn dirs_to_sync(file: &Path, root: &Path) -> Vec<PathBuf> {
    file.ancestors().skip(1).take_while(|d| d.starts_with(root)).map(Path::to_path_buf).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_stops_at_the_root_even_for_a_relative_data_dir() {
        let rel = PathBuf::from(format!("target/blobs-test-{}", Uuid::new_v4()));
        let store = BlobStore::open_local(&rel.join("blobs")).unwrap();
        let p = chunk_path(Uuid::new_v4(), Uuid::new_v4(), 3, &[7; 32]);
        let file = store.local.path_to_filesystem(&p).unwrap();
        let dirs = dirs_to_sync(&file, &store.root);
        assert_eq!(dirs.len(), 4, "stream dir, attempt dir, attempts/, root: {dirs:?}");
        assert!(dirs.iter().all(|d| d.starts_with(&store.root)), "{dirs:?}");
        assert_eq!(dirs.last().unwrap(), &store.root);
        std::fs::remove_dir_all(&rel).unwrap();
    }

    #[tokio::test]
    async fn an_existing_object_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open_local(dir.path()).unwrap();
        let p = chunk_path(Uuid::new_v4(), Uuid::new_v4(), 1, &[1; 32]);
        assert_eq!(store.put_durable(&p, Bytes::from_static(b"first")).await.unwrap(), Put::Created);
        assert_eq!(store.put_durable(&p, Bytes::from_static(b"second")).await.unwrap(), Put::AlreadyThere);
        assert_eq!(store.get(&p).await.unwrap(), Bytes::from_static(b"first"));
    }
}
