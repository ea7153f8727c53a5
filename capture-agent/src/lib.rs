//! CLOE Connect capture agent. Only `capture` knows GStreamer.

pub mod bitrate;
pub mod board;
pub mod capture;
pub mod check;
pub mod cli;
pub mod client;
pub mod datachannel;
pub mod launch;
pub mod messages;
pub mod monitor;
pub mod page;
pub mod receipt;
pub mod recorder;
pub mod refusal;
pub mod report;
pub mod run;
pub mod spool;
pub mod steps;
pub mod transport;
pub mod uploader;

/// Logs go to stderr, warnings only unless CLOE_AGENT_LOG says otherwise. No token, key or
/// address is ever logged.
pub fn telemetry_init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLOE_AGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
