//! Before the recording: the candidate's consent (or refusal), the attempt and its key,
//! the spool, the consent kept sealed, the uploader and what an earlier run left, and the
//! device check. Nothing is captured here; a refusal sends the refusal only.

use super::streams::unix_ms;
use super::summary::Summary;
use super::{Actions, Candidate, RunOptions};
use crate::capture::devices::Chosen;
use crate::capture::CaptureConfig;
use crate::client::Api;
use crate::messages::current as msgs;
use crate::refusal::{retrying, Decision};
use crate::report::{Event, Report};
use crate::spool::Spool;
use crate::steps::{Checked, Face};
use crate::uploader::{Job, Stopped, Uploader};
use anyhow::Context;
use base64::Engine;
use protocol::api::{OfflineConsent, CONSENT_PURPOSE};
use protocol::notice::Notice;
use protocol::{AttemptPublicKey, LaunchToken};
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// What the recording needs from the steps before it.
pub(super) struct Recording {
    pub attempt_id: Uuid,
    pub public: AttemptPublicKey,
    pub fragment_ms: u32,
    pub max_chunk: Option<u64>,
    pub chosen: Chosen,
    pub spool: Spool,
    pub link: Arc<crate::transport::Link>,
    pub uploader: Uploader,
    /// Streams the server cannot open, straight from the uploader to the sealing.
    pub lost: std::sync::mpsc::Receiver<Uuid>,
    /// Why the uploader stopped for good, once it has.
    pub stopped: Stopped,
}

/// How the steps before the recording ended.
pub(super) enum Opened {
    /// Nothing to record: refused, or withdrawn during the check.
    Nothing(Summary),
    Record(Recording, Actions),
}

pub(super) async fn open(
    opts: &RunOptions,
    token: &LaunchToken,
    api: &Api,
    notice: &Notice,
    who: &Candidate,
    mut actions: Actions,
) -> anyhow::Result<Opened> {
    let (board, face, report) = (&who.board, &who.face, &*who.report);
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
    if who.on_page() {
        match crate::steps::consent(&mut actions, face, board, report).await {
            None => anyhow::bail!("{}", msgs().interrupted_before_recording),
            Some(false) => {
                let delivered = crate::steps::refuse(api, board, &notice.version, report).await;
                who.linger().await;
                return Ok(Opened::Nothing(Summary::nothing(
                    attempt_hint,
                    if delivered {
                        "refused"
                    } else {
                        "refused_unsent"
                    },
                    opts.transport,
                )));
            }
            Some(true) => {}
        }
    }
    let (attempt_id, public, fragment_ms, max_chunk) = attempt_of(token, api).await?;
    let spool = match Spool::open(&opts.spool_dir, attempt_id, token.credential()) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            anyhow::bail!("{}", msgs().already_running)
        }
        other => other.context("opening the spool directory")?,
    };
    let (version, consent) = kept_consent(&spool, &attempt_id, &public, &notice.version)?;
    let link = Arc::new(crate::transport::Link::new(api.clone(), opts.transport));
    let (lost_tx, lost) = std::sync::mpsc::channel();
    let (uploader, stopped) =
        Uploader::start(link.clone(), spool.clone(), who.report.clone(), lost_tx);
    uploader.queue.send(Job::Consent(version, consent));
    queue_leftovers(&spool, &uploader, report)?;

    // The devices: chosen on the page after a check, or the first of each (scripted).
    let chosen = match scripted_devices {
        Some(c) => c,
        None => match crate::steps::device_check(
            &opts.source,
            api,
            spool.free_bytes().ok(),
            board,
            &mut actions,
            face,
            report,
        )
        .await?
        {
            Checked::Start(c) => c,
            Checked::Interrupted => anyhow::bail!("{}", msgs().interrupted_before_recording),
            // Consent is withdrawn before anything was recorded.
            Checked::Withdraw => {
                uploader.abandon();
                crate::steps::withdraw(api, board, &spool, &notice.version, report).await;
                who.linger().await;
                return Ok(Opened::Nothing(Summary::nothing(
                    attempt_id,
                    "withdrawn",
                    opts.transport,
                )));
            }
        },
    };
    Ok(Opened::Record(
        Recording {
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
        },
        actions,
    ))
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

/// Chunks left by an earlier run (killed, power cut) go first, in order; their stream is
/// ended only if its final chunk had been sealed, otherwise it stays "ended abruptly".
fn queue_leftovers(spool: &Spool, uploader: &Uploader, report: &dyn Report) -> anyhow::Result<()> {
    let pending = spool.pending()?;
    if !pending.is_empty() {
        report.report(&Event::LeftoversUploading);
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
