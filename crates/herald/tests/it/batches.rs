//! The projections that fold a batch in memory and write it back set by set (stats,
//! reconciliation) write the same rows whether the log comes to them in one batch, in small
//! batches that cut messages in two, or one event at a time: a message with several events in a
//! batch (accepted, an early receipt, dispatched, the same receipt again, a receipt that changes
//! the outcome), counter rows hit many times, rows made and removed.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use domain::message::*;
use domain::*;
use projections::{Projection, Target};
use serde_json::json;
use store::{
    Checkpoint, EventStore, ExpectedVersion, Handler as _, NewEvent, RecordedEvent, Store,
    StreamAppend,
};

use crate::replay::{Made, message};
use crate::support::{self, empty_dir};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn accepted(tenant: &str, template: TemplateId, when: &str) -> MessageEvent {
    MessageEvent::MessageAccepted(MessageAccepted {
        message_id: MessageId::generate(),
        tenant: TenantId::parse(tenant).unwrap(),
        request_id: RequestId::parse("r-1").unwrap(),
        template_id: template,
        template_version: 1,
        channel: Channel::Sms,
        msg_type: MessageType::Notice,
        shield_type: ShieldType::None,
        account: "preferred".to_owned(),
        receiver: Receiver::parse(ReceiverIdType::Phone, "+8613800138000").unwrap(),
        content: TemplateContent::Text {
            body: "hi".to_owned(),
        },
        tracked_links: Vec::new(),
        send_at: None,
        at: at(when),
    })
}

fn dispatched(account: &str, supplier_id: Option<&str>, when: &str) -> MessageEvent {
    MessageEvent::MessageDispatched(MessageDispatched {
        account: account.to_owned(),
        supplier: "tencent_sms".to_owned(),
        supplier_message_id: supplier_id.map(str::to_owned),
        attempt: 1,
        latency_ms: 5,
        masked_words: 0,
        at: at(when),
    })
}

fn dispatch_failed(account: &str, when: &str) -> MessageEvent {
    MessageEvent::DispatchFailed(DispatchFailed {
        account: account.to_owned(),
        supplier: "tencent_sms".to_owned(),
        attempt: 1,
        error_class: ErrorClass::Retryable,
        error_code: "HTTP_503".to_owned(),
        error_message: "unavailable".to_owned(),
        retryable: true,
        next_attempt_at: Some(at(when)),
        at: at(when),
    })
}

fn receipt(outcome: ReceiptOutcome, when: &str) -> MessageEvent {
    MessageEvent::ReceiptReceived(ReceiptReceived {
        outcome,
        supplier_status: "x".to_owned(),
        reported_at: at(when),
        at: at(when),
    })
}

fn failed(when: &str) -> MessageEvent {
    MessageEvent::MessageFailed(MessageFailed {
        reason: "HTTP_400".to_owned(),
        attempts: 1,
        at: at(when),
    })
}

fn recalled(when: &str) -> MessageEvent {
    MessageEvent::MessageRecalled(MessageRecalled {
        via_supplier: false,
        at: at(when),
    })
}

fn clicked(when: &str) -> MessageEvent {
    MessageEvent::MessageClicked(MessageClicked {
        link_index: 0,
        user_agent_class: "mobile".to_owned(),
        at: at(when),
    })
}

