use capture_agent::cli::{Cli, Command};
use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    capture_agent::telemetry_init();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Check { server, source, spool, ca_file, json }) => check(&server, source, spool, ca_file, json).await,
        Some(Command::Receipt { command: capture_agent::cli::ReceiptCommand::Verify { file, public_key, json } }) => {
            capture_agent::receipt::verify(&file, public_key.as_deref(), json)
        }
        Some(Command::Launch { link, server, run }) => {
            let launch = if capture_agent::launch::is_code(&link) {
                capture_agent::launch::redeem(&link, server.as_deref(), run.ca_file.as_deref()).await
            } else {
                capture_agent::launch::parse(&link)
            };
            match launch {
                Ok(l) => record(l.server.as_str(), l.token, run).await,
                Err(e) => Err((2, e)),
            }
        }
        None if cli.run.print_pipeline => print_pipeline(&cli.run.source),
        None => match (cli.server, cli.token) {
            (Some(server), Some(token)) => record(&server, token, cli.run).await,
            _ => Err((2, anyhow::anyhow!("--server and --token are required (or: capture-agent launch LINK, capture-agent check --server URL)"))),
        },
    };
    match result {
        Ok(code) => code,
        Err((code, e)) => {
            capture_agent::report::terminal::fatal(&e);
            ExitCode::from(code)
        }
    }
}

type Outcome = Result<ExitCode, (u8, anyhow::Error)>;

async fn record(server: &str, token: String, run: capture_agent::cli::RunArgs) -> Outcome {
    let opts = capture_agent::cli::into_options(server, token, run).map_err(|e| (2, e))?;
    let summary = capture_agent::run::run(opts).await.map_err(|e| (1, e))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).expect("summary serialises")
    );
    Ok(if summary.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn check(
    server: &str,
    source: capture_agent::capture::Source,
    spool: Option<std::path::PathBuf>,
    ca_file: Option<std::path::PathBuf>,
    json: bool,
) -> Outcome {
    let url = capture_agent::client::check_server_url(server).map_err(|e| (2, e))?;
    let api = capture_agent::client::Api::new(url, String::new(), ca_file.as_deref())
        .map_err(|e| (2, e))?;
    let spool = match spool {
        Some(s) => s,
        None => capture_agent::cli::default_spool_dir().map_err(|e| (2, e))?,
    };
    let report = capture_agent::check::run(&api, source, &spool).await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.fit {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// For scripts/bench-agent: the same pipeline, ending in a fakesink, for gst-launch-1.0.
fn print_pipeline(source: &capture_agent::capture::Source) -> Outcome {
    let cfg = capture_agent::capture::CaptureConfig::default();
    let (capture, _) =
        capture_agent::capture::Capture::start(source.clone(), &cfg).map_err(|e| (1, e))?;
    println!(
        "{}",
        capture_agent::capture::launch_description(source, &cfg, capture.encoder())
    );
    Ok(ExitCode::SUCCESS)
}
