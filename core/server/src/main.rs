//! `lockgate`: the gateway binary (serve, init, migrate, check-config, import, export, token).

use std::time::Duration;

use clap::Parser;

/// How long the process waits, once a command has returned, for blocking work still running
/// (a plugin compile a SIGHUP started, say) before it exits anyway. Every such task keeps
/// only in-memory state, so abandoning it loses nothing.
const EXIT_GRACE: Duration = Duration::from_secs(5);

fn main() -> std::process::ExitCode {
    let cli = lockgate::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lockgate: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(lockgate::cli::run(cli));
    // Not the runtime's drop, which waits for every blocking task to end: SIGTERM must stop
    // the gateway even while a plugin reload is compiling components.
    runtime.shutdown_timeout(EXIT_GRACE);
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lockgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
