//! The HTTP server: builds the application state from the configuration and serves the routes
//! until the shutdown token is cancelled.

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::health;

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// `None`: the embedded default keeps its cache in process.
    pub redis: Option<redis::Client>,
}

impl AppState {
    /// Connects to the configured store (migrating it if asked) and cache.
    pub async fn connect(config: &Config) -> anyhow::Result<AppState> {
        let url = &config.database.url;
        let store = Store::connect(url)
            .await
            .with_context(|| format!("connecting to the store at {}", store::redact(url)))?;
        if config.database.migrate_on_start {
            store.migrate().await.context("migrating the store")?;
        }
        let redis = if config.cache.redis_url.is_empty() {
            None
        } else {
            Some(
                redis::Client::open(config.cache.redis_url.as_str())
                    .context("parsing cache.redis_url")?,
            )
        };
        Ok(AppState { store, redis })
    }
}

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` is cancelled, then lets requests in flight finish
/// for up to ten seconds.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(%address, store = state.store.backend(), "herald is listening");
    let graceful = shutdown.clone();
    let server = axum::serve(listener, app(state))
        .with_graceful_shutdown(async move { graceful.cancelled().await });
    let drained = async {
        shutdown.cancelled().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    };
    tokio::select! {
        result = server => result.context("serving HTTP")?,
        () = drained => tracing::warn!("requests still open after 10s; stopping anyway"),
    }
    Ok(())
}
