//! The candidate's steps around the recording: the notice and the consent (on the page, or
//! scripted), the refusal, the device check, and what can stop a recording (the end of
//! `--duration`, Ctrl-C, "finish", a withdrawal, the platform ending the exam).

use crate::board::{disk_verdict, upload_verdict, Action, Board, Phase};
use crate::capture::devices::{self, Chosen, Devices, Missing};
use crate::capture::preview::Preview;
use crate::capture::Source;
use crate::client::Api;
use crate::messages::current as msgs;
use crate::page::Page;
use crate::report::{Event, Report, Reporter};
use protocol::notice::Notice;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;

/// How the candidate is shown the steps.
pub enum Face {
    /// `--consent`: the notice printed, consent given by the flag, no page.
    Scripted,
    Page {
        page: Page,
        open_browser: bool,
    },
}

impl Face {
    /// Tells (and opens) a fresh link to the page.
    pub fn announce(&self, reopened: bool, report: &dyn Report) {
        if let Face::Page { page, open_browser } = self {
            let link = page.new_link();
            report.report(&Event::PageLink {
                link: &link,
                reopened,
            });
            if *open_browser {
                crate::page::open_in_browser(&link);
            }
        }
    }
}

/// The server's notice; when it cannot be reached, the copy this agent ships (same
/// version and text; the DPO named generically, as the deployment's name is unknown here)
/// (its version is one the server knows, and recording must not wait for the network).
pub async fn notice(api: &Api, report: &dyn Report) -> Notice {
    match api.notice().await {
        Ok(n) if n.is_plausible() => n,
        Ok(_) => {
            tracing::warn!("the server sent an implausible notice; showing the agent's copy");
            protocol::notice::current(
                protocol::notice::DEFAULT_DPO_CONTACT,
                protocol::notice::Ceiling::DEFAULT,
            )
        }
        Err(f) => {
            tracing::warn!(failure = %f, "notice not fetched");
            report.report(&Event::NoticeUnavailable);
            protocol::notice::current(
                protocol::notice::DEFAULT_DPO_CONTACT,
                protocol::notice::Ceiling::DEFAULT,
            )
        }
    }
}

/// Waits for the candidate's answer on the page; `None` on Ctrl-C (nothing sent). A page
/// closed before the answer is offered again.
pub async fn consent(
    actions: &mut UnboundedReceiver<Action>,
    face: &Face,
    board: &Board,
    report: &dyn Report,
) -> Option<bool> {
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut reopen = Reopen::default();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            a = actions.recv() => match a? {
                Action::Consent { accept } => return Some(accept),
                other => tracing::debug!(?other, "ignored before consent"),
            },
            _ = tick.tick() => reopen.check(face, board, report),
            _ = &mut ctrl_c => return None,
        }
    }
}

/// Offers the page again when it has stopped asking for the state (closed, or never
/// opened), less and less often: 1, 2, 4, then every 8 minutes.
#[derive(Default)]
pub struct Reopen {
    last: Option<Instant>,
    times: u32,
}

impl Reopen {
    pub fn check(&mut self, face: &Face, board: &Board, report: &dyn Report) {
        if !matches!(face, Face::Page { .. }) {
            return;
        }
        let quiet_since = board.last_seen().unwrap_or(board.created());
        if quiet_since.elapsed() < Duration::from_secs(30) {
            return;
        }
        let wait = Duration::from_secs(60 << self.times.min(3));
        if self.last.is_some_and(|t| t.elapsed() < wait)
            || board.created().elapsed() < wait.min(Duration::from_secs(60))
        {
            return;
        }
        self.last = Some(Instant::now());
        self.times += 1;
        face.announce(true, report);
    }
}

/// A call the candidate is waiting on: retried as every call is (`refusal::retrying`), for
/// `within` at most; the final failure, if any.
async fn within<T, F, Fut>(
    within: Duration,
    what: &str,
    call: F,
) -> Result<T, Option<crate::client::Failure>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::client::Outcome<T>>,
{
    match tokio::time::timeout(
        within,
        crate::refusal::retrying(
            call,
            |f, _| tracing::warn!(what, failure = %f, "not sent yet"),
        ),
    )
    .await
    {
        Ok(Ok(v)) => Ok(v),
        Ok(Err((f, _))) => Err(Some(f)),
        Err(_) => Err(None),
    }
}

