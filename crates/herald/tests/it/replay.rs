//! `herald replay` rebuilds every projection from the log while the API keeps answering from the
//! old tables, and swaps in tables equal to the ones the live projections built; afterwards the
//! live projections go on. It calls no supplier. `herald trace` prints a message's life.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use chrono::{DateTime, TimeDelta, Utc};
use domain::message::*;
use domain::{
    Channel, EventMetadata, MessageId, MessageType, Receiver, ReceiverIdType, RequestId,
    ShieldType, TemplateContent, TemplateId, TenantId,
};
use projections::Projection;
use projections::replay::{Progress, Replay, ReplayOptions, Swap};
use serde_json::json;
use store::{EventStore, ExpectedVersion, NewEvent, Store, StreamAppend};

use crate::app::{TestApp, spawn, webhook_account};
use crate::support::{empty_dir, herald};

const QUERY: &str =
    "query($id: ID!) { message(id: $id) { message { id status timeline { kind } } } }";

/// One message's stream, and the status the domain folds it to.
pub(crate) struct Made {
    pub(crate) id: MessageId,
    pub(crate) events: Vec<MessageEvent>,
    pub(crate) status: &'static str,
}

/// The `i`th message: its stream cycles through the outcomes a message can have.
pub(crate) fn message(
    i: usize,
    tenant: &TenantId,
    template: TemplateId,
    hook: &str,
    t0: DateTime<Utc>,
) -> Made {
    let id = MessageId::generate();
    let at = |step: i64| t0 + TimeDelta::milliseconds(i as i64 * 7 + step * 1_500);
    let sms = i.is_multiple_of(3);
    let (channel, receiver, account, supplier) = if sms {
        let phone = format!("+86138{:08}", i % 100_000_000);
        (
            Channel::Sms,
            Receiver::parse(ReceiverIdType::Phone, &phone).unwrap(),
            "sms-main",
            "tencent",
        )
    } else if i % 7 == 4 {
        // The inbox projection keeps rows for these alone.
        (
            Channel::Inbox,
            Receiver::parse(ReceiverIdType::UserId, &format!("user-{}", i % 50)).unwrap(),
            "inbox",
            "inbox",
        )
    } else {
        (
            Channel::Webhook,
            Receiver::parse(ReceiverIdType::WebhookUrl, hook).unwrap(),
            "hooks",
            "webhook",
        )
    };
    let accepted = MessageEvent::MessageAccepted(MessageAccepted {
        message_id: id,
        tenant: tenant.clone(),
        request_id: RequestId::parse(&format!("req-{}", i / 4)).unwrap(),
        template_id: template,
        template_version: 1,
        channel,
        msg_type: if i.is_multiple_of(5) {
            MessageType::Marketing
        } else {
            MessageType::Notice
        },
        shield_type: ShieldType::None,
        account: account.to_owned(),
        receiver,
        content: TemplateContent::Text {
            body: format!("Order {i} shipped"),
        },
        tracked_links: Vec::new(),
        send_at: None,
        at: at(0),
    });
    let dispatched = |step: i64, attempt: u32| {
        MessageEvent::MessageDispatched(MessageDispatched {
            account: account.to_owned(),
            supplier: supplier.to_owned(),
            supplier_message_id: sms.then(|| format!("sid-{i}")),
            attempt,
            latency_ms: 20 + (i % 50) as u64,
            masked_words: 0,
            at: at(step),
        })
    };
    let failed_attempt = |step: i64, class: ErrorClass| {
        MessageEvent::DispatchFailed(DispatchFailed {
            account: account.to_owned(),
            supplier: supplier.to_owned(),
            attempt: 1,
            error_class: class,
            error_code: "HTTP_503".to_owned(),
            error_message: "unavailable".to_owned(),
            retryable: class == ErrorClass::Retryable,
            next_attempt_at: (class == ErrorClass::Retryable).then(|| at(step + 1)),
            at: at(step),
        })
    };
    let receipt = |step: i64, outcome: ReceiptOutcome| {
        MessageEvent::ReceiptReceived(ReceiptReceived {
            outcome,
            supplier_status: if outcome == ReceiptOutcome::Delivered {
                "DELIVRD".to_owned()
            } else {
                "UNDELIV".to_owned()
            },
            reported_at: at(step),
            at: at(step),
        })
    };
    let clicked = |step: i64| {
        MessageEvent::MessageClicked(MessageClicked {
            link_index: 0,
            user_agent_class: "mobile".to_owned(),
            at: at(step),
        })
    };
    let recall = |step: i64| {
        MessageEvent::RecallRequested(RecallRequested {
            actor: "k1".to_owned(),
            request_id: None,
            at: at(step),
        })
    };
    let mut events = vec![accepted];
    events.extend(match i % 10 {
        0 => vec![dispatched(1, 1), receipt(2, ReceiptOutcome::Delivered)],
        1 => vec![dispatched(1, 1), receipt(2, ReceiptOutcome::Undelivered)],
        2 => vec![
            failed_attempt(1, ErrorClass::Retryable),
            MessageEvent::MessageDeferred(MessageDeferred {
                until: at(2),
                reason: DeferReason::RetryBackoff,
                at: at(1),
            }),
            dispatched(2, 2),
            receipt(3, ReceiptOutcome::Delivered),
        ],
        3 => vec![MessageEvent::MessageDeduplicated(MessageDeduplicated {
            rule: DedupRule::Content,
            key: format!("dedup-{i}"),
            window_secs: 300,
            at: at(1),
        })],
        4 => vec![MessageEvent::MessageShielded(MessageShielded {
            reason: "NIGHT_DISCARD".to_owned(),
            at: at(1),
        })],
        5 => vec![MessageEvent::MessageDiscarded(MessageDiscarded {
            rule: DiscardRule::SensitiveWords,
            at: at(1),
        })],
        6 => vec![
            failed_attempt(1, ErrorClass::Final),
            MessageEvent::MessageFailed(MessageFailed {
                reason: "HTTP_400".to_owned(),
                attempts: 1,
                at: at(1),
            }),
        ],
        7 => vec![
            dispatched(1, 1),
            receipt(2, ReceiptOutcome::Delivered),
            clicked(3),
            clicked(4),
        ],
        8 => vec![
            dispatched(1, 1),
            recall(2),
            MessageEvent::MessageRecalled(MessageRecalled {
                via_supplier: true,
                at: at(3),
            }),
        ],
        _ => vec![
            dispatched(1, 1),
            recall(2),
            MessageEvent::RecallFailed(RecallFailed {
                reason: "CHANNEL_CANNOT_RECALL: SMS".to_owned(),
                at: at(3),
            }),
        ],
    });
    // The domain's own rules accept the stream, and say where it ends.
    let state = domain::message_state::fold(&events).unwrap();
    Made {
        id,
        events,
        status: state.status.unwrap().as_str(),
    }
}

