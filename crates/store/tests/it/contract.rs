//! The contract every backend keeps: expected versions, atomic multi-stream appends,
//! idempotent retries, stream and log reads, filters, checkpoints and subscriptions.

use std::collections::HashSet;
use std::time::Duration;

use store::{
    Checkpoint, CheckpointKey, EventStore, ExpectedVersion, LogFilter, PartitionFilter, Store,
    StoreError, StreamAppend, SubscriptionOptions,
};
use tokio_util::sync::CancellationToken;

use crate::support::{Recorder, both_backends, event, events, read_settled, seen, wait_seen};

both_backends!(
    appends_and_reads_a_stream,
    reads_many_streams_at_once,
    expectations_are_checked_and_conflicts_carry_the_actual_version,
    concurrent_appends_with_one_expected_version_have_one_winner,
    a_retried_append_returns_the_first_result_and_writes_nothing,
    a_multi_stream_append_is_all_or_nothing,
    an_exact_batch_in_a_transaction_is_all_or_nothing,
    log_reads_filter_and_resume,
    a_read_of_an_indexed_event_type_pages_through_the_log,
    checkpoints_move_by_compare_and_set,
    a_subscription_catches_up_then_follows_live,
    a_reader_that_finds_nothing_saves_what_it_skipped,
    malformed_appends_are_refused,
);

fn append(stream: &str, expected: ExpectedVersion, n: u64) -> StreamAppend {
    StreamAppend {
        stream_id: stream.to_owned(),
        expected,
        events: events(n),
    }
}

