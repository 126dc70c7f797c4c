//! No reader skips an event and none sees one twice, while writers commit out of order.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store::{
    Checkpoint, CheckpointKey, ConsumerGroup, EventStore, ExpectedVersion, GroupOptions, LogFilter,
    Store, StreamAppend, SubscriptionOptions,
};
use tokio_util::sync::CancellationToken;

use crate::support::{self, Recorder, event, seen, wait_seen};

const WRITERS: u64 = 8;
const STREAMS: u64 = 2_000;
const EVENTS_PER_STREAM: u64 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_no_skip_no_duplicate_under_concurrent_writers() {
    let t = support::postgres().await;
    no_skip_no_duplicate(t.store.clone(), 20).await;
    t.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_no_skip_no_duplicate_under_concurrent_writers() {
    let t = support::sqlite().await;
    // SQLite's single writer holds the file while a transaction sleeps, so shorter delays.
    no_skip_no_duplicate(t.store.clone(), 1).await;
    t.cleanup().await;
}

/// 8 writers append 20,000 events over 2,000 streams in transactions that sleep between insert
/// and commit, and roll back about one in ten. Meanwhile three members of one partitioned
/// consumer group and one unpartitioned subscriber follow the log live.
async fn no_skip_no_duplicate(store: Store, max_delay_ms: u64) {
    let shutdown = CancellationToken::new();
    let subscription = SubscriptionOptions {
        batch_size: 200,
        poll_interval: Duration::from_millis(200),
        retry_delay: Duration::from_millis(100),
        ..SubscriptionOptions::default()
    };
    let mut readers = Vec::new();
    for _ in 0..3 {
        let options = GroupOptions {
            partitions: 8,
            lease_ttl: Duration::from_secs(3),
            heartbeat_interval: Duration::from_millis(200),
            subscription: subscription.clone(),
        };
        let group = ConsumerGroup::new(store.clone(), "group", Recorder::new("group"), options);
        readers.push(tokio::spawn(group.run(shutdown.clone())));
    }
    {
        let (store, shutdown, options) = (store.clone(), shutdown.clone(), subscription.clone());
        readers.push(tokio::spawn(async move {
            let key = CheckpointKey::new("solo", 0);
            store::subscription::run(
                &store,
                &key,
                None,
                &options,
                &Recorder::new("solo"),
                &shutdown,
            )
            .await
        }));
    }

    let committed = Arc::new(Mutex::new(Vec::<(String, String, i64)>::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(write(
                store.clone(),
                w,
                max_delay_ms,
                Arc::clone(&committed),
            ))
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let committed = committed.lock().unwrap().clone();
    let total = (STREAMS * EVENTS_PER_STREAM) as i64;
    assert_eq!(committed.len() as i64, total);

    wait_seen(&store, "solo", total, 120).await;
    wait_seen(&store, "group", total, 120).await;
    // Anything extra would show up now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    for reader in readers {
        reader.await.unwrap().unwrap();
    }

    let expected: HashSet<&String> = committed.iter().map(|(id, _, _)| id).collect();
    for subscriber in ["solo", "group"] {
        let seen = seen(&store, subscriber).await;
        assert_eq!(
            seen.len() as i64,
            total,
            "{subscriber}: each event exactly once"
        );
        let ids: HashSet<&String> = seen.iter().map(|(id, _, _)| id).collect();
        assert_eq!(ids.len(), seen.len(), "{subscriber}: no duplicates");
        assert_eq!(ids, expected, "{subscriber}: exactly the committed set");
        let mut last: HashMap<&str, i64> = HashMap::new();
        for (_, stream, position) in &seen {
            let previous = last.insert(stream, *position).unwrap_or(0);
            assert_eq!(*position, previous + 1, "{subscriber}: {stream} in order");
        }
    }
    // And the log itself holds exactly the committed events.
    let mut at = Checkpoint::START;
    let mut in_log = 0;
    loop {
        let batch = support::read_settled(&store, at, &LogFilter::all(), 5_000).await;
        if batch.events.is_empty() {
            break;
        }
        in_log += batch.events.len() as i64;
        at = batch.next;
    }
    assert_eq!(in_log, total);
}

/// One writer: owns the streams `s % WRITERS == w` and appends until each holds its events,
/// in transactions of 1-3 streams with 1-4 events each.
async fn write(
    store: Store,
    w: u64,
    max_delay_ms: u64,
    committed: Arc<Mutex<Vec<(String, String, i64)>>>,
) {
    let mut rng = StdRng::seed_from_u64(w);
    let mut remaining: Vec<(String, u64)> = (0..STREAMS)
        .filter(|s| s % WRITERS == w)
        .map(|s| (format!("message-{s}"), EVENTS_PER_STREAM))
        .collect();
    while !remaining.is_empty() {
        let k = rng.random_range(1..=3).min(remaining.len());
        let mut batch = Vec::new();
        for i in 0..k {
            let (stream, left) =
                &remaining[(i * 7 + rng.random_range(0..remaining.len())) % remaining.len()];
            if batch.iter().any(|a: &StreamAppend| &a.stream_id == stream) {
                continue;
            }
            let n = rng.random_range(1..=4).min(*left);
            batch.push(StreamAppend {
                stream_id: stream.clone(),
                expected: ExpectedVersion::Any,
                events: (0..n).map(event).collect(),
            });
        }
        let mut tx = store.begin().await.unwrap();
        let versions = store.append_in(&mut tx, &batch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..=max_delay_ms))).await;
        if rng.random_bool(0.1) {
            tx.rollback().await.unwrap();
            continue;
        }
        tx.commit().await.unwrap();
        let mut committed = committed.lock().unwrap();
        for (append, version) in batch.iter().zip(versions) {
            let first = version - append.events.len() as u64 + 1;
            for (i, e) in append.events.iter().enumerate() {
                committed.push((
                    e.event_id.to_string(),
                    append.stream_id.clone(),
                    (first + i as u64) as i64,
                ));
            }
            let entry = remaining
                .iter_mut()
                .find(|(s, _)| *s == append.stream_id)
                .unwrap();
            entry.1 -= append.events.len() as u64;
        }
        remaining.retain(|(_, left)| *left > 0);
    }
}

