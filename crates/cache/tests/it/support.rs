//! Test fixtures: a fresh cache per test on either implementation, and a clock tests move by hand.

use cache::{Cache, MemoryCache, RedisCache};
use chrono::{DateTime, TimeZone, Utc};

pub fn redis_url() -> String {
    std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other test uses, so tests run in parallel on one server.
pub fn unique_prefix() -> String {
    format!("herald-test-{}", uuid::Uuid::now_v7().simple())
}

/// A Redis cache under a fresh prefix. Panics, loudly, when Redis is down: a test that needs
/// it must never pass without it.
pub async fn redis_cache(prefix: &str) -> RedisCache {
    let url = redis_url();
    RedisCache::connect(&url, prefix).await.unwrap_or_else(|e| {
        panic!(
            "Redis is not reachable at {} ({}). Start it, or run scripts/test, which installs and \
             starts it. Set HERALD_TEST_REDIS_URL to use another server.",
            cache::redact(&url),
            chain(&e)
        )
    })
}

/// An error with its causes, on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        // Redis's errors print their IO cause and return it as the source too.
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(&format!(": {cause_text}"));
        }
        source = cause.source();
    }
    text
}

pub struct TestCache {
    pub cache: Cache,
    prefix: Option<String>,
}

impl TestCache {
    pub async fn redis() -> Self {
        let prefix = unique_prefix();
        TestCache {
            cache: Cache::Redis(redis_cache(&prefix).await),
            prefix: Some(prefix),
        }
    }

    pub fn memory() -> Self {
        TestCache {
            cache: Cache::Memory(MemoryCache::new()),
            prefix: None,
        }
    }

    /// Deletes the test's keys. They would expire anyway; this keeps a shared server tidy.
    /// A test that fails leaves its keys for inspection.
    pub async fn cleanup(self) {
        if let Some(prefix) = self.prefix {
            delete_prefix(&prefix).await;
        }
    }
}

pub async fn raw_connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The keys under `prefix`, sorted.
pub async fn keys_under(prefix: &str) -> Vec<String> {
    let mut conn = raw_connection().await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    keys
}

pub async fn delete_prefix(prefix: &str) {
    let keys = keys_under(prefix).await;
    if !keys.is_empty() {
        let mut conn = raw_connection().await;
        redis::cmd("DEL")
            .arg(&keys)
            .exec_async(&mut conn)
            .await
            .unwrap();
    }
}

/// The tests' epoch: a fixed instant on a whole minute, so bucket boundaries are predictable.
/// A dedup owner no other call shares, as each message is.
pub fn fresh_owner() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

/// `ms` milliseconds after [`t0`].
pub fn at(ms: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::milliseconds(ms)
}

/// [`at`] in epoch milliseconds, as the cache answers.
pub fn ms(offset: i64) -> i64 {
    at(offset).timestamp_millis()
}

/// Runs a contract test against both implementations, through the `Cache` enum.
macro_rules! both_caches {
    ($($name:ident),* $(,)?) => {
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let t = crate::support::TestCache::redis().await;
                    super::$name(t.cache.clone()).await;
                    t.cleanup().await;
                }
            )*
        }
        mod in_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let t = crate::support::TestCache::memory();
                    super::$name(t.cache.clone()).await;
                    t.cleanup().await;
                }
            )*
        }
    };
}
pub(crate) use both_caches;

/// Runs `n` copies of `f` at once on the runtime's threads and collects their answers.
pub async fn concurrently<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    // All tasks wait at a barrier, so they really race instead of running one by one as
    // they are spawned.
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let barrier = barrier.clone();
        let fut = f(i);
        tasks.spawn(async move {
            barrier.wait().await;
            fut.await
        });
    }
    tasks.join_all().await
}
