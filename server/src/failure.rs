//! What any use case may meet from the shared parts (the database, the blob store, the
//! keys, the audit trail, the attempts), in the domain's words: each use case's error
//! enum carries it as one variant. No HTTP here: `routes/errors.rs` maps every use case's error
//! to its status and code.

use crate::lifecycle::InvalidTransition;

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The recording's keys are destroyed: nothing of it can be read or changed.
    #[error("the recording has been destroyed")]
    Gone,
    /// The staff member's role may not do this (`Purpose`, `require_admin`).
    #[error("{0}")]
    RoleRefused(&'static str),
    #[error("{0}")]
    InvalidTransition(#[from] InvalidTransition),
    #[error("storage is unavailable; retry later")]
    StorageUnavailable,
    #[error("the server's storage is full: nothing was stored; keep the chunk and retry later")]
    StorageFull,
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<crate::db::DbError> for Failure {
    fn from(e: crate::db::DbError) -> Self {
        if matches!(
            e,
            crate::db::DbError::Unavailable(_) | crate::db::DbError::Backend(_)
        ) {
            crate::metrics::storage_error("database");
        }
        match e {
            crate::db::DbError::Unavailable(why) => {
                tracing::error!(why, "database unavailable");
                Failure::StorageUnavailable
            }
            other => Failure::Internal(anyhow::anyhow!("database: {other}")),
        }
    }
}

impl From<crate::blobs::BlobError> for Failure {
    fn from(e: crate::blobs::BlobError) -> Self {
        Self::from(&e)
    }
}

impl From<&crate::blobs::BlobError> for Failure {
    fn from(e: &crate::blobs::BlobError) -> Self {
        crate::metrics::storage_error("object_store");
        if disk_full(e) {
            tracing::error!(error = %e, "blob store full");
            return Failure::StorageFull;
        }
        Failure::Internal(anyhow::anyhow!("blob store: {e}"))
    }
}

/// ENOSPC anywhere in the error's chain (object_store wraps the I/O error of a local put).
fn disk_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<std::io::Error>().is_some_and(|io| {
            io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28)
        }) {
            return true;
        }
        cur = err.source();
    }
    false
}

impl From<crate::keys::KeyError> for Failure {
    fn from(e: crate::keys::KeyError) -> Self {
        match e {
            crate::keys::KeyError::KekGone(_) => Failure::Gone,
            other => Failure::Internal(anyhow::anyhow!("{other}")),
        }
    }
}

/// A use case's error enum takes the shared failures (and what they come from) with `?`.
#[macro_export]
macro_rules! meets_failures {
    ($t:ty) => {
        impl From<$crate::db::DbError> for $t {
            fn from(e: $crate::db::DbError) -> Self {
                Self::Failure(e.into())
            }
        }
        impl From<$crate::blobs::BlobError> for $t {
            fn from(e: $crate::blobs::BlobError) -> Self {
                Self::Failure(e.into())
            }
        }
        impl From<$crate::keys::KeyError> for $t {
            fn from(e: $crate::keys::KeyError) -> Self {
                Self::Failure(e.into())
            }
        }
        impl From<anyhow::Error> for $t {
            fn from(e: anyhow::Error) -> Self {
                Self::Failure(e.into())
            }
        }
        /// Files beside the keys (tombstones, the receipt chain): an internal failure.
        impl From<std::io::Error> for $t {
            fn from(e: std::io::Error) -> Self {
                Self::Failure(anyhow::Error::from(e).into())
            }
        }
        impl From<$crate::lifecycle::InvalidTransition> for $t {
            fn from(e: $crate::lifecycle::InvalidTransition) -> Self {
                Self::Failure(e.into())
            }
        }
    };
}
