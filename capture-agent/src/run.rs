//! One run of the agent: notice and consent, leftovers from an earlier run, a new stream,
//! capture → seal → spool → upload, then drain and end the stream.

use crate::capture::{Capture, CaptureConfig, CaptureEvent, Source};
use crate::client::{Api, Outcome};
use crate::messages::current as msgs;
use crate::spool::Spool;
use crate::uploader::{Job, Uploader};
use anyhow::Context;
use base64::Engine;
use protocol::{Fragment, StreamKey, StreamSealer};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub struct RunOptions {
    pub server: url::Url,
    pub token: String,
    pub source: Source,
    pub duration: Option<Duration>,
    pub consent: bool,
    pub spool_dir: PathBuf,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub attempt_id: uuid::Uuid,
    pub stream_id: uuid::Uuid,
    pub encoder: String,
    pub fragments_sealed: u32,
    pub chunks_acknowledged: u64,
    pub bytes_acknowledged: u64,
    pub chunks_refused: u64,
    pub media_seconds: f64,
    pub capture_error: Option<String>,
}

impl Summary {
    pub fn complete(&self) -> bool {
        self.chunks_refused == 0 && self.capture_error.is_none()
    }
}

/// Retries a control call while the network is down; a refusal is final.
async fn must<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Outcome<T>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match f().await {
            Outcome::Done(v) => return Ok(v),
            Outcome::Refused { status, error } => anyhow::bail!("{what}: the server refused (HTTP {status}: {error})"),
            Outcome::Retry(why) => {
                tracing::warn!(what, why, "server unreachable, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(8));
            }
        }
    }
}

fn ask_consent(scripted: bool) -> anyhow::Result<()> {
    let m = msgs();
    eprintln!("\n{}\n\n{}\n", m.notice_title, m.notice_body);
    if scripted {
        return Ok(());
    }
    use std::io::{BufRead, IsTerminal, Write};
    anyhow::ensure!(std::io::stdin().is_terminal(), "{}", m.consent_needs_terminal);
    eprint!("{}", m.consent_prompt);
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    anyhow::ensure!(line.trim().eq_ignore_ascii_case("oui"), "{}", m.consent_refused);
    Ok(())
}

pub async fn run(opts: RunOptions) -> anyhow::Result<Summary> {
    ask_consent(opts.consent)?;
    let api = Api::new(opts.server.clone(), opts.token.clone(), opts.ca_file.as_deref())?;
    must("consent", || api.consent()).await?;

    let spool = Spool::open(&opts.spool_dir, &opts.token).context("opening the spool directory")?;
    let uploader = Uploader::start(api.clone(), spool.clone());
    queue_leftovers(&spool, &uploader)?;

    let opened = must("open stream", || api.open_stream()).await?;
    let key_bytes = zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(&opened.stream_key).context("stream key")?);
    let key = StreamKey::from_bytes(&key_bytes).context("the server sent a malformed stream key")?;
    let cfg = CaptureConfig { fragment_ms: opened.fragment_ms, ..CaptureConfig::default() };
    let (capture, events) = Capture::start(opts.source, &cfg)?;
    let capture = Arc::new(capture);
    let encoder = capture.encoder_name().to_owned();
    eprintln!("{}", msgs().recording_started);

    // Stop on --duration or Ctrl-C; a second Ctrl-C leaves at once (the spool keeps everything).
    let stopper = capture.clone();
    let duration = opts.duration;
    tokio::spawn(async move {
        match duration {
            Some(d) => tokio::select! { _ = tokio::time::sleep(d) => {}, _ = tokio::signal::ctrl_c() => {} },
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        eprintln!("{}", msgs().recording_stopping);
        stopper.stop();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });

    let sealer = StreamSealer::new(key, opened.attempt_id, opened.stream_id);
    let max_chunk = opened.max_chunk_bytes;
    let (spool2, queue) = (spool.clone(), uploader.queue.clone());
    let sealing = tokio::task::spawn_blocking(move || seal_loop(events, sealer, &spool2, opened.stream_id, max_chunk, |job| queue.send(job)));
    let (sealed, media_us, capture_error) = sealing.await.context("sealing thread")??;
    drop(capture);

    drain_with_progress(&uploader).await;
    let progress = uploader.queue.progress.clone();
    uploader.finish().await;
    if let Some(e) = &capture_error {
        eprintln!("capture: {e}");
    }
    let summary = Summary {
        attempt_id: opened.attempt_id,
        stream_id: opened.stream_id,
        encoder,
        fragments_sealed: sealed,
        chunks_acknowledged: progress.acked.load(Ordering::SeqCst),
        bytes_acknowledged: progress.bytes_acked.load(Ordering::SeqCst),
        chunks_refused: progress.refused.load(Ordering::SeqCst),
        media_seconds: media_us as f64 / 1e6,
        capture_error,
    };
    if summary.complete() {
        eprintln!("{}", msgs().all_sent);
    }
    Ok(summary)
}

