//! Production: each decision is one Lua script (`src/lua/`), run atomically by Redis in one
//! round trip. Scripts go by hash (EVALSHA) and are loaded again whenever Redis forgot them.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, ScriptInvocation};

use futures_util::StreamExt;
use tokio::sync::watch;

use crate::any::redact;
use crate::error::{CacheError, Result};
use crate::policy_cache::PolicyCache;
use crate::pubsub::{self, Hub, Subscription, WeakHub};
use crate::types::{
    self, Admission, BreakerPolicy, BreakerState, DedupMark, DedupOutcome, FrequencyOutcome,
    FrequencyUse, MAX_MS, Screen, TokenBucket, TokenOutcome,
};

/// The cache shared by every process that connects to one Redis with one prefix.
/// Clones share one multiplexed connection, which reconnects by itself.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    /// Put before every key, with a `:` after it, so tenants, deployments and tests sharing
    /// a server never see each other's keys.
    prefix: Arc<str>,
    /// The server, for messages; never the password.
    server: Arc<str>,
    /// Publish and subscribe: the local hub and its listener.
    pubsub: Arc<PubSub>,
}

/// One PSUBSCRIBE connection per process, started by the first subscriber, feeding the hub.
struct PubSub {
    client: redis::Client,
    hub: Hub,
    /// Whether the listener is subscribed right now; set once it is started.
    ready: tokio::sync::OnceCell<watch::Receiver<bool>>,
    /// Dropped with the last handle of the cache, which stops the listener.
    stop: watch::Sender<()>,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("server", &self.server)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Each script's source, and its SHA-1, computed once.
struct Scripts {
    dedup: Script,
    frequency: Script,
    take_token: Script,
    pause: Script,
    try_lock: Script,
    forget_value: Script,
    unlock: Script,
    record_result: Script,
    breaker_state: Script,
    /// `admit.lua` after `take_token.lua` and `breaker_state.lua`, each wrapped as a function
    /// of its keys and arguments: one script, one round trip, the same steps.
    admit: Script,
    /// `screen.lua` after `dedup.lua` and `frequency.lua`, wrapped the same way.
    screen: Script,
    /// `screen_admit.lua` after `screen` and `admit` as above, each wrapped as a function.
    screen_admit: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    dedup: Script::new(include_str!("lua/dedup.lua")),
    frequency: Script::new(include_str!("lua/frequency.lua")),
    take_token: Script::new(include_str!("lua/take_token.lua")),
    pause: Script::new(include_str!("lua/pause.lua")),
    try_lock: Script::new(include_str!("lua/try_lock.lua")),
    forget_value: Script::new(include_str!("lua/forget_value.lua")),
    unlock: Script::new(include_str!("lua/unlock.lua")),
    record_result: Script::new(include_str!("lua/record_result.lua")),
    breaker_state: Script::new(include_str!("lua/breaker_state.lua")),
    admit: Script::new(&format!(
        "local function take_token(KEYS, ARGV)\n{}\nend\n\
         local function breaker_state(KEYS, ARGV)\n{}\nend\n{}",
        include_str!("lua/take_token.lua"),
        include_str!("lua/breaker_state.lua"),
        include_str!("lua/admit.lua"),
    )),
    screen: Script::new(&format!(
        "local function dedup(KEYS, ARGV)\n{}\nend\n\
         local function frequency(KEYS, ARGV)\n{}\nend\n{}",
        include_str!("lua/dedup.lua"),
        include_str!("lua/frequency.lua"),
        include_str!("lua/screen.lua"),
    )),
    screen_admit: Script::new(&format!(
        "local function dedup(KEYS, ARGV)\n{}\nend\n\
         local function frequency(KEYS, ARGV)\n{}\nend\n\
         local function take_token(KEYS, ARGV)\n{}\nend\n\
         local function breaker_state(KEYS, ARGV)\n{}\nend\n\
         local function screen(KEYS, ARGV)\n{}\nend\n\
         local function admit(KEYS, ARGV)\n{}\nend\n{}",
        include_str!("lua/dedup.lua"),
        include_str!("lua/frequency.lua"),
        include_str!("lua/take_token.lua"),
        include_str!("lua/breaker_state.lua"),
        include_str!("lua/screen.lua"),
        include_str!("lua/admit.lua"),
        include_str!("lua/screen_admit.lua"),
    )),
});