/// The streams: a handful told by hand for the rules that need several events of one message,
/// and a spread of every outcome (`replay::message`).
fn streams() -> Vec<(MessageId, Vec<MessageEvent>)> {
    let template = TemplateId::generate();
    let other = TemplateId::generate();
    use ReceiptOutcome::{Delivered, Undelivered};
    let told: Vec<Vec<MessageEvent>> = vec![
        // Accepted before midnight; the receipt comes before the dispatch is recorded, then again,
        // then changes its mind two days later.
        vec![
            accepted("acme", template, "2024-05-01T23:59:00Z"),
            receipt(Delivered, "2024-05-02T00:00:01Z"),
            dispatched("sms-a", Some("told-1"), "2024-05-02T00:00:02Z"),
            receipt(Delivered, "2024-05-02T00:00:03Z"),
            receipt(Undelivered, "2024-05-04T10:00:00Z"),
            clicked("2024-05-04T10:00:01Z"),
        ],
        // A failed attempt on one account, then dispatched through another; undelivered, then
        // delivered on the same day.
        vec![
            accepted("acme", template, "2024-05-02T08:00:00Z"),
            dispatch_failed("sms-a", "2024-05-02T08:00:01Z"),
            MessageEvent::MessageDeferred(MessageDeferred {
                until: at("2024-05-02T08:00:05Z"),
                reason: DeferReason::RetryBackoff,
                at: at("2024-05-02T08:00:01Z"),
            }),
            dispatched("sms-b", None, "2024-05-02T08:00:05Z"),
            receipt(Undelivered, "2024-05-02T08:00:06Z"),
            receipt(Delivered, "2024-05-02T08:00:07Z"),
        ],
        // The same counter rows as the first, many times over.
        vec![
            accepted("acme", template, "2024-05-02T09:00:00Z"),
            dispatched("sms-a", Some("told-3"), "2024-05-02T09:00:01Z"),
            receipt(Delivered, "2024-05-02T09:00:02Z"),
        ],
        // Ends without a dispatch: nothing counts its reconciliation row (a receipt after makes
        // one, never dispatched); a receipt after counts nothing.
        vec![
            accepted("acme", other, "2024-05-02T10:00:00Z"),
            failed("2024-05-02T10:00:01Z"),
            receipt(Delivered, "2024-05-02T10:00:02Z"),
        ],
        // Recalled before its dispatch.
        vec![
            accepted("globex", other, "2024-05-02T11:00:00Z"),
            recalled("2024-05-02T11:00:01Z"),
        ],
        // Recalled after its dispatch: the row stays, for the bill.
        vec![
            accepted("globex", other, "2024-05-02T12:00:00Z"),
            dispatched("sms-a", Some("told-6"), "2024-05-02T12:00:01Z"),
            MessageEvent::MessageRecalled(MessageRecalled {
                via_supplier: true,
                at: at("2024-05-02T12:00:02Z"),
            }),
        ],
        // Still waiting.
        vec![accepted("globex", template, "2024-05-02T13:00:00Z")],
    ];
    let mut streams: Vec<(MessageId, Vec<MessageEvent>)> = told
        .into_iter()
        .map(|events| {
            let MessageEvent::MessageAccepted(e) = &events[0] else {
                unreachable!()
            };
            (e.message_id, events)
        })
        .collect();
    // Under a tenant of their own, so the counts asserted below are the told streams' alone.
    let tenant = TenantId::parse("initech").unwrap();
    let t0 = at("2024-05-01T23:58:00Z");
    streams.extend((0..40).map(|i| {
        let Made { id, events, .. } =
            message(i, &tenant, template, "https://hooks.example.com/h", t0);
        (id, events)
    }));
    streams
}

/// `event` of a message of `tenant`, with the metadata Herald writes (whose message it is).
fn encode(event: &MessageEvent, tenant: &TenantId) -> NewEvent {
    NewEvent::new(
        event.event_type(),
        MessageEvent::SCHEMA_VERSION,
        &event.encode(),
        &json!(EventMetadata::new(tenant.clone())),
    )
}

/// Appends the streams interleaved, as a busy log has them: every stream's first event, then
/// every stream's second, and so on. Returns the log.
async fn fill(store: &Store) -> Vec<RecordedEvent> {
    let streams = streams();
    let longest = streams.iter().map(|(_, e)| e.len()).max().unwrap();
    for round in 0..longest {
        let appends: Vec<StreamAppend> = streams
            .iter()
            .filter(|(_, events)| events.len() > round)
            .map(|(id, events)| {
                let MessageEvent::MessageAccepted(accepted) = &events[0] else {
                    unreachable!("every stream begins with its acceptance")
                };
                StreamAppend {
                    stream_id: id.stream_name(),
                    expected: if round == 0 {
                        ExpectedVersion::NoStream
                    } else {
                        ExpectedVersion::Exact(round as u64)
                    },
                    events: vec![encode(&events[round], &accepted.tenant)],
                }
            })
            .collect();
        store.append(&appends).await.unwrap();
    }
    // On Postgres a read stops at the oldest transaction still open in the whole server (other
    // tests run beside this one): read on until every event is there.
    let filter = Projection::Stats.filter();
    let total: usize = streams.iter().map(|(_, e)| e.len()).sum();
    let mut log = Vec::new();
    let mut after = Checkpoint::START;
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.len() < total {
        assert!(
            Instant::now() < deadline,
            "{} of {total} events read",
            log.len()
        );
        let batch = store.read_log(after, &filter, 100_000).await.unwrap();
        after = batch.next;
        if batch.events.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        log.extend(batch.events);
    }
    assert_eq!(log.len(), total);
    log
}

/// Every row of the projection's tables, as text, in order.
async fn rows(store: &Store, projection: Projection) -> Vec<Vec<String>> {
    let mut tables = Vec::new();
    for table in projection.tables() {
        let mut rows: Vec<String> = match store {
            Store::Postgres(s) => sqlx::query_scalar(&format!("SELECT t::text FROM {table} t"))
                .fetch_all(s.pool())
                .await
                .unwrap(),
            Store::Sqlite(s) => {
                let columns: Vec<String> =
                    sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                        .bind(table)
                        .fetch_all(s.readers())
                        .await
                        .unwrap();
                sqlx::query_scalar(&format!(
                    "SELECT json_array({}) FROM {table}",
                    columns.join(", ")
                ))
                .fetch_all(s.readers())
                .await
                .unwrap()
            }
        };
        rows.sort_unstable();
        tables.push(rows);
    }
    tables
}

