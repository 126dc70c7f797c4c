//! What only Redis has: key prefixes, connection errors, scripts Redis forgot, keys written by
//! someone else; and a long random run checking that Redis and the in-process cache agree.

use std::time::Duration;

use cache::{
    BreakerPolicy, Cache, CacheError, DedupOutcome, MemoryCache, PolicyCache, TokenOutcome,
};

use crate::support::{
    at, chain, delete_prefix, fresh_owner, keys_under, ms, raw_connection, redis_cache, redis_url,
    unique_prefix,
};

#[tokio::test]
async fn prefixes_isolate_two_caches_on_one_redis() {
    let (p1, p2) = (unique_prefix(), unique_prefix());
    let (a, b) = (redis_cache(&p1).await, redis_cache(&p2).await);
    let window = Duration::from_secs(60);
    assert_eq!(
        a.dedup("k", &fresh_owner(), window, at(0)).await.unwrap(),
        DedupOutcome::First
    );
    assert_eq!(
        b.dedup("k", &fresh_owner(), window, at(0)).await.unwrap(),
        DedupOutcome::First
    );
    assert_eq!(
        a.take_token("b", 0.001, 1, at(0)).await.unwrap(),
        TokenOutcome::Taken
    );
    assert_eq!(
        b.take_token("b", 0.001, 1, at(0)).await.unwrap(),
        TokenOutcome::Taken
    );
    a.pause("acct", ms(1_000), at(0)).await.unwrap();
    assert_eq!(b.paused_until("acct", at(0)).await.unwrap(), None);

    // A second cache with the same prefix is the same cache, as for two processes.
    let a2 = redis_cache(&p1).await;
    assert!(matches!(
        a2.dedup("k", &fresh_owner(), window, at(1)).await.unwrap(),
        DedupOutcome::Duplicate { .. }
    ));
    assert_eq!(
        a2.paused_until("acct", at(0)).await.unwrap(),
        Some(ms(1_000))
    );
    delete_prefix(&p1).await;
    delete_prefix(&p2).await;
}

