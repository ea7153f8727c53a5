//! Uploads spooled chunks in order. Each outcome has a decision (`refusal`): retried with
//! backoff and jitter for as long as it takes, dropped with its reason logged, the stream
//! reopened, or the run stopped with a message for the candidate. A chunk leaves the spool
//! only once the server has acknowledged it durably, or once it is known that it never can.

use crate::client::Failure;
use crate::refusal::{retrying, Decision, DropReason, StopReason};
use crate::report::{Event, Report, Reporter};
use crate::spool::{Spool, SpooledChunk};
use crate::transport::Link;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

pub enum Job {
    /// Record the candidate's consent (sealed, with its original time): always the first
    /// job, so that nothing is uploaded before it.
    /// The notice version and the consent sealed to the attempt.
    Consent(String, Vec<u8>),
    /// A sealed chunk; `sealed_at` starts its acknowledgement latency.
    Chunk(SpooledChunk, Instant),
    /// Tell the server the stream ended at this final index, then forget it locally.
    End { stream: Uuid, final_index: u32 },
    /// Forget a stream with no final chunk (an earlier run that was killed).
    Forget(Uuid),
}

/// Why the uploader stopped for good, once it has (`None` while it goes on): the run
/// stops recording when it turns `Some`, and its summary says why.
pub type Stopped = watch::Receiver<Option<StopReason>>;

#[derive(Default)]
pub struct Progress {
    pub queued: AtomicU64,
    pub bytes_queued: AtomicU64,
    pub bytes_settled: AtomicU64,
    /// Sealed bytes held in memory because the spool could not take them.
    pub held_bytes: AtomicU64,
    /// When the server last acknowledged anything (None: not yet).
    pub last_ack: Mutex<Option<Instant>>,
    pub acked: AtomicU64,
    pub bytes_acked: AtomicU64,
    pub dropped: AtomicU64,
    /// Chunks left in the spool because the run was stopped.
    pub unsent: AtomicU64,
    pub stopped: AtomicBool,
    pub drop_reasons: Mutex<HashMap<DropReason, u64>>,
    /// Sealing to acknowledgement, in milliseconds, one per acknowledged chunk.
    pub ack_latencies_ms: Mutex<Vec<u64>>,
    /// Touched each time a chunk settles (acknowledged, dropped or left unsent).
    settles: watch::Sender<()>,
}

impl Progress {
    /// Wakes each time a chunk settles: what the drain awaits instead of polling.
    pub fn settling(&self) -> watch::Receiver<()> {
        self.settles.subscribe()
    }
    /// Counts one more settled chunk in `counter`, then wakes who awaits settling (after,
    /// so that a waiter woken reads the new count).
    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.settles.send_replace(());
    }
    pub fn settled(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
            + self.dropped.load(Ordering::SeqCst)
            + self.unsent.load(Ordering::SeqCst)
    }
    /// Chunks sealed and not settled yet, and their bytes.
    pub fn backlog(&self) -> (u64, u64) {
        let chunks = self
            .queued
            .load(Ordering::SeqCst)
            .saturating_sub(self.settled());
        (
            chunks,
            self.bytes_queued
                .load(Ordering::SeqCst)
                .saturating_sub(self.bytes_settled.load(Ordering::SeqCst)),
        )
    }
    /// A fragment sealed but lost before it could be queued (no room anywhere).
    pub fn record_loss(&self, reason: DropReason) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        *self
            .drop_reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
        self.count(&self.dropped);
    }
    fn settle(&self, chunk: &SpooledChunk) {
        self.bytes_settled.fetch_add(chunk.size, Ordering::SeqCst);
        if chunk.held.is_some() {
            self.held_bytes.fetch_sub(chunk.size, Ordering::SeqCst);
        }
    }
}

/// A cloneable handle that queues jobs and counts them; the sealing thread holds one.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::UnboundedSender<Job>,
    pub progress: Arc<Progress>,
}

