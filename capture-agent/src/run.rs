//! One run of the agent: notice and consent, leftovers from an earlier run, a new stream,
//! capture → seal → spool → upload, then drain and end the stream.
//!
//! Store-and-forward from the first second: the launch token names the attempt and its
//! public key, so the agent keys its streams itself (a random stream key sealed to that
//! key, carried by the stream's first chunk) and keeps the consent sealed in its spool.
//! Nothing waits for the server: recording starts at once, uploads follow when it answers,
//! consent first. If the server cannot open the live stream, recording goes on in a new
//! one; if it refuses for good, recording stops and the candidate is told why.

use crate::board::{Action, Board, Phase};
use crate::capture::{CaptureConfig, CaptureEvent, Source};
use crate::client::Api;
use crate::messages::current as msgs;
use crate::refusal::{retrying, Decision, DropReason, StopReason};
use crate::spool::Spool;
use crate::steps::{Checked, Face, Stop};
use crate::uploader::{Job, Notice, Uploader};
use protocol::notice::Notice as NoticeText;

type Actions = tokio::sync::mpsc::UnboundedReceiver<Action>;
use anyhow::Context;
use base64::Engine;
use protocol::api::{OfflineConsent, CONSENT_PURPOSE};
use protocol::{AttemptPublicKey, Fragment, LaunchToken, StreamKey, StreamOpening, StreamSealer};
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub struct RunOptions {
    pub server: url::Url,
    pub token: String,
    pub source: Source,
    pub duration: Option<Duration>,
    pub consent: bool,
    pub spool_dir: PathBuf,
    pub ca_file: Option<PathBuf>,
    /// The activity strip and thumbnails (on unless measuring their cost).
    pub activity: bool,
    /// The data channel, HTTPS, or the first that works.
    pub transport: crate::transport::Mode,
    /// Without `consent`: open the page in the default browser (else only print its address).
    pub open_browser: bool,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub attempt_id: Uuid,
    pub stream_id: Uuid,
    pub streams_opened: u32,
    pub encoder: String,
    pub fragments_sealed: u32,
    pub chunks_acknowledged: u64,
    pub bytes_acknowledged: u64,
    pub chunks_dropped: u64,
    pub drop_reasons: HashMap<DropReason, u64>,
    /// Chunks kept in the spool, unsent, because the run was stopped.
    pub chunks_unsent: u64,
    pub stopped: Option<StopReason>,
    /// From sealing a fragment to the server's durable acknowledgement.
    pub ack_latency: Option<Latency>,
    pub media_seconds: f64,
    pub capture_error: Option<String>,
    /// Bitrate, backlog and offline time while recording.
    pub network: crate::monitor::Watch,
    pub transport: crate::transport::Mode,
    /// How many chunks each transport carried in this run ("webrtc", "https").
    pub chunks_by_transport: std::collections::BTreeMap<&'static str, u64>,
    /// `given`, `refused` (nothing recorded, only the refusal sent), `refused_unsent` (the
    /// server could not be told) or `withdrawn`.
    pub consent: &'static str,
    /// Why the recording ended: `duration`, `interrupted`, `finished`, `withdrawn`,
    /// `ended_by_platform`, `capture_ended`.
    pub ended_by: Option<&'static str>,
}

impl Summary {
    pub fn complete(&self) -> bool {
        self.chunks_dropped == 0
            && self.chunks_unsent == 0
            && self.stopped.is_none()
            && self.capture_error.is_none()
            && self.consent != "refused_unsent"
    }

