//! `Cache`: Redis when a URL is configured, the in-process cache otherwise, behind the one
//! trait, so dispatch is written once for both.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::memory::MemoryCache;
use crate::policy_cache::PolicyCache;
use crate::redis_cache::RedisCache;
use crate::types::{
    Admission, BreakerPolicy, BreakerState, DedupMark, DedupOutcome, FrequencyOutcome,
    FrequencyUse, Screen, TokenBucket, TokenOutcome,
};

#[derive(Debug, Clone)]
pub enum Cache {
    Redis(RedisCache),
    Memory(MemoryCache),
}

impl Cache {
    /// Connects to Redis at `url` with keys under `prefix`; without a URL (`None` or empty),
    /// keeps everything in this process, which suits a single process only (the prefix is
    /// then unused: nothing is shared).
    pub async fn from_url(url: Option<&str>, prefix: &str) -> Result<Self> {
        match url.map(str::trim) {
            None | Some("") => Ok(Cache::Memory(MemoryCache::new())),
            Some(url) => Ok(Cache::Redis(RedisCache::connect(url, prefix).await?)),
        }
    }

    /// Publishes `payload` on `channel` (under the key prefix on Redis) to every subscriber of
    /// every process sharing this cache.
    pub async fn publish(&self, channel: &str, payload: &str) -> Result<()> {
        match self {
            Cache::Redis(c) => c.publish(channel, payload).await,
            Cache::Memory(c) => {
                c.publish(channel, payload);
                Ok(())
            }
        }
    }

    /// Subscribes to `channel`. Once this returns, everything published afterwards is heard,
    /// or a [`crate::Notice::Missed`] says something may have been lost.
    pub async fn subscribe(&self, channel: &str) -> Result<crate::Subscription> {
        match self {
            Cache::Redis(c) => c.subscribe(channel).await,
            Cache::Memory(c) => Ok(c.subscribe(channel)),
        }
    }

    /// Which implementation this is, for readiness reports: `redis` or `in-process`.
    pub fn kind(&self) -> &'static str {
        match self {
            Cache::Redis(_) => "redis",
            Cache::Memory(_) => "in-process",
        }
    }
}

/// Hides the password of a URL (`redis://user:***@host`), so it can be printed.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    format!("{}://{user}:***@{}", &url[..scheme], &url[at + 1..])
                }
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Forwards a call to whichever implementation this is.
macro_rules! both {
    ($self:ident, $c:ident => $call:expr) => {
        match $self {
            Cache::Redis($c) => $call,
            Cache::Memory($c) => $call,
        }
    };
}

impl PolicyCache for Cache {
    async fn dedup(
        &self,
        key: &str,
        owner: &str,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<DedupOutcome> {
        both!(self, c => c.dedup(key, owner, window, now).await)
    }

    async fn release_dedup(&self, key: &str) -> Result<()> {
        both!(self, c => c.release_dedup(key).await)
    }

    async fn frequency(
        &self,
        key: &str,
        owner: &str,
        limit: u32,
        period_end_ms: i64,
        now: DateTime<Utc>,
    ) -> Result<FrequencyOutcome> {
        both!(self, c => c.frequency(key, owner, limit, period_end_ms, now).await)
    }

    async fn take_token(
        &self,
        bucket: &str,
        rate_per_sec: f64,
        burst: u32,
        now: DateTime<Utc>,
    ) -> Result<TokenOutcome> {
        both!(self, c => c.take_token(bucket, rate_per_sec, burst, now).await)
    }

    async fn pause(&self, account: &str, until_ms: i64, now: DateTime<Utc>) -> Result<()> {
        both!(self, c => c.pause(account, until_ms, now).await)
    }

    async fn paused_until(&self, account: &str, now: DateTime<Utc>) -> Result<Option<i64>> {
        both!(self, c => c.paused_until(account, now).await)
    }

    async fn record_result(
        &self,
        account: &str,
        success: bool,
        now: DateTime<Utc>,
        policy: BreakerPolicy,
    ) -> Result<BreakerState> {
        both!(self, c => c.record_result(account, success, now, policy).await)
    }

    async fn record_successes(
        &self,
        account: &str,
        n: u32,
        now: DateTime<Utc>,
        policy: BreakerPolicy,
    ) -> Result<BreakerState> {
        both!(self, c => c.record_successes(account, n, now, policy).await)
    }

    async fn breaker_state(&self, account: &str, now: DateTime<Utc>) -> Result<BreakerState> {
        both!(self, c => c.breaker_state(account, now).await)
    }

    async fn screen(
        &self,
        dedup: Option<DedupMark<'_>>,
        frequency: Option<FrequencyUse<'_>>,
        now: DateTime<Utc>,
    ) -> Result<Screen> {
        both!(self, c => c.screen(dedup, frequency, now).await)
    }

    async fn admit(
        &self,
        account: &str,
        bucket: Option<TokenBucket<'_>>,
        now: DateTime<Utc>,
    ) -> Result<Admission> {
        both!(self, c => c.admit(account, bucket, now).await)
    }

    async fn screen_and_admit(
        &self,
        dedup: Option<DedupMark<'_>>,
        frequency: Option<FrequencyUse<'_>>,
        first: Option<(&str, Option<TokenBucket<'_>>)>,
        now: DateTime<Utc>,
    ) -> Result<(Screen, Option<Admission>)> {
        both!(self, c => c.screen_and_admit(dedup, frequency, first, now).await)
    }

    async fn ping(&self) -> Result<()> {
        both!(self, c => c.ping().await)
    }

    async fn shared_value(&self, name: &str, now: DateTime<Utc>) -> Result<Option<(String, i64)>> {
        both!(self, c => c.shared_value(name, now).await)
    }

    async fn set_shared_value(
        &self,
        name: &str,
        value: &str,
        expires_at_ms: i64,
        now: DateTime<Utc>,
    ) -> Result<()> {
        both!(self, c => c.set_shared_value(name, value, expires_at_ms, now).await)
    }

    async fn forget_shared_value(&self, name: &str, value: &str) -> Result<()> {
        both!(self, c => c.forget_shared_value(name, value).await)
    }

    async fn try_lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        both!(self, c => c.try_lock(name, owner, ttl, now).await)
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<()> {
        both!(self, c => c.unlock(name, owner).await)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            super::redact("redis://u:secret@h:6379/0"),
            "redis://u:***@h:6379/0"
        );
        assert_eq!(super::redact("redis://:secret@h"), "redis://:***@h");
        assert_eq!(super::redact("redis://h:6379"), "redis://h:6379");
    }
}
