//! The `daas` binary: parse the command line, set up tracing, run the subcommand.
#![forbid(unsafe_code)]

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = daas::config::Cli::parse();
    daas::telemetry::init_tracing(cli.log_format);
    match daas::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One clear line: the error and its causes.
            eprintln!("daas: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