async fn appends_and_reads_a_stream(store: Store) {
    assert_eq!(store.stream_version("order-1").await.unwrap(), None);
    let versions = store
        .append(&[append("order-1", ExpectedVersion::NoStream, 3)])
        .await
        .unwrap();
    assert_eq!(versions, vec![3]);
    assert_eq!(store.stream_version("order-1").await.unwrap(), Some(3));

    let read = store.read_stream("order-1", 1, 100).await.unwrap();
    assert_eq!(
        read.iter().map(|e| e.stream_position).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let data: Vec<serde_json::Value> = read.iter().map(|e| e.data_json().unwrap()).collect();
    assert_eq!(data[2], serde_json::json!({ "n": 3 }));
    assert_eq!(read[0].event_type, "Happened");
    assert_eq!(read[0].schema_version, 1);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&read[0].metadata).unwrap()["actor"],
        "test"
    );
    assert_eq!(read[0].category(), "order");

    let tail = store.read_stream("order-1", 3, 100).await.unwrap();
    assert_eq!(tail.len(), 1);
    assert!(
        store
            .read_stream("order-2", 1, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn reads_many_streams_at_once(store: Store) {
    store
        .append(&[
            append("order-1", ExpectedVersion::NoStream, 3),
            append("order-2", ExpectedVersion::NoStream, 1),
            append("order-3", ExpectedVersion::NoStream, 2),
        ])
        .await
        .unwrap();
    let positions = |streams: &std::collections::HashMap<String, Vec<store::RecordedEvent>>,
                     id: &str| {
        streams[id]
            .iter()
            .map(|e| (e.stream_id.clone(), e.stream_position))
            .collect::<Vec<_>>()
    };
    // A stream asked for twice is read once; one that does not exist reads empty; the third
    // stream, not asked for, is not read.
    let streams = store
        .read_streams(&["order-1", "order-2", "order-1", "order-9"], 100)
        .await
        .unwrap();
    assert_eq!(streams.len(), 3);
    assert_eq!(
        positions(&streams, "order-1"),
        vec![
            ("order-1".to_owned(), 1),
            ("order-1".to_owned(), 2),
            ("order-1".to_owned(), 3)
        ]
    );
    assert_eq!(
        positions(&streams, "order-2"),
        vec![("order-2".to_owned(), 1)]
    );
    assert!(streams["order-9"].is_empty());
    assert_eq!(streams["order-1"][2].data_json().unwrap()["n"], 3);
    // At most `limit` events a stream, the first ones.
    let streams = store
        .read_streams(&["order-1", "order-3"], 2)
        .await
        .unwrap();
    assert_eq!(
        positions(&streams, "order-1"),
        vec![("order-1".to_owned(), 1), ("order-1".to_owned(), 2)]
    );
    assert_eq!(streams["order-3"].len(), 2);
    assert!(store.read_streams(&[], 10).await.unwrap().is_empty());
}

async fn expectations_are_checked_and_conflicts_carry_the_actual_version(store: Store) {
    let check = |result: Result<Vec<u64>, StoreError>, want: Option<u64>| match result {
        Err(StoreError::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, want),
        other => panic!("expected a conflict with actual {want:?}, got {other:?}"),
    };
    check(
        store
            .append(&[append("acct-1", ExpectedVersion::StreamExists, 1)])
            .await,
        None,
    );
    check(
        store
            .append(&[append("acct-1", ExpectedVersion::Exact(1), 1)])
            .await,
        None,
    );
    store
        .append(&[append("acct-1", ExpectedVersion::NoStream, 2)])
        .await
        .unwrap();
    check(
        store
            .append(&[append("acct-1", ExpectedVersion::NoStream, 1)])
            .await,
        Some(2),
    );
    check(
        store
            .append(&[append("acct-1", ExpectedVersion::Exact(1), 1)])
            .await,
        Some(2),
    );
    assert_eq!(
        store
            .append(&[append("acct-1", ExpectedVersion::Exact(2), 1)])
            .await
            .unwrap(),
        vec![3]
    );
    assert_eq!(
        store
            .append(&[append("acct-1", ExpectedVersion::StreamExists, 1)])
            .await
            .unwrap(),
        vec![4]
    );
    assert_eq!(
        store
            .append(&[append("acct-1", ExpectedVersion::Any, 2)])
            .await
            .unwrap(),
        vec![6]
    );
    assert_eq!(store.stream_version("acct-1").await.unwrap(), Some(6));
}

async fn concurrent_appends_with_one_expected_version_have_one_winner(store: Store) {
    store
        .append(&[append("race-1", ExpectedVersion::NoStream, 1)])
        .await
        .unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append(&[append("race-1", ExpectedVersion::Exact(1), 2)])
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(versions) => {
                assert_eq!(versions, vec![3]);
                wins += 1;
            }
            Err(StoreError::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, Some(3)),
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.read_stream("race-1", 1, 100).await.unwrap().len(), 3);
}

async fn a_retried_append_returns_the_first_result_and_writes_nothing(store: Store) {
    let batch = [
        append("retry-1", ExpectedVersion::NoStream, 2),
        append("retry-2", ExpectedVersion::Any, 3),
    ];
    let first = store.append(&batch).await.unwrap();
    assert_eq!(first, vec![2, 3]);
    // The same batch again, as a client retrying after a lost answer would send it.
    assert_eq!(store.append(&batch).await.unwrap(), first);
    assert_eq!(store.read_stream("retry-1", 1, 100).await.unwrap().len(), 2);
    assert_eq!(store.read_stream("retry-2", 1, 100).await.unwrap().len(), 3);

    // After more events, a retry still answers what the first append answered.
    store
        .append(&[append("retry-2", ExpectedVersion::Any, 1)])
        .await
        .unwrap();
    assert_eq!(store.append(&batch).await.unwrap(), first);

    // Concurrent retries of one append: all get the same answer; one copy is stored.
    let once = [append("retry-3", ExpectedVersion::Any, 2)];
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, once) = (store.clone(), once.clone());
            tokio::spawn(async move { store.append(&once).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), vec![2]);
    }
    assert_eq!(store.read_stream("retry-3", 1, 100).await.unwrap().len(), 2);

    // An event id reused in another stream is an error, not a silent success.
    let mut reused = append("retry-4", ExpectedVersion::Any, 1);
    reused.events[0].event_id = batch[0].events[0].event_id;
    assert!(matches!(
        store.append(&[reused]).await,
        Err(StoreError::DuplicateEventId { .. })
    ));
    assert_eq!(store.stream_version("retry-4").await.unwrap(), None);
}

