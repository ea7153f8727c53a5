use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    capture_agent::telemetry_init();
    let cli = capture_agent::cli::Cli::parse();
    if cli.print_pipeline {
        // For scripts/bench-agent: the same pipeline, ending in a fakesink, for gst-launch-1.0.
        let cfg = capture_agent::capture::CaptureConfig::default();
        let encoder = match capture_agent::capture::Capture::start(cli.source.clone(), &cfg) {
            Ok((c, _)) => c.encoder_name().to_owned(),
            Err(e) => {
                eprintln!("erreur : {e:#}");
                return ExitCode::FAILURE;
            }
        };
        println!("{}", capture_agent::capture::launch_description(&cli.source, &cfg, &encoder));
        return ExitCode::SUCCESS;
    }
    let opts = match capture_agent::cli::into_options(cli) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("erreur : {e:#}");
            return ExitCode::from(2);
        }
    };
    match capture_agent::run::run(opts).await {
        Ok(summary) => {
            println!("{}", serde_json::to_string_pretty(&summary).expect("summary serialises"));
            if summary.complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("erreur : {e:#}");
            ExitCode::FAILURE
        }
    }
}
