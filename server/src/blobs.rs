//! Sealed chunk blobs in an object store. The local backend is `object_store`'s
//! `LocalFileSystem`, which renames into place but does not fsync; the durability rule
//! (acknowledge only what survives a power cut) needs the fsyncs added here.

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
    root: PathBuf,
}

pub fn chunk_path(attempt: Uuid, stream: Uuid, index: u32) -> ObjectPath {
    ObjectPath::from(format!("attempts/{attempt}/{stream}/{index:010}.chunk"))
}

impl BlobStore {
    pub fn open_local(root: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root)?;
        Ok(Self { local: Arc::new(LocalFileSystem::new_with_prefix(root)?), root: root.to_owned() })
    }

    /// Durable, write-once put. Returns `false` when an identical blob was already there.
    /// A different blob under the same path can only be a leftover of an upload that was
    /// never acknowledged (its row was not committed), so it is replaced.
    pub async fn put_durable(&self, path: &ObjectPath, data: Bytes) -> Result<bool, BlobError> {
        let created = match self
            .local
            .put_opts(path, PutPayload::from(data.clone()), PutOptions { mode: PutMode::Create, ..Default::default() })
            .await
        {
            Ok(_) => true,
            Err(object_store::Error::AlreadyExists { .. }) => {
                if self.get(path).await? == data {
                    false
                } else {
                    self.local.put(path, PutPayload::from(data)).await?;
                    true
                }
            }
            Err(e) => return Err(e.into()),
        };
        self.fsync(path).await?;
        Ok(created)
    }

    pub async fn get(&self, path: &ObjectPath) -> Result<Bytes, BlobError> {
        match self.local.get(path).await {
            Ok(r) => Ok(r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    async fn fsync(&self, path: &ObjectPath) -> Result<(), BlobError> {
        let file = self.local.path_to_filesystem(path)?;
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            // Directory entries up to the root: a fresh attempt/stream directory must survive too.
            let mut dir = file.parent();
            while let Some(d) = dir {
                crate::keys::sync_dir(d)?;
                if d == root {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
        .expect("fsync task does not panic")?;
        Ok(())
    }
}
