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

/// Issue 22: a pack written in parts (larger than one part) reads back whole and by any
/// range, and one given up leaves nothing under its name, on each backend.
async fn check_parts_and_ranges(store: &BlobStore, name: &str) {
    use server::blobs::{pack_path, PART_BYTES};
    let (attempt, stream) = (Uuid::new_v4().into(), Uuid::new_v4().into());
    let pieces: Vec<Bytes> = (0..12u8)
        .map(|i| Bytes::from(vec![i; PART_BYTES / 4 + usize::from(i) * 1000]))
        .collect();
    let whole: Vec<u8> = pieces.concat();
    assert!(whole.len() > 2 * PART_BYTES, "{name}: several parts");
    let p = pack_path(attempt, stream, 1, 0);
    let mut w = store.write_in_parts(&p).await.unwrap();
    for piece in &pieces {
        w.write(piece.clone()).await.unwrap();
    }
    w.finish().await.unwrap();
    assert_eq!(store.get(&p).await.unwrap(), whole, "{name}");
    // Each piece by its range, as a chunk in a pack is read.
    let mut offset = 0u64;
    for (i, piece) in pieces.iter().enumerate() {
        let row = server::db::ChunkRow {
            stream_id: stream,
            index: i as u32,
            digest: [0; 32],
            content_sha256: [0; 32],
            prev_digest: [0; 32],
            size: piece.len() as u64,
            media_start_us: 0,
            media_end_us: 0,
            last: false,
            pack: Some(server::db::PackPlace {
                tag: 1,
                first: 0,
                offset,
            }),
        };
        assert_eq!(
            store.read_chunk(attempt, &row).await.unwrap(),
            piece,
            "{name}: piece {i}"
        );
        offset += piece.len() as u64;
    }
    let q = pack_path(attempt, stream, 2, 0);
    let mut w = store.write_in_parts(&q).await.unwrap();
    w.write(pieces[0].clone()).await.unwrap();
    w.write(Bytes::from(vec![9; PART_BYTES])).await.unwrap();
    w.abort().await;
    assert!(
        matches!(store.get(&q).await, Err(BlobError::NotFound)),
        "{name}: given up, nothing there"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn packs_are_written_in_parts_and_read_by_range_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    check_parts_and_ranges(&BlobStore::open_local(dir.path()).unwrap(), "local").await;
    let g = garage::Garage::start();
    let s3 = BlobStore::open(&g.settings, dir.path()).unwrap();
    check_parts_and_ranges(&s3, "s3").await;
}
