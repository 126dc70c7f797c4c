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
use tokio_util::sync::CancellationToken;

/// How long a success waits at most before its breaker hears of it.
pub(crate) const REPORT_EVERY: Duration = Duration::from_millis(10);

/// Successes not yet reported, by account, with the breaker policy of the latest.
#[derive(Default)]
pub(crate) struct Successes {
    pending: Mutex<HashMap<String, (u32, BreakerPolicy)>>,
}

impl Successes {
    pub fn add(&self, account: &str, policy: BreakerPolicy) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
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

/// Reports `successes` every [`REPORT_EVERY`] until `stop`, then once more.
pub(crate) async fn report_until(successes: Arc<Successes>, cache: Cache, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(REPORT_EVERY) => {}
        }
        successes.report(&cache).await;
    }
    successes.report(&cache).await;
}