    /// A run that recorded nothing (the candidate refused, or withdrew during the check).
    fn nothing(
        attempt_id: Uuid,
        consent: &'static str,
        transport: crate::transport::Mode,
    ) -> Summary {
        Summary {
            attempt_id,
            consent,
            transport,
            ..Summary::default()
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn latency(mut v: Vec<u64>) -> Option<Latency> {
    v.sort_unstable();
    (!v.is_empty()).then(|| Latency {
        p50_ms: percentile(&v, 0.50),
        p99_ms: percentile(&v, 0.99),
        max_ms: *v.last().unwrap_or(&0),
    })
}

/// A control call, retried while it may succeed later; a final refusal ends the run with
/// the candidate's message.
async fn must<T, F, Fut>(what: &str, f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::client::Outcome<T>>,
{
    retrying(f, |failure, _| tracing::warn!(what, %failure, "retrying"))
        .await
        .map_err(|(failure, decision)| match decision {
            Decision::Stop(reason) => {
                anyhow::anyhow!("{} ({what}: {failure})", msgs().stop_message(reason))
            }
            _ => anyhow::anyhow!("{what}: the server refused ({failure})"),
        })
}

/// A stream being sealed into.
struct LiveStream {
    sealer: StreamSealer,
    id: Uuid,
}

/// Opens streams without the server: a random key sealed to the attempt's public key.
struct Streams {
    attempt: Uuid,
    public: AttemptPublicKey,
}

impl Streams {
    fn open(&self) -> LiveStream {
        let (id, key) = (Uuid::new_v4(), StreamKey::generate());
        let opening = StreamOpening::seal(&self.public, &self.attempt, &id, unix_ms(), &key);
        LiveStream {
            sealer: StreamSealer::with_opening(key, self.attempt, id, opening),
            id,
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Which attempt, the key its streams are sealed to, and the fragment length: from the
/// token, or (a token issued before store-and-forward) asked of the server.
async fn attempt_of(
    token: &LaunchToken,
    api: &Api,
) -> anyhow::Result<(Uuid, AttemptPublicKey, u32, Option<u64>)> {
    if let Some((attempt, public)) = token.offline {
        return Ok((attempt, public, CaptureConfig::default().fragment_ms, None));
    }
    let info = must("attempt", || api.attempt_info()).await?;
    let public = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&info.public_key)
        .ok()
        .and_then(|b| AttemptPublicKey::parse(&b).ok());
    let public = public.context("the server sent a malformed public key")?;
    Ok((
        info.attempt_id,
        public,
        info.fragment_ms,
        Some(info.max_chunk_bytes),
    ))
}

/// The consent first given for this attempt, kept sealed in the spool: a restarted agent
/// sends the original, with its original time.
fn kept_consent(
    spool: &Spool,
    attempt: &Uuid,
    public: &AttemptPublicKey,
    notice_version: &str,
) -> anyhow::Result<(String, Vec<u8>)> {
    if let Some(kept) = spool.consent()? {
        return Ok(kept);
    }
    let consent = OfflineConsent {
        notice_version: notice_version.into(),
        given_at_ms: unix_ms() as i64,
    };
    let sealed = protocol::seal_to_attempt(
        public,
        attempt,
        CONSENT_PURPOSE,
        &serde_json::to_vec(&consent)?,
    );
    // A full disk does not stop the exam: the consent then lives in memory until sent.
    if let Err(e) = spool.keep_consent(notice_version, &sealed) {
        tracing::warn!(error = %e, "could not keep the consent in the spool; held in memory");
    }
    Ok((notice_version.to_owned(), sealed))
}

pub async fn run(opts: RunOptions) -> anyhow::Result<Summary> {
    let token = LaunchToken::parse(&opts.token)
        .map_err(|e| anyhow::anyhow!("{} ({e})", msgs().token_malformed))?;
    let api = Api::new(
        opts.server.clone(),
        token.credential().to_owned(),
        opts.ca_file.as_deref(),
    )?;
    let (board, actions) = Board::new();
    let notice = crate::steps::notice(&api).await;
    board.set_notice(notice.clone(), opts.server.host_str().unwrap_or_default());
    let fragment_hint = Duration::from_millis(CaptureConfig::default().fragment_ms.into());
    let face = Arc::new(if opts.consent {
        eprintln!("\n{}", notice.to_text());
        Face::Scripted
    } else {
        Face::Page {
            page: crate::page::Page::start(board.clone(), fragment_hint).await?,
            open_browser: opts.open_browser,
        }
    });
    face.announce(false);
    let result = exam(opts, token, api, notice, &board, actions, &face).await;
    // Whatever stops the run, the page says so instead of going dead.
    if let (Err(e), Face::Page { .. }) = (&result, &*face) {
        board.say(format!("{e:#}"));
        board.set_phase(Phase::Failed);
        linger(&board, &face).await;
    }
    result
}

async fn exam(
    opts: RunOptions,
    token: LaunchToken,
    api: Api,
    notice: NoticeText,
    board: &Arc<Board>,
    mut actions: Actions,
    face: &Arc<Face>,
) -> anyhow::Result<Summary> {
    // Scripted: no camera or microphone is a refusal before anything is sent.
    let scripted_devices = match **face {
        Face::Scripted => {
            let source = opts.source.clone();
            let listed =
                tokio::task::spawn_blocking(move || crate::capture::devices::list(&source))
                    .await??;
            Some(
                crate::capture::devices::choose(&listed, None, None)
                    .map_err(|m| anyhow::anyhow!("{}", crate::steps::missing_message(m)))?,
            )
        }
        Face::Page { .. } => None,
    };
    let attempt_hint = token.offline.map_or(Uuid::nil(), |(a, _)| a);
    if matches!(**face, Face::Page { .. }) {
        match crate::steps::consent(&mut actions, face, board).await {
            None => anyhow::bail!("{}", msgs().interrupted_before_recording),
            Some(false) => {
                let delivered = crate::steps::refuse(&api, board, &notice.version).await;
                linger(board, face).await;
                return Ok(Summary::nothing(
                    attempt_hint,
                    if delivered {
                        "refused"
                    } else {
                        "refused_unsent"
                    },
                    opts.transport,
                ));
            }
            Some(true) => {}
        }
    }
    let (attempt_id, public, fragment_ms, max_chunk) = attempt_of(&token, &api).await?;
    let spool = match Spool::open(&opts.spool_dir, attempt_id, token.credential()) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            anyhow::bail!("{}", msgs().already_running)
        }
        other => other.context("opening the spool directory")?,
    };
    let (version, consent) = kept_consent(&spool, &attempt_id, &public, &notice.version)?;
    let link = Arc::new(crate::transport::Link::new(api.clone(), opts.transport));
    let (uploader, notices) = Uploader::start(link.clone(), spool.clone());
    uploader.queue.send(Job::Consent(version, consent));
    queue_leftovers(&spool, &uploader)?;

    // The devices: chosen on the page after a check, or the first of each (scripted).
    let chosen = match scripted_devices {
        Some(c) => c,
        None => match crate::steps::device_check(
            &opts.source,
            &api,
            spool.free_bytes().ok(),
            board,
            &mut actions,
            face,
        )
        .await?
        {
            Checked::Start(c) => c,
            Checked::Interrupted => anyhow::bail!("{}", msgs().interrupted_before_recording),
            // Consent is withdrawn before anything was recorded.
            Checked::Withdraw => {
                uploader.abandon();
                crate::steps::withdraw(&api, board, &spool, &notice.version).await;
                linger(board, face).await;
                return Ok(Summary::nothing(attempt_id, "withdrawn", opts.transport));
            }
        },
    };
    let recording = Recording {
        attempt_id,
        public,
        fragment_ms,
        max_chunk,
        chosen,
        spool,
        link,
        uploader,
        notices,
    };
    record(opts, recording, api, &notice, board, actions, face).await
}

/// What the recording needs from the steps before it.
struct Recording {
    attempt_id: Uuid,
    public: AttemptPublicKey,
    fragment_ms: u32,
    max_chunk: Option<u64>,
    chosen: crate::capture::devices::Chosen,
    spool: Spool,
    link: Arc<crate::transport::Link>,
    uploader: Uploader,
    notices: tokio::sync::mpsc::UnboundedReceiver<Notice>,
}

async fn record(
    opts: RunOptions,
    r: Recording,
    api: Api,
    notice: &NoticeText,
    board: &Arc<Board>,
    actions: Actions,
    face: &Arc<Face>,
) -> anyhow::Result<Summary> {
    let Recording {
        attempt_id,
        public,
        fragment_ms,
        max_chunk,
        chosen,
        spool,
        link,
        uploader,
        mut notices,
    } = r;
    let streams = Streams {
        attempt: attempt_id,
        public,
    };
    let first = streams.open();
    let first_id = first.id;
    let cfg = CaptureConfig {
        fragment_ms,
        activity: opts.activity,
        video_kbps: crate::bitrate::START_KBPS,
        devices: Some(chosen),
        ..CaptureConfig::default()
    };
    let source = opts.source.clone();
    let (capture, events) =
        tokio::task::spawn_blocking(move || crate::recorder::Recorder::start(source, cfg))
            .await??;
    let encoder = capture.encoder_name().to_owned();
    board.set_progress(uploader.queue.progress.clone());
    board.set_phase(Phase::Recording);
    eprintln!("{}", msgs().recording_started);
    let heartbeat = crate::monitor::spawn_heartbeat(link.clone(), uploader.queue.progress.clone());
    let (monitor, watch) = crate::monitor::spawn(
        capture.clone(),
        spool.clone(),
        uploader.queue.progress.clone(),
        Duration::from_millis(fragment_ms.into()),
    );

    // Stop on --duration, Ctrl-C, "finish" or a withdrawal on the page, or the platform
    // ending the exam; a second Ctrl-C leaves at once (the spool keeps everything). After a
    // withdrawal, nothing sealed from then on is sent (the fragment being encoded included).
    let withdrawing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (capture_done_tx, capture_done) = tokio::sync::oneshot::channel();
    let control = {
        let (stopper, api, face, board, withdrawing) = (
            capture.clone(),
            api.clone(),
            face.clone(),
            board.clone(),
            withdrawing.clone(),
        );
        let page_actions = matches!(*face, Face::Page { .. }).then_some(actions);
        tokio::spawn(async move {
            let why = crate::steps::control(
                opts.duration,
                page_actions,
                api,
                face,
                board.clone(),
                capture_done,
            )
            .await;
            if why == Stop::Withdrawn {
                withdrawing.store(true, Ordering::SeqCst);
            } else {
                board.set_phase(Phase::Finishing);
            }
            if why != Stop::CaptureEnded {
                eprintln!("{}", msgs().recording_stopping);
                stopper.stop();
            }
            tokio::spawn(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            });
            why
        })
    };

    // What the uploader cannot settle alone: a lost stream (the seal loop records on in a
    // new one if it was the live one), or a final refusal (stop recording and say why).
    let (lost_tx, lost_rx) = std::sync::mpsc::channel::<Uuid>();
    let stopped = Arc::new(Mutex::new(None::<StopReason>));
    let watcher = {
        let (capture, stopped, board) = (capture.clone(), stopped.clone(), board.clone());
        tokio::spawn(async move {
            while let Some(n) = notices.recv().await {
                match n {
                    Notice::StreamLost(s) => {
                        let _ = lost_tx.send(s);
                    }
                    Notice::Stop(reason) => {
                        eprintln!("{}", msgs().stop_message(reason));
                        board.say(msgs().stop_message(reason));
                        *stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                        capture.stop();
                    }
                }
            }
        })
    };

    let (spool2, queue, recorder, board2, withdrawing2) = (
        spool.clone(),
        uploader.queue.clone(),
        capture.clone(),
        board.clone(),
        withdrawing.clone(),
    );
    let sealing = tokio::task::spawn_blocking(move || -> anyhow::Result<Sealed> {
        let progress = queue.progress.clone();
        let send = |job| {
            if !withdrawing2.load(Ordering::SeqCst) {
                queue.send(job)
            }
        };
        let (mut events, mut stream) = (events, first);
        let mut total = Sealed {
            fragments: 0,
            streams: 0,
            media_us: 0,
            capture_error: None,
        };
        loop {
            let sealed = seal_loop(
                events,
                stream,
                &streams,
                &lost_rx,
                &spool2,
                max_chunk.unwrap_or(u64::MAX),
                &progress,
                send,
            )?;
            total.add(&sealed);
            let Some(error) = sealed.capture_error else {
                return Ok(total);
            };
            if recorder.stopping() {
                total.capture_error = Some(error);
                return Ok(total);
            }
            // A device lost mid-exam: the gap is on record (this stream ends abruptly, the
            // next starts when the device is back); recording resumes by itself.
            tracing::warn!(%error, "capture failed; waiting for the devices");
            eprintln!("{}", msgs().device_lost);
            board2.device_lost(true);
            match recorder.resume() {
                Some(resumed) => {
                    eprintln!("{}", msgs().device_back);
                    board2.device_lost(false);
                    events = resumed;
                    stream = streams.open();
                }
                None => {
                    board2.device_lost(false);
                    total.capture_error = (!recorder.stopping()).then_some(error);
                    return Ok(total);
                }
            }
        }
    });
    let sealed = sealing.await.context("sealing thread")??;
    let _ = capture_done_tx.send(());
    let why = control.await.unwrap_or(Stop::CaptureEnded);
    drop(capture);
    monitor.abort();

    let progress = uploader.queue.progress.clone();
    let mut consent_state = "given";
    if why == Stop::Withdrawn {
        // Nothing more is sent: the withdrawal is recorded, the spool's ciphertext goes.
        uploader.abandon();
        consent_state = "withdrawn";
        crate::steps::withdraw(&api, board, &spool, &notice.version).await;
    } else {
        board.set_phase(Phase::Finishing);
        let finishing = Instant::now();
        drain_with_progress(&uploader).await;
        uploader.finish().await;
        // The candidate sees the progress bar, however short the rest was to send.
        while matches!(**face, Face::Page { .. })
            && finishing.elapsed() < Duration::from_secs(3)
            && !board.last_seen().is_some_and(|t| t > finishing)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    heartbeat.abort();
    watcher.abort();
    if let Some(e) = &sealed.capture_error {
        eprintln!("capture: {e}");
        board.say(e.clone());
    }
    let summary = Summary {
        attempt_id,
        stream_id: first_id,
        streams_opened: sealed.streams,
        encoder,
        fragments_sealed: sealed.fragments,
        chunks_acknowledged: progress.acked.load(Ordering::SeqCst),
        bytes_acknowledged: progress.bytes_acked.load(Ordering::SeqCst),
        chunks_dropped: progress.dropped.load(Ordering::SeqCst),
        drop_reasons: progress
            .drop_reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        chunks_unsent: progress.unsent.load(Ordering::SeqCst),
        stopped: *stopped.lock().unwrap_or_else(|e| e.into_inner()),
        ack_latency: latency(std::mem::take(
            &mut *progress
                .ack_latencies_ms
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )),
        media_seconds: sealed.media_us as f64 / 1e6,
        capture_error: sealed.capture_error,
        network: watch.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        transport: opts.transport,
        chunks_by_transport: link
            .carried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        consent: consent_state,
        ended_by: Some(match why {
            Stop::Duration => "duration",
            Stop::Interrupted => "interrupted",
            Stop::Finished => "finished",
            Stop::Withdrawn => "withdrawn",
            Stop::EndedByPlatform => "ended_by_platform",
            Stop::CaptureEnded => "capture_ended",
        }),
    };
    if why != Stop::Withdrawn {
        // "You may close" only when the server has everything; otherwise what is left, and why.
        if summary.complete() {
            eprintln!("{}", msgs().all_sent);
            board.set_phase(Phase::Done);
        } else {
            if summary.chunks_unsent > 0 || summary.chunks_dropped > 0 {
                board.say(format!(
                    "{} {}",
                    msgs().not_all_sent,
                    summary.chunks_unsent + summary.chunks_dropped
                ));
            }
            board.set_phase(Phase::Failed);
        }
    }
    linger(board, face).await;
    Ok(summary)
}

/// Keeps the page served until it has shown the last step (or 15 s pass), so that the
/// candidate reads "you may close" rather than a dead page.
async fn linger(board: &Board, face: &Face) {
    if !matches!(face, Face::Page { .. }) {
        return;
    }
    let from = Instant::now();
    while from.elapsed() < Duration::from_secs(15) {
        if board
            .last_seen()
            .is_some_and(|t| t > from + Duration::from_millis(100))
        {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
        uploader.queue.send(Job::Chunk(chunk, Instant::now()));
    }
    for s in streams {
        match spool.final_index(s) {
            Some(f) => uploader.queue.send(Job::End {
                stream: s,
                final_index: f,
            }),
            None => uploader.queue.send(Job::Forget(s)),
        }
    }
    Ok(())
}

struct Sealed {
    fragments: u32,
    streams: u32,
    media_us: u64,
    capture_error: Option<String>,
}

impl Sealed {
    /// Counts another capture's streams (after a device came back).
    fn add(&mut self, other: &Sealed) {
        self.fragments += other.fragments;
        self.streams += other.streams;
        self.media_us += other.media_us;
    }
}

/// Seals each fragment the moment it is complete, so a crash loses only the fragment still
/// being encoded. A clean end is marked by an empty final chunk: the last media fragment is
/// not known to be the last until the pipeline says so, and holding it back would put it
/// at risk. When the live stream is lost (the server cannot open it), the next fragment
/// goes into a new stream, keyed here at once; the initialisation segment opens it and
/// media times restart at its first fragment, as a stream's header times count from its own
/// start.
fn seal_loop(
    events: std::sync::mpsc::Receiver<CaptureEvent>,
    mut stream: LiveStream,
    streams: &Streams,
    lost: &std::sync::mpsc::Receiver<Uuid>,
    spool: &Spool,
    max_chunk: u64,
    progress: &crate::uploader::Progress,
    send: impl Fn(Job),
) -> anyhow::Result<Sealed> {
    let mut media_end = 0u64;
    let mut fragments = 0u32;
    let mut opened = 1u32;
    let mut init: Option<zeroize::Zeroizing<Vec<u8>>> = None;
    // Media time of the current stream's first fragment: header times count from there.
    let mut origin_us: Option<u64> = Some(0);
    let mut warned_disk = false;
    let mut seal = |s: &mut LiveStream,
                    data: &[u8],
                    start_us: u64,
                    end_us: u64,
                    last: bool|
     -> anyhow::Result<()> {
        let (index, chunk) = s.sealer.seal(Fragment {
            data,
            media_start_us: start_us,
            media_end_us: end_us,
            last,
        })?;
        if chunk.len() as u64 > max_chunk {
            tracing::warn!(
                index,
                size = chunk.len(),
                "fragment larger than the server accepts"
            );
        }
        // A spool write that fails (disk full) never stops the recording: the chunk waits
        // in memory, within a bound, and the candidate is told.
        let spooled = match spool.put(s.id, index, &chunk) {
            Ok(c) => c,
            Err(e) => {
                if !warned_disk {
                    eprintln!("{}", msgs().spool_full);
                    warned_disk = true;
                }
                tracing::warn!(index, error = %e, "spool write failed; chunk held in memory");
                if progress.held_bytes.load(Ordering::SeqCst) + chunk.len() as u64
                    > crate::spool::MAX_HELD_BYTES
                {
                    tracing::error!(index, "memory bound reached: fragment lost");
                    progress.record_loss(DropReason::SpoolFull);
                    fragments += 1;
                    return Ok(());
                }
                spool.held(s.id, index, chunk)
            }
        };
        if last {
            if let Err(e) = spool.mark_final(s.id, index) {
                tracing::warn!(error = %e, "could not note the stream's end in the spool");
            }
        }
        send(Job::Chunk(spooled, Instant::now()));
        if last {
            send(Job::End {
                stream: s.id,
                final_index: index,
            });
        }
        fragments += 1;
        Ok(())
    };
    for ev in events.iter() {
        if lost.try_iter().any(|id| id == stream.id) {
            eprintln!("{}", msgs().stream_reopened);
            stream = streams.open();
            opened += 1;
            origin_us = None;
            if let Some(i) = &init {
                seal(&mut stream, i, 0, 0, false)?;
            }
        }
        match ev {
            CaptureEvent::Fragment(f) => {
                media_end = media_end.max(f.media_end_us);
                if f.is_init {
                    seal(&mut stream, &f.data, 0, 0, false)?;
                    init = Some(f.data);
                    continue;
                }
                let origin = *origin_us.get_or_insert(f.media_start_us);
                // The activity and thumbnail travel sealed with the media (payload v2).
                let payload = f.side.as_ref().map(|(activity, thumb)| {
                    zeroize::Zeroizing::new(protocol::encode_payload(&f.data, activity, thumb))
                });
                let plaintext: &[u8] = payload.as_deref().map_or(&f.data, |p| p.as_slice());
                seal(
                    &mut stream,
                    plaintext,
                    f.media_start_us.saturating_sub(origin),
                    f.media_end_us.saturating_sub(origin),
                    false,
                )?;
                // `f.data` and the payload, the plaintext, are wiped here; only ciphertext was written.
            }
            CaptureEvent::Finished => {
                let end = media_end.saturating_sub(origin_us.unwrap_or(0));
                seal(&mut stream, &[], end, end, true)?;
                return Ok(Sealed {
                    fragments,
                    streams: opened,
                    media_us: media_end,
                    capture_error: None,
                });
            }
            // The stream stays without a final chunk: the reviewer sees "ended abruptly".
            CaptureEvent::Error(e) => {
                return Ok(Sealed {
                    fragments,
                    streams: opened,
                    media_us: media_end,
                    capture_error: Some(e),
                })
            }
        }
    }
    Ok(Sealed {
        fragments,
        streams: opened,
        media_us: media_end,
        capture_error: Some("capture stopped without finishing".into()),
    })
}

async fn drain_with_progress(uploader: &Uploader) {
    let p = uploader.queue.progress.clone();
    let bar = indicatif::ProgressBar::new(p.queued.load(Ordering::SeqCst));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(msgs().draining);
    loop {
        let (done, queued) = (p.settled(), p.queued.load(Ordering::SeqCst));
        bar.set_length(queued);
        bar.set_position(done);
        if done >= queued {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::MediaFragment;

    fn fragment(start_s: u64, is_init: bool) -> CaptureEvent {
        let (media_start_us, media_end_us) = if is_init {
            (0, 0)
        } else {
            (start_s * 1_000_000, (start_s + 2) * 1_000_000)
        };
        CaptureEvent::Fragment(MediaFragment {
            data: vec![start_s as u8; 64].into(),
            media_start_us,
            media_end_us,
            is_init,
            side: None,
        })
    }

    fn streams() -> Streams {
        let attempt = Uuid::new_v4();
        Streams {
            attempt,
            public: protocol::AttemptKey::generate().recipient(&attempt).1,
        }
    }

    /// Defect found in review: after a reopen an hour into the exam, fragments kept their
    /// capture-relative media times, which the new stream's age window refused for good.
    #[test]
    fn a_reopened_stream_starts_with_the_init_segment_and_its_own_media_time() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path(), Uuid::new_v4(), "clt_t").unwrap();
        let (events_tx, events) = std::sync::mpsc::channel();
        let (lost_tx, lost) = std::sync::mpsc::channel();
        let streams = streams();
        let first = streams.open();
        let first_id = first.id;
        events_tx.send(fragment(0, true)).unwrap();
        events_tx.send(fragment(3600, false)).unwrap();
        let looping = {
            let spool = spool.clone();
            std::thread::spawn(move || {
                seal_loop(
                    events,
                    first,
                    &streams,
                    &lost,
                    &spool,
                    u64::MAX,
                    &Default::default(),
                    |_| {},
                )
            })
        };
        // An hour into the exam the server cannot open the live stream: a new one is keyed.
        let deadline = Instant::now() + Duration::from_secs(10);
        while spool.pending().unwrap().len() < 2 {
            assert!(
                Instant::now() < deadline,
                "the first two fragments were not sealed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        lost_tx.send(Uuid::new_v4()).unwrap(); // another stream's loss changes nothing
        lost_tx.send(first_id).unwrap();
        events_tx.send(fragment(3602, false)).unwrap();
        events_tx.send(fragment(3604, false)).unwrap();
        events_tx.send(CaptureEvent::Finished).unwrap();
        let sealed = looping.join().unwrap().unwrap();
        assert_eq!(sealed.streams, 2);
        let headers: Vec<(Uuid, protocol::ChunkHeader)> = spool
            .pending()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c.stream,
                    protocol::ChunkHeader::parse(&std::fs::read(&c.path).unwrap())
                        .unwrap()
                        .0,
                )
            })
            .collect();
        let second_headers: Vec<_> = headers
            .iter()
            .filter(|(s, _)| *s != first_id)
            .map(|(_, h)| h)
            .collect();
        // Index 0 is the init segment again, carrying the new stream's opening; media time
        // restarts at the stream's first fragment.
        assert_eq!(
            second_headers
                .iter()
                .map(|h| (
                    h.index,
                    h.media_start_us,
                    h.media_end_us,
                    h.opening.is_some()
                ))
                .collect::<Vec<_>>(),
            vec![
                (0, 0, 0, true),
                (1, 0, 2_000_000, false),
                (2, 2_000_000, 4_000_000, false),
                (3, 4_000_000, 4_000_000, false)
            ]
        );
        assert!(second_headers.last().unwrap().last);
        // The first stream kept what it had: init, and the fragment at an hour (its own time 0).
        let first_headers: Vec<_> = headers
            .iter()
            .filter(|(s, _)| *s == first_id)
            .map(|(_, h)| (h.index, h.media_start_us))
            .collect();
        assert_eq!(first_headers, vec![(0, 0), (1, 3_600_000_000)]);
    }

    /// Disk full: a spool write that fails never stops the recording; the chunk waits in
    /// memory within the bound, and past the bound the loss is counted, not hidden.
    #[test]
    fn a_failing_spool_write_holds_the_chunk_in_memory_within_a_bound() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(root.path(), Uuid::new_v4(), "clt_t").unwrap();
        let streams = streams();
        let first = streams.open();
        // The stream's directory cannot be created: every write fails, as on a full disk.
        std::fs::write(spool.dir().join(first.id.to_string()), b"in the way").unwrap();
        let (events_tx, events) = std::sync::mpsc::channel();
        let (_lost_tx, lost) = std::sync::mpsc::channel();
        for e in [
            fragment(0, true),
            fragment(0, false),
            fragment(2, false),
            CaptureEvent::Finished,
        ] {
            events_tx.send(e).unwrap();
        }
        let progress = crate::uploader::Progress::default();
        let jobs = Mutex::new(Vec::new());
        let sealed = seal_loop(
            events,
            first,
            &streams,
            &lost,
            &spool,
            u64::MAX,
            &progress,
            |j| jobs.lock().unwrap().push(j),
        )
        .unwrap();
        assert_eq!(sealed.fragments, 4);
        let held: Vec<_> = jobs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|j| {
                if let Job::Chunk(c, _) = j {
                    Some(c.held.is_some())
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(held, vec![true; 4], "every chunk held in memory");
        assert!(spool.pending().unwrap().is_empty());

        // At the bound, the next fragment is lost and counted.
        let (events_tx, events) = std::sync::mpsc::channel();
        let (_lost_tx, lost) = std::sync::mpsc::channel();
        let blocked = streams.open();
        std::fs::write(spool.dir().join(blocked.id.to_string()), b"in the way").unwrap();
        events_tx.send(fragment(0, true)).unwrap();
        events_tx.send(CaptureEvent::Finished).unwrap();
        let full = crate::uploader::Progress::default();
        full.held_bytes
            .store(crate::spool::MAX_HELD_BYTES, Ordering::SeqCst);
        seal_loop(
            events,
            blocked,
            &streams,
            &lost,
            &spool,
            u64::MAX,
            &full,
            |_| {},
        )
        .unwrap();
        assert_eq!(full.dropped.load(Ordering::SeqCst), 2);
        assert_eq!(
            full.drop_reasons
                .lock()
                .unwrap()
                .get(&DropReason::SpoolFull),
            Some(&2)
        );
    }

    #[test]
    fn latency_percentiles() {
        let l = latency((1..=100).collect()).unwrap();
        assert_eq!((l.p50_ms, l.p99_ms, l.max_ms), (50, 99, 100));
        assert!(latency(vec![]).is_none());
        assert_eq!(latency(vec![7]).unwrap().p99_ms, 7);
    }
}
