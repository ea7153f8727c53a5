//! Group commit: the chunks of many concurrent uploaders made durable together, with one
//! blob sync and then one database transaction per batch, instead of a file fsync,
//! directory fsyncs and a WAL commit per chunk.
//!
//! The durability rule is unchanged: a chunk's acknowledgement waits until its blob is
//! synced *and* its row committed, and a row is committed only after its blob is synced.
//! The two stages run as a pipeline: while one batch commits its rows, the next syncs its
//! blobs, and chunks arriving meanwhile queue for the batch after. An idle server makes
//! batches of one, so nothing waits for a timer.

use crate::blobs::{BlobError, BlobStore, StoredChunk};
use crate::clock::SharedClock;
use crate::db::{ChunkInsert, Database, DbError, NewChunk};
use crate::failure::Failure;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The most chunks one batch carries: bounds a transaction's length, not a wait.
const MAX_BATCH: usize = 256;

/// One failure of a batch, shared by every chunk of it.
#[derive(Clone)]
enum BatchFailure {
    Blob(Arc<BlobError>),
    Db(DbError),
}

type Outcome = Result<ChunkInsert, BatchFailure>;

struct Pending {
    chunk: NewChunk,
    stored: StoredChunk,
    done: oneshot::Sender<Outcome>,
}

#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the two stages on the current runtime; they stop when the last handle drops.
    pub fn start(db: Arc<dyn Database>, blobs: BlobStore, clock: SharedClock) -> Self {
        let (queue, incoming) = mpsc::channel(4 * MAX_BATCH);
        let (synced, to_commit) = mpsc::channel(2);
        tokio::spawn(sync_stage(incoming, blobs, synced));
        tokio::spawn(commit_stage(to_commit, db, clock));
        Self { queue }
    }

    /// Makes a chunk whose blob `put_chunk` wrote durable, blob then row; answers once
    /// both are on disk.
    pub async fn commit(
        &self,
        chunk: NewChunk,
        stored: StoredChunk,
    ) -> Result<ChunkInsert, Failure> {
        let (done, outcome) = oneshot::channel();
        let stopped = || Failure::Internal(anyhow::anyhow!("group commit stopped"));
        self.queue
            .send(Pending {
                chunk,
                stored,
                done,
            })
            .await
            .map_err(|_| stopped())?;
        match outcome.await.map_err(|_| stopped())? {
            Ok(inserted) => Ok(inserted),
            Err(BatchFailure::Db(e)) => Err(e.into()),
            Err(BatchFailure::Blob(e)) => Err(Failure::from(&*e)),
        }
    }
}

/// Takes what is queued, up to `MAX_BATCH`, waiting only when nothing is.
async fn next_batch<T>(rx: &mut mpsc::Receiver<T>) -> Option<Vec<T>> {
    let mut batch = vec![rx.recv().await?];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
    Some(batch)
}

async fn sync_stage(
    mut incoming: mpsc::Receiver<Pending>,
    blobs: BlobStore,
    synced: mpsc::Sender<Vec<Pending>>,
) {
    while let Some(batch) = next_batch(&mut incoming).await {
        let stored: Vec<&StoredChunk> = batch.iter().map(|p| &p.stored).collect();
        let started = std::time::Instant::now();
        match blobs.sync_chunks(&stored).await {
            Ok(()) => {
                crate::metrics::group_stage("blob_sync", batch.len(), started.elapsed());
                if synced.send(batch).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, chunks = batch.len(), "blob sync failed");
                let e = BatchFailure::Blob(Arc::new(e));
                batch
                    .into_iter()
                    .for_each(|p| drop(p.done.send(Err(e.clone()))));
            }
        }
    }
}