/// A batch that extends streams at exact versions, in a transaction (a dispatch group commit):
/// one stream short of its expected version, or moved past it, and no stream is written.
async fn an_exact_batch_in_a_transaction_is_all_or_nothing(store: Store) {
    store
        .append(&[
            append("exact-a", ExpectedVersion::NoStream, 2),
            append("exact-b", ExpectedVersion::NoStream, 1),
        ])
        .await
        .unwrap();
    let versions = |store: Store| async move {
        (
            store.stream_version("exact-a").await.unwrap(),
            store.stream_version("exact-b").await.unwrap(),
        )
    };
    // `exact-b` has not reached 2: refused with its actual version, and `exact-a` not written.
    let mut tx = store.begin().await.unwrap();
    let short = store
        .append_in(
            &mut tx,
            &[
                append("exact-a", ExpectedVersion::Exact(2), 1),
                append("exact-b", ExpectedVersion::Exact(2), 1),
            ],
        )
        .await;
    match short {
        Err(StoreError::WrongExpectedVersion {
            stream_id, actual, ..
        }) => assert_eq!((stream_id.as_str(), actual), ("exact-b", Some(1))),
        other => panic!("expected exact-b's conflict, got {other:?}"),
    }
    tx.rollback().await.unwrap();
    assert_eq!(versions(store.clone()).await, (Some(2), Some(1)));

    // `exact-a` has moved past 1: a conflict, and `exact-b` not written.
    let mut tx = store.begin().await.unwrap();
    let moved = store
        .append_in(
            &mut tx,
            &[
                append("exact-b", ExpectedVersion::Exact(1), 1),
                append("exact-a", ExpectedVersion::Exact(1), 1),
            ],
        )
        .await;
    assert!(
        moved.as_ref().is_err_and(StoreError::is_conflict),
        "{moved:?}"
    );
    tx.rollback().await.unwrap();
    assert_eq!(versions(store.clone()).await, (Some(2), Some(1)));

    // Both where they are expected: both written, numbered on from there.
    let mut tx = store.begin().await.unwrap();
    let written = store
        .append_in(
            &mut tx,
            &[
                append("exact-a", ExpectedVersion::Exact(2), 2),
                append("exact-b", ExpectedVersion::Exact(1), 1),
            ],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(written, vec![4, 2]);
    assert_eq!(versions(store.clone()).await, (Some(4), Some(2)));
    let positions: Vec<u64> = store
        .read_stream("exact-a", 1, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.stream_position)
        .collect();
    assert_eq!(positions, vec![1, 2, 3, 4]);
}

async fn a_multi_stream_append_is_all_or_nothing(store: Store) {
    store
        .append(&[append("multi-1", ExpectedVersion::NoStream, 1)])
        .await
        .unwrap();
    let batch = [
        append("multi-2", ExpectedVersion::NoStream, 2),
        append("multi-1", ExpectedVersion::NoStream, 1),
    ];
    assert!(store.append(&batch).await.unwrap_err().is_conflict());
    assert_eq!(store.stream_version("multi-2").await.unwrap(), None);
    assert_eq!(store.stream_version("multi-1").await.unwrap(), Some(1));

    // A hundred streams in one commit, as a 100-receiver send makes.
    let many: Vec<_> = (0..100)
        .map(|i| append(&format!("message-{i}"), ExpectedVersion::NoStream, 1))
        .collect();
    assert_eq!(store.append(&many).await.unwrap(), vec![1; 100]);
    let log = read_settled(
        &store,
        Checkpoint::START,
        &LogFilter::categories(&["message"]),
        1000,
    )
    .await;
    assert_eq!(log.events.len(), 100);
    // One commit: on Postgres every event carries the same transaction id.
    let transactions: HashSet<i64> = log
        .events
        .iter()
        .map(|e| e.checkpoint.transaction_id)
        .collect();
    assert_eq!(transactions.len(), 1);
}

async fn log_reads_filter_and_resume(store: Store) {
    for i in 0..10 {
        let category = if i % 2 == 0 { "even" } else { "odd" };
        let mut a = append(&format!("{category}-{i}"), ExpectedVersion::NoStream, 2);
        a.events[1].event_type = "Other".into();
        store.append(&[a]).await.unwrap();
    }
    let all = read_settled(&store, Checkpoint::START, &LogFilter::all(), 1000).await;
    assert_eq!(all.events.len(), 20);
    assert!(
        all.events
            .windows(2)
            .all(|w| w[0].checkpoint < w[1].checkpoint),
        "log order"
    );

    // Reading in small batches gives the same events in the same order.
    let mut paged = Vec::new();
    let mut at = Checkpoint::START;
    loop {
        let batch = read_settled(&store, at, &LogFilter::all(), 3).await;
        if batch.events.is_empty() {
            break;
        }
        paged.extend(batch.events.iter().map(|e| e.event_id));
        at = batch.next;
    }
    assert_eq!(
        paged,
        all.events.iter().map(|e| e.event_id).collect::<Vec<_>>()
    );

    let odd = read_settled(
        &store,
        Checkpoint::START,
        &LogFilter::categories(&["odd"]),
        1000,
    )
    .await;
    assert_eq!(odd.events.len(), 10);
    assert!(odd.events.iter().all(|e| e.stream_id.starts_with("odd-")));
    // A short batch resumes past everything scanned, so the next read finds nothing.
    assert!(
        read_settled(&store, odd.next, &LogFilter::categories(&["odd"]), 1000)
            .await
            .events
            .is_empty()
    );

    let typed = LogFilter {
        event_types: vec!["Other".into()],
        ..LogFilter::all()
    };
    let other = read_settled(&store, Checkpoint::START, &typed, 1000).await;
    assert_eq!(other.events.len(), 10);

    // The partitions of a group cover the log exactly once.
    let mut covered = Vec::new();
    for index in 0..4 {
        let filter = LogFilter::all().with_partition(PartitionFilter { count: 4, index });
        let part = read_settled(&store, Checkpoint::START, &filter, 1000).await;
        assert!(
            part.events
                .iter()
                .all(|e| filter.matches(&e.stream_id, &e.event_type))
        );
        covered.extend(part.events.into_iter().map(|e| e.event_id));
    }
    covered.sort();
    let mut expected: Vec<_> = all.events.iter().map(|e| e.event_id).collect();
    expected.sort();
    assert_eq!(covered, expected);

    // Events appended later are found from the old checkpoint.
    store
        .append(&[append("odd-99", ExpectedVersion::NoStream, 1)])
        .await
        .unwrap();
    let later = read_settled(&store, odd.next, &LogFilter::categories(&["odd"]), 1000).await;
    assert_eq!(later.events.len(), 1);
    assert_eq!(later.events[0].stream_id, "odd-99");
}

/// `RecallRequested` has an index of its own on Postgres (a partial index of the log order): a
/// read filtered to it walks that index, and must find what a walk of the whole log finds, in
/// the same order, page after page, with events appended later found from the last page's end.
async fn a_read_of_an_indexed_event_type_pages_through_the_log(store: Store) {
    let recalls = LogFilter {
        event_types: vec!["RecallRequested".into()],
        ..LogFilter::categories(&["message"])
    };
    for i in 0..12 {
        let mut a = append(&format!("message-{i}"), ExpectedVersion::NoStream, 3);
        if i % 3 != 1 {
            a.events[1].event_type = "RecallRequested".into();
        }
        store.append(&[a]).await.unwrap();
        // Another category's event of the same type is not read.
        let mut other = append(&format!("order-{i}"), ExpectedVersion::NoStream, 1);
        other.events[0].event_type = "RecallRequested".into();
        store.append(&[other]).await.unwrap();
    }
    let mut paged = Vec::new();
    let mut at = Checkpoint::START;
    loop {
        let batch = read_settled(&store, at, &recalls, 3).await;
        if batch.events.is_empty() {
            at = batch.next;
            break;
        }
        paged.extend(
            batch
                .events
                .iter()
                .map(|e| (e.stream_id.clone(), e.stream_position)),
        );
        at = batch.next;
    }
    let all = read_settled(&store, Checkpoint::START, &LogFilter::all(), 1000).await;
    let expected: Vec<(String, u64)> = all
        .events
        .iter()
        .filter(|e| recalls.matches(&e.stream_id, &e.event_type))
        .map(|e| (e.stream_id.clone(), e.stream_position))
        .collect();
    assert_eq!(expected.len(), 8);
    assert_eq!(paged, expected);

    let mut later = append("message-99", ExpectedVersion::NoStream, 2);
    later.events[0].event_type = "RecallRequested".into();
    store.append(&[later]).await.unwrap();
    let found = read_settled(&store, at, &recalls, 3).await;
    assert_eq!(
        found
            .events
            .iter()
            .map(|e| (e.stream_id.as_str(), e.stream_position))
            .collect::<Vec<_>>(),
        vec![("message-99", 1)]
    );
}

async fn checkpoints_move_by_compare_and_set(store: Store) {
    let key = CheckpointKey::new("projection", 0);
    let a = Checkpoint {
        transaction_id: 0,
        global_position: 5,
    };
    let b = Checkpoint {
        transaction_id: 0,
        global_position: 9,
    };
    assert_eq!(store.load_checkpoint(&key).await.unwrap(), None);

    let mut tx = store.begin().await.unwrap();
    store
        .save_checkpoint(&mut tx, &key, None, a, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.load_checkpoint(&key).await.unwrap(), Some(a));

    for (expected, new) in [(None, b), (Some(b), b)] {
        let mut tx = store.begin().await.unwrap();
        let result = store
            .save_checkpoint(&mut tx, &key, expected, new, None)
            .await;
        assert!(
            matches!(result, Err(StoreError::CheckpointConflict { .. })),
            "{expected:?} -> {new:?}"
        );
        tx.rollback().await.unwrap();
    }

    let mut tx = store.begin().await.unwrap();
    store
        .save_checkpoint(&mut tx, &key, Some(a), b, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.load_checkpoint(&key).await.unwrap(), Some(b));

    // With an owner, the owner must hold the partition's lease.
    let leased = CheckpointKey::new("group", 0);
    let mut tx = store.begin().await.unwrap();
    let refused = store
        .save_checkpoint(&mut tx, &leased, None, a, Some("nobody"))
        .await;
    assert!(matches!(
        refused,
        Err(StoreError::CheckpointConflict { .. })
    ));
    tx.rollback().await.unwrap();
    store
        .heartbeat("group", "me", 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        store
            .acquire_leases("group", "me", 1, Duration::from_secs(10))
            .await
            .unwrap(),
        vec![0]
    );
    let mut tx = store.begin().await.unwrap();
    store
        .save_checkpoint(&mut tx, &leased, None, a, Some("me"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// A reader whose filter matches nothing handles no batch, yet its checkpoint moves past what
/// it read: a restart does not walk the log again.
async fn a_reader_that_finds_nothing_saves_what_it_skipped(store: Store) {
    store
        .append(&[append("skipped-1", ExpectedVersion::NoStream, 3)])
        .await
        .unwrap();
    let head = store.read_stream("skipped-1", 3, 1).await.unwrap()[0].checkpoint;
    let key = CheckpointKey::new("picky", 0);
    let shutdown = CancellationToken::new();
    let task = {
        let (store, shutdown, key) = (store.clone(), shutdown.clone(), key.clone());
        tokio::spawn(async move {
            let options = SubscriptionOptions {
                filter: LogFilter {
                    categories: Vec::new(),
                    event_types: vec!["Wanted".to_owned()],
                    partition: None,
                },
                poll_interval: Duration::from_millis(20),
                // Other tests' open transactions may hold the horizon below the events at
                // first, and few transactions go by: a later save puts it right.
                save_skipped_every: Duration::from_millis(50),
                ..SubscriptionOptions::default()
            };
            store::subscription::run(
                &store,
                &key,
                None,
                &options,
                &Recorder::new("picky"),
                &shutdown,
            )
            .await
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let saved = store.load_checkpoint(&key).await.unwrap();
        if saved.is_some_and(|saved| saved >= head) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the checkpoint stayed at {saved:?}, short of {head:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert!(seen(&store, "picky").await.is_empty());
}

async fn a_subscription_catches_up_then_follows_live(store: Store) {
    for i in 0..50 {
        store
            .append(&[append(
                &format!("message-{i}"),
                ExpectedVersion::NoStream,
                2,
            )])
            .await
            .unwrap();
        store
            .append(&[append(&format!("other-{i}"), ExpectedVersion::NoStream, 1)])
            .await
            .unwrap();
    }
    let shutdown = CancellationToken::new();
    let options = SubscriptionOptions {
        filter: LogFilter::categories(&["message"]),
        batch_size: 7,
        // Long polls: live events must arrive by the doorbell, not the poll.
        poll_interval: Duration::from_secs(30),
        ..SubscriptionOptions::default()
    };
    let task = {
        let (store, shutdown) = (store.clone(), shutdown.clone());
        tokio::spawn(async move {
            let key = CheckpointKey::new("follower", 0);
            store::subscription::run(
                &store,
                &key,
                None,
                &options,
                &Recorder::new("follower"),
                &shutdown,
            )
            .await
        })
    };
    wait_seen(&store, "follower", 100, 30).await;
    for i in 50..60 {
        store
            .append(&[append(
                &format!("message-{i}"),
                ExpectedVersion::NoStream,
                2,
            )])
            .await
            .unwrap();
    }
    wait_seen(&store, "follower", 120, 10).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();

    let seen = seen(&store, "follower").await;
    assert_eq!(seen.len(), 120, "each event once");
    assert!(
        seen.iter()
            .all(|(_, stream, _)| stream.starts_with("message-"))
    );
    let saved = store
        .load_checkpoint(&CheckpointKey::new("follower", 0))
        .await
        .unwrap();
    assert!(saved.is_some());
}

async fn malformed_appends_are_refused(store: Store) {
    assert!(matches!(
        store.append(&[]).await,
        Err(StoreError::InvalidAppend(_))
    ));
    let empty = StreamAppend {
        stream_id: "x-1".into(),
        expected: ExpectedVersion::Any,
        events: vec![],
    };
    assert!(matches!(
        store.append(&[empty]).await,
        Err(StoreError::InvalidAppend(_))
    ));
    let twice = [
        append("x-1", ExpectedVersion::Any, 1),
        append("x-1", ExpectedVersion::Any, 1),
    ];
    assert!(matches!(
        store.append(&twice).await,
        Err(StoreError::InvalidAppend(_))
    ));
    let mut bad_json = append("x-2", ExpectedVersion::Any, 1);
    bad_json.events[0] = store::NewEvent {
        data: "{not json".into(),
        ..event(1)
    };
    // Both backends check the JSON (json on Postgres, json() on SQLite); nothing is half-written.
    assert!(matches!(
        store.append(&[bad_json]).await,
        Err(StoreError::Database(_))
    ));
    assert_eq!(store.stream_version("x-2").await.unwrap(), None);

    // Every string JSON allows is kept, the escaped NUL among them (Postgres's jsonb refused
    // it, so a message with one could not be accepted), and comes back as it was written.
    let mut nul = append("x-3", ExpectedVersion::NoStream, 1);
    nul.events[0].data = r#"{"body":"a\u0000b","n":1}"#.into();
    store.append(&[nul]).await.unwrap();
    let read = store.read_stream("x-3", 1, 10).await.unwrap();
    assert_eq!(read[0].data, r#"{"body":"a\u0000b","n":1}"#);
    let body: serde_json::Value = serde_json::from_str(&read[0].data).unwrap();
    assert_eq!(body["body"], "a\u{0}b");
}
