//! The dispatch queue on both backends: accepted messages enqueued once in their lane, scheduled
//! ones held until due, claims disjoint between concurrent workers, expired claims taken again,
//! and recalled messages removed.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dispatch::queue::{self, Enqueuer};
use domain::{
    Channel, MessageCommand, MessageEvent, MessageId, MessageState, MessageType, Receiver,
    ReceiverIdType, RequestId, ShieldType, TemplateContent, TemplateId, TenantId,
};
use sqlx::Connection;
use store::{
    CheckpointKey, EventStore, ExpectedVersion, NewEvent, Store, StreamAppend, SubscriptionOptions,
};
use tokio_util::sync::CancellationToken as Token;

fn encode(event: &MessageEvent) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: event.event_type().to_owned(),
        schema_version: 1,
        data: event.encode().to_string(),
        metadata: "{}".to_owned(),
    }
}

async fn accept(
    store: &Store,
    msg_type: MessageType,
    send_at: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> MessageId {
    let id = MessageId::generate();
    let command = MessageCommand::AcceptMessage {
        message_id: id,
        tenant: TenantId::parse("acme").unwrap(),
        request_id: RequestId::parse("r").unwrap(),
        template_id: TemplateId::generate(),
        template_version: 1,
        channel: Channel::Sms,
        msg_type,
        shield_type: ShieldType::None,
        account: "default".to_owned(),
        receiver: Receiver::parse(ReceiverIdType::Phone, "13800138000").unwrap(),
        content: TemplateContent::Text { body: "hi".into() },
        tracked_links: vec![],
        send_at,
        at,
    };
    let events = domain::message_decide::decide(&MessageState::default(), command).unwrap();
    let append = StreamAppend {
        stream_id: id.stream_name(),
        expected: ExpectedVersion::NoStream,
        events: events.iter().map(encode).collect(),
    };
    store.append(&[append]).await.unwrap();
    id
}

async fn recall(store: &Store, id: MessageId, at: DateTime<Utc>) {
    let history: Vec<MessageEvent> = store
        .read_stream(&id.stream_name(), 1, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            MessageEvent::decode(&r.event_type, r.schema_version, &r.data_json().unwrap()).unwrap()
        })
        .collect();
    let mut state = domain::message_state::fold(&history).unwrap();
    let mut new = Vec::new();
    for command in [
        MessageCommand::RequestRecall {
            actor: "t".into(),
            request_id: None,
            at,
        },
        MessageCommand::ConfirmRecall {
            via_supplier: false,
            at,
        },
    ] {
        for event in domain::message_decide::decide(&state, command).unwrap() {
            state = domain::message_state::apply(state, &event).unwrap();
            new.push(event);
        }
    }
    let append = StreamAppend {
        stream_id: id.stream_name(),
        expected: ExpectedVersion::Exact(history.len() as u64),
        events: new.iter().map(encode).collect(),
    };
    store.append(&[append]).await.unwrap();
}

async fn queued(store: &Store) -> i64 {
    store::on_read!(store, |pool| sqlx::query_scalar(
        "SELECT count(*) FROM dispatch_queue"
    )
    .fetch_one(pool)
    .await)
    .unwrap()
}

async fn wait_queued(store: &Store, n: i64) {
    for _ in 0..600 {
        if queued(store).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the queue never held {n} messages (holds {})",
        queued(store).await
    );
}

