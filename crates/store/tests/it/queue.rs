//! The work queue on both backends: lanes apart, items held until due, concurrent claims
//! disjoint, expired claims taken again, and outcomes that remove or reschedule in a transaction.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use store::queue::{self, Move, QueueRow};
use store::{EventStore, ExpectedVersion, Store, StoreError, StreamAppend};

use crate::support::{both_backends, events};

both_backends!(
    claims_respect_lanes_due_times_and_leases,
    concurrent_claims_never_share_an_item,
    many_rows_move_in_one_call,
    streams_and_rows_are_written_together_while_the_guard_holds
);

async fn enqueue(store: &Store, lane: &str, due: chrono::DateTime<Utc>, n: usize) -> Vec<String> {
    let rows: Vec<QueueRow> = (0..n)
        .map(|_| QueueRow {
            message_id: uuid::Uuid::now_v7().to_string(),
            tenant_id: "acme".into(),
            lane: lane.into(),
            due_at: due,
        })
        .collect();
    let mut tx = store.begin().await.unwrap();
    queue::enqueue(&mut tx, &rows).await.unwrap();
    // Enqueuing again changes nothing.
    queue::enqueue(&mut tx, &rows).await.unwrap();
    tx.commit().await.unwrap();
    rows.into_iter().map(|r| r.message_id).collect()
}

async fn claims_respect_lanes_due_times_and_leases(store: Store) {
    let now = Utc::now();
    let later = now + Duration::hours(1);
    let codes = enqueue(&store, "SMS.AUTH_CODE", now, 3).await;
    enqueue(&store, "SMS.MARKETING", now, 2).await;
    let scheduled = enqueue(&store, "SMS.AUTH_CODE", later, 1).await;

    let first = queue::claim(&store, "SMS.AUTH_CODE", "a", now, 30_000, 10)
        .await
        .unwrap();
    let ids: HashSet<String> = first.iter().map(|c| c.message_id.clone()).collect();
    assert_eq!(
        ids,
        codes.iter().cloned().collect(),
        "due items only, not the scheduled one"
    );
    assert!(
        queue::claim(&store, "SMS.AUTH_CODE", "b", now, 30_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "claimed rows are taken"
    );
    assert_eq!(
        queue::claim(&store, "SMS.MARKETING", "b", now, 30_000, 10)
            .await
            .unwrap()
            .len(),
        2,
        "lanes are apart"
    );

    // A dead worker's claim expires and is taken again.
    let again = queue::claim(
        &store,
        "SMS.AUTH_CODE",
        "b",
        now + Duration::seconds(31),
        30_000,
        10,
    )
    .await
    .unwrap();
    assert_eq!(again.len(), 3);
    // The scheduled item is due at its time.
    let due = queue::claim(&store, "SMS.AUTH_CODE", "c", later, 30_000, 10)
        .await
        .unwrap();
    assert!(due.iter().any(|c| c.message_id == scheduled[0]));

    // Outcomes: remove one, reschedule another, in a transaction.
    let mut tx = store.begin().await.unwrap();
    queue::remove(&mut tx, &codes[0]).await.unwrap();
    queue::reschedule(&mut tx, &codes[1], later + Duration::hours(1))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let at_later = queue::claim(
        &store,
        "SMS.AUTH_CODE",
        "d",
        later + Duration::minutes(1),
        30_000,
        10,
    )
    .await
    .unwrap();
    let ids: HashSet<String> = at_later.iter().map(|c| c.message_id.clone()).collect();
    assert!(!ids.contains(&codes[0]), "removed");
    assert!(!ids.contains(&codes[1]), "rescheduled is not due yet");
    assert!(ids.contains(&codes[2]));
}

async fn concurrent_claims_never_share_an_item(store: Store) {
    let now = Utc::now();
    let items = enqueue(&store, "SMS.NOTICE", now, 40).await;
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch =
                        queue::claim(&store, "SMS.NOTICE", &format!("w{w}"), now, 30_000, 3)
                            .await
                            .unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|c| c.message_id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(
        (all.len(), unique.len()),
        (40, 40),
        "each item claimed exactly once"
    );
    assert_eq!(unique, items.iter().collect());
}

/// A group commit's moves: some rows off the queue, some due later, some into another lane, in
/// one call; rows it does not name stay claimed.
async fn many_rows_move_in_one_call(store: Store) {
    let now = Utc::now();
    let later = now + Duration::minutes(5);
    let ids = enqueue(&store, "WEBHOOK.NOTICE", now, 7).await;
    let claimed = queue::claim(&store, "WEBHOOK.NOTICE", "w", now, 3_600_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 7);
    let moves = vec![
        (ids[0].clone(), Move::Remove),
        (ids[1].clone(), Move::Remove),
        (ids[2].clone(), Move::Reschedule(now)),
        (ids[3].clone(), Move::Reschedule(later)),
        (ids[4].clone(), Move::MoveTo("RECEIPTS".into(), now)),
    ];
    let mut tx = store.begin().await.unwrap();
    queue::move_all(&mut tx, &moves).await.unwrap();
    queue::move_all(&mut tx, &[]).await.unwrap();
    tx.commit().await.unwrap();

    // Released and due now: the rescheduled one in its lane, the moved one in its new lane.
    let again: Vec<String> = queue::claim(&store, "WEBHOOK.NOTICE", "v", now, 60_000, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.message_id)
        .collect();
    assert_eq!(again, [ids[2].clone()], "only the row due now, released");
    let receipts = queue::claim(&store, "RECEIPTS", "v", now, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].message_id, ids[4]);
    let due_later = queue::claim(&store, "WEBHOOK.NOTICE", "v", later, 60_000, 10)
        .await
        .unwrap();
    let due_later: HashSet<String> = due_later.into_iter().map(|c| c.message_id).collect();
    // At `later` the row rescheduled for then is due (and `v`'s short lease on the other has
    // expired); the two rows never moved are still claimed by `w`.
    assert_eq!(due_later, HashSet::from([ids[2].clone(), ids[3].clone()]));
    assert_eq!(queue::depth(&store, "WEBHOOK.NOTICE").await.unwrap(), 4);
    assert_eq!(queue::depth(&store, "RECEIPTS").await.unwrap(), 1);
}