impl Queue {
    pub fn send(&self, job: Job) {
        if let Job::Chunk(c, _) = &job {
            self.progress.queued.fetch_add(1, Ordering::SeqCst);
            self.progress
                .bytes_queued
                .fetch_add(c.size, Ordering::SeqCst);
            if c.held.is_some() {
                self.progress.held_bytes.fetch_add(c.size, Ordering::SeqCst);
            }
        }
        // The task lives as long as a sender: a send can only fail after a panic there.
        let _ = self.tx.send(job);
    }
}

pub struct Uploader {
    pub queue: Queue,
    task: tokio::task::JoinHandle<()>,
}

impl Uploader {
    /// The uploader. A stream the server cannot open goes straight to the sealing on
    /// `lost` (recording goes on in a new one); a final refusal is told to the candidate
    /// and shows on the returned [`Stopped`].
    pub fn start(
        link: Arc<Link>,
        spool: Spool,
        report: Reporter,
        lost: std::sync::mpsc::Sender<Uuid>,
    ) -> (Self, Stopped) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let (stop_tx, stopped) = watch::channel(None);
        let progress = Arc::new(Progress::default());
        let p = progress.clone();
        let task = tokio::spawn(async move {
            let told = Told {
                report: &*report,
                lost: &lost,
                stopped: &stop_tx,
            };
            let mut gone = std::collections::HashSet::new();
            while let Some(job) = rx.recv().await {
                run_job(&link, &spool, &p, &told, &mut gone, job).await;
            }
        });
        (
            Self {
                queue: Queue { tx, progress },
                task,
            },
            stopped,
        )
    }

    /// Stops sending at once (consent withdrawn: the server takes nothing more).
    pub fn abandon(self) {
        self.task.abort();
    }

    /// Closes the queue (every clone must be dropped too) and waits for every job to be done.
    pub async fn finish(self) {
        drop(self.queue);
        let _ = self.task.await;
    }
}

/// Whom the uploader tells what it cannot settle alone.
struct Told<'a> {
    report: &'a dyn Report,
    /// The sealing, of a stream the server cannot open.
    lost: &'a std::sync::mpsc::Sender<Uuid>,
    stopped: &'a watch::Sender<Option<StopReason>>,
}

impl Told<'_> {
    fn lost(&self, stream: Uuid) {
        // The sealing may be over (the run is draining): then no stream is live to replace.
        let _ = self.lost.send(stream);
    }
    fn stop(&self, p: &Progress, reason: StopReason) {
        p.stopped.store(true, Ordering::SeqCst);
        self.report.report(&Event::Stopped(reason));
        self.stopped.send_replace(Some(reason));
    }
}

fn warn_unreachable<'a>(
    warned: &'a mut bool,
    report: &'a dyn Report,
) -> impl FnMut(&Failure, Duration) + 'a {
    move |f, d| {
        if f.status == 0 && !*warned {
            report.report(&Event::ServerUnreachable);
            *warned = true;
        }
        if f.status == 507 && !*warned {
            report.report(&Event::ServerFull);
            *warned = true;
        }
        tracing::debug!(failure = %f, wait_ms = d.as_millis() as u64, "retrying");
    }
}

fn drop_chunk(
    spool: &Spool,
    p: &Progress,
    report: &dyn Report,
    chunk: &SpooledChunk,
    reason: DropReason,
    f: &Failure,
) {
    p.settle(chunk);
    report.report(&Event::ChunkDropped {
        index: chunk.index,
        failure: f,
    });
    tracing::warn!(stream = %chunk.stream, index = chunk.index, ?reason, failure = %f, "chunk dropped");
    if let Err(e) = spool.drop_chunk(chunk, &format!("{reason:?} {f}")) {
        tracing::warn!(error = %e, "could not remove a dropped chunk from the spool");
    }
    *p.drop_reasons
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(reason)
        .or_default() += 1;
    p.count(&p.dropped);
}

