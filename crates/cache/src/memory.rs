//! The embedded default: every policy in process, behind one std `Mutex`. The rules are the
//! Lua scripts' (`src/lua/`), written again in Rust; the contract suite holds both to them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::policy_cache::PolicyCache;
use crate::pubsub::{Hub, Subscription};
use crate::types::{
    self, BREAKER_BUCKETS, BreakerPlan, BreakerPolicy, BreakerState, DedupOutcome,
    FrequencyOutcome, MAX_MS, TokenOutcome,
};

/// The cache of a single process. Clones share one state.
#[derive(Debug, Clone, Default)]
pub struct MemoryCache {
    // A std Mutex, not tokio's: every critical section is a few map operations with no
    // await inside, so an async lock would only add cost.
    state: Arc<Mutex<State>>,
    /// Publish and subscribe, within this process.
    hub: Hub,
}

/// The fewest calls between two sweeps of expired entries. A sweep also waits for as many
/// calls as there are entries, so its cost per call stays constant however many keys there are.
const SWEEP_EVERY: usize = 1024;

#[derive(Debug, Default)]
struct State {
    dedup: HashMap<String, Entry<Mark>>,
    frequency: HashMap<String, Entry<Counter>>,
    buckets: HashMap<String, Entry<Bucket>>,
    pauses: HashMap<String, Entry<()>>,
    breakers: HashMap<String, Entry<Breaker>>,
    values: HashMap<String, Entry<String>>,
    locks: HashMap<String, Entry<String>>,
    calls_since_sweep: usize,
}

/// A value with the instant it may be dropped, as Redis would drop the key: the rules make
/// an expired entry mean the same as a missing one, so dropping it changes no answer.
#[derive(Debug)]
struct Entry<T> {
    value: T,
    expires_at: i64,
}

#[derive(Debug)]
struct Mark {
    first_seen: i64,
    until: i64,
    owner: String,
}

#[derive(Debug)]
struct Counter {
    count: u32,
    period_end: i64,
    /// Who was counted this period: counting the same message again counts nothing.
    owners: HashSet<String>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: i64,
}

#[derive(Debug)]
enum Breaker {
    Closed(Ring),
    Open {
        until: i64,
        trip: Trip,
    },
    HalfOpen {
        trip: Trip,
        issued: u32,
        probe_at: i64,
    },
}

/// What an open breaker remembers of the policy that opened it: `breaker_state` takes no
/// policy, and the probes it hands out are the ones in force when the breaker opened.
#[derive(Debug, Clone, Copy)]
struct Trip {
    probes: u32,
    open_ms: i64,
    keep_ms: i64,
}

/// The rolling window: bucket `b` covers `[b * bucket_ms, (b + 1) * bucket_ms)` and lives
/// in slot `b % BREAKER_BUCKETS` until a later bucket takes the slot.
#[derive(Debug)]
struct Ring {
    bucket_ms: i64,
    slots: [Slot; BREAKER_BUCKETS as usize],
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    bucket: i64,
    ok: u32,
    failed: u32,
}

const EMPTY_SLOT: Slot = Slot {
    bucket: i64::MIN,
    ok: 0,
    failed: 0,
};

impl MemoryCache {
    pub fn new() -> Self {
        MemoryCache::default()
    }

    /// Hands `payload` to this process's subscribers of `channel`.
    pub fn publish(&self, channel: &str, payload: &str) {
        self.hub.deliver(channel, payload);
    }

    /// Subscribes to `channel`: everything published from now on is heard.
    pub fn subscribe(&self, channel: &str) -> Subscription {
        self.hub.subscribe(channel)
    }

    /// Runs `f` under the lock, first sweeping expired entries now and then.
    fn with<R>(&self, now: i64, f: impl FnOnce(&mut State) -> R) -> R {
        // A panic under the lock cannot leave a half-made decision behind (each rule writes
        // its entry last), so a poisoned lock is still usable.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.calls_since_sweep += 1;
        if state.calls_since_sweep >= SWEEP_EVERY.max(state.len()) {
            state.sweep(now);
        }
        f(&mut state)
    }
}

impl State {
    fn len(&self) -> usize {
        self.dedup.len()
            + self.frequency.len()
            + self.buckets.len()
            + self.pauses.len()
            + self.breakers.len()
            + self.values.len()
            + self.locks.len()
    }

