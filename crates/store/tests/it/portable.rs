//! Events recorded elsewhere, inserted as they were (`store::portable`, for `herald import`):
//! ids, positions, data and times kept, log order as given across batches, a clash refused
//! whole, and the lookups an export resumes by.

use chrono::{DateTime, TimeDelta, Utc};
use store::portable::{self, find_event, first_gap, holds_events, insert_recorded, just_before};
use store::{Checkpoint, EventStore, LogFilter, RecordedEvent, Store, StoreError};
use uuid::Uuid;

use crate::support::{both_backends, read_settled};

both_backends!(
    recorded_events_keep_their_ids_positions_and_times_in_the_order_given,
    a_clash_or_a_gap_is_reported
);

fn recorded(stream: &str, position: u64, at: DateTime<Utc>) -> RecordedEvent {
    RecordedEvent {
        checkpoint: Checkpoint::START,
        stream_id: stream.to_owned(),
        stream_position: position,
        event_id: Uuid::now_v7(),
        event_type: "Happened".to_owned(),
        schema_version: 3,
        data: format!("{{\"n\":{position},\"s\":\"{stream}\"}}"),
        metadata: "{\"actor\":\"import\"}".to_owned(),
        recorded_at: at,
    }
}

async fn insert(store: &Store, events: &[RecordedEvent]) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    insert_recorded(&mut tx, events).await?;
    tx.commit().await
}

async fn whole_log(store: &Store) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut after = Checkpoint::START;
    loop {
        let batch = read_settled(store, after, &LogFilter::all(), 100).await;
        after = batch.next;
        if batch.events.is_empty() {
            return events;
        }
        events.extend(batch.events);
    }
}

async fn recorded_events_keep_their_ids_positions_and_times_in_the_order_given(store: Store) {
    assert!(!holds_events(&store).await.unwrap());
    // Interleaved streams, times out of order and with microseconds, in three batches.
    let t0 = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
    let mut given = Vec::new();
    for i in 0..25u64 {
        let stream = if i % 2 == 0 { "order-a" } else { "order-b" };
        let position = i / 2 + 1;
        given.push(recorded(
            stream,
            position,
            t0 - TimeDelta::seconds(i as i64),
        ));
    }
    for chunk in given.chunks(10) {
        insert(&store, chunk).await.unwrap();
    }
    assert!(holds_events(&store).await.unwrap());
    assert_eq!(portable::count_events(&store).await.unwrap(), 25);

    let log = whole_log(&store).await;
    assert_eq!(log.len(), given.len());
    for (got, want) in log.iter().zip(&given) {
        assert_eq!(
            (
                &got.stream_id,
                got.stream_position,
                got.event_id,
                &got.event_type,
                got.schema_version,
                got.recorded_at
            ),
            (
                &want.stream_id,
                want.stream_position,
                want.event_id,
                &want.event_type,
                want.schema_version,
                want.recorded_at
            )
        );
        assert_eq!(got.data_json().unwrap(), want.data_json().unwrap());
    }
    assert_eq!(first_gap(&store).await.unwrap(), None);

    // The stream reads as any appended stream, and appends go on after it.
    assert_eq!(store.stream_version("order-a").await.unwrap(), Some(13));
    let next = store::StreamAppend {
        stream_id: "order-a".into(),
        expected: store::ExpectedVersion::Exact(13),
        events: vec![store::NewEvent::new(
            "Happened",
            1,
            &serde_json::json!({}),
            &serde_json::json!({}),
        )],
    };
    assert_eq!(store.append(&[next]).await.unwrap(), vec![14]);

    // An event is found by its id, where it is in the log; a reader resuming just before it
    // reads it first.
    let middle = &log[12];
    let found = find_event(&store, middle.event_id).await.unwrap().unwrap();
    assert_eq!(found.checkpoint, middle.checkpoint);
    let batch = read_settled(&store, just_before(&found), &LogFilter::all(), 1).await;
    assert_eq!(batch.events[0].event_id, middle.event_id);
    assert_eq!(find_event(&store, Uuid::now_v7()).await.unwrap(), None);
}

async fn a_clash_or_a_gap_is_reported(store: Store) {
    let at = Utc::now();
    let first = vec![recorded("order-a", 1, at), recorded("order-a", 2, at)];
    insert(&store, &first).await.unwrap();

    // The same position again, or the same event id elsewhere: nothing of the batch is written.
    let again = vec![recorded("order-b", 1, at), recorded("order-a", 2, at)];
    match insert(&store, &again).await {
        Err(StoreError::ImportClash(what)) => assert!(what.contains("stream position"), "{what}"),
        other => panic!("expected a clash, got {other:?}"),
    }
    let mut same_id = recorded("order-c", 1, at);
    same_id.event_id = first[0].event_id;
    match insert(&store, &[same_id]).await {
        Err(StoreError::ImportClash(what)) => assert!(what.contains("event id"), "{what}"),
        other => panic!("expected a clash, got {other:?}"),
    }
    assert_eq!(store.stream_version("order-b").await.unwrap(), None);

    // Bad input is refused before the database sees it; malformed JSON by the database.
    assert!(matches!(
        insert(&store, &[recorded("", 1, at)]).await,
        Err(StoreError::InvalidAppend(_))
    ));
    assert!(matches!(
        insert(&store, &[recorded("order-d", 0, at)]).await,
        Err(StoreError::InvalidAppend(_))
    ));
    let mut broken = recorded("order-d", 1, at);
    broken.data = "{not json".into();
    assert!(insert(&store, &[broken]).await.is_err());

    // A stream that skips a position is found.
    insert(&store, &[recorded("order-e", 2, at)]).await.unwrap();
    assert_eq!(
        first_gap(&store).await.unwrap(),
        Some(("order-e".to_owned(), 1, 2))
    );
}
