//! The dispatch role: one worker per lane (channel and message type) for every channel that has
//! an account, and the subscription that recalls messages already handed over. The send chain
//! puts messages in their lane's queue itself, in the transaction that accepts them.

use std::time::Duration;

use anyhow::Context;
use cache::Cache;
use dispatch::accounts::{AccountConfig, Accounts};
use dispatch::policy::{Limits, NightWindow};
use dispatch::recall::{self, Recaller};
use dispatch::worker::{self, RetryPolicy, WorkerOptions};
use domain::MessageType;
use store::{CheckpointKey, Store, SubscriptionOptions};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Credentials written `env:NAME` come from the environment.
fn resolve(accounts: &[AccountConfig]) -> anyhow::Result<Vec<AccountConfig>> {
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

/// Starts the dispatch role; the returned set ends when `shutdown` is cancelled and every
/// message in flight has its outcome.
pub fn start_dispatch(
    store: &Store,
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinSet<()>> {
    let mut tasks = JoinSet::new();
    if !config.dispatch.enabled {
        return Ok(tasks);
    }
    let accounts =
        Accounts::from_config(&resolve(&config.accounts)?).context("configuring accounts")?;
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
    let options = WorkerOptions {
        night,
        limits: Limits {
            dedup_window: Duration::from_secs(d.dedup_window_secs),
            frequency_cap: d.frequency_cap,
        },
        concurrency: d.concurrency.max(1),
        lease: Duration::from_secs(d.lease_secs.max(1)),
        retry: RetryPolicy {
            attempts: d.retry_attempts.max(1),
            base: Duration::from_millis(d.retry_base_ms),
            factor: d.retry_factor.max(1),
        },
        ..WorkerOptions::default()
    };
    {
        let recaller = Recaller {
            store: store.clone(),
            accounts: accounts.clone(),
        };
        let (store, shutdown) = (store.clone(), shutdown.clone());
        tasks.spawn(async move {
            let options = SubscriptionOptions {
                filter: recall::filter(),
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
        let mut lanes = JoinSet::new();
        for channel in accounts.channels() {
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
        while lanes.join_next().await.is_some() {}
    });
    Ok(tasks)
}

/// The cache, retried every two seconds until it answers or `shutdown`.
async fn connect_cache(
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
