//! The cross-process doorbell: a commit in one process wakes readers in another at once,
//! long before their next poll.

use std::time::{Duration, Instant};

use store::{
    CheckpointKey, EventStore, ExpectedVersion, PgOptions, PgStore, Store, StreamAppend,
    SubscriptionOptions,
};
use tokio_util::sync::CancellationToken;

use crate::support::{self, Recorder, events, wait_seen};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notify_wakes_a_reader_in_another_process() {
    let t = support::postgres().await;
    let Store::Postgres(first) = &t.store else {
        unreachable!()
    };
    // A second store on the same database stands for a second Herald process: its own pool,
    // its own in-process doorbell, reached only through NOTIFY.
    let url = first
        .pool()
        .connect_options()
        .get_database()
        .map(str::to_owned)
        .unwrap();
    let admin = support::admin_url();
    let other_url = format!("{}/{url}", &admin[..admin.rfind('/').unwrap()]);
    let other = Store::Postgres(
        PgStore::connect(&other_url, PgOptions::default())
            .await
            .unwrap(),
    );

    let shutdown = CancellationToken::new();
    let reader = {
        let (other, shutdown) = (other.clone(), shutdown.clone());
        tokio::spawn(async move {
            // A poll this long would fail the test: only the doorbell can wake the reader in time.
            let options = SubscriptionOptions {
                poll_interval: Duration::from_secs(60),
                ..Default::default()
            };
            let key = CheckpointKey::new("remote", 0);
            store::subscription::run(
                &other,
                &key,
                None,
                &options,
                &Recorder::new("remote"),
                &shutdown,
            )
            .await
        })
    };
    // Let the reader reach its wait.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let batch = [StreamAppend {
        stream_id: "message-1".into(),
        expected: ExpectedVersion::NoStream,
        events: events(3),
    }];
    t.store.append(&batch).await.unwrap();
    wait_seen(&t.store, "remote", 3, 10).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken after {:?}",
        started.elapsed()
    );
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    if let Store::Postgres(s) = &other {
        s.pool().close().await;
    }
    drop(other);
    t.cleanup().await;
}

/// A reader of one event type with a quiet gap, rung by appends of other types: it reads at
/// most once a gap, and still sees its event as soon as the gap is over, not at its next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_reader_rung_by_other_appends_still_sees_its_own_at_once() {
    let t = support::postgres().await;
    let shutdown = CancellationToken::new();
    let reader = {
        let (store, shutdown) = (t.store.clone(), shutdown.clone());
        tokio::spawn(async move {
            let options = SubscriptionOptions {
                filter: store::LogFilter {
                    categories: Vec::new(),
                    event_types: vec!["Wanted".to_owned()],
                    partition: None,
                },
                // A poll this long would fail the test: only the doorbell wakes the reader.
                poll_interval: Duration::from_secs(60),
                quiet_gap: Duration::from_millis(300),
                ..Default::default()
            };
            let key = CheckpointKey::new("quiet", 0);
            store::subscription::run(
                &store,
                &key,
                None,
                &options,
                &Recorder::new("quiet"),
                &shutdown,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Other events ring the doorbell again and again while the reader keeps its gap.
    for i in 0..20 {
        t.store
            .append(&[StreamAppend {
                stream_id: format!("other-{i}"),
                expected: ExpectedVersion::NoStream,
                events: events(2),
            }])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let wanted = store::NewEvent::new(
        "Wanted",
        1,
        &serde_json::json!({}),
        &serde_json::json!({ "actor": "test" }),
    );
    t.store
        .append(&[StreamAppend {
            stream_id: "wanted-1".into(),
            expected: ExpectedVersion::NoStream,
            events: vec![wanted],
        }])
        .await
        .unwrap();
    wait_seen(&t.store, "quiet", 1, 10).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "seen after {:?}",
        started.elapsed()
    );
    // Only its own event: the others were skipped.
    tokio::time::sleep(Duration::from_millis(400)).await;
    wait_seen(&t.store, "quiet", 1, 1).await;
    shutdown.cancel();
    reader.await.unwrap().unwrap();
    t.cleanup().await;
}