/// Two transactions on two connections: the one with the lower transaction id commits last.
/// A reader must not pass it while it is open, and must see it once it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reader_waits_for_a_lower_transaction_that_commits_later() {
    let t = support::postgres().await;
    let store = &t.store;
    let one = |stream: &str| {
        [StreamAppend {
            stream_id: stream.into(),
            expected: ExpectedVersion::NoStream,
            events: vec![event(1)],
        }]
    };

    let mut older = store.begin().await.unwrap();
    store.append_in(&mut older, &one("first-1")).await.unwrap();
    let mut newer = store.begin().await.unwrap();
    store.append_in(&mut newer, &one("second-1")).await.unwrap();
    newer.commit().await.unwrap();

    // "second" is committed with a higher transaction id and a higher position, while "first"
    // is still open. A reader ordering by position alone would return "second" now and later
    // skip "first".
    let before = store
        .read_log(Checkpoint::START, &LogFilter::all(), 100)
        .await
        .unwrap();
    assert!(
        before.events.is_empty(),
        "read past an open transaction: {:?}",
        before.events
    );
    // Nor may the resume point pass the open transaction.
    older.commit().await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut at = before.next;
    let mut got = Vec::new();
    while got.len() < 2 {
        let batch = store.read_log(at, &LogFilter::all(), 100).await.unwrap();
        got.extend(batch.events.iter().map(|e| e.stream_id.clone()));
        at = batch.next;
        assert!(tokio::time::Instant::now() < deadline, "saw only {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(got, vec!["first-1".to_owned(), "second-1".to_owned()]);
    t.cleanup().await;
}

/// An append must be the first write of its transaction on Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_append_after_another_write_is_refused() {
    let t = support::postgres().await;
    let mut tx = t.store.begin().await.unwrap();
    store::on_tx!(tx, |conn| sqlx::query("INSERT INTO test_seen (subscriber, event_id, stream_id, stream_position) VALUES ('x', 'y', 'z', 1)").execute(conn).await.map(|r| r.rows_affected())).unwrap();
    let batch = [StreamAppend {
        stream_id: "late-1".into(),
        expected: ExpectedVersion::Any,
        events: vec![event(1)],
    }];
    let result = t.store.append_in(&mut tx, &batch).await;
    assert!(
        matches!(result, Err(store::StoreError::AppendNotFirstWrite)),
        "{result:?}"
    );
    tx.rollback().await.unwrap();

    // The same for a batch that only creates streams, which reads no versions first: the
    // check is in the insert, and nothing is written.
    let mut tx = t.store.begin().await.unwrap();
    store::on_tx!(tx, |conn| sqlx::query("INSERT INTO test_seen (subscriber, event_id, stream_id, stream_position) VALUES ('x', 'y', 'z', 1)").execute(conn).await.map(|r| r.rows_affected())).unwrap();
    let batch = [StreamAppend {
        stream_id: "late-2".into(),
        expected: ExpectedVersion::NoStream,
        events: vec![event(1), event(2)],
    }];
    let result = t.store.append_in(&mut tx, &batch).await;
    assert!(
        matches!(result, Err(store::StoreError::AppendNotFirstWrite)),
        "{result:?}"
    );
    tx.commit().await.unwrap();
    assert_eq!(t.store.stream_version("late-2").await.unwrap(), None);

    // And for a batch that extends streams at exact versions, which reads none either.
    t.store
        .append(&[StreamAppend {
            stream_id: "late-3".into(),
            expected: ExpectedVersion::NoStream,
            events: vec![event(1)],
        }])
        .await
        .unwrap();
    let mut tx = t.store.begin().await.unwrap();
    store::on_tx!(tx, |conn| sqlx::query("INSERT INTO test_seen (subscriber, event_id, stream_id, stream_position) VALUES ('x', 'y2', 'z', 2)").execute(conn).await.map(|r| r.rows_affected())).unwrap();
    let batch = [StreamAppend {
        stream_id: "late-3".into(),
        expected: ExpectedVersion::Exact(1),
        events: vec![event(2)],
    }];
    let result = t.store.append_in(&mut tx, &batch).await;
    assert!(
        matches!(result, Err(store::StoreError::AppendNotFirstWrite)),
        "{result:?}"
    );
    tx.commit().await.unwrap();
    assert_eq!(t.store.stream_version("late-3").await.unwrap(), Some(1));
    t.cleanup().await;
}
