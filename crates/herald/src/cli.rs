//! The command line: `herald serve`, `herald migrate`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::server::{self, AppState};

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "Herald: one API to send and trace messages on every channel"
)]
pub struct Cli {
    /// A TOML configuration file.
    #[arg(long, global = true, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
    /// The store: `sqlite://FILE` (default `sqlite://herald.db`) or `postgres://…`.
    /// Overrides `HERALD_DATABASE_URL` and the file.
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (all roles in one process).
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
}

impl Cli {
    /// The configuration with every layer applied, flags last.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref(), |name| std::env::var(name).ok())?;
        if let Some(url) = &self.database_url {
            config.database.url = url.clone();
        }
        if let Command::Serve {
            listen: Some(listen),
        } = &self.command
        {
            config.listen = *listen;
        }
        config.validate()?;
        Ok(config)
    }
}

pub async fn run(cli: Cli, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { .. } => {
            let state = AppState::connect(&config).await?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding {}", config.listen))?;
            server::run(listener, state, shutdown).await
        }
        Command::Migrate => {
            let url = &config.database.url;
            let store = store::Store::connect(url)
                .await
                .with_context(|| format!("connecting to the store at {}", store::redact(url)))?;
            store.migrate().await.context("migrating the store")?;
            println!(
                "migrations applied to {} ({})",
                store::redact(url),
                store.backend()
            );
            Ok(())
        }
    }
}
