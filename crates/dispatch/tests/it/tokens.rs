//! The token cache: a burst of callers makes one token request, in one process and across
//! processes sharing Redis; a token is fetched again before it expires and after a refusal.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache::{Cache, RedisCache};
use dispatch::SendError;
use dispatch::tokens::Tokens;

/// A token endpoint: counts requests, takes `delay` to answer, hands out `t1`, `t2`...
#[derive(Clone, Default)]
struct Issuer {
    requests: Arc<AtomicUsize>,
}

impl Issuer {
    async fn fetch(&self, lifetime: Duration) -> Result<(String, Duration), SendError> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok((format!("t{n}"), lifetime))
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn burst(tokens: &[Tokens], issuer: &Issuer, callers: usize) -> Vec<String> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..callers {
        let tokens = tokens[i % tokens.len()].clone();
        let issuer = issuer.clone();
        tasks.spawn(async move {
            tokens
                .get("wecom:corp:1000002", || {
                    issuer.fetch(Duration::from_secs(7200))
                })
                .await
                .unwrap()
        });
    }
    let mut got = Vec::new();
    while let Some(token) = tasks.join_next().await {
        got.push(token.unwrap());
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_in_one_process_makes_one_request() {
    let issuer = Issuer::default();
    let tokens = Tokens::in_process();
    let got = burst(&[tokens], &issuer, 100).await;
    assert_eq!(issuer.requests(), 1);
    assert!(got.iter().all(|t| t == "t1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_across_processes_sharing_redis_makes_one_request() {
    let url = std::env::var("HERALD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("herald-test-{}", uuid::Uuid::now_v7().simple());
    // Four processes: four caches of their own, one Redis.
    let mut processes = Vec::new();
    for _ in 0..4 {
        let redis = RedisCache::connect(&url, &prefix)
            .await
            .unwrap_or_else(|e| panic!("Redis is not reachable at {url}: {e}"));
        processes.push(Tokens::new(Cache::Redis(redis)));
    }
    let issuer = Issuer::default();
    let got = burst(&processes, &issuer, 100).await;
    assert_eq!(issuer.requests(), 1);
    assert!(got.iter().all(|t| t == "t1"));
}

#[tokio::test]
async fn a_token_is_replaced_before_it_expires_and_after_a_refusal() {
    let issuer = Issuer::default();
    let tokens = Tokens::in_process();
    // A token living 100 ms is replaced 10 ms early.
    let short = || issuer.fetch(Duration::from_millis(100));
    assert_eq!(tokens.get("a", short).await.unwrap(), "t1");
    assert_eq!(
        tokens
            .get("a", || issuer.fetch(Duration::from_millis(100)))
            .await
            .unwrap(),
        "t1"
    );
    tokio::time::sleep(Duration::from_millis(95)).await;
    assert_eq!(
        tokens
            .get("a", || issuer.fetch(Duration::from_secs(7200)))
            .await
            .unwrap(),
        "t2"
    );
    // The supplier refused t2: the next call fetches t3. Invalidating t2 again changes nothing.
    tokens.invalidate("a", "t2").await.unwrap();
    let fresh = || issuer.fetch(Duration::from_secs(7200));
    assert_eq!(tokens.get("a", fresh).await.unwrap(), "t3");
    tokens.invalidate("a", "t2").await.unwrap();
    assert_eq!(
        tokens
            .get("a", || issuer.fetch(Duration::from_secs(7200)))
            .await
            .unwrap(),
        "t3"
    );
    // A failed fetch is the caller's error, and the next call tries again.
    tokens.invalidate("a", "t3").await.unwrap();
    let failing = || async {
        Err(SendError::Retryable {
            code: "HTTP_502".to_owned(),
            message: String::new(),
        })
    };
    assert!(tokens.get("a", failing).await.is_err());
    assert_eq!(
        tokens
            .get("a", || issuer.fetch(Duration::from_secs(7200)))
            .await
            .unwrap(),
        "t4"
    );
    assert_eq!(issuer.requests(), 4);
}