/// Empties the projection's tables.
async fn clear(store: &Store, projection: Projection) {
    let mut tx = store.begin().await.unwrap();
    for table in projection.tables() {
        store::on_tx!(tx, |conn| sqlx::query(&format!("DELETE FROM {table}"))
            .execute(conn)
            .await
            .map(|r| r.rows_affected()))
        .unwrap();
    }
    tx.commit().await.unwrap();
}

/// Applies `log` in batches of `size` events, a transaction each; the rows it leaves.
async fn apply(
    store: &Store,
    projection: Projection,
    log: &[RecordedEvent],
    size: usize,
) -> Vec<Vec<String>> {
    clear(store, projection).await;
    let handler = projection.handler(Target::Live);
    for batch in log.chunks(size) {
        let mut tx = store.begin().await.unwrap();
        handler.handle(&mut tx, batch).await.unwrap();
        tx.commit().await.unwrap();
    }
    rows(store, projection).await
}

async fn one_batch_writes_what_one_event_at_a_time_does(store: &Store, projection: Projection) {
    let log = fill(store).await;
    let one_by_one = apply(store, projection, &log, 1).await;
    assert!(one_by_one.iter().all(|rows| !rows.is_empty()));
    let whole = apply(store, projection, &log, log.len()).await;
    assert_eq!(whole, one_by_one, "{} in one batch", projection.name());
    for size in [2, 7, 50] {
        let batched = apply(store, projection, &log, size).await;
        assert_eq!(
            batched,
            one_by_one,
            "{} in batches of {size}",
            projection.name()
        );
    }
    // What the rules say of the streams told by hand, besides (the whole log applied last).
    match projection {
        Projection::Stats => {
            let filter = projections::stats::StatsFilter {
                from: "2024-05-01".parse().unwrap(),
                to: "2024-05-31".parse().unwrap(),
                template_id: None,
                channel: Some("SMS".to_owned()),
                account: None,
            };
            let stats = projections::stats::stats(store, "acme", &filter, 1_000)
                .await
                .unwrap();
            use projections::stats::Counter;
            let sum = |day: &str, account: &str, counter: Counter| -> i64 {
                stats
                    .iter()
                    .filter(|r| r.day.to_string() == day)
                    .filter(|r| r.account.as_deref().unwrap_or("") == account)
                    .map(|r| r.counts.get(counter))
                    .sum()
            };
            // Counted delivered with the dispatch on the 2nd, moved to undelivered on the 4th.
            assert_eq!(sum("2024-05-04", "sms-a", Counter::Undelivered), 1);
            assert_eq!(sum("2024-05-04", "sms-a", Counter::Clicked), 1);
            // sms-b: undelivered, then delivered the same day: one delivered, nothing else.
            assert_eq!(sum("2024-05-02", "sms-b", Counter::Delivered), 1);
            assert_eq!(sum("2024-05-02", "sms-b", Counter::Undelivered), 0);
            assert_eq!(sum("2024-05-02", "sms-a", Counter::DispatchFailed), 1);
            assert_eq!(sum("2024-05-01", "", Counter::Accepted), 1);
        }
        Projection::Reconciliation => {
            let tables = rows(store, projection).await;
            let told = |supplier_id: &str| {
                tables[0]
                    .iter()
                    .filter(|row| row.contains(supplier_id))
                    .count()
            };
            assert_eq!(told("told-1"), 1);
            assert!(
                tables[0]
                    .iter()
                    .any(|row| row.contains("UNDELIVERED") && row.contains("told-1"))
            );
            assert_eq!(told("told-6"), 1);
        }
        Projection::Trace | Projection::Inbox => {}
    }
}

async fn on_sqlite(projection: Projection) {
    let dir = empty_dir();
    let store = Store::connect(&format!("sqlite://{}/herald.db", dir.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    one_batch_writes_what_one_event_at_a_time_does(&store, projection).await;
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

async fn on_postgres(projection: Projection) {
    let url = support::postgres_database().await;
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    one_batch_writes_what_one_event_at_a_time_does(&store, projection).await;
    if let Store::Postgres(s) = &store {
        s.pool().close().await;
    }
    support::drop_database(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stats_in_one_batch_as_one_event_at_a_time() {
    on_sqlite(Projection::Stats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stats_in_one_batch_as_one_event_at_a_time() {
    on_postgres(Projection::Stats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reconciliation_in_one_batch_as_one_event_at_a_time() {
    on_sqlite(Projection::Reconciliation).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reconciliation_in_one_batch_as_one_event_at_a_time() {
    on_postgres(Projection::Reconciliation).await;
}
