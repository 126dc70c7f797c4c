//! The dispatch role: one worker per lane (channel and message type) for every channel that has
//! an account, and the subscription that recalls messages already handed over. The send chain
//! puts messages in their lane's queue itself, in the transaction that accepts them.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use cache::{BreakerPolicy, Cache};
use dispatch::accounts::{AccountConfig, LiveAccounts};
use dispatch::policy::{Limits, NightWindow};
use dispatch::recall::{self, Recaller};
use dispatch::receipts;
use dispatch::sensitive::SensitiveWords;
use dispatch::tokens::Tokens;
use dispatch::worker::{self, RetryPolicy, WorkerOptions};
use domain::{Channel, MessageType};
use store::{CheckpointKey, Store, SubscriptionOptions};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Credentials written `env:NAME` come from the environment.
pub(crate) fn resolve(accounts: &[AccountConfig]) -> anyhow::Result<Vec<AccountConfig>> {
    accounts
        .iter()
        .map(|account| {
            let mut account = account.clone();
            for (name, value) in &mut account.credentials {
                if let Some(variable) = value.strip_prefix("env:") {
                    *value = std::env::var(variable).with_context(|| {
                        format!(
                            "account {}: credential {name} names {variable}, which is not set",
                            account.id
                        )
                    })?;
                }
            }
            Ok(account)
        })
        .collect()
}

/// The worker options a configuration asks for. Reads the sensitive-word list.
pub fn dispatch_options(config: &Config) -> anyhow::Result<WorkerOptions> {
    let d = &config.dispatch;
    let time = |name: &str, value: &str| {
        chrono::NaiveTime::parse_from_str(value, "%H:%M")
            .with_context(|| format!("dispatch.{name} must be a time like 22:00, not {value:?}"))
    };
    let zone: chrono::FixedOffset = d.night_zone.parse().with_context(|| {
        format!(
            "dispatch.night_zone must be an offset like +08:00, not {:?}",
            d.night_zone
        )
    })?;
    let night = NightWindow {
        start: time("night_start", &d.night_start)?,
        end: time("night_end", &d.night_end)?,
        resume: time("night_resume", &d.night_resume)?,
        zone,
    };
    let sensitive_words = if d.sensitive_words_file.is_empty() {
        SensitiveWords::default()
    } else {
        let path = &d.sensitive_words_file;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading dispatch.sensitive_words_file {path}"))?;
        SensitiveWords::parse(&text)
            .with_context(|| format!("compiling the sensitive words of {path}"))?
    };
    if !(d.breaker_failure_ratio > 0.0 && d.breaker_failure_ratio <= 1.0) {
        bail!(
            "dispatch.breaker_failure_ratio must be above 0 and at most 1, not {}",
            d.breaker_failure_ratio
        );
    }
    for (lane, n) in &d.lane_concurrency {
        if !lane_exists(lane) {
            bail!("dispatch.lane_concurrency: {lane:?} is not a lane such as \"SMS.MARKETING\"");
        }
        if *n == 0 {
            bail!("dispatch.lane_concurrency.{lane:?} must be at least 1");
        }
    }
    Ok(WorkerOptions {
        night,
        limits: Limits {
            dedup_window: Duration::from_secs(d.dedup_window_secs),
            frequency_cap: d.frequency_cap,
        },
        concurrency: d.concurrency.max(1),
        lane_concurrency: d.lane_concurrency.clone(),
        lease: Duration::from_secs(d.lease_secs.max(1)),
        retry: RetryPolicy {
            attempts: d.retry_attempts.max(1),
            base: Duration::from_millis(d.retry_base_ms),
            factor: d.retry_factor.max(1),
        },
        breaker: BreakerPolicy {
            window_ms: d.breaker_window_ms.max(10),
            min_calls: d.breaker_min_calls.max(1),
            failure_ratio: d.breaker_failure_ratio,
            open_ms: d.breaker_open_ms.max(1),
            half_open_probes: 1,
        },
        sensitive_words,
        sensitive_action: d.sensitive_action,
        receipt_query_delay: Duration::from_millis(d.receipt_query_delay_ms),
        sandbox: dispatch::policy::Sandbox {
            all_tenants: config.sandbox.all_tenants,
            tenants: config.sandbox.tenants.iter().cloned().collect(),
            whitelist: config.sandbox.whitelist.clone(),
        },
        ..WorkerOptions::default()
    })
}

fn lane_exists(lane: &str) -> bool {
    Channel::ALL.iter().any(|channel| {
        MessageType::ALL
            .iter()
            .any(|msg_type| domain::lane(*channel, *msg_type) == lane)
    })
}

