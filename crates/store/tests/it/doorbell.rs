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
