//! Command line of the capture agent.

use crate::capture::Source;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "capture-agent",
    version,
    about = "CLOE Connect: enregistrement chiffré de l'épreuve (webcam + micro)",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server URL (https; plain http only for a loopback server).
    #[arg(long)]
    pub server: Option<String>,
    /// Launch token given by the exam platform.
    #[arg(long, env = "CLOE_LAUNCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand)]
pub enum Command {
    /// Starts the exam from the platform's launch link (cloeconnect://launch?… or
    /// https://…/launch#…), as the operating system passes it on a click.
    Launch {
        /// The link, or the short code (K7F4-3QX9) shown by the platform.
        link: String,
        /// The exam's server, for a short code (default: the first one this computer
        /// lists in /etc/cloe-connect/servers).
        #[arg(long)]
        server: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Checks the camera, the microphone, the encoder, the disk and the network without
    /// recording (the practice session); prints a report, exits 0 when fit for the exam.
    Check {
        #[arg(long)]
        server: String,
        /// device, test, test-busy or file:PATH.
        #[arg(long, default_value = "device", value_parser = parse_source)]
        source: Source,
        #[arg(long)]
        spool: Option<PathBuf>,
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Destruction receipts: the candidate checks their own, offline.
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
}

#[derive(Subcommand)]
pub enum ReceiptCommand {
    /// Checks a destruction receipt against the server's published key: the key given
    /// (`--public-key`), or the one this computer was installed with
    /// (/etc/cloe-connect/receipt-key.pub). Never the key inside the receipt, which a forger
    /// would have put there. Exits 0 only for a valid receipt.
    Verify {
        file: PathBuf,
        /// The server's public key (base64), as GET /api/public/v1/receipts/public-key serves it.
        #[arg(long)]
        public_key: Option<String>,
        /// The result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone)]
pub struct RunArgs {
    /// device (camera + microphone), test (synthetic live source), test-busy (synthetic, the
    /// encoder spends its whole target) or file:PATH.
    #[arg(long, default_value = "device", value_parser = parse_source)]
    pub source: Source,
    /// Stop after this long (e.g. 20s, 45min); default: until "finish", the platform's end
    /// or Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Scripted explicit consent to the information notice (which is still printed): no
    /// page, recording starts at once with the first camera and microphone.
    #[arg(long)]
    pub consent: bool,
    /// Do not open the candidate's page in the browser; only print its address
    /// (`candidate page: http://127.0.0.1:PORT/?k=…`).
    #[arg(long)]
    pub no_browser: bool,
    /// Spool directory for sealed chunks awaiting upload.
    #[arg(long)]
    pub spool: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust for the server, besides the system roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// How chunks travel: a WebRTC data channel, HTTPS, or the channel when it opens and
    /// HTTPS otherwise.
    #[arg(long, value_enum, default_value = "auto")]
    pub transport: crate::transport::Mode,
    /// Print the capture pipeline in gst-launch-1.0 syntax and exit (benchmarks).
    #[arg(long, hide = true)]
    pub print_pipeline: bool,
    /// Record without the activity strip and thumbnails (only to measure what they cost).
    #[arg(long, hide = true)]
    pub no_activity: bool,
}

fn parse_source(s: &str) -> Result<Source, String> {
    match s {
        "device" => Ok(Source::Device),
        "test" => Ok(Source::Test),
        "test-busy" => Ok(Source::TestBusy),
        _ => match s.strip_prefix("file:") {
            Some(p) if !p.is_empty() => Ok(Source::File(PathBuf::from(p))),
            _ => Err("expected device, test, test-busy or file:PATH".into()),
        },
    }
}

/// The user's own data directory (`~/.local/share/cloeconnect/spool` on Linux, the
/// platform's equivalent elsewhere); never a shared temporary directory.
pub fn default_spool_dir() -> anyhow::Result<PathBuf> {
    directories::ProjectDirs::from("fr", "CCI France", "CLOE Connect")
        .map(|d| d.data_local_dir().join("spool"))
        .ok_or_else(|| {
            anyhow::anyhow!("no home directory to keep the recording in; pass --spool DIR")
        })
}

/// A recording run's options, from `--server` and `--token` or a launch link.
pub fn into_options(
    server: &str,
    token: String,
    run: RunArgs,
) -> anyhow::Result<crate::run::RunOptions> {
    Ok(crate::run::RunOptions {
        server: crate::client::check_server_url(server)?,
        token,
        source: run.source,
        duration: run.duration,
        consent: run.consent,
        spool_dir: match run.spool {
            Some(d) => d,
            None => default_spool_dir()?,
        },
        ca_file: run.ca_file,
        activity: !run.no_activity,
        transport: run.transport,
        open_browser: !run.no_browser,
    })
}
