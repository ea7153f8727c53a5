//! The recording itself: the capture starts, the heartbeat and the monitor run beside it,
//! one task watches what can stop it (the candidate, the clock, the platform, the
//! uploader's final refusal), the sealing thread seals until the capture ends; then the
//! rest is sent (or, after a withdrawal, nothing more is) and the run is summarised.

use super::sealing::{seal_all, Sealer};
use super::session::Recording;
use super::streams::Streams;
use super::summary::Summary;
use super::{Actions, Candidate, RunOptions};
use crate::board::Phase;
use crate::capture::CaptureConfig;
use crate::client::Api;
use crate::messages::current as msgs;
use crate::recorder::Recorder;
use crate::report::{Event, Report};
use crate::steps::Stop;
use crate::uploader::{Stopped, Uploader};
use anyhow::Context;
use protocol::notice::Notice;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) async fn record(
    opts: RunOptions,
    r: Recording,
    api: Api,
    notice: &Notice,
    who: &Candidate,
    actions: Actions,
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
        lost,
        stopped,
    } = r;
    let (board, report) = (&who.board, &who.report);
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
        tokio::task::spawn_blocking(move || Recorder::start(source, cfg)).await??;
    let encoder = capture.encoder();
    board.set_progress(uploader.queue.progress.clone());
    board.set_phase(Phase::Recording);
    report.report(&Event::RecordingStarted);
    let heartbeat = crate::monitor::spawn_heartbeat(link.clone(), uploader.queue.progress.clone());
    let (monitor, watch) = crate::monitor::spawn(
        capture.clone(),
        spool.clone(),
        uploader.queue.progress.clone(),
        Duration::from_millis(fragment_ms.into()),
        report.clone(),
    );

    // After a withdrawal, nothing sealed from then on is sent (the fragment being encoded
    // included).
    let withdrawing = Arc::new(AtomicBool::new(false));
    let (capture_done_tx, capture_done) = tokio::sync::oneshot::channel();
    let control = spawn_control(
        opts.duration,
        who.on_page().then_some(actions),
        api.clone(),
        who.clone(),
        capture.clone(),
        withdrawing.clone(),
        capture_done,
    );
    let refused = stop_on_refusal(capture.clone(), stopped.clone());

    let sealing = {
        let (spool, queue, recorder, report, withdrawing) = (
            spool.clone(),
            uploader.queue.clone(),
            capture.clone(),
            report.clone(),
            withdrawing.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let sealer = Sealer {
                streams: &streams,
                lost: &lost,
                spool: &spool,
                max_chunk: max_chunk.unwrap_or(u64::MAX),
                progress: &queue.progress,
                report: &*report,
            };
            seal_all(events, first, sealer, &queue, &recorder, &withdrawing)
        })
    };
    let sealed = sealing.await.context("sealing thread")??;
    let _ = capture_done_tx.send(());
    let why = control.await.unwrap_or(Stop::CaptureEnded);
    drop(capture);
    monitor.abort();

    let progress = uploader.queue.progress.clone();
    let consent_state = if why == Stop::Withdrawn {
        // Nothing more is sent: the withdrawal is recorded, the spool's ciphertext goes.
        uploader.abandon();
        crate::steps::withdraw(&api, board, &spool, &notice.version, &**report).await;
        "withdrawn"
    } else {
        send_the_rest(uploader, who).await;
        "given"
    };
    heartbeat.abort();
    refused.abort();
    if let Some(e) = &sealed.capture_error {
        report.report(&Event::CaptureFailed(e));
    }
    let stopped_by = *stopped.borrow();
    // The server destroyed the recording: what waits here can never be sent, and is the
    // last copy of it anywhere.
    let spool_erased = stopped_by == Some(crate::refusal::StopReason::RecordingDestroyed)
        && match spool.discard() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "erasing the spool of a destroyed recording failed");
                false
            }
        };
    let head = Summary {
        attempt_id,
        stream_id: first_id,
        encoder: encoder.element().to_owned(),
        network: watch.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        transport: opts.transport,
        chunks_by_transport: link
            .carried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        consent: consent_state,
        spool_erased,
        ..Summary::default()
    };
    let summary = Summary::recorded(head, sealed, &progress, stopped_by, why);
    if why != Stop::Withdrawn {
        say_how_it_ended(&summary, who);
    }
    who.linger().await;
    Ok(summary)
}

/// Watches everything that can stop the recording (`--duration`, Ctrl-C, "finish" or a
/// withdrawal on the page, the platform ending the exam, the capture ending) and stops the
/// capture; a second Ctrl-C then leaves at once (the spool keeps everything).
fn spawn_control(
    duration: Option<Duration>,
    page_actions: Option<Actions>,
    api: Api,
    who: Candidate,
    capture: Arc<Recorder>,
    withdrawing: Arc<AtomicBool>,
    capture_done: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<Stop> {
    tokio::spawn(async move {
        let why = crate::steps::control(
            duration,
            page_actions,
            api,
            who.face.clone(),
            who.board.clone(),
            capture_done,
            who.report.clone(),
        )
        .await;
        if why == Stop::Withdrawn {
            withdrawing.store(true, Ordering::SeqCst);
        } else {
            who.board.set_phase(Phase::Finishing);
        }
        if why != Stop::CaptureEnded {
            who.report.report(&Event::RecordingStopping);
            capture.stop();
        }
        tokio::spawn(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        });
        why
    })
}

/// The uploader's final refusal (it has told the candidate): nothing more can be sent, so
/// recording stops.
fn stop_on_refusal(capture: Arc<Recorder>, mut stopped: Stopped) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if stopped.wait_for(Option::is_some).await.is_ok() {
            capture.stop();
        }
    })
}

/// Sends what is left, with the terminal's progress bar; on the page, the candidate sees
/// the progress, however short the rest was to send.
async fn send_the_rest(uploader: Uploader, who: &Candidate) {
    who.board.set_phase(Phase::Finishing);
    let finishing = Instant::now();
    drain(&uploader, &*who.report).await;
    uploader.finish().await;
    if who.on_page() {
        let left = Duration::from_secs(3).saturating_sub(finishing.elapsed());
        let _ = tokio::time::timeout(left, who.board.seen_after(finishing)).await;
    }
}

/// "You may close" only when the server has everything; otherwise what is left, and why.
fn say_how_it_ended(summary: &Summary, who: &Candidate) {
    if summary.complete() {
        who.report.report(&Event::AllSent);
        who.board.set_phase(Phase::Done);
        return;
    }
    if summary.chunks_unsent > 0 || summary.chunks_dropped > 0 {
        who.board.say(format!(
            "{} {}",
            msgs().not_all_sent,
            summary.chunks_unsent + summary.chunks_dropped
        ));
    }
    who.board.set_phase(Phase::Failed);
}

/// Waits until every queued chunk has settled, telling the progress each time one does.
async fn drain(uploader: &Uploader, report: &dyn Report) {
    let p = &uploader.queue.progress;
    let mut settling = p.settling();
    loop {
        let (sent, total) = (p.settled(), p.queued.load(Ordering::SeqCst));
        report.report(&Event::Sending { sent, total });
        if sent >= total || settling.changed().await.is_err() {
            break;
        }
    }
    report.report(&Event::Drained);
}