/// Sends the refusal, and nothing else; says whether it reached the server.
pub async fn refuse(api: &Api, board: &Board, version: &str, report: &dyn Report) -> bool {
    board.set_phase(Phase::Refused);
    report.report(&Event::ConsentRefused);
    let sent = within(Duration::from_secs(30), "refusal", || api.refuse(version))
        .await
        .is_ok();
    board.refusal_sent(sent);
    sent
}

/// Records the withdrawal (or, if the server never recorded the consent, the refusal) and
/// empties the spool: nothing recorded under this consent will be sent any more.
pub async fn withdraw(
    api: &Api,
    board: &Board,
    spool: &crate::spool::Spool,
    version: &str,
    report: &dyn Report,
) {
    board.set_phase(Phase::Withdrawn);
    let sent = match within(Duration::from_secs(60), "withdrawal", || api.withdraw()).await {
        Ok(_) => true,
        Err(Some(f)) if f.status == 409 && f.code == "invalid_transition" => {
            within(Duration::from_secs(30), "refusal", || api.refuse(version))
                .await
                .is_ok()
        }
        Err(_) => false,
    };
    if let Err(e) = spool.discard() {
        tracing::warn!(error = %e, "could not empty the spool");
    }
    // The page learns whether it was sent from the same event.
    report.report(&Event::Withdrawn { sent });
}

/// The candidate-facing reason a device is missing, as the page's text key.
fn missing_key(m: Missing) -> &'static str {
    match m {
        Missing::Camera | Missing::Unknown => "no_camera",
        Missing::Microphone => "no_microphone",
    }
}

pub fn missing_message(m: Missing) -> &'static str {
    match m {
        Missing::Camera | Missing::Unknown => msgs().no_camera,
        Missing::Microphone => msgs().no_microphone,
    }
}

fn publish(board: &Board, devices: &Devices, chosen: &Result<Chosen, Missing>) {
    let ids = chosen
        .as_ref()
        .ok()
        .map(|c| (c.camera.id.clone(), c.microphone.id.clone()));
    board.set_devices(
        devices.clone(),
        ids,
        chosen.as_ref().err().map(|m| missing_key(*m)),
    );
}

/// How the device check ended.
pub enum Checked {
    Start(Chosen),
    Withdraw,
    Interrupted,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a blocking GStreamer call panicked")
}

async fn start_preview(board: &Arc<Board>, chosen: &Result<Chosen, Missing>) -> Option<Preview> {
    let chosen = chosen.clone();
    let p = blocking(move || {
        chosen.ok().and_then(|c| {
            Preview::start(&c)
                .map_err(|e| tracing::warn!(error = %e, "no preview"))
                .ok()
        })
    })
    .await;
    board.set_sight(p.as_ref().map(|p| p.sight.clone()));
    p
}

async fn stop_preview(board: &Board, view: &mut Option<Preview>) {
    board.set_sight(None);
    if let Some(p) = view.take() {
        blocking(move || drop(p)).await;
    }
}

