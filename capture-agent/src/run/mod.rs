//! One run of the agent: notice and consent, leftovers from an earlier run, a new stream,
//! capture → seal → spool → upload, then drain and end the stream.
//!
//! Store-and-forward from the first second: the launch token names the attempt and its
//! public key, so the agent keys its streams itself (a random stream key sealed to that
//! key, carried by the stream's first chunk) and keeps the consent sealed in its spool.
//! Nothing waits for the server: recording starts at once, uploads follow when it answers,
//! consent first. If the server cannot open the live stream, recording goes on in a new
//! one; if it refuses for good, recording stops and the candidate is told why.
//!
//! The run's parts, in the order they happen: `session` (notice, consent, the device check,
//! the uploader and leftovers), `recording` (capture, the tasks around it, the drain),
//! `sealing` (fragments sealed into streams, a new stream when the server lost the live
//! one or a device came back), `summary` (what the run reports). Everything the candidate
//! is told goes through the run's [`Reporter`](crate::report::Reporter).

mod recording;
mod sealing;
mod session;
mod streams;
mod summary;

pub use summary::{Latency, Summary};

use crate::board::{Action, Board, Phase};
use crate::capture::{CaptureConfig, Source};
use crate::client::Api;
use crate::messages::current as msgs;
use crate::report::{Event, Faces, Reporter};
use crate::steps::Face;
use protocol::LaunchToken;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Actions = tokio::sync::mpsc::UnboundedReceiver<Action>;

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

/// What the candidate sees and is told: the board the page reads, how it is shown (page or
/// scripted), and the reporter that speaks to both the terminal and the page.
#[derive(Clone)]
struct Candidate {
    board: Arc<Board>,
    face: Arc<Face>,
    report: Reporter,
}

impl Candidate {
    fn on_page(&self) -> bool {
        matches!(*self.face, Face::Page { .. })
    }

    /// Keeps the page served until it has shown the last step (or 15 s pass), so that the
    /// candidate reads "you may close" rather than a dead page.
    async fn linger(&self) {
        if !self.on_page() {
            return;
        }
        let from = Instant::now();
        let shown = self.board.seen_after(from + Duration::from_millis(100));
        if tokio::time::timeout(Duration::from_secs(15), shown)
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    }
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
    let report: Reporter = Arc::new(Faces(vec![
        Arc::new(crate::report::terminal::Terminal::default()),
        board.clone(),
    ]));
    let notice = crate::steps::notice(&api, &*report).await;
    board.set_notice(notice.clone(), opts.server.host_str().unwrap_or_default());
    let fragment_hint = Duration::from_millis(CaptureConfig::default().fragment_ms.into());
    let face = Arc::new(if opts.consent {
        report.report(&Event::NoticeShown(&notice));
        Face::Scripted
    } else {
        Face::Page {
            page: crate::page::Page::start(board.clone(), fragment_hint).await?,
            open_browser: opts.open_browser,
        }
    });
    face.announce(false, &*report);
    let who = Candidate {
        board,
        face,
        report,
    };
    let result = match session::open(&opts, &token, &api, &notice, &who, actions).await {
        Ok(session::Opened::Nothing(summary)) => Ok(summary),
        Ok(session::Opened::Record(r, actions)) => {
            recording::record(opts, r, api, &notice, &who, actions).await
        }
        Err(e) => Err(e),
    };
    // Whatever stops the run, the page says so instead of going dead.
    if let (Err(e), true) = (&result, who.on_page()) {
        who.board.say(format!("{e:#}"));
        who.board.set_phase(Phase::Failed);
        who.linger().await;
    }
    result
}