    fn sweep(&mut self, now: i64) {
        self.calls_since_sweep = 0;
        self.dedup.retain(|_, e| e.expires_at > now);
        self.frequency.retain(|_, e| e.expires_at > now);
        self.buckets.retain(|_, e| e.expires_at > now);
        self.pauses.retain(|_, e| e.expires_at > now);
        self.breakers.retain(|_, e| e.expires_at > now);
        self.values.retain(|_, e| e.expires_at > now);
        self.locks.retain(|_, e| e.expires_at > now);
    }
}

/// The entry for `key` unless it has expired, in which case it is dropped.
fn live<'a, T>(map: &'a mut HashMap<String, Entry<T>>, key: &str, now: i64) -> Option<&'a T> {
    if map.get(key).is_some_and(|e| e.expires_at <= now) {
        map.remove(key);
    }
    map.get(key).map(|e| &e.value)
}

impl PolicyCache for MemoryCache {
    async fn dedup(
        &self,
        key: &str,
        owner: &str,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<DedupOutcome> {
        let window = types::window_ms(window)?;
        let now = now.timestamp_millis();
        Ok(self.with(now, |state| {
            if let Some(mark) = live(&mut state.dedup, key, now)
                && mark.until > now
            {
                if mark.owner == owner {
                    return DedupOutcome::First;
                }
                return DedupOutcome::Duplicate {
                    first_seen_ms: mark.first_seen,
                };
            }
            let mark = Mark {
                first_seen: now,
                until: now + window,
                owner: owner.to_owned(),
            };
            state.dedup.insert(
                key.to_owned(),
                Entry {
                    value: mark,
                    expires_at: now + window,
                },
            );
            DedupOutcome::First
        }))
    }

    async fn release_dedup(&self, key: &str) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.dedup.remove(key);
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
        Ok(self.with(now, |state| {
            let (count, counted) = match live(&mut state.frequency, key, now) {
                Some(c) if c.period_end > now => (c.count, c.owners.contains(owner)),
                _ => (0, false),
            };
            if counted {
                return FrequencyOutcome::Allowed { count };
            }
            if count >= limit {
                return FrequencyOutcome::Exceeded { count };
            }
            match state.frequency.get_mut(key) {
                Some(entry) if count > 0 => {
                    entry.value.count += 1;
                    entry.value.owners.insert(owner.to_owned());
                }
                _ => {
                    let counter = Counter {
                        count: 1,
                        period_end: period_end_ms,
                        owners: HashSet::from([owner.to_owned()]),
                    };
                    state.frequency.insert(
                        key.to_owned(),
                        Entry {
                            value: counter,
                            expires_at: now + ttl,
                        },
                    );
                }
            }
            FrequencyOutcome::Allowed { count: count + 1 }
        }))
    }

    async fn take_token(
        &self,
        bucket: &str,
        rate_per_sec: f64,
        burst: u32,
        now: DateTime<Utc>,
    ) -> Result<TokenOutcome> {
        types::check_bucket(rate_per_sec, burst)?;
        let now = now.timestamp_millis();
        let burst_f = f64::from(burst);
        Ok(self.with(now, |state| {
            let (mut tokens, mut last) = (burst_f, now);
            if let Some(b) = live(&mut state.buckets, bucket, now) {
                (tokens, last) = (b.tokens, b.last);
                // A worker whose clock is behind refills nothing and moves nothing back.
                if now > last {
                    tokens += (now - last) as f64 * rate_per_sec / 1000.0;
                    last = now;
                }
                tokens = tokens.min(burst_f);
            }
            let outcome = if tokens >= 1.0 {
                tokens -= 1.0;
                TokenOutcome::Taken
            } else {
                TokenOutcome::Wait {
                    retry_after_ms: types::retry_after_ms(tokens, rate_per_sec),
                }
            };
            let ttl = types::bucket_ttl_ms(tokens, rate_per_sec, burst);
            state.buckets.insert(
                bucket.to_owned(),
                Entry {
                    value: Bucket { tokens, last },
                    expires_at: now + ttl,
                },
            );
            outcome
        }))
    }

