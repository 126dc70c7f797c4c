//! Consumer-group leases: a dead member's partitions move to the living within the lease
//! timeout, and a transactional handler applies no event twice across the move.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use store::{
    ConsumerGroup, EventStore, ExpectedVersion, GroupOptions, Store, StreamAppend,
    SubscriptionOptions,
};
use tokio_util::sync::CancellationToken;

use crate::support::{self, Recorder, events, seen, wait_seen};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lease_takeover() {
    let t = support::postgres().await;
    lease_takeover(t.store.clone()).await;
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lease_takeover() {
    let t = support::sqlite().await;
    lease_takeover(t.store.clone()).await;
    t.cleanup().await;
}

const TTL: Duration = Duration::from_secs(2);
const HEARTBEAT: Duration = Duration::from_millis(200);

async fn owners(store: &Store) -> HashMap<String, i64> {
    let sql = "SELECT coalesce(owner, ''), count(*) FROM subscription_leases WHERE subscription = $1 GROUP BY owner";
    let rows: Vec<(String, i64)> = match store {
        Store::Postgres(s) => sqlx::query_as(sql)
            .bind("takeover")
            .fetch_all(s.pool())
            .await
            .unwrap(),
        Store::Sqlite(s) => sqlx::query_as(sql)
            .bind("takeover")
            .fetch_all(s.readers())
            .await
            .unwrap(),
    };
    rows.into_iter().collect()
}

async fn lease_takeover(store: Store) {
    let options = GroupOptions {
        partitions: 8,
        lease_ttl: TTL,
        heartbeat_interval: HEARTBEAT,
        subscription: SubscriptionOptions {
            batch_size: 20,
            poll_interval: Duration::from_millis(100),
            retry_delay: Duration::from_millis(100),
            ..SubscriptionOptions::default()
        },
    };
    let a = ConsumerGroup::new(
        store.clone(),
        "takeover",
        Recorder::new("takeover"),
        options.clone(),
    );
    let b = ConsumerGroup::new(
        store.clone(),
        "takeover",
        Recorder::new("takeover"),
        options,
    );
    let (a_id, b_id) = (a.member().to_owned(), b.member().to_owned());
    let shutdown = CancellationToken::new();
    let a_task = tokio::spawn(a.run(shutdown.child_token()));
    let b_task = tokio::spawn(b.run(shutdown.clone()));

    // Writers keep going through the whole test.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for round in 0..40 {
                let batch: Vec<_> = (0..10)
                    .map(|s| StreamAppend {
                        stream_id: format!("message-{s}"),
                        expected: ExpectedVersion::Any,
                        events: events(5),
                    })
                    .collect();
                store.append(&batch).await.unwrap();
                tokio::time::sleep(Duration::from_millis(if round < 20 { 100 } else { 50 })).await;
            }
        })
    };

    // Both members settle on half the partitions each.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = owners(&store).await;
        if o.get(&a_id) == Some(&4) && o.get(&b_id) == Some(&4) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "partitions never split evenly: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A dies without a word: its task is dropped mid-flight, its leases left to expire.
    a_task.abort();
    let died = Instant::now();
    loop {
        let o = owners(&store).await;
        if o.get(&b_id) == Some(&8) {
            break;
        }
        assert!(
            died.elapsed() < TTL + HEARTBEAT * 3,
            "partitions did not move within the lease timeout: {o:?} after {:?}",
            died.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let moved = died.elapsed();
    assert!(moved <= TTL + HEARTBEAT * 3, "moved after {moved:?}");

    writer.await.unwrap();
    let total = 40 * 10 * 5;
    wait_seen(&store, "takeover", total, 60).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    b_task.await.unwrap().unwrap();

    let seen = seen(&store, "takeover").await;
    let unique: std::collections::HashSet<_> = seen.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(unique.len(), seen.len(), "an event was applied twice");
    assert_eq!(seen.len() as i64, total);
    // B left cleanly: every lease is free again.
    let o = owners(&store).await;
    assert_eq!(o.get(""), Some(&8), "{o:?}");
    assert!(store.stream_version("message-0").await.unwrap().is_some());
}
