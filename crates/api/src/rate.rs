//! A token bucket per API key, in process. Each Herald process limits on its own; the shared
//! Redis limiter arrives with the cache layer of the dispatch engine.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    // A std Mutex: the critical section is a few arithmetic steps and never awaits.
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_second` requests a second on average, up to `burst` at once. Zero turns it off.
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimiter {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; `false` when the key is over its rate.
    pub fn allow(&self, key: &str, now: Instant) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, last) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = RateLimiter::new(10, 3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.allow("k", t0)));
        assert!(!limiter.allow("k", t0));
        assert!(limiter.allow("other", t0), "keys are limited apart");
        assert!(limiter.allow("k", t0 + Duration::from_millis(100)));
        assert!(!limiter.allow("k", t0 + Duration::from_millis(100)));
    }
}
