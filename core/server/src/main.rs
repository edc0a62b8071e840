//! `lockgate`: the gateway binary (serve, init, migrate, check-config, import, export, token).

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = lockgate::cli::Cli::parse();
    match lockgate::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lockgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
