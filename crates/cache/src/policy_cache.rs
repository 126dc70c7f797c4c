//! The one trait both implementations keep, checked by one contract suite
//! (`tests/it/contract.rs`) run against each.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::types::{
    Admission, BreakerPolicy, BreakerState, DedupMark, DedupOutcome, FrequencyOutcome,
    FrequencyUse, Screen, TokenBucket, TokenOutcome,
};

/// Shared, atomic state for dispatch policies. Every decision is made in one step on the
/// server (or under one lock), so any number of workers in any number of processes agree.
///
/// Instants are epoch milliseconds, except `now`, which callers pass so that the cache never
/// reads a clock: a test moves time by passing a later `now`. Expiry (Redis `PEXPIRE`, or the
/// in-process sweep) only frees memory; every decision compares stored instants with `now`.
///
/// Methods return `impl Future + Send` rather than being `async fn`, so generic callers can
/// spawn the futures on a multi-threaded runtime.
pub trait PolicyCache: Clone + Send + Sync + 'static {
    /// Marks `key` for `window` unless it is already marked: the first caller within a window
    /// gets [`DedupOutcome::First`], later ones [`DedupOutcome::Duplicate`] with the instant
    /// of the first. A duplicate does not extend the window. The mark remembers its `owner`
    /// (a message id): the same owner asking again gets `First` again, so a message redelivered
    /// after a worker crash is not taken for a duplicate of itself.
    fn dedup(
        &self,
        key: &str,
        owner: &str,
        window: Duration,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<DedupOutcome>> + Send;

    /// Forgets a dedup mark, so a message that failed for good does not block the business
    /// from sending it again. Forgetting an unknown key is not an error.
    fn release_dedup(&self, key: &str) -> impl Future<Output = Result<()>> + Send;

    /// Counts one use of `key` if fewer than `limit` were counted in the current period. An
    /// exceeded call counts nothing. The counter starts on the first use after the previous
    /// period ended and lasts until `period_end_ms` (the caller computes it, for instance the
    /// end of the receiver's day in the tenant's zone), which must be after `now`. The use is
    /// `owner`'s (a message id): an owner counted this period is allowed again and counts
    /// nothing, so a message that comes back (after a deferral, a rate limit, a crash) is not
    /// counted twice.
    fn frequency(
        &self,
        key: &str,
        owner: &str,
        limit: u32,
        period_end_ms: i64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<FrequencyOutcome>> + Send;

    /// Takes one token from a bucket that holds at most `burst` tokens and gains
    /// `rate_per_sec` each second, starting full. Without a token the answer says how long
    /// until one is there; nothing is reserved.
    fn take_token(
        &self,
        bucket: &str,
        rate_per_sec: f64,
        burst: u32,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<TokenOutcome>> + Send;

    /// Pauses an account until `until_ms`, for every worker. A pause never shortens one
    /// already in force, a pause that has already ended does nothing, and none lasts more
    /// than ten years (`until_ms` often comes from a supplier's `Retry-After`).
    fn pause(
        &self,
        account: &str,
        until_ms: i64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// When the account's pause ends, or `None` if it is not paused at `now`.
    fn paused_until(
        &self,
        account: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<i64>>> + Send;

    /// Records the result of one call to an account, and returns the breaker's state after it.
    ///
    /// Closed: when at least `min_calls` calls in the rolling window failed in at least
    /// `failure_ratio` of cases, the breaker opens for `open_ms`. Open: results of calls made
    /// before it opened are ignored. Half-open (or open past its end): a success closes it
    /// with a fresh window, a failure opens it again.
    fn record_result(
        &self,
        account: &str,
        success: bool,
        now: DateTime<Utc>,
        policy: BreakerPolicy,
    ) -> impl Future<Output = Result<BreakerState>> + Send;

    /// Records `n` successful calls to an account at `now`, as `n` calls of
    /// [`record_result`](Self::record_result) with a success would: for a worker that gathers
    /// its successes and reports them together. Redis counts them in one round trip.
    fn record_successes(
        &self,
        account: &str,
        n: u32,
        now: DateTime<Utc>,
        policy: BreakerPolicy,
    ) -> impl Future<Output = Result<BreakerState>> + Send {
        async move {
            let mut state = BreakerState::Closed;
            for _ in 0..n {
                state = self.record_result(account, true, now, policy).await?;
            }
            Ok(state)
        }
    }

    /// Asks whether a call may go to the account now. Ask right before each call.
    ///
    /// [`Closed`](BreakerState::Closed): go ahead. [`Open`](BreakerState::Open): not before
    /// `until_ms`. [`HalfOpen`](BreakerState::HalfOpen): go ahead as a probe, and report the
    /// result with [`record_result`](Self::record_result). Once the open period is over,
    /// each half-open answer hands out one of the policy's `half_open_probes` slots; while
    /// they are all out, callers see `Open` until the probes report or, if none does within
    /// `open_ms` (a worker died mid-call), a new round of probes starts.
    fn breaker_state(
        &self,
        account: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<BreakerState>> + Send;

    /// The checks of a message before any account is asked, in this order: its dedup mark
    /// ([`dedup`](Self::dedup)), then its use of a frequency cap
    /// ([`frequency`](Self::frequency)); a duplicate is not counted. Redis answers in one
    /// round trip.
    fn screen(
        &self,
        dedup: Option<DedupMark<'_>>,
        frequency: Option<FrequencyUse<'_>>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Screen>> + Send {
        async move {
            if let Some(mark) = dedup
                && let DedupOutcome::Duplicate { first_seen_ms } =
                    self.dedup(mark.key, mark.owner, mark.window, now).await?
            {
                return Ok(Screen::Duplicate { first_seen_ms });
            }
            if let Some(usage) = frequency
                && let FrequencyOutcome::Exceeded { count } = self
                    .frequency(
                        usage.key,
                        usage.owner,
                        usage.limit,
                        usage.period_end_ms,
                        now,
                    )
                    .await?
            {
                return Ok(Screen::Exceeded { count });
            }
            Ok(Screen::Pass)
        }
    }

    /// The checks before a call to `account`, in this order: its pause
    /// ([`paused_until`](Self::paused_until)), a token from `bucket` when it has a rate limit
    /// ([`take_token`](Self::take_token)), and its breaker
    /// ([`breaker_state`](Self::breaker_state)). The first that says wait is the answer and the
    /// checks after it are not made: a paused account spends no token, and an account out of
    /// tokens is handed no probe. Redis answers in one round trip.
    fn admit(
        &self,
        account: &str,
        bucket: Option<TokenBucket<'_>>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Admission>> + Send {
        async move {
            if let Some(until_ms) = self.paused_until(account, now).await? {
                return Ok(Admission::Paused { until_ms });
            }
            if let Some(bucket) = bucket
                && let TokenOutcome::Wait { retry_after_ms } = self
                    .take_token(bucket.name, bucket.rate_per_sec, bucket.burst, now)
                    .await?
            {
                return Ok(Admission::NoToken { retry_after_ms });
            }
            Ok(match self.breaker_state(account, now).await? {
                BreakerState::Closed => Admission::Go { probe: false },
                BreakerState::HalfOpen => Admission::Go { probe: true },
                BreakerState::Open { until_ms } => Admission::Open { until_ms },
            })
        }
    }

    /// [`screen`](Self::screen), then, only when the message passes and `first` names an
    /// account (with its bucket), [`admit`](Self::admit) for it: the account a message would
    /// go through first is asked with the message's own checks. The admission is `None` when
    /// it was not asked. Redis answers both in one round trip.
    fn screen_and_admit(
        &self,
        dedup: Option<DedupMark<'_>>,
        frequency: Option<FrequencyUse<'_>>,
        first: Option<(&str, Option<TokenBucket<'_>>)>,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(Screen, Option<Admission>)>> + Send {
        async move {
            let screen = self.screen(dedup, frequency, now).await?;
            let admission = match (&screen, first) {
                (Screen::Pass, Some((account, bucket))) => {
                    Some(self.admit(account, bucket, now).await?)
                }
                _ => None,
            };
            Ok((screen, admission))
        }
    }

    /// Checks that the cache answers, for readiness.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;

    /// A value every process shares (a supplier's access token) and the instant it stops being
    /// valid, or `None` when there is none or it has expired at `now`.
    fn shared_value(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<(String, i64)>>> + Send;

    /// Keeps `value` under `name` until `expires_at_ms` (which must be after `now`), replacing
    /// what was there.
    fn set_shared_value(
        &self,
        name: &str,
        value: &str,
        expires_at_ms: i64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Forgets the shared value `name` if it still is `value` (a token the supplier refused); a
    /// newer value stored meanwhile stays.
    fn forget_shared_value(
        &self,
        name: &str,
        value: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Takes the lock `name` for `owner` for `ttl`, unless another owner holds it: `true` when
    /// `owner` holds it now. Taking a lock one already holds extends it. A lock whose holder
    /// died frees itself after `ttl`.
    fn try_lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Frees the lock `name` if `owner` holds it; someone else's lock is left alone.
    fn unlock(&self, name: &str, owner: &str) -> impl Future<Output = Result<()>> + Send;
}
