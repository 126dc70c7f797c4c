//! The HTTP server: builds the application state from the configuration and serves the routes
//! until the shutdown token is cancelled.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post};
use commands::links::LinkSigner;
use commands::send::SendLimits;
use store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::{
    callbacks, clicks, console, graphql, health, inbox_stream, metrics, requests, uploads,
};

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// `None`: the embedded default keeps its cache in process.
    pub redis: Option<redis::Client>,
    pub schema: api::HeraldSchema,
    pub rate: Arc<api::rate::RateLimiter>,
    pub max_body_bytes: usize,
    /// Largest file `/uploads` takes.
    pub max_upload_bytes: usize,
    /// Verifies click-tracking tokens.
    pub links: LinkSigner,
    /// The channel accounts (the configuration file's and the run-time ones, kept current),
    /// for the suppliers' callbacks and dispatch.
    pub accounts: dispatch::accounts::LiveAccounts,
    /// The access tokens of the accounts' suppliers; dispatch connects them to its cache.
    pub tokens: dispatch::tokens::Tokens,
    /// Verifies the receiver tokens of `/inbox/stream`.
    pub inbox_tokens: commands::inbox::InboxTokens,
    /// How often an idle `/inbox/stream` sends a heartbeat.
    pub inbox_heartbeat: Duration,
    /// Carries inbox notifications between processes (or within this one).
    pub bus: inbox_stream::Bus,
    /// Cancelled when the server stops: open `/inbox/stream` connections end then, rather than
    /// hold the graceful shutdown for its whole grace period.
    pub shutdown: CancellationToken,
    /// Tenants' and templates' live policy, for the dispatch options.
    pub policies: dispatch::live_policy::LivePolicies,
    /// The API keys this server read lately.
    pub keys: Arc<commands::keys::KeyCache>,
    /// The queries this server parsed lately.
    pub queries: Arc<crate::graphql::ParsedQueries>,
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
        let secret = match config.security.link_secret.as_str() {
            "" => commands::settings::get_or_create(
                &store,
                "link_secret",
                commands::settings::random_secret,
            )
            .await
            .map_err(|e| anyhow::anyhow!("reading the link secret: {e}"))?,
            configured => configured.to_owned(),
        };
        let api_config = &config.api;
        let links = LinkSigner::new(secret.clone().into_bytes(), &api_config.public_url);
        let inbox_tokens = commands::inbox::InboxTokens::new(secret.into_bytes());
        // Callbacks only read what suppliers push and never ask for a token; dispatch connects
        // the tokens to its cache when it runs in this process.
        let runtime = crate::runtime::start(&store, config).await?;
        let schema = api::schema(
            api::ApiState {
                store: store.clone(),
                links: links.clone(),
                inbox_tokens: inbox_tokens.clone(),
                send_limits: SendLimits {
                    max_receivers_per_item: api_config.max_receivers_per_item,
                    max_items: api_config.max_items,
                    ..SendLimits::default()
                },
                templates: commands::send::TemplateCache::default(),
                accounts: api::AccountsAdmin {
                    keyring: runtime.keyring.clone(),
                    catalog: Arc::new(crate::runtime::Catalog {
                        configured: runtime.configured.clone(),
                    }),
                },
            },
            api::QueryLimits {
                depth: api_config.max_depth,
                complexity: api_config.max_complexity,
            },
        );
        let rate = Arc::new(api::rate::RateLimiter::new(
            api_config.rate_limit_per_second,
            api_config.rate_limit_burst,
        ));
        Ok(AppState {
            store,
            redis,
            schema,
            rate,
            max_body_bytes: api_config.max_body_bytes,
            max_upload_bytes: api_config.max_upload_bytes,
            links,
            accounts: runtime.accounts,
            tokens: runtime.tokens,
            inbox_tokens,
            inbox_heartbeat: Duration::from_secs(api_config.inbox_heartbeat_secs.max(1)),
            bus: inbox_stream::Bus::new(&config.cache.redis_url, &config.cache.key_prefix),
            shutdown: CancellationToken::new(),
            policies: runtime.policies,
            keys: Arc::new(commands::keys::KeyCache::new(commands::keys::KEY_FRESH)),
            queries: Arc::default(),
        })
    }
}

pub fn app(state: AppState) -> Router {
    let body_limit = state.max_body_bytes;
    let upload_limit = state.max_upload_bytes.saturating_add(64 * 1024);
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/callbacks/{account}", any(callbacks::callback))
        .route("/c/{token}", get(clicks::click))
        .route("/inbox/stream", get(inbox_stream::stream))
        .route("/graphql", get(graphql::graphiql).post(graphql::graphql))
        .route("/console", get(console::index))
        .route("/console/", get(console::index))
        .route("/console/app.js", get(console::script))
        .route("/console/app.css", get(console::style))
        .layer(DefaultBodyLimit::max(body_limit))
        // Its own limit, checked as the file streams in; the form around it is small.
        .route(
            "/uploads",
            post(uploads::upload).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route_layer(axum::middleware::from_fn(requests::trace))
        .route_layer(axum::middleware::from_fn(metrics::track))
        .with_state(Arc::new(state))
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
    let state = AppState {
        shutdown: shutdown.clone(),
        ..state
    };
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