/// A send's write: its new streams and its queue rows in one commit, made only while the
/// template it read is unchanged.
async fn streams_and_rows_are_written_together_while_the_guard_holds(store: Store) {
    let now = Utc::now();
    store
        .append(&[StreamAppend {
            stream_id: "template-1".into(),
            expected: ExpectedVersion::NoStream,
            events: events(2),
        }])
        .await
        .unwrap();
    let create = |stream: &str| StreamAppend {
        stream_id: stream.into(),
        expected: ExpectedVersion::NoStream,
        events: events(1),
    };
    let row = |id: &str| QueueRow {
        message_id: id.into(),
        tenant_id: "acme".into(),
        lane: "SMS.AUTH_CODE".into(),
        due_at: now,
    };
    let at = |version| {
        Some(queue::Unchanged {
            stream_id: "template-1",
            version,
        })
    };
    let claim = || queue::claim(&store, "SMS.AUTH_CODE", "a", now, 30_000, 10);

    // The guard holds: both streams and the row are there.
    let written = queue::create_and_enqueue(
        &store,
        &[create("message-a"), create("send-a")],
        &[row("a")],
        at(2),
    )
    .await
    .unwrap();
    assert!(written);
    assert_eq!(store.stream_version("message-a").await.unwrap(), Some(1));
    assert_eq!(store.stream_version("send-a").await.unwrap(), Some(1));
    let claimed = claim().await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].message_id, "a");

    // The template moved on: nothing is written.
    let written = queue::create_and_enqueue(&store, &[create("message-b")], &[row("b")], at(1))
        .await
        .unwrap();
    assert!(!written);
    assert_eq!(store.stream_version("message-b").await.unwrap(), None);
    assert!(claim().await.unwrap().is_empty());

    // A stream that exists fails it all, the row with it.
    let clash = queue::create_and_enqueue(
        &store,
        &[create("message-c"), create("send-a")],
        &[row("c")],
        at(2),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            clash,
            StoreError::ConcurrentAppend | StoreError::WrongExpectedVersion { .. }
        ),
        "{clash:?}"
    );
    assert_eq!(store.stream_version("message-c").await.unwrap(), None);
    assert!(claim().await.unwrap().is_empty());

    // Without a guard it is written; only new streams are taken.
    assert!(
        queue::create_and_enqueue(&store, &[create("message-d")], &[row("d")], None)
            .await
            .unwrap()
    );
    assert_eq!(claim().await.unwrap().len(), 1);
    let append = StreamAppend {
        stream_id: "message-d".into(),
        expected: ExpectedVersion::Exact(1),
        events: events(1),
    };
    assert!(matches!(
        queue::create_and_enqueue(&store, &[append], &[], None).await,
        Err(StoreError::InvalidAppend(_))
    ));
}
