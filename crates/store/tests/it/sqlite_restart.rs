//! The embedded store survives a restart: close, reopen the file, continue from the checkpoint.

use std::time::Duration;

use store::{CheckpointKey, EventStore, ExpectedVersion, Store, StreamAppend, SubscriptionOptions};
use tokio_util::sync::CancellationToken;

use crate::support::{self, Recorder, events, seen, wait_seen};

async fn follow(store: &Store, until: i64) {
    let shutdown = CancellationToken::new();
    let task = {
        let (store, shutdown) = (store.clone(), shutdown.clone());
        tokio::spawn(async move {
            let options = SubscriptionOptions {
                poll_interval: Duration::from_millis(50),
                ..Default::default()
            };
            let key = CheckpointKey::new("restart", 0);
            store::subscription::run(
                &store,
                &key,
                None,
                &options,
                &Recorder::new("restart"),
                &shutdown,
            )
            .await
        })
    };
    wait_seen(store, "restart", until, 30).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_restart_continues_from_the_checkpoint() {
    let t = support::sqlite().await;
    let Store::Sqlite(first) = &t.store else {
        unreachable!()
    };
    let dir = std::path::PathBuf::from(
        first
            .writer()
            .connect_options()
            .get_filename()
            .parent()
            .unwrap(),
    );
    let batch = |n| {
        [StreamAppend {
            stream_id: "message-1".into(),
            expected: ExpectedVersion::Any,
            events: events(n),
        }]
    };
    t.store.append(&batch(30)).await.unwrap();
    follow(&t.store, 30).await;
    let checkpoint = t
        .store
        .load_checkpoint(&CheckpointKey::new("restart", 0))
        .await
        .unwrap();
    first.close().await;

    // Reopen the same file, as a restarted process would.
    let reopened = Store::Sqlite(support::open_sqlite(&dir).await);
    assert_eq!(
        reopened.stream_version("message-1").await.unwrap(),
        Some(30)
    );
    assert_eq!(
        reopened
            .load_checkpoint(&CheckpointKey::new("restart", 0))
            .await
            .unwrap(),
        checkpoint
    );
    reopened.append(&batch(20)).await.unwrap();
    follow(&reopened, 50).await;

    let seen = seen(&reopened, "restart").await;
    assert_eq!(
        seen.len(),
        50,
        "the events before the restart were not applied again"
    );
    let positions: Vec<i64> = seen.iter().map(|(_, _, p)| *p).collect();
    assert_eq!(positions, (1..=50).collect::<Vec<_>>());
    if let Store::Sqlite(s) = &reopened {
        s.close().await;
    }
    t.cleanup().await;
}
