//! Shared values and locks, the pieces of a token cache that many processes share: a value
//! lives until its expiry, a lock has one holder at a time, and a dead holder's lock frees
//! itself.

use std::time::Duration;

use cache::{Cache, PolicyCache};
use chrono::Utc;

use crate::support::{at, both_caches, concurrently, ms};

both_caches!(
    a_shared_value_lives_until_its_expiry,
    a_lock_has_one_holder_and_only_the_holder_frees_it,
    concurrent_lockers_get_one_holder,
    a_dead_holders_lock_frees_itself,
);

async fn a_shared_value_lives_until_its_expiry(cache: Cache) {
    assert_eq!(cache.shared_value("token:a", at(0)).await.unwrap(), None);
    cache
        .set_shared_value("token:a", "t-1", ms(7_200_000), at(0))
        .await
        .unwrap();
    assert_eq!(
        cache.shared_value("token:a", at(1_000)).await.unwrap(),
        Some(("t-1".to_owned(), ms(7_200_000)))
    );
    // A value may hold any text, colons included.
    cache
        .set_shared_value("token:a", "t:2:x", ms(7_200_000), at(2_000))
        .await
        .unwrap();
    assert_eq!(
        cache.shared_value("token:a", at(3_000)).await.unwrap(),
        Some(("t:2:x".to_owned(), ms(7_200_000)))
    );
    // Forgetting a value that was replaced meanwhile leaves the new one.
    cache.forget_shared_value("token:a", "t-1").await.unwrap();
    assert!(
        cache
            .shared_value("token:a", at(3_000))
            .await
            .unwrap()
            .is_some()
    );
    cache.forget_shared_value("token:a", "t:2:x").await.unwrap();
    assert_eq!(
        cache.shared_value("token:a", at(3_000)).await.unwrap(),
        None
    );
    cache
        .set_shared_value("token:a", "t-3", ms(7_200_000), at(4_000))
        .await
        .unwrap();
    assert_eq!(
        cache.shared_value("token:a", at(7_200_000)).await.unwrap(),
        None,
        "expired at its instant"
    );
    assert!(
        cache
            .set_shared_value("token:a", "late", ms(0), at(0))
            .await
            .is_err(),
        "a value must expire after now"
    );
}

async fn a_lock_has_one_holder_and_only_the_holder_frees_it(cache: Cache) {
    let ttl = Duration::from_secs(30);
    let now = Utc::now();
    assert!(cache.try_lock("refresh:a", "p1", ttl, now).await.unwrap());
    assert!(!cache.try_lock("refresh:a", "p2", ttl, now).await.unwrap());
    assert!(
        cache.try_lock("refresh:a", "p1", ttl, now).await.unwrap(),
        "the holder takes it again"
    );
    assert!(cache.try_lock("refresh:b", "p2", ttl, now).await.unwrap());
    cache.unlock("refresh:a", "p2").await.unwrap();
    assert!(
        !cache.try_lock("refresh:a", "p2", ttl, now).await.unwrap(),
        "someone else's unlock leaves the lock"
    );
    cache.unlock("refresh:a", "p1").await.unwrap();
    assert!(cache.try_lock("refresh:a", "p2", ttl, now).await.unwrap());
}

async fn concurrent_lockers_get_one_holder(cache: Cache) {
    let now = Utc::now();
    let held = concurrently(50, |i| {
        let cache = cache.clone();
        async move {
            cache
                .try_lock("hot", &format!("p{i}"), Duration::from_secs(30), now)
                .await
                .unwrap()
        }
    })
    .await;
    assert_eq!(held.iter().filter(|h| **h).count(), 1);
}

/// Redis expires locks on its own clock, the in-process cache on the caller's: real time here.
async fn a_dead_holders_lock_frees_itself(cache: Cache) {
    let ttl = Duration::from_millis(100);
    assert!(cache.try_lock("l", "dead", ttl, Utc::now()).await.unwrap());
    assert!(!cache.try_lock("l", "alive", ttl, Utc::now()).await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(cache.try_lock("l", "alive", ttl, Utc::now()).await.unwrap());
}