/// Starts the dispatch role; the returned set ends when `shutdown` is cancelled and every
/// message in flight has its outcome. `options` may change while it runs (see [`watch_config`]),
/// and so may `accounts` (see [`crate::runtime`]): a channel that gains its first account gets
/// its lanes then.
pub fn start_dispatch(
    store: &Store,
    config: &Config,
    accounts: &LiveAccounts,
    tokens: &Tokens,
    options: watch::Receiver<WorkerOptions>,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinSet<()>> {
    let mut tasks = JoinSet::new();
    if !config.dispatch.enabled {
        return Ok(tasks);
    }
    let (accounts, tokens) = (accounts.clone(), tokens.clone());
    {
        let recaller = Recaller {
            store: store.clone(),
            accounts: accounts.clone(),
        };
        let (store, shutdown) = (store.clone(), shutdown.clone());
        tasks.spawn(async move {
            let options = SubscriptionOptions {
                filter: recall::filter(),
                quiet_gap: recall::QUIET_GAP,
                ..SubscriptionOptions::default()
            };
            let key = CheckpointKey::new(recall::SUBSCRIPTION, 0);
            if let Err(error) =
                store::subscription::run(&store, &key, None, &options, &recaller, &shutdown).await
            {
                tracing::error!(%error, "the dispatch recall subscription stopped");
            }
        });
    }
    // Cheap when idle (one claim a second), and a run-time account may need it later.
    {
        tasks.spawn(receipts::run_queries(
            store.clone(),
            accounts.clone(),
            format!("receipts-{}", uuid::Uuid::now_v7()),
            Duration::from_secs(1),
            Duration::from_millis(config.dispatch.receipt_query_delay_ms),
            shutdown.clone(),
        ));
    }
    tasks.spawn(receipts::run_pulls(
        store.clone(),
        accounts.clone(),
        Duration::from_millis(config.dispatch.receipt_pull_interval_ms.max(100)),
        shutdown.clone(),
    ));
    let worker_id = format!("worker-{}", uuid::Uuid::now_v7());
    let (redis_url, prefix) = (
        config.cache.redis_url.clone(),
        config.cache.key_prefix.clone(),
    );
    let (store, shutdown) = (store.clone(), shutdown.clone());
    tasks.spawn(async move {
        // Dedup windows, caps and buckets live in the cache. Without it no lane can decide, so
        // the lanes wait for it, while the API goes on accepting messages.
        let Some(cache) = connect_cache(&redis_url, &prefix, &shutdown).await else {
            return;
        };
        tokens.connect(cache.clone());
        let mut lanes = JoinSet::new();
        let mut started: Vec<Channel> = Vec::new();
        let mut watching = accounts.clone();
        loop {
            for channel in accounts.current().channels() {
                if started.contains(&channel) {
                    continue;
                }
                started.push(channel);
                for msg_type in MessageType::ALL {
                    let lane = domain::lane(channel, *msg_type);
                    tracing::info!(%lane, "dispatch lane started");
                    lanes.spawn(worker::run_lane(
                        store.clone(),
                        accounts.clone(),
                        cache.clone(),
                        lane,
                        worker_id.clone(),
                        options.clone(),
                        shutdown.clone(),
                    ));
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                more = watching.changed() => if !more { break },
            }
        }
        while lanes.join_next().await.is_some() {}
    });
    Ok(tasks)
}

/// Starts the crowd-send runner of the dispatch role (none when dispatch is off): it claims
/// due crowd sends and turns their files into messages, batch by batch.
pub fn start_crowds(
    state: &crate::server::AppState,
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinSet<()>> {
    let mut tasks = JoinSet::new();
    if !config.dispatch.enabled {
        return Ok(tasks);
    }
    let crowd = &config.crowd;
    let options = commands::crowd_run::RunOptions {
        batch_size: crowd.batch_size,
        rows_per_sec: crowd.rows_per_sec,
        max_backlog: crowd.max_backlog,
        misfire_grace: chrono::TimeDelta::seconds(crowd.misfire_grace_secs as i64),
        lease: Duration::from_secs(crowd.lease_secs),
        ..commands::crowd_run::RunOptions::default()
    };
    let runner = commands::crowd_run::Runner {
        store: state.store.clone(),
        links: state.links.clone(),
        // A whole file is read through one response, slowed by the runner's pace: the timeout
        // is for a stalled source, not a slow one.
        http: dispatch::http::client(Duration::from_secs(6 * 3600))
            .context("building the HTTP client")?,
        options,
        worker: format!("crowd-{}", uuid::Uuid::now_v7()),
        clock: std::sync::Arc::new(chrono::Utc::now),
    };
    let shutdown = shutdown.clone();
    tasks.spawn(async move { runner.run(shutdown).await });
    Ok(tasks)
}

/// The cache, retried every two seconds until it answers or `shutdown`.
pub(crate) async fn connect_cache(
    redis_url: &str,
    prefix: &str,
    shutdown: &CancellationToken,
) -> Option<Cache> {
    let url = (!redis_url.is_empty()).then_some(redis_url);
    loop {
        match Cache::from_url(url, prefix).await {
            Ok(cache) => return Some(cache),
            Err(error) => tracing::warn!(%error, "dispatch waits for its cache"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Keeps the live part of the configuration current: when the configuration file or the
/// sensitive-word list changes (checked every `dispatch.reload_interval_ms`), or on SIGHUP, the
/// configuration is read again and the new worker options go to every lane. A configuration
/// that does not load is logged and the running one kept. Accounts, the store and the listen
/// address need a restart.
pub async fn watch_config(
    config_file: Option<PathBuf>,
    load: impl Fn() -> anyhow::Result<Config> + Send,
    first: Config,
    sender: watch::Sender<WorkerOptions>,
    shutdown: CancellationToken,
) {
    let watched = |config: &Config| {
        let mut files: Vec<PathBuf> = config_file.iter().cloned().collect();
        if !config.dispatch.sensitive_words_file.is_empty() {
            files.push(PathBuf::from(&config.dispatch.sensitive_words_file));
        }
        files
    };
    let stamp = |files: &[PathBuf]| -> Vec<Option<(SystemTime, u64)>> {
        files
            .iter()
            .map(|f| {
                let meta = std::fs::metadata(f).ok()?;
                Some((meta.modified().ok()?, meta.len()))
            })
            .collect()
    };
    let mut current = first;
    let mut files = watched(&current);
    let mut seen = stamp(&files);
    let mut hangup = hangup_signal();
    loop {
        let interval = Duration::from_millis(current.dispatch.reload_interval_ms);
        let poll = async {
            if interval.is_zero() {
                std::future::pending::<()>().await;
            } else {
                tokio::time::sleep(interval).await;
            }
        };
        let asked = tokio::select! {
            () = shutdown.cancelled() => return,
            () = poll => false,
            () = next_hangup(&mut hangup) => true,
        };
        let now = stamp(&files);
        if !asked && now == seen {
            continue;
        }
        seen = now;
        let loaded = load().and_then(|config| Ok((dispatch_options(&config)?, config)));
        match loaded {
            Ok((mut options, config)) => {
                // Live policy is not in the file: it goes on as it was.
                options.policies = sender.borrow().policies.clone();
                if config.accounts != current.accounts
                    || config.database != current.database
                    || config.listen != current.listen
                    || config.cache != current.cache
                    || config.alerts != current.alerts
                    || config.alerting != current.alerting
                {
                    tracing::warn!(
                        "the configuration changed outside what reloads live (accounts, database, cache, listen, alerts): restart Herald to apply it"
                    );
                }
                tracing::info!(
                    sensitive_words = options.sensitive_words.len(),
                    concurrency = options.concurrency,
                    "configuration reloaded"
                );
                sender.send_replace(options);
                files = watched(&config);
                seen = stamp(&files);
                current = config;
            }
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "the configuration did not reload; the running one stays"
                );
            }
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) {
    match hangup {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending().await
}

/// Starts the projection role: each projection follows the log and keeps its read tables. Several
/// processes may run it: a checkpoint moves by compare-and-set, so a batch that lost the race
/// rolls back and every event is applied once. The inbox projection announces each message it
/// delivers on `bus`, after its batch commits, for `/inbox/stream` on every instance.
pub fn start_projections(
    store: &Store,
    bus: &crate::inbox_stream::Bus,
    shutdown: &CancellationToken,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let (notifier, notices) = tokio::sync::mpsc::unbounded_channel();
    tasks.spawn(crate::inbox_stream::start_publisher(
        bus.clone(),
        notices,
        shutdown.clone(),
    ));
    for &projection in projections::Projection::ALL {
        let (store, shutdown, notifier) = (store.clone(), shutdown.clone(), notifier.clone());
        tasks.spawn(async move {
            let options = SubscriptionOptions {
                filter: projection.filter(),
                ..SubscriptionOptions::default()
            };
            let key = CheckpointKey::new(projection.subscription(), 0);
            let handler = match projection.handler(projections::Target::Live) {
                projections::Handler::Inbox(inbox) => {
                    projections::Handler::Inbox(inbox.with_notifier(notifier))
                }
                handler => handler,
            };
            if let Err(error) =
                store::subscription::run(&store, &key, None, &options, &handler, &shutdown).await
            {
                tracing::error!(%error, projection = projection.name(), "a projection stopped");
            }
        });
    }
    tasks
}