/// Dispatch must not hang on a stalled Redis: a call fails after this and may be retried.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Reconnection attempts per failure, half a second apart (plus jitter), so an outage
/// surfaces as errors within about two seconds instead of stalling every caller. The
/// library's defaults back off for minutes.
const CONNECT_RETRIES: usize = 2;
const MAX_RETRY_DELAY_MS: u64 = 500;

impl RedisCache {
    /// Connects to `url` (`redis://`, `redis+unix://`), keeping every key under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        let shown = redact(url);
        let client = redis::Client::open(url).map_err(|e| CacheError::InvalidUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        let server = client.get_connection_info().addr.to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_number_of_retries(CONNECT_RETRIES)
            .set_max_delay(MAX_RETRY_DELAY_MS);
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|source| CacheError::Connect { url: shown, source })?;
        tracing::debug!(%server, prefix, "connected to the Redis policy cache");
        Ok(RedisCache {
            conn,
            prefix: Arc::from(prefix),
            server: Arc::from(server),
            pubsub: Arc::new(PubSub {
                client,
                hub: Hub::default(),
                ready: tokio::sync::OnceCell::new(),
                stop: watch::channel(()).0,
            }),
        })
    }

    /// The Redis channel of `channel`: under the prefix, like a key.
    fn channel(&self, channel: &str) -> String {
        if self.prefix.is_empty() {
            channel.to_owned()
        } else {
            format!("{}:{channel}", self.prefix)
        }
    }

    /// Publishes `payload` on `channel` to every process subscribed to it.
    pub async fn publish(&self, channel: &str, payload: &str) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PUBLISH")
            .arg(self.channel(channel))
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    /// Subscribes to `channel` through this process's listener, which the first subscription
    /// starts. Returns once the listener is subscribed, so nothing published afterwards is
    /// missed without a [`crate::Notice::Missed`].
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription> {
        let pubsub = &self.pubsub;
        let mut ready = pubsub
            .ready
            .get_or_init(|| async {
                let (ready, listening) = watch::channel(false);
                let pattern = if self.prefix.is_empty() {
                    "*".to_owned()
                } else {
                    format!("{}:*", pubsub::glob_escape(&self.prefix))
                };
                tokio::spawn(listen(
                    pubsub.client.clone(),
                    pattern,
                    self.prefix.clone(),
                    pubsub.hub.downgrade(),
                    ready,
                    pubsub.stop.subscribe(),
                ));
                listening
            })
            .await
            .clone();
        // Registered before waiting: whatever the listener hears from now on reaches it.
        let subscription = pubsub.hub.subscribe(channel);
        match tokio::time::timeout(pubsub::READY_TIMEOUT, ready.wait_for(|r| *r)).await {
            Ok(Ok(_)) => Ok(subscription),
            _ => Err(CacheError::NotListening),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, kind: &str, key: &str) -> String {
        if self.prefix.is_empty() {
            format!("{kind}:{key}")
        } else {
            format!("{}:{kind}:{key}", self.prefix)
        }
    }
}

fn breaker(reply: (i64, i64)) -> Result<BreakerState> {
    match reply {
        (0, _) => Ok(BreakerState::Closed),
        (1, until_ms) => Ok(BreakerState::Open { until_ms }),
        (2, _) => Ok(BreakerState::HalfOpen),
        (code, _) => Err(CacheError::Corrupt(format!("breaker state {code}"))),
    }
}

fn count(n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| CacheError::Corrupt(format!("frequency count {n}")))
}

impl RedisCache {
    /// `calls` calls' result on `account`'s breaker (`record_result.lua`).
    async fn record(
        &self,
        account: &str,
        success: bool,
        calls: u32,
        now: DateTime<Utc>,
        policy: BreakerPolicy,
    ) -> Result<BreakerState> {
        let plan = policy.plan()?;
        let now = now.timestamp_millis();
        let reply: (i64, i64) = SCRIPTS
            .record_result
            .key(self.key("breaker", account))
            .arg(now)
            .arg(if success { 1 } else { 0 })
            .arg(plan.bucket_ms)
            .arg(plan.min_calls)
            .arg(plan.failure_ratio.to_string())
            .arg(now + plan.open_ms)
            .arg(plan.probes)
            .arg(plan.open_ms)
            .arg(plan.keep_ms)
            .arg(plan.open_ms + plan.keep_ms)
            .arg(plan.span_ms)
            .arg(calls)
            .invoke_async(&mut self.conn.clone())
            .await?;
        breaker(reply)
    }
}

