//! `herald`: reads the configuration, starts logging, and hands over to the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use herald::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `reconcile` exits like diff: 1 means a flagged gap, so any failure of its own is 2.
    let failure = match cli.command {
        cli::Command::Reconcile { .. } => 2,
        _ => 1,
    };
    match start(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // A command with exit statuses of its own (`reconcile`) says which, and whether it
            // has more to say.
            if let Some(exit) = error.downcast_ref::<cli::Exit>() {
                if let Some(message) = &exit.message {
                    eprintln!("herald: {message}");
                }
                return ExitCode::from(exit.code);
            }
            // One line with the whole chain of causes, not a backtrace: this is what a user reads.
            eprintln!("herald: {error:#}");
            ExitCode::from(failure)
        }
    }
}

#[tokio::main]
async fn start(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config()?;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.filter));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(herald::logs::MaskedStderr);
    if config.log.format == "json" {
        subscriber.json().init();
    } else {
        subscriber.init();
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    cli::run(cli, config, shutdown).await
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM, so the server drains instead of dropping requests.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