/// Chunks left by an earlier run (killed, power cut) go first, in order; their stream is
/// ended only if its final chunk had been sealed, otherwise it stays "ended abruptly".
fn queue_leftovers(spool: &Spool, uploader: &Uploader) -> anyhow::Result<()> {
    let pending = spool.pending()?;
    if !pending.is_empty() {
        eprintln!("{}", msgs().uploading_leftovers);
    }
    let streams = spool.streams()?;
    for chunk in pending {
        uploader.queue.send(Job::Chunk(chunk));
    }
    for s in streams {
        match spool.final_index(s) {
            Some(f) => uploader.queue.send(Job::End { stream: s, final_index: f }),
            None => uploader.queue.send(Job::Forget(s)),
        }
    }
    Ok(())
}

/// Seals each fragment the moment it is complete, so a crash loses only the fragment still
/// being encoded. A clean end is marked by an empty final chunk: the last media fragment is
/// not known to be the last until the pipeline says so, and holding it back would put it
/// at risk.
fn seal_loop(
    events: std::sync::mpsc::Receiver<CaptureEvent>,
    mut sealer: StreamSealer,
    spool: &Spool,
    stream: uuid::Uuid,
    max_chunk: u64,
    send: impl Fn(Job),
) -> anyhow::Result<(u32, u64, Option<String>)> {
    let mut media_end = 0u64;
    let mut seal = |data: &[u8], start_us: u64, end_us: u64, last: bool| -> anyhow::Result<()> {
        let (index, chunk) = sealer.seal(Fragment { data, media_start_us: start_us, media_end_us: end_us, last })?;
        if chunk.len() as u64 > max_chunk {
            tracing::warn!(index, size = chunk.len(), "fragment larger than the server accepts");
        }
        let spooled = spool.put(stream, index, &chunk)?;
        if last {
            spool.mark_final(stream, index)?;
        }
        send(Job::Chunk(spooled));
        if last {
            send(Job::End { stream, final_index: index });
        }
        Ok(())
    };
    for ev in events.iter() {
        match ev {
            CaptureEvent::Fragment(f) => {
                media_end = media_end.max(f.media_end_us);
                seal(&f.data, f.media_start_us, f.media_end_us, false)?;
                // `f.data`, the plaintext, is dropped here; only ciphertext was written.
            }
            CaptureEvent::Finished => {
                seal(&[], media_end, media_end, true)?;
                return Ok((sealer.next_index(), media_end, None));
            }
            // The stream stays without a final chunk: the reviewer sees "ended abruptly".
            CaptureEvent::Error(e) => return Ok((sealer.next_index(), media_end, Some(e))),
        }
    }
    Ok((sealer.next_index(), media_end, Some("capture stopped without finishing".into())))
}

async fn drain_with_progress(uploader: &Uploader) {
    let p = uploader.queue.progress.clone();
    let bar = indicatif::ProgressBar::new(p.queued.load(Ordering::SeqCst));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(msgs().draining);
    loop {
        let (done, queued) = (p.acked.load(Ordering::SeqCst) + p.refused.load(Ordering::SeqCst), p.queued.load(Ordering::SeqCst));
        bar.set_length(queued);
        bar.set_position(done);
        if done >= queued {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
}
