//! Publish and subscribe: between two Redis caches (two processes) sharing a prefix, never
//! across prefixes; and within the in-process cache.

use std::time::Duration;

use cache::{Cache, MemoryCache, Notice};

use crate::support::{redis_cache, unique_prefix};

async fn next(subscription: &mut cache::Subscription) -> Notice {
    tokio::time::timeout(Duration::from_secs(5), subscription.recv())
        .await
        .expect("a notification within 5 s")
}

#[tokio::test]
async fn a_notification_reaches_every_process_under_the_prefix_only() {
    let prefix = unique_prefix();
    let (a, b) = (
        Cache::Redis(redis_cache(&prefix).await),
        Cache::Redis(redis_cache(&prefix).await),
    );
    let other = Cache::Redis(redis_cache(&unique_prefix()).await);
    let mut on_a = a.subscribe("inbox:t:alice").await.unwrap();
    let mut on_b = b.subscribe("inbox:t:alice").await.unwrap();
    let mut elsewhere = other.subscribe("inbox:t:alice").await.unwrap();
    let mut bob = b.subscribe("inbox:t:bob").await.unwrap();
    b.publish("inbox:t:alice", "hello").await.unwrap();
    assert_eq!(next(&mut on_a).await, Notice::Message("hello".to_owned()));
    assert_eq!(next(&mut on_b).await, Notice::Message("hello".to_owned()));
    a.publish("inbox:t:bob", "hi bob").await.unwrap();
    assert_eq!(next(&mut bob).await, Notice::Message("hi bob".to_owned()));
    assert_eq!(on_a.try_recv(), None);
    assert_eq!(elsewhere.try_recv(), None);
}

#[tokio::test]
async fn the_in_process_cache_delivers_to_its_own_subscribers() {
    let cache = Cache::Memory(MemoryCache::new());
    let clone = cache.clone();
    let mut first = cache.subscribe("inbox:t:r").await.unwrap();
    let mut second = clone.subscribe("inbox:t:r").await.unwrap();
    clone.publish("inbox:t:r", "one").await.unwrap();
    cache.publish("inbox:t:other", "not for us").await.unwrap();
    assert_eq!(next(&mut first).await, Notice::Message("one".to_owned()));
    assert_eq!(next(&mut second).await, Notice::Message("one".to_owned()));
    assert_eq!(first.try_recv(), None);
    // Another in-process cache is another process: nothing is shared.
    let mut apart = MemoryCache::new().subscribe("inbox:t:r");
    cache.publish("inbox:t:r", "two").await.unwrap();
    assert_eq!(next(&mut first).await, Notice::Message("two".to_owned()));
    assert_eq!(apart.try_recv(), None);
}