#[tokio::test]
async fn every_key_lives_under_the_prefix_and_expires() {
    let prefix = unique_prefix();
    let cache = redis_cache(&prefix).await;
    assert_eq!(cache.prefix(), prefix);
    let now = at(0);
    cache
        .dedup("d", &fresh_owner(), Duration::from_secs(300), now)
        .await
        .unwrap();
    cache
        .frequency("f", "o", 5, ms(3_600_000), now)
        .await
        .unwrap();
    cache.take_token("b", 10.0, 100, now).await.unwrap();
    cache.pause("p", ms(45_000), now).await.unwrap();
    cache
        .record_result("r", false, now, BreakerPolicy::default())
        .await
        .unwrap();

    let keys = keys_under(&prefix).await;
    let want: Vec<String> = ["breaker:r", "bucket:b", "dedup:d", "frequency:f", "pause:p"]
        .iter()
        .map(|k| format!("{prefix}:{k}"))
        .collect();
    assert_eq!(keys, want);
    // Each key expires by itself once it no longer matters: the window, the period, the time
    // the bucket needs to fill up (100 ms for one token at 10 a second), the pause, and the
    // breaker's rolling window.
    let mut conn = raw_connection().await;
    for (key, ttl_ms) in keys.iter().zip([60_000, 100, 300_000, 3_600_000, 45_000]) {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            pttl > ttl_ms - 5_000 && pttl <= ttl_ms,
            "{key}: {pttl} ms left of {ttl_ms}"
        );
    }
    delete_prefix(&prefix).await;
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error_without_the_password() {
    let err = cache::RedisCache::connect("redis://user:secret@127.0.0.1:1", "p")
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let text = chain(&err);
    assert!(
        text.starts_with("cannot connect to Redis at redis://user:***@127.0.0.1:1: "),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
}

#[tokio::test]
async fn from_url_picks_the_implementation() {
    for url in [None, Some(""), Some("  ")] {
        assert_eq!(
            Cache::from_url(url, "p").await.unwrap().kind(),
            "in-process"
        );
    }
    let prefix = unique_prefix();
    let cache = Cache::from_url(Some(&redis_url()), &prefix).await;
    let cache = cache.unwrap_or_else(|e| panic!("{}; run scripts/test", chain(&e)));
    assert_eq!(cache.kind(), "redis");
    cache.ping().await.unwrap();
    assert!(matches!(
        Cache::from_url(Some("http://127.0.0.1:6379"), "p").await,
        Err(CacheError::InvalidUrl { .. })
    ));
}

#[tokio::test]
async fn scripts_are_loaded_again_after_redis_forgets_them() {
    let prefix = unique_prefix();
    let cache = redis_cache(&prefix).await;
    let window = Duration::from_secs(60);
    assert_eq!(
        cache
            .dedup("k", &fresh_owner(), window, at(0))
            .await
            .unwrap(),
        DedupOutcome::First
    );
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec_async(&mut raw_connection().await)
        .await
        .unwrap();
    assert!(matches!(
        cache
            .dedup("k", &fresh_owner(), window, at(1))
            .await
            .unwrap(),
        DedupOutcome::Duplicate { .. }
    ));
    delete_prefix(&prefix).await;
}

#[tokio::test]
async fn data_written_by_someone_else_is_an_error_not_a_panic() {
    let prefix = unique_prefix();
    let cache = redis_cache(&prefix).await;
    let mut conn = raw_connection().await;
    let set = |key: &str, value: &str| {
        redis::cmd("SET")
            .arg(format!("{prefix}:{key}"))
            .arg(value)
            .clone()
    };
    set("pause:a", "soon").exec_async(&mut conn).await.unwrap();
    set("dedup:k", "x").exec_async(&mut conn).await.unwrap();
    redis::cmd("HSET")
        .arg(format!("{prefix}:breaker:a"))
        .arg(&["state", "open", "until", "later"])
        .exec_async(&mut conn)
        .await
        .unwrap();

    assert!(matches!(
        cache.paused_until("a", at(0)).await,
        Err(CacheError::Corrupt(_))
    ));
    assert!(matches!(
        cache
            .dedup("k", &fresh_owner(), Duration::from_secs(1), at(0))
            .await,
        Err(CacheError::Redis(_))
    ));
    assert!(matches!(
        cache.breaker_state("a", at(0)).await,
        Err(CacheError::Redis(_))
    ));
    delete_prefix(&prefix).await;
}

/// A small deterministic generator (xorshift), so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Three thousand random calls with time moving forward in random steps: Redis's scripts and
/// the Rust rules must give the same answer to every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_memory_answer_alike() {
    let prefix = unique_prefix();
    let redis = Cache::Redis(redis_cache(&prefix).await);
    let memory = Cache::Memory(MemoryCache::new());
    let policy = BreakerPolicy {
        window_ms: 2_000,
        min_calls: 3,
        failure_ratio: 0.5,
        open_ms: 1_500,
        half_open_probes: 2,
    };
    // One rate per bucket: a bucket expires when full at its rate, which a slower rate
    // would not have filled; the two agree on that only in real time.
    let rates = [0.7, 3.0];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut now = 0;
    let mut answers = Vec::new();
    for step in 0..300 {
        now += rng.below(300) as i64;
        // Every key is touched on every step. Breakers must be: an idle breaker is forgotten
        // after its keep time, which Redis counts in real time and this test in `now`.
        for (n, rate) in rates.into_iter().enumerate() {
            let t = at(now);
            let key = format!("k{n}");
            let mut same = |what: &str, a: String, b: String| {
                assert_eq!(a, b, "step {step}, t {now}, {what} {key}: redis vs memory");
                answers.push(a);
            };
            let window = Duration::from_millis(1 + rng.below(3_000));
            if rng.below(8) == 0 {
                redis.release_dedup(&key).await.unwrap();
                memory.release_dedup(&key).await.unwrap();
            }
            same(
                "dedup",
                format!("{:?}", redis.dedup(&key, &fresh_owner(), window, t).await),
                format!("{:?}", memory.dedup(&key, &fresh_owner(), window, t).await),
            );
            let period_end = ms((now / 5_000 + 1) * 5_000);
            // A few owners, so some come back within a period.
            let owner = format!("o{}", rng.below(6));
            same(
                "frequency",
                format!(
                    "{:?}",
                    redis.frequency(&key, &owner, 4, period_end, t).await
                ),
                format!(
                    "{:?}",
                    memory.frequency(&key, &owner, 4, period_end, t).await
                ),
            );
            same(
                "take_token",
                format!("{:?}", redis.take_token(&key, rate, 3, t).await),
                format!("{:?}", memory.take_token(&key, rate, 3, t).await),
            );
            if rng.below(10) == 0 {
                let until = ms(now + rng.below(2_000) as i64);
                redis.pause(&key, until, t).await.unwrap();
                memory.pause(&key, until, t).await.unwrap();
            }
            same(
                "paused_until",
                format!("{:?}", redis.paused_until(&key, t).await),
                format!("{:?}", memory.paused_until(&key, t).await),
            );
            if rng.below(2) == 0 {
                same(
                    "breaker_state",
                    format!("{:?}", redis.breaker_state(&key, t).await),
                    format!("{:?}", memory.breaker_state(&key, t).await),
                );
            } else {
                let success = rng.below(3) == 0;
                same(
                    "record_result",
                    format!("{:?}", redis.record_result(&key, success, t, policy).await),
                    format!("{:?}", memory.record_result(&key, success, t, policy).await),
                );
            }
        }
    }
    // A random run that never met a rule's other branch would prove little.
    for seen in [
        "First",
        "Duplicate",
        "Allowed",
        "Exceeded",
        "Taken",
        "Wait",
        "Some(",
        "Closed",
        "Open {",
        "HalfOpen",
    ] {
        assert!(
            answers.iter().any(|a| a.contains(seen)),
            "no {seen} in the run"
        );
    }
    delete_prefix(&prefix).await;
}
