//! The values of the API, and the checks and derived numbers both implementations share, so
//! they refuse the same arguments and store the same instants.

use std::time::Duration;

use crate::error::{CacheError, Result};

/// The answer to [`dedup`](crate::PolicyCache::dedup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupOutcome {
    /// Nobody marked the key within the window; it is marked now.
    First,
    /// Someone marked the key at `first_seen_ms`, and the window has not ended.
    Duplicate { first_seen_ms: i64 },
}

/// The answer to [`frequency`](crate::PolicyCache::frequency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrequencyOutcome {
    /// This use was counted; `count` is the period's total including it.
    Allowed { count: u32 },
    /// The limit was already reached; `count` uses were counted, this one was not.
    Exceeded { count: u32 },
}

/// The answer to [`take_token`](crate::PolicyCache::take_token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOutcome {
    Taken,
    /// The bucket has less than one token; one will be there in `retry_after_ms` (rounded
    /// up) unless someone else takes it first.
    Wait {
        retry_after_ms: u64,
    },
}

/// A circuit breaker's answer for one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Calls must wait until `until_ms`.
    Open {
        until_ms: i64,
    },
    /// The caller may make one probe call and must report its result.
    HalfOpen,
}

/// When a breaker opens and how it recovers. See
/// [`record_result`](crate::PolicyCache::record_result).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// The rolling window over which failures are counted. It is kept as ten buckets of a
    /// tenth of the window each (rounded up), so a call leaves the window between 90 % and
    /// 100 % of it after it was made: a fixed cost per account, however busy.
    pub window_ms: u64,
    /// Fewer calls than this in the window never open the breaker.
    pub min_calls: u32,
    /// The share of failed calls, in `(0, 1]`, at which the breaker opens.
    pub failure_ratio: f64,
    /// How long the breaker stays open; also how long a round of probes may take.
    pub open_ms: u64,
    /// How many calls a half-open breaker lets through as probes.
    pub half_open_probes: u32,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            window_ms: 60_000,
            min_calls: 20,
            failure_ratio: 0.5,
            open_ms: 30_000,
            half_open_probes: 1,
        }
    }
}

/// The longest duration accepted anywhere: ten years. It keeps every instant the cache
/// computes far inside `i64` and Lua's exact integers (2^53), whatever the caller passes.
pub(crate) const MAX_MS: i64 = 10 * 366 * 24 * 3600 * 1000;

/// The buckets of a breaker's rolling window.
pub(crate) const BREAKER_BUCKETS: i64 = 10;

fn duration_ms(what: &str, ms: u128) -> Result<i64> {
    match i64::try_from(ms) {
        Ok(ms) if (1..=MAX_MS).contains(&ms) => Ok(ms),
        _ => Err(CacheError::InvalidArgument(format!(
            "{what} must be between 1 ms and ten years, not {ms} ms"
        ))),
    }
}

/// A dedup window in milliseconds.
pub(crate) fn window_ms(window: Duration) -> Result<i64> {
    duration_ms("a dedup window", window.as_millis())
}

/// The time to live of a frequency counter ending at `period_end_ms`.
pub(crate) fn period_ms(period_end_ms: i64, now_ms: i64) -> Result<i64> {
    if period_end_ms <= now_ms {
        return Err(CacheError::InvalidArgument(format!(
            "a frequency period must end after now ({now_ms}), not at {period_end_ms}"
        )));
    }
    duration_ms(
        "a frequency period",
        u128::from(period_end_ms.abs_diff(now_ms)),
    )
}

/// The time to live of a shared value ending at `expires_at_ms`.
pub(crate) fn value_ttl_ms(expires_at_ms: i64, now_ms: i64) -> Result<i64> {
    if expires_at_ms <= now_ms {
        return Err(CacheError::InvalidArgument(format!(
            "a shared value must expire after now ({now_ms}), not at {expires_at_ms}"
        )));
    }
    duration_ms(
        "a shared value's life",
        u128::from(expires_at_ms.abs_diff(now_ms)),
    )
}

/// A lock's time to live in milliseconds.
pub(crate) fn lock_ms(ttl: Duration) -> Result<i64> {
    duration_ms("a lock", ttl.as_millis())
}

/// A dedup mark to set (see [`crate::PolicyCache::dedup`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupMark<'a> {
    pub key: &'a str,
    pub owner: &'a str,
    pub window: std::time::Duration,
}