/// The keys and arguments of `screen.lua` and `admit.lua`, added to a call of a script that
/// runs them.
impl RedisCache {
    fn screen_inputs(
        &self,
        call: &mut ScriptInvocation<'_>,
        dedup: Option<DedupMark<'_>>,
        frequency: Option<FrequencyUse<'_>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let now = now.timestamp_millis();
        let window = dedup.map(|m| types::window_ms(m.window)).transpose()?;
        let ttl = frequency
            .map(|f| types::period_ms(f.period_end_ms, now))
            .transpose()?;
        call.key(dedup.map_or_else(String::new, |m| self.key("dedup", m.key)))
            .key(frequency.map_or_else(String::new, |f| self.key("frequency", f.key)))
            .arg(now)
            .arg(now + window.unwrap_or(0))
            .arg(window.unwrap_or(0))
            .arg(dedup.map_or("", |m| m.owner))
            .arg(frequency.map_or(0, |f| f.limit))
            .arg(frequency.map_or(0, |f| f.period_end_ms))
            .arg(ttl.unwrap_or(0))
            .arg(frequency.map_or("", |f| f.owner));
        Ok(())
    }

    fn admit_inputs(
        &self,
        call: &mut ScriptInvocation<'_>,
        account: &str,
        bucket: Option<TokenBucket<'_>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        if let Some(bucket) = bucket {
            types::check_bucket(bucket.rate_per_sec, bucket.burst)?;
        }
        call.key(self.key("pause", account))
            .key(bucket.map_or_else(String::new, |b| self.key("bucket", b.name)))
            .key(self.key("breaker", account))
            .arg(now.timestamp_millis())
            .arg(bucket.map_or_else(String::new, |b| b.rate_per_sec.to_string()))
            .arg(bucket.map_or(0, |b| b.burst))
            .arg(MAX_MS);
        Ok(())
    }
}

fn screen_reply(answer: i64, value: i64) -> Result<Screen> {
    match answer {
        0 => Ok(Screen::Pass),
        1 => Ok(Screen::Duplicate {
            first_seen_ms: value,
        }),
        2 => Ok(Screen::Exceeded {
            count: count(value)?,
        }),
        other => Err(CacheError::Corrupt(format!("screen answered {other}"))),
    }
}

fn admission_reply(answer: i64, value: i64) -> Result<Admission> {
    match answer {
        0 => Ok(Admission::Go { probe: value == 1 }),
        1 => Ok(Admission::Paused { until_ms: value }),
        2 => Ok(Admission::NoToken {
            retry_after_ms: u64::try_from(value).unwrap_or(0),
        }),
        3 => Ok(Admission::Open { until_ms: value }),
        other => Err(CacheError::Corrupt(format!("admit answered {other}"))),
    }
}

