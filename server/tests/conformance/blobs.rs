//! The blob store's promises on each backend: a local directory and a real S3 server.

#[path = "../support/garage.rs"]
mod garage;

use bytes::Bytes;
use server::blobs::{chunk_path, BlobError, BlobStore, Put};
use uuid::Uuid;

fn named(bytes: &Bytes, index: u32) -> object_store::path::Path {
    use sha2::Digest as _;
    chunk_path(
        Uuid::new_v4().into(),
        Uuid::new_v4().into(),
        index,
        &sha2::Sha256::digest(bytes).into(),
    )
}

async fn check_write_once_get_delete(store: &BlobStore, name: &str) {
    let chunk = Bytes::from_static(b"sealed chunk");
    let p = named(&chunk, 4);
    assert!(
        matches!(store.get(&p).await, Err(BlobError::NotFound)),
        "{name}"
    );
    assert_eq!(
        store.put_durable(&p, chunk.clone()).await.unwrap(),
        Put::Created,
        "{name}"
    );
    // The same bytes again (a replay): accepted, the object unchanged; the local store does
    // not even rewrite it (S3 rewrites the same bytes rather than pay a HEAD each time).
    let again = store.put_durable(&p, chunk.clone()).await.unwrap();
    if name == "local" {
        assert_eq!(again, Put::AlreadyThere);
    }
    assert_eq!(store.get(&p).await.unwrap(), chunk, "{name}");
    let big = Bytes::from(vec![0xa5u8; 3 * 1024 * 1024]);
    let q = named(&big, 5);
    store.put_durable(&q, big.clone()).await.unwrap();
    assert_eq!(
        store.get(&q).await.unwrap(),
        big,
        "{name}: 3 MiB round-trips"
    );
    store.delete(&p).await.unwrap();
    store.delete(&p).await.unwrap();
    assert!(
        matches!(store.get(&p).await, Err(BlobError::NotFound)),
        "{name}: deleted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_stores_are_write_once_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    check_write_once_get_delete(&BlobStore::open_local(dir.path()).unwrap(), "local").await;
    let g = garage::Garage::start();
    let s3 = BlobStore::open(&g.settings, dir.path()).unwrap();
    check_write_once_get_delete(&s3, "garage").await;
}