pub(crate) fn encode(event: &MessageEvent, tenant: &TenantId) -> NewEvent {
    NewEvent::new(
        event.event_type(),
        MessageEvent::SCHEMA_VERSION,
        &event.encode(),
        &serde_json::to_value(EventMetadata::new(tenant.clone()).with_actor("dispatch")).unwrap(),
    )
}

/// Appends the messages as they would be written: every acceptance first, in large batches,
/// then the rest of each stream with the version it expects.
pub(crate) async fn append(store: &Store, made: &[Made], tenant: &TenantId) {
    for chunk in made.chunks(2_000) {
        let accepted: Vec<StreamAppend> = chunk
            .iter()
            .map(|m| StreamAppend {
                stream_id: m.id.stream_name(),
                expected: ExpectedVersion::NoStream,
                events: vec![encode(&m.events[0], tenant)],
            })
            .collect();
        store.append(&accepted).await.unwrap();
    }
    for chunk in made.chunks(2_000) {
        let rest: Vec<StreamAppend> = chunk
            .iter()
            .map(|m| StreamAppend {
                stream_id: m.id.stream_name(),
                expected: ExpectedVersion::Exact(1),
                events: m.events[1..].iter().map(|e| encode(e, tenant)).collect(),
            })
            .collect();
        store.append(&rest).await.unwrap();
    }
}

