//! Self-alerting: the dispatch role evaluates the `[[alerts]]` rules every
//! `alerting.interval_ms` against the store (so every process sees the whole cluster's
//! outcomes) and sends a text through a robot account when a rule's value is above its
//! threshold. Windows are aligned on `window_secs` since the Unix epoch; before sending, a
//! process takes the cache lock `alert:{name}:{window}` for a fresh owner, so however many
//! processes and ticks see the rule crossed, one alert goes out per window. A send that fails
//! frees the lock, and the next tick tries again. Alerts write no message events.

use std::time::Duration;

use anyhow::Context;
use cache::{Cache, PolicyCache};
use chrono::Utc;
use dispatch::accounts::{Account, Accounts};
use dispatch::supplier::Outbound;
use dispatch::tokens::Tokens;
use domain::{MessageId, MessageType, Receiver, ReceiverIdType, TemplateContent, TenantId};
use store::Store;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{AlertKind, AlertRule, Config};

/// A rule found above its threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    /// What crossed, e.g. `failure ratio of SMS` or `lag of projection-trace`.
    pub what: String,
    pub value: f64,
}

/// The failure ratio of the outcomes recorded in `[from_ms, to_ms)` (the `message_timeline`
/// projection), with how many outcomes there were.
pub async fn failure_ratio(
    store: &Store,
    rule: &AlertRule,
    from_ms: i64,
    to_ms: i64,
) -> anyhow::Result<(f64, u64)> {
    let channel = rule
        .channel
        .map(|c| c.as_str().to_owned())
        .unwrap_or_default();
    let account = rule.account.clone().unwrap_or_default();
    let sql = "SELECT COUNT(CASE WHEN l.kind = 'FAILED' THEN 1 END), COUNT(*) \
         FROM message_timeline l JOIN message_trace t ON t.message_id = l.message_id \
         WHERE l.kind IN ('DISPATCHED', 'FAILED') AND l.at >= $1 AND l.at < $2 \
         AND ($3 = '' OR t.channel = $3) AND ($4 = '' OR t.account = $4)";
    let (failed, total): (i64, i64) = match store {
        Store::Postgres(s) => {
            sqlx::query_as(sql)
                .bind(from_ms)
                .bind(to_ms)
                .bind(&channel)
                .bind(&account)
                .fetch_one(s.pool())
                .await
        }
        Store::Sqlite(s) => {
            sqlx::query_as(sql)
                .bind(from_ms)
                .bind(to_ms)
                .bind(&channel)
                .bind(&account)
                .fetch_one(s.readers())
                .await
        }
    }
    .context("counting outcomes for an alert rule")?;
    let ratio = if total > 0 {
        failed as f64 / total as f64
    } else {
        0.0
    };
    Ok((ratio, total.max(0) as u64))
}

/// Whether `rule` is crossed at `now_ms`.
pub async fn evaluate(
    store: &Store,
    rule: &AlertRule,
    now_ms: i64,
) -> anyhow::Result<Option<Crossing>> {
    match rule.kind {
        AlertKind::FailureRatio => {
            let from = now_ms - (rule.window_secs as i64) * 1000;
            let (ratio, total) = failure_ratio(store, rule, from, now_ms + 1).await?;
            if total < rule.min_messages.max(1) || ratio <= rule.threshold {
                return Ok(None);
            }
            let mut what = "failure ratio".to_owned();
            if let Some(channel) = rule.channel {
                what.push_str(&format!(" of {}", channel.as_str()));
            }
            if let Some(account) = &rule.account {
                what.push_str(&format!(" through account {account}"));
            }
            what.push_str(&format!(" ({total} outcomes)"));
            Ok(Some(Crossing { what, value: ratio }))
        }
        AlertKind::ProjectionLag => {
            let mut worst: Option<Crossing> = None;
            for projection in projections::Projection::ALL {
                let lag =
                    projections::lag::lag(store, projection.subscription(), projection.category())
                        .await
                        .context("reading a projection's lag for an alert rule")?;
                let behind = lag.behind() as f64;
                if behind > rule.threshold && worst.as_ref().is_none_or(|w| behind > w.value) {
                    worst = Some(Crossing {
                        what: format!("events behind of projection {}", projection.name()),
                        value: behind,
                    });
                }
            }
            Ok(worst)
        }
    }
}

