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
use protocol::notice::Notice;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// How the candidate is shown the steps.
pub enum Face {
    /// `--consent`: the notice printed, consent given by the flag, no page.
    Scripted,
    Page { page: Page, open_browser: bool },
}

impl Face {
    /// Prints (and opens) a fresh link to the page.
    pub fn announce(&self, reopened: bool) {
        if let Face::Page { page, open_browser } = self {
            let link = page.new_link();
            if reopened {
                eprintln!("{}", msgs().page_reopened);
            } else {
                eprintln!("{}", msgs().candidate_page);
            }
            // The command-line contract: one line, on stdout, starting with this.
            println!("candidate page: {link}");
            if *open_browser {
                crate::page::open_in_browser(&link);
            }
        }
    }
}

/// The server's notice; when it cannot be reached, the identical copy this agent ships
/// (its version is one the server knows, and recording must not wait for the network).
pub async fn notice(api: &Api) -> Notice {
    match api.notice().await {
        Ok(n) if n.is_plausible() => n,
        Ok(_) => {
            tracing::warn!("the server sent an implausible notice; showing the agent's copy");
            protocol::notice::current(protocol::notice::DEFAULT_DPO_CONTACT)
        }
        Err(f) => {
            tracing::warn!(failure = %f, "notice not fetched");
            eprintln!("{}", msgs().notice_unavailable);
            protocol::notice::current(protocol::notice::DEFAULT_DPO_CONTACT)
        }
    }
}

/// Waits for the candidate's answer on the page; `None` on Ctrl-C (nothing sent).
pub async fn consent(actions: &mut UnboundedReceiver<Action>) -> Option<bool> {
    loop {
        tokio::select! {
            a = actions.recv() => match a? {
                Action::Consent { accept } => return Some(accept),
                other => tracing::debug!(?other, "ignored before consent"),
            },
            _ = tokio::signal::ctrl_c() => return None,
        }
    }
}

/// Sends the refusal, and nothing else; says whether it reached the server.
pub async fn refuse(api: &Api, board: &Board, version: &str) -> bool {
    board.set_phase(Phase::Refused);
    eprintln!("{}", msgs().consent_refused);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match api.refuse(version).await {
            Ok(_) => {
                board.refusal_sent(true);
                return true;
            }
            Err(f) if f.status == 0 && Instant::now() < deadline => {
                tracing::warn!(failure = %f, "refusal not sent yet");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(f) => {
                tracing::warn!(failure = %f, "refusal not recorded");
                board.refusal_sent(false);
                return false;
            }
        }
    }
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
    let ids = chosen.as_ref().ok().map(|c| (c.camera.id.clone(), c.microphone.id.clone()));
    board.set_devices(devices.clone(), ids, chosen.as_ref().err().map(|m| missing_key(*m)));
}

fn preview(board: &Board, chosen: &Result<Chosen, Missing>) -> Option<Preview> {
    let p = chosen.as_ref().ok().and_then(|c| Preview::start(c).map_err(|e| tracing::warn!(error = %e, "no preview")).ok());
    board.set_sight(p.as_ref().map(|p| p.sight.clone()));
    p
}

/// The device check on the page: preview, level, choice of devices, upload test, disk and
/// encoder. Nothing is recorded. Returns the devices to record with, or `None` on Ctrl-C.
pub async fn device_check(source: &Source, api: &Api, free_bytes: Option<u64>, board: &Arc<Board>, actions: &mut UnboundedReceiver<Action>) -> anyhow::Result<Option<Chosen>> {
    board.set_phase(Phase::Check);
    if let Some(free) = free_bytes {
        board.set_disk(disk_verdict(free));
    }
    match crate::capture::pick_encoder() {
        Ok(e) => board.set_encoder(&e, crate::capture::hardware_encoder(&e)),
        Err(e) => tracing::warn!(error = %e, "no encoder"),
    }
    let mut listed = devices::list(source)?;
    let mut chosen = devices::choose(&listed, None, None);
    publish(board, &listed, &chosen);
    let mut view = preview(board, &chosen);
    let mut relist = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            a = actions.recv() => match a {
                None => return Ok(None),
                Some(Action::ChooseDevices { camera, microphone }) => {
                    // Release the devices before opening others.
                    drop(view.take());
                    chosen = devices::choose(&listed, Some(&camera), Some(&microphone));
                    publish(board, &listed, &chosen);
                    view = preview(board, &chosen);
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
                        drop(view.take());
                        board.set_sight(None);
                        return Ok(Some(c.clone()));
                    }
                }
                Some(other) => tracing::debug!(?other, "ignored during the check"),
            },
            // A camera plugged in during the check is found without a restart.
            _ = relist.tick(), if chosen.is_err() => {
                listed = devices::list(source)?;
                chosen = devices::choose(&listed, None, None);
                if chosen.is_ok() {
                    publish(board, &listed, &chosen);
                    view = preview(board, &chosen);
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(None),
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

/// Watches everything that can end the recording; calls `stop` once and returns why.
/// Also reopens a page the candidate closed while recording.
pub async fn control(
    duration: Option<Duration>,
    mut actions: Option<UnboundedReceiver<Action>>,
    api: Api,
    face: Arc<Face>,
    board: Arc<Board>,
    capture_done: tokio::sync::oneshot::Receiver<()>,
) -> Stop {
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut capture_done = capture_done;
    let mut reopened_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => return Stop::Duration,
            _ = tokio::signal::ctrl_c() => return Stop::Interrupted,
            _ = &mut capture_done => return Stop::CaptureEnded,
            a = async { actions.as_mut().expect("guarded").recv().await }, if actions.is_some() => match a {
                Some(Action::Finish) => return Stop::Finished,
                Some(Action::Withdraw) => return Stop::Withdrawn,
                Some(other) => tracing::debug!(?other, "ignored while recording"),
                None => actions = None,
            },
            _ = tick.tick() => {
                // Nothing is recorded after the platform ends the exam.
                if let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(3), api.attempt_info()).await {
                    if info.state.as_deref().is_some_and(|s| !matches!(s, "enrolled" | "consented" | "recording")) {
                        eprintln!("{}", msgs().ended_by_platform);
                        board.ended_by_platform();
                        return Stop::EndedByPlatform;
                    }
                }
                let closed = board.last_seen().is_none_or(|t| t.elapsed() > Duration::from_secs(20));
                if matches!(*face, Face::Page { .. }) && closed && reopened_at.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    reopened_at = Some(Instant::now());
                    face.announce(true);
                }
            }
        }
    }
}