/// Waits until every live projection has applied the whole log.
pub(crate) async fn caught_up(store: &Store) {
    let deadline = Instant::now() + Duration::from_secs(900);
    for projection in Projection::ALL {
        loop {
            let lag =
                projections::lag::lag(store, projection.subscription(), projection.category())
                    .await
                    .unwrap();
            if lag.caught_up() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never caught up: {lag:?}",
                projection.name()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Every read table of every projection: its rows (count and an order-independent digest) and
/// its indexes by name and definition.
async fn snapshot(store: &Store) -> Vec<(String, i64, String, Vec<(String, String)>)> {
    let mut tables = Vec::new();
    for projection in Projection::ALL {
        for table in projection.tables() {
            let entry = match store {
                Store::Postgres(s) => {
                    // md5 of the rows' md5s in order: equal exactly when the rows are.
                    let (count, digest): (i64, String) = sqlx::query_as(&format!(
                        "SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h)), '') \
                         FROM (SELECT md5(t::text) AS h FROM \"{table}\" t) rows"
                    ))
                    .fetch_one(s.pool())
                    .await
                    .unwrap();
                    let indexes: Vec<(String, String)> = sqlx::query_as(
                        "SELECT indexname::text, indexdef FROM pg_indexes \
                         WHERE tablename = $1 ORDER BY indexname",
                    )
                    .bind(table)
                    .fetch_all(s.pool())
                    .await
                    .unwrap();
                    (table.to_string(), count, digest, indexes)
                }
                Store::Sqlite(s) => {
                    let columns: Vec<String> =
                        sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                            .bind(table)
                            .fetch_all(s.readers())
                            .await
                            .unwrap();
                    let mut rows: Vec<String> = sqlx::query_scalar(&format!(
                        "SELECT json_array({}) FROM \"{table}\"",
                        columns.join(", ")
                    ))
                    .fetch_all(s.readers())
                    .await
                    .unwrap();
                    rows.sort_unstable();
                    let mut hasher = DefaultHasher::new();
                    rows.hash(&mut hasher);
                    let indexes: Vec<(String, String)> = sqlx::query_as(
                        "SELECT name, coalesce(sql, '') FROM sqlite_master \
                         WHERE type = 'index' AND tbl_name = $1 ORDER BY name",
                    )
                    .bind(table)
                    .fetch_all(s.readers())
                    .await
                    .unwrap();
                    (
                        table.to_string(),
                        rows.len() as i64,
                        format!("{:016x}", hasher.finish()),
                        indexes,
                    )
                }
            };
            tables.push(entry);
        }
    }
    tables
}

/// A supplier that counts every call it gets.
pub(crate) async fn counting_supplier() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let router = axum::Router::new().route(
        "/hook",
        post(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { StatusCode::OK }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (hook, calls)
}

/// Runs `herald replay ARGS` on the app's store while the API is asked for messages of
/// `sample`, every answer checked; returns the command's summary and how many answers came.
async fn replay_while_serving(
    app: &TestApp,
    key: &str,
    sample: &[(String, &'static str)],
    args: &[&str],
) -> (String, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let asking = {
        let (client, key, stop) = (app.client(), key.to_owned(), Arc::clone(&stop));
        let sample = sample.to_vec();
        tokio::spawn(async move {
            let mut answers = 0;
            while !stop.load(Ordering::SeqCst) {
                let (id, status) = &sample[answers % sample.len()];
                let (code, answer) = client.gql(Some(&key), QUERY, json!({ "id": id })).await;
                assert_eq!(code, 200, "{answer}");
                assert!(answer["errors"].is_null(), "{answer}");
                assert_eq!(
                    answer["data"]["message"]["message"]["status"], *status,
                    "{answer}"
                );
                answers += 1;
            }
            answers
        })
    };
    let dir = empty_dir();
    let output = herald(&dir)
        .args(["--database-url", &app.database_url, "replay"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    let answers = asking.await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
    (stdout, answers)
}

async fn no_shadow_left(store: &Store) {
    let checkpoints: i64 = match store {
        Store::Postgres(s) => sqlx::query_scalar(
            "SELECT count(*) FROM checkpoints WHERE subscription LIKE '%\\_shadow'",
        )
        .fetch_one(s.pool())
        .await
        .unwrap(),
        Store::Sqlite(s) => sqlx::query_scalar(
            "SELECT count(*) FROM checkpoints WHERE subscription LIKE '%\\_shadow' ESCAPE '\\'",
        )
        .fetch_one(s.readers())
        .await
        .unwrap(),
    };
    assert_eq!(checkpoints, 0);
    let tables: i64 = match store {
        Store::Postgres(s) => {
            sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename LIKE '%\\_shadow'")
                .fetch_one(s.pool())
                .await
                .unwrap()
        }
        Store::Sqlite(s) => sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE '%\\_shadow' ESCAPE '\\'",
        )
        .fetch_one(s.readers())
        .await
        .unwrap(),
    };
    assert_eq!(tables, 0);
}

async fn rebuilds_what_the_live_projections_built(backend: &str, messages: usize) {
    let (hook, calls) = counting_supplier().await;
    let app = spawn(backend, |c| {
        c.accounts = vec![webhook_account("s3cret", "")];
        // The API is asked as fast as it answers throughout the replay.
        c.api.rate_limit_per_second = 1_000_000;
        c.api.rate_limit_burst = 1_000_000;
    })
    .await;
    let key = app.key("acme", "read").await;
    let tenant = TenantId::parse("acme").unwrap();
    let template = TemplateId::generate();
    let t0 = Utc::now() - TimeDelta::days(1);

    let started = Instant::now();
    let made: Vec<Made> = (0..messages)
        .map(|i| message(i, &tenant, template, &hook, t0))
        .collect();
    append(&app.store, &made, &tenant).await;
    if let Store::Postgres(s) = &app.store {
        // The test server runs with autovacuum off. A server left to itself analyzes the log
        // after a load like this one, and log reads are planned on what it finds: without it
        // every read would scan from its checkpoint to the end of the log.
        sqlx::query("ANALYZE events")
            .execute(s.pool())
            .await
            .unwrap();
    }
    let events: usize = made.iter().map(|m| m.events.len()).sum();
    eprintln!(
        "{backend}: {messages} messages, {events} events appended in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    caught_up(&app.store).await;
    eprintln!(
        "{backend}: live projections caught up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Store::Postgres(s) = &app.store {
        // As autovacuum would, for the read tables too: the API's queries plan on it.
        sqlx::query("ANALYZE").execute(s.pool()).await.unwrap();
    }
    let before = snapshot(&app.store).await;
    assert_eq!(before[0].1, messages as i64, "{before:?}");

    // A spread of messages, one of each outcome and more, asked for throughout the replay.
    let sample: Vec<(String, &'static str)> = made
        .iter()
        .step_by(97)
        .map(|m| (m.id.to_string(), m.status))
        .collect();
    let started = Instant::now();
    let (summary, answers) = replay_while_serving(&app, &key, &sample, &["--all"]).await;
    eprintln!(
        "{backend}: herald replay --all took {:.1} s, {answers} answers meanwhile:\n{summary}",
        started.elapsed().as_secs_f64()
    );
    assert!(answers > 0);
    for projection in Projection::ALL {
        let line = summary
            .lines()
            .find(|l| l.starts_with(&format!("{}: ", projection.name())))
            .unwrap_or_else(|| panic!("no summary for {}: {summary}", projection.name()));
        assert!(
            line.contains(" events in ") && line.ends_with("events/s)"),
            "{line}"
        );
    }
    assert!(
        summary.contains(&format!("trace: {} events in", thousands(events))),
        "{summary}"
    );
    assert_eq!(snapshot(&app.store).await, before);
    no_shadow_left(&app.store).await;

    // Again: the shadows' index names do not drift from replay to replay.
    let (_, _) = replay_while_serving(&app, &key, &sample, &["--projection", "trace"]).await;
    assert_eq!(snapshot(&app.store).await, before);
    no_shadow_left(&app.store).await;

    live_goes_on(&app, &key, &tenant, template, &hook).await;
    assert_eq!(snapshot(&app.store).await[0].1, messages as i64 + 1);

    // Nothing was sent: a replay only runs projections.
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    app.finish().await;
}

/// The live projection goes on from where a replay left it: a new message shows.
async fn live_goes_on(
    app: &TestApp,
    key: &str,
    tenant: &TenantId,
    template: TemplateId,
    hook: &str,
) {
    let late = message(0, tenant, template, hook, Utc::now());
    append(&app.store, std::slice::from_ref(&late), tenant).await;
    let id = late.id.to_string();
    let mut answer = serde_json::Value::Null;
    for _ in 0..400 {
        answer = app.gql(Some(key), QUERY, json!({ "id": id })).await.1;
        if answer["data"]["message"]["message"]["status"] == "DELIVERED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        answer["data"]["message"]["message"]["timeline"],
        json!([{ "kind": "ACCEPTED" }, { "kind": "DISPATCHED" }, { "kind": "DELIVERED" }]),
        "{answer}"
    );
    caught_up(&app.store).await;
}

/// A swap never goes back in time: while the live projection has applied events the shadows
/// have not, it changes nothing, and succeeds once they have caught up. Shadows left by a
/// replay stopped half way are dropped by the next one.
async fn the_swap_waits_for_the_shadows(backend: &str) {
    let (hook, calls) = counting_supplier().await;
    let app = spawn(backend, |c| {
        c.accounts = vec![webhook_account("s3cret", "")];
    })
    .await;
    let key = app.key("acme", "read").await;
    let tenant = TenantId::parse("acme").unwrap();
    let template = TemplateId::generate();
    let t0 = Utc::now() - TimeDelta::hours(1);
    let made: Vec<Made> = (0..50)
        .map(|i| message(i, &tenant, template, &hook, t0))
        .collect();
    append(&app.store, &made, &tenant).await;
    caught_up(&app.store).await;
    let options = ReplayOptions { batch_size: 10 };
    let mut quiet = |_: &Progress| {};

    // Stopped after filling its shadows, before the swap.
    let mut stopped = Replay::start(&app.store, Projection::Trace, &options)
        .await
        .unwrap();
    stopped.fill(&mut quiet).await.unwrap();
    drop(stopped);

    let mut replay = Replay::start(&app.store, Projection::Trace, &options)
        .await
        .unwrap();
    replay.fill(&mut quiet).await.unwrap();
    assert_eq!(replay.events(), 165);
    // The live projection moves past the shadows.
    let more: Vec<Made> = (50..60)
        .map(|i| message(i, &tenant, template, &hook, t0))
        .collect();
    append(&app.store, &more, &tenant).await;
    caught_up(&app.store).await;
    let live = snapshot(&app.store).await;
    assert_eq!(live[0].1, 60);
    assert_eq!(replay.swap().await.unwrap(), Swap::Behind);
    assert_eq!(snapshot(&app.store).await, live);

    replay.fill(&mut quiet).await.unwrap();
    assert_eq!(replay.events(), 198);
    assert_eq!(replay.swap().await.unwrap(), Swap::Done);
    assert_eq!(snapshot(&app.store).await, live);
    no_shadow_left(&app.store).await;
    live_goes_on(&app, &key, &tenant, template, &hook).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_swap_waits_for_the_shadows() {
    the_swap_waits_for_the_shadows("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_swap_waits_for_the_shadows() {
    the_swap_waits_for_the_shadows("sqlite").await;
}

pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_replay_of_100_000_messages_rebuilds_the_same_tables() {
    rebuilds_what_the_live_projections_built("postgres", 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_replay_beside_a_running_server_rebuilds_the_same_tables() {
    rebuilds_what_the_live_projections_built("sqlite", 2_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_trace_prints_a_message_and_refuses_unknown_ones() {
    let app = spawn("sqlite", |_| {}).await;
    let content = json!({ "kind": "TEXT", "body": "Order ${n} shipped" });
    let (template, key) = crate::trace::template(&app, "INBOX", content, "NONE").await;
    let id = crate::trace::send(&app, &key, &template, "customer-7781", json!({})).await;
    crate::trace::until_timeline(&app, &key, &id, &["ACCEPTED", "DISPATCHED", "DELIVERED"]).await;

    let dir = empty_dir();
    let trace = |args: Vec<String>| {
        let mut command = herald(&dir);
        command
            .args(["--database-url", &app.database_url, "trace"])
            .args(args);
        async move { command.output().await.unwrap() }
    };
    let output = trace(vec![id.clone()]).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&format!("message   {id}\n")), "{stdout}");
    assert!(stdout.contains("status    DELIVERED\n"), "{stdout}");
    assert!(stdout.contains("channel   INBOX (NOTICE)\n"), "{stdout}");
    assert!(stdout.contains("receiver  cu***81\n"), "{stdout}");
    assert!(!stdout.contains("customer-7781"), "{stdout}");
    assert!(stdout.contains("account   inbox\n"), "{stdout}");
    let kinds: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("TIME"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(kinds, ["ACCEPTED", "DISPATCHED", "DELIVERED"], "{stdout}");

    // The tenant's own: found; another's: not.
    let output = trace(vec![id.clone(), "--tenant".into(), "acme".into()]).await;
    assert!(output.status.success());
    for (args, expected) in [
        (vec![MessageId::generate().to_string()], "not found"),
        (
            vec![id.clone(), "--tenant".into(), "other".into()],
            "not found for tenant other",
        ),
        (vec!["not-a-uuid".into()], "is not a message id"),
    ] {
        let output = trace(args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with("herald: ") && stderr.contains(expected),
            "{stderr}"
        );
        assert!(output.stdout.is_empty());
    }
    let _ = std::fs::remove_dir_all(dir);
    app.finish().await;
}