/// The device check on the page: preview, level, choice of devices, upload test, disk and
/// encoder. Nothing is recorded. GStreamer's calls run off the async threads.
pub async fn device_check(
    source: &Source,
    api: &Api,
    free_bytes: Option<u64>,
    board: &Arc<Board>,
    actions: &mut UnboundedReceiver<Action>,
    face: &Face,
    report: &dyn Report,
) -> anyhow::Result<Checked> {
    board.set_phase(Phase::Check);
    if let Some(free) = free_bytes {
        board.set_disk(disk_verdict(free));
    }
    match blocking(crate::capture::pick_encoder).await {
        Ok(e) => board.set_encoder(e),
        Err(e) => tracing::warn!(error = %e, "no encoder"),
    }
    let list = |source: Source| blocking(move || devices::list(&source));
    let mut listed = list(source.clone()).await?;
    let mut chosen = devices::choose(&listed, None, None);
    publish(board, &listed, &chosen);
    let mut view = start_preview(board, &chosen).await;
    let mut relist = tokio::time::interval(Duration::from_secs(2));
    let mut reopen = Reopen::default();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            a = actions.recv() => match a {
                None => return Ok(Checked::Interrupted),
                Some(Action::ChooseDevices { camera, microphone }) => {
                    // Release the devices before opening others.
                    stop_preview(board, &mut view).await;
                    chosen = devices::choose(&listed, Some(&camera), Some(&microphone));
                    publish(board, &listed, &chosen);
                    view = start_preview(board, &chosen).await;
                }
                Some(Action::UploadTest) => {
                    board.set_upload(true, None);
                    let (api, board) = (api.clone(), board.clone());
                    tokio::spawn(async move {
                        let kbps = api.upload_test(512 * 1024).await.map_err(|f| tracing::warn!(failure = %f, "upload test failed")).ok();
                        board.set_upload(false, Some(upload_verdict(kbps)));
                    });
                }
                Some(Action::Start) => {
                    if let Ok(c) = &chosen {
                        stop_preview(board, &mut view).await;
                        return Ok(Checked::Start(c.clone()));
                    }
                }
                Some(Action::Withdraw) => {
                    stop_preview(board, &mut view).await;
                    return Ok(Checked::Withdraw);
                }
                Some(other) => tracing::debug!(?other, "ignored during the check"),
            },
            // A camera plugged in during the check is found without a restart; a closed
            // page is offered again.
            _ = relist.tick() => {
                reopen.check(face, board, report);
                if chosen.is_err() {
                    listed = list(source.clone()).await?;
                    chosen = devices::choose(&listed, None, None);
                    if chosen.is_ok() {
                        publish(board, &listed, &chosen);
                        view = start_preview(board, &chosen).await;
                    }
                }
            }
            _ = &mut ctrl_c => {
                stop_preview(board, &mut view).await;
                return Ok(Checked::Interrupted);
            }
        }
    }
}

/// Why the recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Duration,
    Interrupted,
    Finished,
    Withdrawn,
    /// The platform ended the exam (or it is otherwise closed to recording).
    EndedByPlatform,
    /// The capture ended by itself (a failure, the end of a file).
    CaptureEnded,
}

/// Watches everything that can end the recording; returns why (the caller stops the
/// capture). Also offers again a page the candidate closed while recording.
pub async fn control(
    duration: Option<Duration>,
    mut actions: Option<UnboundedReceiver<Action>>,
    api: Api,
    face: Arc<Face>,
    board: Arc<Board>,
    capture_done: tokio::sync::oneshot::Receiver<()>,
    report: Reporter,
) -> Stop {
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut capture_done = capture_done;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    // The attempt's state, looked at every 2 s in a task of its own, so that a slow server
    // delays neither the candidate's clicks nor Ctrl-C.
    let (ended_tx, mut ended) = tokio::sync::oneshot::channel::<()>();
    let poll = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            if let Ok(Ok(info)) =
                tokio::time::timeout(Duration::from_secs(5), api.attempt_info()).await
            {
                if info
                    .state
                    .as_deref()
                    .is_some_and(|s| !matches!(s, "enrolled" | "consented" | "recording"))
                {
                    let _ = ended_tx.send(());
                    return;
                }
            }
        }
    });
    let mut reopen = Reopen::default();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let why = loop {
        tokio::select! {
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => break Stop::Duration,
            _ = &mut ctrl_c => break Stop::Interrupted,
            _ = &mut capture_done => break Stop::CaptureEnded,
            Ok(()) = &mut ended => {
                report.report(&Event::EndedByPlatform);
                break Stop::EndedByPlatform;
            }
            a = async { actions.as_mut().expect("guarded").recv().await }, if actions.is_some() => match a {
                Some(Action::Finish) => break Stop::Finished,
                Some(Action::Withdraw) => break Stop::Withdrawn,
                Some(other) => tracing::debug!(?other, "ignored while recording"),
                None => actions = None,
            },
            _ = tick.tick() => reopen.check(&face, &board, &*report),
        }
    };
    poll.abort();
    why
}