impl PolicyCache for RedisCache {
    async fn dedup(
        &self,
        key: &str,
        owner: &str,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<DedupOutcome> {
        let window = types::window_ms(window)?;
        let now = now.timestamp_millis();
        let (first, seen): (i64, i64) = SCRIPTS
            .dedup
            .key(self.key("dedup", key))
            .arg(now)
            .arg(now + window)
            .arg(window)
            .arg(owner)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(if first == 1 {
            DedupOutcome::First
        } else {
            DedupOutcome::Duplicate {
                first_seen_ms: seen,
            }
        })
    }

    async fn release_dedup(&self, key: &str) -> Result<()> {
        redis::cmd("DEL")
            .arg(self.key("dedup", key))
            .exec_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn frequency(
        &self,
        key: &str,
        owner: &str,
        limit: u32,
        period_end_ms: i64,
        now: DateTime<Utc>,
    ) -> Result<FrequencyOutcome> {
        let now = now.timestamp_millis();
        let ttl = types::period_ms(period_end_ms, now)?;
        let (allowed, n): (i64, i64) = SCRIPTS
            .frequency
            .key(self.key("frequency", key))
            .arg(now)
            .arg(limit)
            .arg(period_end_ms)
            .arg(ttl)
            .arg(owner)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let count = count(n)?;
        Ok(if allowed == 1 {
            FrequencyOutcome::Allowed { count }
        } else {
            FrequencyOutcome::Exceeded { count }
        })
    }

    async fn take_token(
        &self,
        bucket: &str,
        rate_per_sec: f64,
        burst: u32,
        now: DateTime<Utc>,
    ) -> Result<TokenOutcome> {
        types::check_bucket(rate_per_sec, burst)?;
        // Rust prints the shortest text that parses back to the same double, so Lua computes
        // with exactly the rate the caller passed.
        let (taken, wait): (i64, i64) = SCRIPTS
            .take_token
            .key(self.key("bucket", bucket))
            .arg(now.timestamp_millis())
            .arg(rate_per_sec.to_string())
            .arg(burst)
            .arg(MAX_MS)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(if taken == 1 {
            TokenOutcome::Taken
        } else {
            TokenOutcome::Wait {
                retry_after_ms: u64::try_from(wait).unwrap_or(0),
            }
        })
    }

    async fn pause(&self, account: &str, until_ms: i64, now: DateTime<Utc>) -> Result<()> {
        let now = now.timestamp_millis();
        if until_ms <= now {
            return Ok(());
        }
        let until_ms = until_ms.min(now + MAX_MS);
        let _until: i64 = SCRIPTS
            .pause
            .key(self.key("pause", account))
            .arg(until_ms)
            .arg(until_ms - now)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn paused_until(&self, account: &str, now: DateTime<Utc>) -> Result<Option<i64>> {
        let stored: Option<String> = redis::cmd("GET")
            .arg(self.key("pause", account))
            .query_async(&mut self.conn.clone())
            .await?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let until: i64 = stored
            .parse()
            .map_err(|_| CacheError::Corrupt(format!("pause end {stored:?}")))?;
        Ok((until > now.timestamp_millis()).then_some(until))
    }

    async fn record_result(
        &self,
        account: &str,
        success: bool,
        now: DateTime<Utc>,
        policy: BreakerPolicy,
    ) -> Result<BreakerState> {
        self.record(account, success, 1, now, policy).await
    }

    async fn record_successes(
        &self,
        account: &str,
        n: u32,
        now: DateTime<Utc>,
        policy: BreakerPolicy,
    ) -> Result<BreakerState> {
        if n == 0 {
            return self.breaker_state(account, now).await;
        }
        self.record(account, true, n, now, policy).await
    }

    async fn breaker_state(&self, account: &str, now: DateTime<Utc>) -> Result<BreakerState> {
        let reply: (i64, i64) = SCRIPTS
            .breaker_state
            .key(self.key("breaker", account))
            .arg(now.timestamp_millis())
            .invoke_async(&mut self.conn.clone())
            .await?;
        breaker(reply)
    }

    async fn screen(
        &self,
        dedup: Option<DedupMark<'_>>,
        frequency: Option<FrequencyUse<'_>>,
        now: DateTime<Utc>,
    ) -> Result<Screen> {
        let mut call = SCRIPTS.screen.prepare_invoke();
        self.screen_inputs(&mut call, dedup, frequency, now)?;
        let (answer, value): (i64, i64) = call.invoke_async(&mut self.conn.clone()).await?;
        screen_reply(answer, value)
    }

    async fn admit(
        &self,
        account: &str,
        bucket: Option<TokenBucket<'_>>,
        now: DateTime<Utc>,
    ) -> Result<Admission> {
        let mut call = SCRIPTS.admit.prepare_invoke();
        self.admit_inputs(&mut call, account, bucket, now)?;
        let (answer, value): (i64, i64) = call.invoke_async(&mut self.conn.clone()).await?;
        admission_reply(answer, value)
    }

    async fn screen_and_admit(
        &self,
        dedup: Option<DedupMark<'_>>,
        frequency: Option<FrequencyUse<'_>>,
        first: Option<(&str, Option<TokenBucket<'_>>)>,
        now: DateTime<Utc>,
    ) -> Result<(Screen, Option<Admission>)> {
        let Some((account, bucket)) = first else {
            return Ok((self.screen(dedup, frequency, now).await?, None));
        };
        let mut call = SCRIPTS.screen_admit.prepare_invoke();
        self.screen_inputs(&mut call, dedup, frequency, now)?;
        self.admit_inputs(&mut call, account, bucket, now)?;
        let (answer, value, admitted, admitted_value): (i64, i64, i64, i64) =
            call.invoke_async(&mut self.conn.clone()).await?;
        let screen = screen_reply(answer, value)?;
        let admission = match (&screen, admitted) {
            (Screen::Pass, -1) => {
                return Err(CacheError::Corrupt(
                    "screen_admit passed the message without asking the account".to_owned(),
                ));
            }
            (Screen::Pass, _) => Some(admission_reply(admitted, admitted_value)?),
            _ => None,
        };
        Ok((screen, admission))
    }

    async fn ping(&self) -> Result<()> {
        redis::cmd("PING")
            .exec_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn shared_value(&self, name: &str, now: DateTime<Utc>) -> Result<Option<(String, i64)>> {
        // Stored as `{expires_at_ms}:{value}`; Redis drops it at the same instant (PX).
        let stored: Option<String> = redis::cmd("GET")
            .arg(self.key("value", name))
            .query_async(&mut self.conn.clone())
            .await?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let (expires, value) = stored
            .split_once(':')
            .ok_or_else(|| CacheError::Corrupt(format!("shared value {name:?}")))?;
        let expires: i64 = expires
            .parse()
            .map_err(|_| CacheError::Corrupt(format!("shared value {name:?} expiry")))?;
        Ok((expires > now.timestamp_millis()).then(|| (value.to_owned(), expires)))
    }

    async fn set_shared_value(
        &self,
        name: &str,
        value: &str,
        expires_at_ms: i64,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let ttl = types::value_ttl_ms(expires_at_ms, now.timestamp_millis())?;
        redis::cmd("SET")
            .arg(self.key("value", name))
            .arg(format!("{expires_at_ms}:{value}"))
            .arg("PX")
            .arg(ttl)
            .exec_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn forget_shared_value(&self, name: &str, value: &str) -> Result<()> {
        let _forgotten: i64 = SCRIPTS
            .forget_value
            .key(self.key("value", name))
            .arg(value)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    async fn try_lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        _now: DateTime<Utc>,
    ) -> Result<bool> {
        let ttl = types::lock_ms(ttl)?;
        let held: i64 = SCRIPTS
            .try_lock
            .key(self.key("lock", name))
            .arg(owner)
            .arg(ttl)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(held == 1)
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<()> {
        let _freed: i64 = SCRIPTS
            .unlock
            .key(self.key("lock", name))
            .arg(owner)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

/// The process's Redis listener: PSUBSCRIBEs to every channel under the prefix and hands each
/// notification to the hub; after a lost connection it tells every subscriber it may have missed
/// some, and connects again. Ends when the cache's last handle is dropped.
async fn listen(
    client: redis::Client,
    pattern: String,
    prefix: Arc<str>,
    hub: WeakHub,
    ready: watch::Sender<bool>,
    mut stop: watch::Receiver<()>,
) {
    let strip = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}:")
    };
    loop {
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(&pattern).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match connected {
            Ok(Ok(mut pubsub)) => {
                ready.send_replace(true);
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        _ = stop.changed() => return,
                        message = messages.next() => {
                            let Some(message) = message else { break };
                            let Some(hub) = hub.upgrade() else { return };
                            let Some(channel) = message.get_channel_name().strip_prefix(&strip)
                            else {
                                continue;
                            };
                            match message.get_payload::<String>() {
                                Ok(payload) => hub.deliver(channel, &payload),
                                Err(error) => tracing::warn!(%error, "unreadable notification"),
                            }
                        }
                    }
                }
                ready.send_replace(false);
                tracing::warn!("the Redis notification listener lost its connection");
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "the Redis notification listener cannot connect")
            }
            Err(_) => tracing::warn!("the Redis notification listener timed out connecting"),
        }
        match hub.upgrade() {
            Some(hub) => hub.missed_all(),
            None => return,
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(pubsub::RECONNECT_DELAY) => {}
        }
    }
}