/// A use of a frequency cap to count (see [`crate::PolicyCache::frequency`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrequencyUse<'a> {
    pub key: &'a str,
    pub owner: &'a str,
    pub limit: u32,
    pub period_end_ms: i64,
}

/// What [`crate::PolicyCache::screen`] says of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Neither check stops it: its mark is set and its use counted.
    Pass,
    /// A duplicate of a message marked at `first_seen_ms`.
    Duplicate { first_seen_ms: i64 },
    /// The cap was already reached with `count` uses.
    Exceeded { count: u32 },
}

/// A token bucket to take from: its name, how many tokens it gains a second and how many it
/// holds (see [`crate::PolicyCache::take_token`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket<'a> {
    pub name: &'a str,
    pub rate_per_sec: f64,
    pub burst: u32,
}

/// What [`crate::PolicyCache::admit`] says of a call to an account now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; as the breaker's probe when `probe` (report the result).
    Go { probe: bool },
    /// The account is paused until `until_ms`.
    Paused { until_ms: i64 },
    /// The account's bucket has no token; one will be there in `retry_after_ms`.
    NoToken { retry_after_ms: u64 },
    /// The account's breaker is open until `until_ms`.
    Open { until_ms: i64 },
}

pub(crate) fn check_bucket(rate_per_sec: f64, burst: u32) -> Result<()> {
    if !(rate_per_sec.is_finite() && rate_per_sec > 0.0) {
        return Err(CacheError::InvalidArgument(format!(
            "a token bucket's rate must be positive, not {rate_per_sec}"
        )));
    }
    if burst == 0 {
        return Err(CacheError::InvalidArgument(
            "a token bucket's burst must be at least 1".to_owned(),
        ));
    }
    Ok(())
}

/// How long a bucket with `tokens` takes to fill up: past that it equals a missing bucket,
/// so it may expire. Both implementations compute it this way (the Lua in doubles too).
pub(crate) fn bucket_ttl_ms(tokens: f64, rate_per_sec: f64, burst: u32) -> i64 {
    let full = ((f64::from(burst) - tokens) * 1000.0 / rate_per_sec).ceil();
    // Float to int casts saturate; the clamp keeps the time to live valid for PEXPIRE.
    (full as i64).clamp(1, MAX_MS)
}

/// How long until one token is there: `tokens` is below one.
pub(crate) fn retry_after_ms(tokens: f64, rate_per_sec: f64) -> u64 {
    ((1.0 - tokens) * 1000.0 / rate_per_sec).ceil() as u64
}

/// The numbers a breaker stores, derived once from a checked policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BreakerPlan {
    pub bucket_ms: i64,
    /// The whole ring, `BREAKER_BUCKETS * bucket_ms`: after this long without a call, a
    /// closed breaker's counts have all left the window.
    pub span_ms: i64,
    pub min_calls: u32,
    pub failure_ratio: f64,
    pub open_ms: i64,
    pub probes: u32,
    /// How long a half-open breaker is kept without news: one probe round plus a window.
    /// After that an idle account's breaker is forgotten, that is closed.
    pub keep_ms: i64,
}

impl BreakerPolicy {
    pub(crate) fn plan(&self) -> Result<BreakerPlan> {
        let window_ms = duration_ms("a breaker window", u128::from(self.window_ms))?;
        let open_ms = duration_ms("a breaker's open time", u128::from(self.open_ms))?;
        if !(self.failure_ratio > 0.0 && self.failure_ratio <= 1.0) {
            return Err(CacheError::InvalidArgument(format!(
                "a breaker's failure ratio must be in (0, 1], not {}",
                self.failure_ratio
            )));
        }
        if self.min_calls == 0 || self.half_open_probes == 0 {
            return Err(CacheError::InvalidArgument(
                "a breaker needs at least one call to open and one probe to close".to_owned(),
            ));
        }
        let bucket_ms = (window_ms + BREAKER_BUCKETS - 1) / BREAKER_BUCKETS;
        let span_ms = bucket_ms * BREAKER_BUCKETS;
        Ok(BreakerPlan {
            bucket_ms,
            span_ms,
            min_calls: self.min_calls,
            failure_ratio: self.failure_ratio,
            open_ms,
            probes: self.half_open_probes,
            keep_ms: open_ms + span_ms,
        })
    }
}

impl BreakerPlan {
    /// Whether `failed` of `calls` in the window open the breaker.
    pub(crate) fn trips(&self, calls: u64, failed: u64) -> bool {
        calls >= u64::from(self.min_calls) && failed as f64 / calls as f64 >= self.failure_ratio
    }
}