async fn queue_contract(store: Store) {
    let shutdown = Token::new();
    let subscription = {
        let (store, shutdown) = (store.clone(), shutdown.clone());
        tokio::spawn(async move {
            let options = SubscriptionOptions {
                filter: queue::filter(),
                poll_interval: Duration::from_millis(50),
                ..Default::default()
            };
            let key = CheckpointKey::new(queue::SUBSCRIPTION, 0);
            store::subscription::run(&store, &key, None, &options, &Enqueuer, &shutdown).await
        })
    };
    let now = Utc::now();
    let codes: Vec<MessageId> = futures_join(&store, MessageType::AuthCode, 3, None, now).await;
    futures_join(&store, MessageType::Marketing, 2, None, now).await;
    let later = now + chrono::Duration::hours(1);
    let scheduled = accept(&store, MessageType::AuthCode, Some(later), now).await;
    wait_queued(&store, 6).await;

    let auth = queue::lane(Channel::Sms, MessageType::AuthCode);
    let marketing = queue::lane(Channel::Sms, MessageType::Marketing);
    assert_eq!(auth, "SMS.AUTH_CODE");
    let first = queue::claim(&store, &auth, "a", now, 30_000, 10)
        .await
        .unwrap();
    let ids: HashSet<String> = first.iter().map(|c| c.message_id.clone()).collect();
    assert_eq!(
        ids,
        codes.iter().map(ToString::to_string).collect(),
        "due auth codes only, not the scheduled one"
    );
    assert!(
        queue::claim(&store, &auth, "b", now, 30_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "claimed rows are taken"
    );
    assert_eq!(
        queue::claim(&store, &marketing, "b", now, 30_000, 10)
            .await
            .unwrap()
            .len(),
        2,
        "lanes are apart"
    );

    // A dead worker's claim expires and is taken again.
    let again = queue::claim(
        &store,
        &auth,
        "b",
        now + chrono::Duration::seconds(31),
        30_000,
        10,
    )
    .await
    .unwrap();
    assert_eq!(again.len(), 3);
    // The scheduled message is due at its time.
    let due = queue::claim(&store, &auth, "c", later, 30_000, 10)
        .await
        .unwrap();
    assert!(due.iter().any(|c| c.message_id == scheduled.to_string()));

    // Outcomes: remove one, reschedule another, in the worker's transaction.
    let mut tx = store.begin().await.unwrap();
    queue::remove(&mut tx, &codes[0].to_string()).await.unwrap();
    queue::reschedule(
        &mut tx,
        &codes[1].to_string(),
        later + chrono::Duration::hours(1),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(queued(&store).await, 5);
    let at_later = queue::claim(
        &store,
        &auth,
        "d",
        later + chrono::Duration::minutes(1),
        30_000,
        10,
    )
    .await
    .unwrap();
    assert!(
        !at_later
            .iter()
            .any(|c| c.message_id == codes[1].to_string()),
        "rescheduled is not due yet"
    );

    // Concurrent workers never take the same row.
    let flood = futures_join(&store, MessageType::Notice, 40, None, now).await;
    wait_queued(&store, 45).await;
    let notice = queue::lane(Channel::Sms, MessageType::Notice);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (store, notice) = (store.clone(), notice.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = queue::claim(&store, &notice, &format!("w{w}"), now, 30_000, 3)
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
        "each message claimed exactly once"
    );
    assert_eq!(
        unique,
        flood
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .iter()
            .collect()
    );

    // A recalled message leaves the queue.
    recall(&store, codes[2], now).await;
    wait_queued(&store, 44).await;

    shutdown.cancel();
    subscription.await.unwrap().unwrap();
}

async fn futures_join(
    store: &Store,
    msg_type: MessageType,
    n: usize,
    send_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Vec<MessageId> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(accept(store, msg_type, send_at, now).await);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_queue() {
    let dir = std::env::temp_dir().join(format!("herald-queue-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = store::SqliteStore::open(dir.join("herald.db"))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    queue_contract(Store::Sqlite(store.clone())).await;
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_queue() {
    let admin = std::env::var("HERALD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("Postgres is not reachable ({e}); run scripts/test, which starts it")
        });
    let name = format!("herald_test_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .unwrap();
    let url = format!("{}/{name}", &admin[..admin.rfind('/').unwrap()]);
    let store = store::PgStore::connect(&url, store::PgOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    queue_contract(Store::Postgres(store.clone())).await;
    store.pool().close().await;
    drop(store);
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}
