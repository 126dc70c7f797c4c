//! A lane's successful supplier calls, reported to the accounts' breakers together. Each call's
//! result went to the breaker on its own, one Redis round trip a message; a success only adds to
//! the rolling window, so the lane gathers them and reports each account's every few
//! milliseconds in one call. Failures and a probe's result still go at once: a failure may open
//! the breaker, and a probe's success closes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cache::{BreakerPolicy, Cache, PolicyCache};
use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long a success waits at most before its breaker hears of it.
pub(crate) const REPORT_EVERY: Duration = Duration::from_millis(10);

/// Successes not yet reported, by account, with the breaker policy of the latest.
#[derive(Default)]
pub(crate) struct Successes {
    pending: Mutex<HashMap<String, (u32, BreakerPolicy)>>,
    /// Told of the first success after a report, so an idle lane's reporter sleeps.
    added: Notify,
}

impl Successes {
    pub fn add(&self, account: &str, policy: BreakerPolicy) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.is_empty() {
            self.added.notify_one();
        }
        match pending.get_mut(account) {
            Some((n, latest)) => {
                *n = n.saturating_add(1);
                *latest = policy;
            }
            None => {
                pending.insert(account.to_owned(), (1, policy));
            }
        }
    }

    /// Reports what was gathered, one call an account.
    pub async fn report(&self, cache: &Cache) {
        let pending =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let now = Utc::now();
        for (account, (n, policy)) in pending {
            if let Err(error) = cache.record_successes(&account, n, now, policy).await {
                tracing::warn!(%error, %account, successes = n, "recording successes on the breaker failed");
            }
        }
    }
}

/// Until `stop`, waits for a success, gathers more for [`REPORT_EVERY`], and reports them;
/// then reports what is left.
pub(crate) async fn report_until(successes: Arc<Successes>, cache: Cache, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = successes.added.notified() => {}
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(REPORT_EVERY) => {}
        }
        successes.report(&cache).await;
    }
    successes.report(&cache).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache::{BreakerState, MemoryCache};

    /// Ten buckets of one second; opens when half the calls (four at least) failed.
    const POLICY: BreakerPolicy = BreakerPolicy {
        window_ms: 10_000,
        min_calls: 4,
        failure_ratio: 0.5,
        open_ms: 30_000,
        half_open_probes: 1,
    };

    /// Whether four failures now leave `account`'s breaker closed: they do after five
    /// successes were counted (four failed of nine), and open it otherwise (four of four).
    async fn successes_counted(cache: &Cache, account: &str) -> bool {
        let now = Utc::now();
        let mut state = BreakerState::Closed;
        for _ in 0..4 {
            state = cache
                .record_result(account, false, now, POLICY)
                .await
                .expect("in-process breaker");
        }
        state == BreakerState::Closed
    }

    #[tokio::test]
    async fn gathered_successes_reach_the_breaker_soon_and_at_stop() {
        let cache = Cache::Memory(MemoryCache::new());
        let successes = Arc::new(Successes::default());
        let stop = CancellationToken::new();
        let reporter = tokio::spawn(report_until(
            Arc::clone(&successes),
            cache.clone(),
            stop.clone(),
        ));
        for _ in 0..5 {
            successes.add("soon", POLICY);
        }
        tokio::time::sleep(REPORT_EVERY * 5).await;
        assert!(successes.pending.lock().expect("lock").is_empty());
        assert!(successes_counted(&cache, "soon").await);

        // Added just before the lane stops: reported on the way out.
        for _ in 0..5 {
            successes.add("at-stop", POLICY);
        }
        stop.cancel();
        reporter.await.expect("reporter");
        assert!(successes_counted(&cache, "at-stop").await);
        // Without successes, four failures of four open it.
        assert!(!successes_counted(&cache, "none").await);
    }
}