async fn commit_stage(
    mut to_commit: mpsc::Receiver<Vec<Pending>>,
    db: Arc<dyn Database>,
    clock: SharedClock,
) {
    while let Some(batches) = next_batch(&mut to_commit).await {
        let batch: Vec<Pending> = batches.into_iter().flatten().collect();
        let chunks: Vec<NewChunk> = batch.iter().map(|p| p.chunk.clone()).collect();
        let started = std::time::Instant::now();
        let outcomes = match db
            .insert_chunks(&chunks, crate::clock::unix_ms(clock.now()))
            .await
        {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            // One row the database refuses must not fail its neighbours: retry them alone.
            Err(DbError::Backend(_)) if chunks.len() > 1 => {
                let mut alone = Vec::with_capacity(chunks.len());
                for c in &chunks {
                    alone.push(
                        db.insert_chunks(
                            std::slice::from_ref(c),
                            crate::clock::unix_ms(clock.now()),
                        )
                        .await
                        .map(|mut o| o.remove(0))
                        .map_err(BatchFailure::Db),
                    );
                }
                alone
            }
            Err(e) => vec![Err(BatchFailure::Db(e)); chunks.len()],
        };
        crate::metrics::group_stage("row_commit", batch.len(), started.elapsed());
        for (p, outcome) in batch.into_iter().zip(outcomes) {
            // The uploader may have gone; its chunk is stored all the same.
            let _ = p.done.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{
        AttemptId, ChunkRow, NewAttempt, PoolSettings, SittingId, SqliteDatabase, Stream, StreamId,
        StreamKeying, Transport,
    };
    use bytes::Bytes;
    use std::time::Duration;

    fn row(stream: StreamId, index: u32) -> ChunkRow {
        ChunkRow {
            stream_id: stream,
            index,
            digest: [index as u8; 32],
            content_sha256: [1; 32],
            prev_digest: [0; 32],
            size: 10,
            media_start_us: 0,
            media_end_us: 1,
            last: false,
            pack: None,
        }
    }

    /// Many uploaders at once: every chunk lands, and a row the database refuses (its
    /// stream does not exist) fails alone, not the batch it was in.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_refused_row_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let pool = PoolSettings {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            connect_retries: 0,
        };
        let db: Arc<dyn Database> = Arc::new(
            SqliteDatabase::open(&dir.path().join("db.sqlite"), &pool)
                .await
                .unwrap(),
        );
        let blobs = BlobStore::open_local(&dir.path().join("blobs")).unwrap();
        let sitting = SittingId::random();
        db.create_sitting(sitting, "s", 0).await.unwrap();
        let attempt = AttemptId::random();
        let new = NewAttempt {
            id: attempt,
            sitting_id: sitting,
            reference: crate::db::StoredReference::Clear("c".into()),
            token_hash: [9; 32],
            token_expires_at_ms: i64::MAX,
            kek_epoch: "e".into(),
            wrapped_dek: vec![1],
            dek_fingerprint: "f".into(),
            created_at_ms: 0,
        };
        db.create_attempt(new).await.unwrap();
        let stream = Stream {
            id: StreamId::random(),
            attempt_id: attempt,
            keying: StreamKeying::Derived { salt: [0; 32] },
            opened_at_ms: 0,
            ended_at_ms: None,
            final_index: None,
        };
        db.open_stream(stream.clone(), b"sealed".to_vec(), 10)
            .await
            .unwrap();
        let gc = GroupCommit::start(
            db.clone(),
            blobs.clone(),
            Arc::new(crate::clock::SystemClock),
        );
        let tasks: Vec<_> = (0..64u32)
            .map(|i| {
                let (gc, blobs) = (gc.clone(), blobs.clone());
                // Every ninth chunk names a stream that does not exist.
                let s = if i % 9 == 4 {
                    StreamId::random()
                } else {
                    stream.id
                };
                tokio::spawn(async move {
                    let mut row = row(s, i);
                    let stored = blobs
                        .put_chunk(attempt, &row, Bytes::from(vec![i as u8; 10]))
                        .await
                        .unwrap();
                    row.pack = stored.place;
                    (
                        i,
                        gc.commit(
                            NewChunk {
                                attempt,
                                row,
                                transport: Transport::Https,
                                activity: None,
                            },
                            stored,
                        )
                        .await,
                    )
                })
            })
            .collect();
        for t in tasks {
            let (i, outcome) = t.await.unwrap();
            if i % 9 == 4 {
                assert!(outcome.is_err(), "chunk {i} names no stream");
            } else {
                assert_eq!(outcome.unwrap(), ChunkInsert::Created, "chunk {i}");
            }
        }
        assert_eq!(db.chunks_of(stream.id).await.unwrap().len(), 64 - 7);
        assert_eq!(
            db.attempt(attempt).await.unwrap().bytes_stored,
            10 * (64 - 7)
        );
    }
}