/// The alert's text.
pub fn text(rule: &AlertRule, crossing: &Crossing, window: i64) -> String {
    let value = match rule.kind {
        AlertKind::FailureRatio => format!(
            "{:.1} % (threshold {:.1} %)",
            crossing.value * 100.0,
            rule.threshold * 100.0
        ),
        AlertKind::ProjectionLag => format!("{} (threshold {})", crossing.value, rule.threshold),
    };
    let start = chrono::DateTime::from_timestamp(window * rule.window_secs as i64, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    format!(
        "[Herald alert] {}: {} is {value} over the last {} s (window from {start})",
        rule.name, crossing.what, rule.window_secs
    )
}

/// Starts the evaluator in the dispatch role (none when dispatch is off or there are no rules).
pub fn start(
    store: &Store,
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<JoinSet<()>> {
    let mut tasks = JoinSet::new();
    if !config.dispatch.enabled || config.alerts.is_empty() {
        return Ok(tasks);
    }
    // Robots need no tokens; the accounts are built again so alerts work beside any lane.
    let accounts = Accounts::from_config(
        &crate::roles::resolve(&config.accounts)?,
        &Tokens::pending(),
    )
    .context("configuring the alert accounts")?;
    let rules = config.alerts.clone();
    let interval = Duration::from_millis(config.alerting.interval_ms.max(1));
    let (redis_url, prefix) = (
        config.cache.redis_url.clone(),
        config.cache.key_prefix.clone(),
    );
    let (store, shutdown) = (store.clone(), shutdown.clone());
    tasks.spawn(async move {
        let Some(cache) = crate::roles::connect_cache(&redis_url, &prefix, &shutdown).await else {
            return;
        };
        loop {
            for rule in &rules {
                tick(&store, &cache, &accounts, rule).await;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    });
    Ok(tasks)
}

/// Evaluates one rule and sends its alert if it crossed and none went out in this window yet.
async fn tick(store: &Store, cache: &Cache, accounts: &Accounts, rule: &AlertRule) {
    let now = Utc::now();
    let window = now.timestamp().div_euclid(rule.window_secs.max(1) as i64);
    let crossing = match evaluate(store, rule, now.timestamp_millis()).await {
        Ok(Some(crossing)) => crossing,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(rule = %rule.name, error = format!("{error:#}"), "evaluating an alert rule failed");
            return;
        }
    };
    let lock = format!("alert:{}:{window}", rule.name);
    let owner = uuid::Uuid::now_v7().to_string();
    // Held past the window's end, so a late tick of this window cannot send again.
    let ttl = Duration::from_secs(rule.window_secs.saturating_mul(2).max(1));
    match cache.try_lock(&lock, &owner, ttl, now).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(error) => {
            tracing::warn!(rule = %rule.name, %error, "an alert could not be claimed in the cache");
            return;
        }
    }
    let body = text(rule, &crossing, window);
    tracing::warn!(rule = %rule.name, value = crossing.value, threshold = rule.threshold, alert = %body, "alert fired");
    let Some(account) = accounts.find(&rule.notify_account) else {
        tracing::warn!(rule = %rule.name, account = %rule.notify_account, "the alert account is not configured");
        return;
    };
    if let Err(error) = send(account, &rule.notify_receiver, body).await {
        tracing::warn!(rule = %rule.name, error = format!("{error:#}"), "sending an alert failed; the next tick tries again");
        let _ = cache.unlock(&lock, &owner).await;
    }
}

async fn send(account: &Account, webhook: &str, body: String) -> anyhow::Result<()> {
    let receiver = Receiver::parse(ReceiverIdType::WebhookUrl, webhook)
        .context("notify_receiver is not a webhook URL")?;
    let tenant = TenantId::parse("herald").context("the alert tenant")?;
    let content = TemplateContent::Text { body };
    let outbound = Outbound {
        message_id: MessageId::generate(),
        tenant: &tenant,
        channel: account.channel,
        msg_type: MessageType::Notice,
        receiver: &receiver,
        content: &content,
        attempt: 1,
    };
    account.supplier.send(&outbound).await?;
    Ok(())
}