async fn run_job(
    link: &Link,
    spool: &Spool,
    p: &Progress,
    told: &Told<'_>,
    lost: &mut std::collections::HashSet<Uuid>,
    job: Job,
) {
    let report = told.report;
    if p.stopped.load(Ordering::SeqCst) {
        if let Job::Chunk(c, _) = &job {
            p.settle(c);
            p.count(&p.unsent);
        }
        return;
    }
    let mut warned = false;
    let stop = |reason: StopReason| told.stop(p, reason);
    match job {
        Job::Consent(version, sealed) => match retrying(
            || link.api().consent(&version, &sealed),
            warn_unreachable(&mut warned, report),
        )
        .await
        {
            Ok(()) => tracing::info!("consent recorded by the server"),
            Err((f, decision)) => {
                tracing::error!(failure = %f, ?decision, "consent refused");
                stop(match decision {
                    Decision::Stop(reason) => reason,
                    _ => StopReason::ConsentMissing,
                });
            }
        },
        Job::Chunk(chunk, sealed_at) => {
            if lost.contains(&chunk.stream) {
                let f = Failure {
                    status: 404,
                    code: "not_found".into(),
                    message: "stream unknown to the server".into(),
                    retry_after: None,
                };
                return drop_chunk(spool, p, report, &chunk, DropReason::Refused, &f);
            }
            let c = chunk.clone();
            let read = tokio::task::spawn_blocking(move || c.read())
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
            let bytes = match read {
                Ok(b) => b,
                // A read error may pass (too many open files, a flaky disk): keep the chunk
                // in the spool for the next run rather than deleting it.
                Err(e) => {
                    tracing::error!(stream = %chunk.stream, index = chunk.index, error = %e, "spooled chunk unreadable; kept for the next run");
                    p.settle(&chunk);
                    p.count(&p.unsent);
                    return;
                }
            };
            let len = bytes.len() as u64;
            match retrying(
                || link.put_chunk(chunk.stream, chunk.index, bytes.clone()),
                warn_unreachable(&mut warned, report),
            )
            .await
            {
                Ok(_) => {
                    if let Err(e) = spool.remove(&chunk) {
                        tracing::warn!(error = %e, "could not remove an acknowledged chunk from the spool");
                    }
                    p.settle(&chunk);
                    *p.last_ack.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                    p.bytes_acked.fetch_add(len, Ordering::SeqCst);
                    p.ack_latencies_ms
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(sealed_at.elapsed().as_millis() as u64);
                    p.count(&p.acked);
                }
                // Without its first chunk the server cannot open the stream: record on in a new one.
                Err((f, Decision::Drop(reason))) if chunk.index == 0 => {
                    lost.insert(chunk.stream);
                    told.lost(chunk.stream);
                    drop_chunk(spool, p, report, &chunk, reason, &f);
                }
                Err((f, Decision::Drop(reason))) => {
                    drop_chunk(spool, p, report, &chunk, reason, &f)
                }
                Err((f, Decision::Reopen)) => {
                    lost.insert(chunk.stream);
                    told.lost(chunk.stream);
                    drop_chunk(spool, p, report, &chunk, DropReason::Refused, &f);
                }
                Err((f, Decision::Stop(reason))) => {
                    tracing::error!(failure = %f, ?reason, "upload stopped");
                    p.settle(&chunk);
                    p.count(&p.unsent);
                    stop(reason);
                }
                Err((_, Decision::Retry)) => {
                    unreachable!("retrying only returns on a final decision")
                }
            }
        }
        Job::End {
            stream,
            final_index,
        } => {
            if lost.contains(&stream) {
                return forget(spool, stream);
            }
            match retrying(
                || link.end_stream(stream, final_index),
                warn_unreachable(&mut warned, report),
            )
            .await
            {
                Ok(()) => forget(spool, stream),
                Err((f, Decision::Stop(reason))) => {
                    tracing::error!(failure = %f, ?reason, "ending the stream stopped");
                    stop(reason);
                }
                // The server will show the stream as ended abruptly: a fact, not a loss.
                Err((f, _)) => {
                    tracing::warn!(failure = %f, "the server did not take the stream's end");
                    forget(spool, stream);
                }
            }
        }
        Job::Forget(stream) => forget(spool, stream),
    }
}

fn forget(spool: &Spool, stream: Uuid) {
    let still_pending = spool
        .pending()
        .map(|v| v.iter().any(|c| c.stream == stream))
        .unwrap_or(true);
    if !still_pending {
        if let Err(e) = spool.forget_stream(stream) {
            tracing::warn!(error = %e, "could not clean a finished stream from the spool");
        }
    }
}
