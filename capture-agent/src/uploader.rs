//! Uploads spooled chunks in order, retrying with capped exponential backoff for as long
//! as it takes; a chunk leaves the spool only once the server has acknowledged it durably.

use crate::client::{Api, Outcome};
use crate::spool::{SpooledChunk, Spool};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

pub enum Job {
    Chunk(SpooledChunk),
    /// Tell the server the stream ended at this final index, then forget it locally.
    End { stream: Uuid, final_index: u32 },
    /// Forget a stream with no final chunk (an earlier run that was killed).
    Forget(Uuid),
}

#[derive(Default)]
pub struct Progress {
    pub queued: AtomicU64,
    pub acked: AtomicU64,
    pub bytes_acked: AtomicU64,
    pub refused: AtomicU64,
}

/// A cloneable handle that queues jobs and counts them; the sealing thread holds one.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::UnboundedSender<Job>,
    pub progress: Arc<Progress>,
}

impl Queue {
    pub fn send(&self, job: Job) {
        if let Job::Chunk(_) = job {
            self.progress.queued.fetch_add(1, Ordering::SeqCst);
        }
        // The task lives as long as a sender: a send can only fail after a panic there.
        let _ = self.tx.send(job);
    }
}

pub struct Uploader {
    pub queue: Queue,
    task: tokio::task::JoinHandle<()>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(8);

impl Uploader {
    pub fn start(api: Api, spool: Spool) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let progress = Arc::new(Progress::default());
        let p = progress.clone();
        let task = tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                run_job(&api, &spool, &p, job).await;
            }
        });
        Self { queue: Queue { tx, progress }, task }
    }

    /// Closes the queue (every clone must be dropped too) and waits for every job to be done.
    pub async fn finish(self) {
        drop(self.queue);
        let _ = self.task.await;
    }
}

async fn retrying<T, F, Fut>(what: &str, mut f: F) -> Result<T, (u16, String)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Outcome<T>>,
{
    let mut backoff = Duration::from_millis(200);
    let mut warned = false;
    loop {
        match f().await {
            Outcome::Done(v) => return Ok(v),
            Outcome::Refused { status, error } => return Err((status, error)),
            Outcome::Retry(why) => {
                if !warned {
                    eprintln!("{}", crate::messages::current().server_unreachable);
                    warned = true;
                }
                tracing::debug!(what, why, "retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn run_job(api: &Api, spool: &Spool, p: &Progress, job: Job) {
    let msgs = crate::messages::current();
    match job {
        Job::Chunk(chunk) => {
            let bytes = match tokio::fs::read(&chunk.path).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(index = chunk.index, error = %e, "spooled chunk unreadable");
                    p.refused.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            };
            let len = bytes.len() as u64;
            match retrying("chunk", || api.put_chunk(chunk.stream, chunk.index, bytes.clone())).await {
                Ok(_) => {
                    if let Err(e) = spool.remove(&chunk) {
                        tracing::warn!(error = %e, "could not remove an acknowledged chunk from the spool");
                    }
                    p.acked.fetch_add(1, Ordering::SeqCst);
                    p.bytes_acked.fetch_add(len, Ordering::SeqCst);
                }
                Err((status, error)) => {
                    // Kept in the spool: it is evidence, and support can look at it.
                    eprintln!("{} {} (HTTP {status}: {error})", msgs.upload_refused, chunk.index);
                    p.refused.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        Job::End { stream, final_index } => match retrying("end", || api.end_stream(stream, final_index)).await {
            Ok(()) => forget(spool, stream),
            Err((status, error)) => {
                eprintln!("fin de flux refusée (HTTP {status}: {error})");
                p.refused.fetch_add(1, Ordering::SeqCst);
            }
        },
        Job::Forget(stream) => forget(spool, stream),
    }
}

fn forget(spool: &Spool, stream: Uuid) {
    let still_pending = spool.pending().map(|v| v.iter().any(|c| c.stream == stream)).unwrap_or(true);
    if !still_pending {
        if let Err(e) = spool.forget_stream(stream) {
            tracing::warn!(error = %e, "could not clean a finished stream from the spool");
        }
    }
}