    async fn pause(&self, account: &str, until_ms: i64, now: DateTime<Utc>) -> Result<()> {
        let now = now.timestamp_millis();
        if until_ms <= now {
            return Ok(());
        }
        let until_ms = until_ms.min(now + MAX_MS);
        self.with(now, |state| {
            live(&mut state.pauses, account, now);
            let entry = state.pauses.entry(account.to_owned()).or_insert(Entry {
                value: (),
                expires_at: until_ms,
            });
            entry.expires_at = entry.expires_at.max(until_ms);
        });
        Ok(())
    }

    async fn paused_until(&self, account: &str, now: DateTime<Utc>) -> Result<Option<i64>> {
        let now = now.timestamp_millis();
        Ok(self.with(now, |state| {
            live(&mut state.pauses, account, now)?;
            state.pauses.get(account).map(|e| e.expires_at)
        }))
    }

    async fn record_result(
        &self,
        account: &str,
        success: bool,
        now: DateTime<Utc>,
        policy: BreakerPolicy,
    ) -> Result<BreakerState> {
        let plan = policy.plan()?;
        let now = now.timestamp_millis();
        Ok(self.with(now, |state| {
            let breakers = &mut state.breakers;
            live(breakers, account, now);
            match breakers.get_mut(account).map(|e| &mut e.value) {
                Some(Breaker::Open { until, .. }) if now < *until => {
                    BreakerState::Open { until_ms: *until }
                }
                Some(Breaker::Open { .. } | Breaker::HalfOpen { .. }) => {
                    if success {
                        breakers.remove(account);
                        BreakerState::Closed
                    } else {
                        open(breakers, account, now, &plan)
                    }
                }
                Some(Breaker::Closed(ring)) if ring.bucket_ms == plan.bucket_ms => {
                    let (calls, failed) = ring.record(success, now);
                    if !success && plan.trips(calls, failed) {
                        return open(breakers, account, now, &plan);
                    }
                    set_expiry(breakers, account, now + plan.span_ms);
                    BreakerState::Closed
                }
                // No breaker yet, or a window of another size: start counting afresh.
                _ => {
                    let mut ring = Ring {
                        bucket_ms: plan.bucket_ms,
                        slots: [EMPTY_SLOT; BREAKER_BUCKETS as usize],
                    };
                    let (calls, failed) = ring.record(success, now);
                    if !success && plan.trips(calls, failed) {
                        return open(breakers, account, now, &plan);
                    }
                    breakers.insert(
                        account.to_owned(),
                        Entry {
                            value: Breaker::Closed(ring),
                            expires_at: now + plan.span_ms,
                        },
                    );
                    BreakerState::Closed
                }
            }
        }))
    }

    async fn breaker_state(&self, account: &str, now: DateTime<Utc>) -> Result<BreakerState> {
        let now = now.timestamp_millis();
        Ok(self.with(now, |state| {
            live(&mut state.breakers, account, now);
            let Some(entry) = state.breakers.get_mut(account) else {
                return BreakerState::Closed;
            };
            match &mut entry.value {
                Breaker::Closed(_) => BreakerState::Closed,
                Breaker::Open { until, .. } if now < *until => {
                    BreakerState::Open { until_ms: *until }
                }
                Breaker::Open { trip, .. } => {
                    // The open period is over: this caller is the first probe.
                    let trip = *trip;
                    entry.value = Breaker::HalfOpen {
                        trip,
                        issued: 1,
                        probe_at: now,
                    };
                    entry.expires_at = now + trip.keep_ms;
                    BreakerState::HalfOpen
                }
                Breaker::HalfOpen {
                    trip,
                    issued,
                    probe_at,
                } => {
                    if *issued < trip.probes {
                        *issued += 1;
                    } else if now >= *probe_at + trip.open_ms {
                        // No probe reported within a round: its worker is presumed dead.
                        (*issued, *probe_at) = (1, now);
                    } else {
                        return BreakerState::Open {
                            until_ms: *probe_at + trip.open_ms,
                        };
                    }
                    entry.expires_at = now + trip.keep_ms;
                    BreakerState::HalfOpen
                }
            }
        }))
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn shared_value(&self, name: &str, now: DateTime<Utc>) -> Result<Option<(String, i64)>> {
        let now = now.timestamp_millis();
        Ok(self.with(now, |state| {
            live(&mut state.values, name, now)?;
            state
                .values
                .get(name)
                .map(|e| (e.value.clone(), e.expires_at))
        }))
    }

    async fn set_shared_value(
        &self,
        name: &str,
        value: &str,
        expires_at_ms: i64,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let now = now.timestamp_millis();
        let ttl = types::value_ttl_ms(expires_at_ms, now)?;
        self.with(now, |state| {
            state.values.insert(
                name.to_owned(),
                Entry {
                    value: value.to_owned(),
                    expires_at: now + ttl,
                },
            );
        });
        Ok(())
    }

    async fn forget_shared_value(&self, name: &str, value: &str) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.values.get(name).is_some_and(|e| e.value == value) {
            state.values.remove(name);
        }
        Ok(())
    }

