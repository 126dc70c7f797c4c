//! `herald`: reads the configuration, starts logging, and hands over to the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

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
    // Spans go to an OTLP collector too when one is configured.
    let provider = herald::otel::endpoint(&config.log)
        .map(|endpoint| herald::otel::provider(&endpoint, &config.log.service_name))
        .transpose()?;
    let otel = provider.as_ref().map(herald::otel::layer);
    let output = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(herald::logs::MaskedStderr);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    if config.log.format == "json" {
        registry.with(output.json()).init();
    } else {
        registry.with(output).init();
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    let result = cli::run(cli, config, shutdown).await;
    if let Some(provider) = provider {
        // The batch's last spans go out before the process ends.
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
    result
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