    async fn try_lock(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let now = now.timestamp_millis();
        let ttl = types::lock_ms(ttl)?;
        Ok(self.with(now, |state| {
            let held_by_other = live(&mut state.locks, name, now).is_some_and(|h| h != owner);
            if held_by_other {
                return false;
            }
            state.locks.insert(
                name.to_owned(),
                Entry {
                    value: owner.to_owned(),
                    expires_at: now + ttl,
                },
            );
            true
        }))
    }

    async fn unlock(&self, name: &str, owner: &str) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.locks.get(name).is_some_and(|e| e.value == owner) {
            state.locks.remove(name);
        }
        Ok(())
    }
}

fn open(
    breakers: &mut HashMap<String, Entry<Breaker>>,
    account: &str,
    now: i64,
    plan: &BreakerPlan,
) -> BreakerState {
    let until = now + plan.open_ms;
    let trip = Trip {
        probes: plan.probes,
        open_ms: plan.open_ms,
        keep_ms: plan.keep_ms,
    };
    breakers.insert(
        account.to_owned(),
        Entry {
            value: Breaker::Open { until, trip },
            expires_at: until + plan.keep_ms,
        },
    );
    BreakerState::Open { until_ms: until }
}

fn set_expiry(breakers: &mut HashMap<String, Entry<Breaker>>, account: &str, at: i64) {
    if let Some(entry) = breakers.get_mut(account) {
        entry.expires_at = at;
    }
}

impl Ring {
    /// Counts one call made at `now`, and returns the calls and failures in the window.
    fn record(&mut self, success: bool, now: i64) -> (u64, u64) {
        let bucket = now.div_euclid(self.bucket_ms);
        let slot = &mut self.slots[bucket.rem_euclid(BREAKER_BUCKETS) as usize];
        // A slot holding a later bucket (a worker whose clock is behind) is counted into
        // as it is: skew moves a call by a bucket at most, and never loses it.
        if slot.bucket < bucket {
            *slot = Slot {
                bucket,
                ok: 0,
                failed: 0,
            };
        }
        if success {
            slot.ok = slot.ok.saturating_add(1);
        } else {
            slot.failed = slot.failed.saturating_add(1);
        }
        self.slots
            .iter()
            .filter(|s| s.bucket > bucket - BREAKER_BUCKETS)
            .fold((0, 0), |(calls, failed), s| {
                (
                    calls + u64::from(s.ok) + u64::from(s.failed),
                    failed + u64::from(s.failed),
                )
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fresh_owner() -> String {
        format!("{:?}", std::time::Instant::now())
    }

    /// Expired entries are dropped by the sweep, by the callers' `now`, so a long-running
    /// process does not keep every key it ever saw.
    #[tokio::test]
    async fn the_sweep_drops_what_has_expired() {
        let cache = MemoryCache::new();
        let t0 = DateTime::from_timestamp_millis(1_000_000).unwrap();
        let window = Duration::from_secs(1);
        for n in 0..SWEEP_EVERY {
            cache
                .dedup(&format!("k{n}"), &fresh_owner(), window, t0)
                .await
                .unwrap();
        }
        let len = |cache: &MemoryCache| cache.state.lock().unwrap().dedup.len();
        assert_eq!(
            len(&cache),
            SWEEP_EVERY,
            "a sweep ran, but nothing had expired"
        );
        let later = t0 + chrono::Duration::seconds(1);
        for _ in 0..SWEEP_EVERY {
            cache.paused_until("a", later).await.unwrap();
        }
        assert_eq!(len(&cache), 0);
    }
}
