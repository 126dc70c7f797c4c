//! Dispatch end to end: a message sent through GraphQL reaches its supplier and its stream
//! records the outcome: dispatched, delivered (inbox), retried with backoff, or failed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use store::EventStore;

use crate::app::{TestApp, serve_fake, spawn, webhook_account};

pub(crate) const SECRET: &str = "hook-secret";

/// A receiving system: verifies Herald's signature, counts calls, answers as its path says.
pub(crate) async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    async fn hook(
        State(calls): State<Arc<Mutex<Vec<Value>>>>,
        Path(mode): Path<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let header = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let timestamp: i64 = header("x-herald-timestamp").parse().unwrap_or(0);
        if header("x-herald-signature")
            != dispatch::webhook::signature(SECRET.as_bytes(), timestamp, &body)
        {
            return StatusCode::UNAUTHORIZED;
        }
        calls
            .lock()
            .unwrap()
            .push(serde_json::from_slice(&body).unwrap());
        match mode.as_str() {
            "ok" => StatusCode::OK,
            "down" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
    let calls = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/hook/{mode}", post(hook))
        .with_state(Arc::clone(&calls));
    (format!("{}/hook", serve_fake(app).await), calls)
}

async fn app_with_webhook(backend: &str) -> TestApp {
    spawn(backend, |c| {
        c.dispatch.retry_base_ms = 100;
        c.accounts = vec![webhook_account(SECRET, "")];
    })
    .await
}

/// Makes an approved template; returns its id and a sender key.
pub(crate) async fn template(app: &TestApp, channel: &str) -> (String, String) {
    template_shielded(app, channel, "NONE").await
}

pub(crate) async fn template_shielded(
    app: &TestApp,
    channel: &str,
    shield: &str,
) -> (String, String) {
    let author = app.key("acme", "admin").await;
    let reviewer = app.key("acme", "admin").await;
    let sender = app.key("acme", "send,read").await;
    let input = json!({ "name": "n", "channel": channel, "msgType": "NOTICE", "shieldType": shield, "content": { "kind": "TEXT", "body": "Build ${n} finished" }, "account": "hooks", "ownerTeam": "ci" });
    let id = app
        .client()
        .approved_template(&author, &reviewer, input)
        .await;
    (id, sender)
}

pub(crate) async fn send(app: &TestApp, key: &str, template: &str, receiver: &str) -> String {
    let query = "mutation($input: SendInput!) { send(input: $input) { messages { id } } }";
    let input =
        json!({ "templateId": template, "receivers": [receiver], "variables": { "n": "42" } });
    let (_, sent) = app.gql(Some(key), query, json!({ "input": input })).await;
    format!(
        "message-{}",
        sent["data"]["send"]["messages"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{sent}"))
    )
}

/// Waits until the stream ends with `last`; returns its event types.
pub(crate) async fn wait_for(app: &TestApp, stream: &str, last: &str) -> Vec<String> {
    for _ in 0..200 {
        let types: Vec<String> = app
            .store
            .read_stream(stream, 1, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        if types.last().map(String::as_str) == Some(last) {
            return types;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let types: Vec<String> = app
        .store
        .read_stream(stream, 1, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    panic!("{stream} never reached {last}: {types:?}");
}

async fn webhook_messages_reach_the_receiver_and_record_their_outcome(backend: &str) {
    let app = app_with_webhook(backend).await;
    let (url, calls) = receiver().await;
    let (id, key) = template(&app, "WEBHOOK").await;

    let ok = send(&app, &key, &id, &format!("{url}/ok")).await;
    assert_eq!(
        wait_for(&app, &ok, "MessageDispatched").await,
        ["MessageAccepted", "MessageDispatched"]
    );
    let dispatched = app.store.read_stream(&ok, 2, 1).await.unwrap()[0]
        .data_json()
        .unwrap();
    assert_eq!(
        (
            dispatched["account"].as_str(),
            dispatched["supplier"].as_str(),
            dispatched["attempt"].as_u64()
        ),
        (Some("hooks"), Some("webhook"), Some(1))
    );
    assert_eq!(
        calls.lock().unwrap()[0]["content"]["body"],
        "Build 42 finished"
    );

    // A receiver that is down: three attempts with backoff, then one final failure.
    let down = send(&app, &key, &id, &format!("{url}/down")).await;
    let types = wait_for(&app, &down, "MessageFailed").await;
    assert_eq!(
        types,
        [
            "MessageAccepted",
            "DispatchFailed",
            "MessageDeferred",
            "DispatchFailed",
            "MessageDeferred",
            "DispatchFailed",
            "MessageFailed"
        ]
    );
    // A receiver that refuses the message: final at once.
    let refused = send(&app, &key, &id, &format!("{url}/refuse")).await;
    assert_eq!(
        wait_for(&app, &refused, "MessageFailed").await,
        ["MessageAccepted", "DispatchFailed", "MessageFailed"]
    );
    // Every attempt reached the receiver, and nothing more: 1 + 3 + 1.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.lock().unwrap().len(), 5);
    app.finish().await;
}

async fn inbox_messages_are_delivered_on_send(backend: &str) {
    let app = spawn(backend, |_| {}).await;
    let (id, key) = template(&app, "INBOX").await;
    let stream = send(&app, &key, &id, "user-1").await;
    assert_eq!(
        wait_for(&app, &stream, "ReceiptReceived").await,
        ["MessageAccepted", "MessageDispatched", "ReceiptReceived"]
    );
    app.finish().await;
}

/// A night window that holds right now, wherever the clock is: an hour back to an hour ahead.
pub(crate) fn night_now(c: &mut herald::config::Config) {
    let now = chrono::Utc::now();
    c.dispatch.night_zone = "+00:00".into();
    c.dispatch.night_start = (now - chrono::Duration::hours(1))
        .format("%H:%M")
        .to_string();
    c.dispatch.night_end = (now + chrono::Duration::hours(1))
        .format("%H:%M")
        .to_string();
    c.dispatch.night_resume = (now + chrono::Duration::hours(2))
        .format("%H:%M")
        .to_string();
}

async fn policies_record_their_outcome(backend: &str) {
    let app = spawn(backend, |c| {
        night_now(c);
        c.accounts = vec![webhook_account(SECRET, "")];
    })
    .await;
    let (url, calls) = receiver().await;

    // At night, a NIGHT_DISCARD template's message is shielded, a NIGHT_DEFER one deferred to
    // the resume time, and one with no shield goes out.
    let (discard, key) = template_shielded(&app, "WEBHOOK", "NIGHT_DISCARD").await;
    let shielded = send(&app, &key, &discard, &format!("{url}/ok")).await;
    assert_eq!(
        wait_for(&app, &shielded, "MessageShielded").await,
        ["MessageAccepted", "MessageShielded"]
    );

    let (defer, key) = template_shielded(&app, "WEBHOOK", "NIGHT_DEFER").await;
    let deferred = send(&app, &key, &defer, &format!("{url}/ok")).await;
    assert_eq!(
        wait_for(&app, &deferred, "MessageDeferred").await,
        ["MessageAccepted", "MessageDeferred"]
    );
    let data = app.store.read_stream(&deferred, 2, 1).await.unwrap()[0]
        .data_json()
        .unwrap();
    assert_eq!(data["reason"], "NIGHT_SHIELD");
    let until: chrono::DateTime<chrono::Utc> = data["until"].as_str().unwrap().parse().unwrap();
    let wait = until - chrono::Utc::now();
    assert!(
        wait > chrono::Duration::minutes(60) && wait <= chrono::Duration::minutes(121),
        "deferred to the resume time: {until}"
    );

    let (plain, key) = template_shielded(&app, "WEBHOOK", "NONE").await;
    let sent = send(&app, &key, &plain, &format!("{url}/ok")).await;
    wait_for(&app, &sent, "MessageDispatched").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        calls.lock().unwrap().len(),
        1,
        "only the unshielded message reached the receiver"
    );
    app.finish().await;
}

/// A template switched off after a message was accepted: the message is discarded, not sent.
async fn a_disabled_template_discards_waiting_messages(backend: &str) {
    let app = spawn(backend, |c| {
        c.dispatch.enabled = false;
        c.accounts = vec![webhook_account(SECRET, "")];
    })
    .await;
    let (url, calls) = receiver().await;
    let (id, key) = template(&app, "WEBHOOK").await;
    let stream = send(&app, &key, &id, &format!("{url}/ok")).await;
    let admin = app.key("acme", "admin").await;
    let (_, answer) = app
        .gql(
            Some(&admin),
            "mutation($id: ID!) { disableTemplate(id: $id) { enabled } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        answer["data"]["disableTemplate"]["enabled"], false,
        "{answer}"
    );

    // Now dispatch starts, as a dispatch process would.
    let config = herald::config::Config {
        accounts: vec![webhook_account(SECRET, "")],
        ..Default::default()
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let options = herald::roles::dispatch_options(&config).unwrap();
    let (_options, options) = tokio::sync::watch::channel(options);
    let runtime = herald::runtime::start(&app.store, &config).await.unwrap();
    let mut role = herald::roles::start_dispatch(
        &app.store,
        &config,
        &runtime.accounts,
        &runtime.tokens,
        options,
        &shutdown,
    )
    .unwrap();
    assert_eq!(
        wait_for(&app, &stream, "MessageDiscarded").await,
        ["MessageAccepted", "MessageDiscarded"]
    );
    let data = app.store.read_stream(&stream, 2, 1).await.unwrap()[0]
        .data_json()
        .unwrap();
    assert_eq!(data["rule"], "TEMPLATE_DISABLED");
    assert!(calls.lock().unwrap().is_empty());
    shutdown.cancel();
    while role.join_next().await.is_some() {}
    app.finish().await;
}

/// Content dedup and the daily frequency cap, with the cache in process or on Redis.
async fn dedup_and_frequency_caps(backend: &str, redis: bool) {
    let prefix = format!("herald-test-{}", uuid::Uuid::now_v7().simple());
    let app = spawn(backend, |c| {
        c.dispatch.frequency_cap = 2;
        if redis {
            c.cache.redis_url = crate::support::redis_url();
            c.cache.key_prefix = prefix.clone();
        }
        c.accounts = vec![webhook_account(SECRET, "")];
    })
    .await;
    let (url, calls) = receiver().await;
    let (id, key) = template(&app, "WEBHOOK").await;
    let to = format!("{url}/ok");
    let send_n = |n: &'static str| {
        let (app, key, id, to) = (&app, key.clone(), id.clone(), to.clone());
        async move {
            let query = "mutation($input: SendInput!) { send(input: $input) { messages { id } } }";
            let input = json!({ "templateId": id, "receivers": [to], "variables": { "n": n } });
            let (_, sent) = app.gql(Some(&key), query, json!({ "input": input })).await;
            format!(
                "message-{}",
                sent["data"]["send"]["messages"][0]["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{sent}"))
            )
        }
    };
    let first = send_n("1").await;
    wait_for(&app, &first, "MessageDispatched").await;
    // The same content again within the window: a duplicate, which does not count toward the cap.
    let again = send_n("1").await;
    assert_eq!(
        wait_for(&app, &again, "MessageDeduplicated").await,
        ["MessageAccepted", "MessageDeduplicated"]
    );
    let data = app.store.read_stream(&again, 2, 1).await.unwrap()[0]
        .data_json()
        .unwrap();
    assert_eq!(
        (data["rule"].as_str(), data["window_secs"].as_u64()),
        (Some("CONTENT"), Some(300))
    );
    // Other content: the second of the day goes out, the third is over the cap of 2.
    let second = send_n("2").await;
    wait_for(&app, &second, "MessageDispatched").await;
    let third = send_n("3").await;
    assert_eq!(
        wait_for(&app, &third, "MessageDeduplicated").await,
        ["MessageAccepted", "MessageDeduplicated"]
    );
    let data = app.store.read_stream(&third, 2, 1).await.unwrap()[0]
        .data_json()
        .unwrap();
    assert_eq!(data["rule"], "FREQUENCY");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        calls.lock().unwrap().len(),
        2,
        "only the two allowed messages went out"
    );
    app.finish().await;
}

/// An account's rate is shared by every worker: over it, messages wait for a token and record
/// `MessageRateLimited`, spending no attempt.
async fn an_account_rate_limit_spaces_sends(backend: &str) {
    let app = spawn(backend, |c| {
        c.accounts = vec![webhook_account(
            SECRET,
            "rate_limit_per_sec = 2.0\nrate_limit_burst = 1",
        )];
    })
    .await;
    let (url, calls) = receiver().await;
    let (id, key) = template(&app, "WEBHOOK").await;
    let query =
        "mutation($input: BatchSendInput!) { batchSend(input: $input) { messages { id } } }";
    let items: Vec<Value> = (0..3).map(|i| json!({ "receivers": [format!("{url}/ok?i={i}")], "variables": { "n": i.to_string() } })).collect();
    let (_, sent) = app
        .gql(
            Some(&key),
            query,
            json!({ "input": { "templateId": id, "items": items } }),
        )
        .await;
    let streams: Vec<String> = sent["data"]["batchSend"]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{sent}"))
        .iter()
        .map(|m| format!("message-{}", m["id"].as_str().unwrap()))
        .collect();
    let mut limited = 0;
    let mut dispatched_at = Vec::new();
    for stream in &streams {
        let types = wait_for(&app, stream, "MessageDispatched").await;
        limited += types.iter().filter(|t| *t == "MessageRateLimited").count();
        let events = app.store.read_stream(stream, 1, 100).await.unwrap();
        let data = events.last().unwrap().data_json().unwrap();
        assert_eq!(data["attempt"], 1, "waiting for the rate spends no attempt");
        dispatched_at.push(
            data["at"]
                .as_str()
                .unwrap()
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap(),
        );
    }
    assert!(limited >= 2, "two of three waited for a token: {limited}");
    dispatched_at.sort();
    let spread = dispatched_at[2] - dispatched_at[0];
    assert!(
        spread >= chrono::Duration::milliseconds(900),
        "3 sends at 2/s with a burst of 1 take about a second: {spread}"
    );
    assert_eq!(calls.lock().unwrap().len(), 3);
    app.finish().await;
}

/// A message already handed over is recalled through its channel where it can be (the inbox),
/// and otherwise ends in `RecallFailed` with the reason (a webhook cannot be taken back).
async fn dispatched_messages_are_recalled_where_the_channel_can(backend: &str) {
    let app = app_with_webhook(backend).await;
    let (url, _calls) = receiver().await;
    let recall =
        "mutation($ids: [ID!]!) { recall(input: { messageIds: $ids }) { messages { status } } }";
    let id_of = |stream: &str| stream.trim_start_matches("message-").to_owned();

    let (inbox, key) = template(&app, "INBOX").await;
    let delivered = send(&app, &key, &inbox, "user-1").await;
    wait_for(&app, &delivered, "ReceiptReceived").await;
    let recaller = app.key("acme", "recall").await;
    let (_, answer) = app
        .gql(
            Some(&recaller),
            recall,
            json!({ "ids": [id_of(&delivered)] }),
        )
        .await;
    assert_eq!(
        answer["data"]["recall"]["messages"][0]["status"], "REQUESTED",
        "{answer}"
    );
    wait_for(&app, &delivered, "MessageRecalled").await;
    let data = app.store.read_stream(&delivered, 5, 1).await.unwrap()[0]
        .data_json()
        .unwrap();
    assert_eq!(data["via_supplier"], true);

    let (hook, key) = template(&app, "WEBHOOK").await;
    let sent = send(&app, &key, &hook, &format!("{url}/ok")).await;
    wait_for(&app, &sent, "MessageDispatched").await;
    app.gql(Some(&recaller), recall, json!({ "ids": [id_of(&sent)] }))
        .await;
    assert_eq!(
        wait_for(&app, &sent, "RecallFailed").await,
        [
            "MessageAccepted",
            "MessageDispatched",
            "RecallRequested",
            "RecallFailed"
        ]
    );
    let data = app.store.read_stream(&sent, 4, 1).await.unwrap()[0]
        .data_json()
        .unwrap();
    assert!(
        data["reason"]
            .as_str()
            .unwrap()
            .starts_with("CHANNEL_CANNOT_RECALL"),
        "{data}"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_recall_after_dispatch() {
    dispatched_messages_are_recalled_where_the_channel_can("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_recall_after_dispatch() {
    dispatched_messages_are_recalled_where_the_channel_can("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_account_rate_limit() {
    an_account_rate_limit_spaces_sends("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_account_rate_limit() {
    an_account_rate_limit_spaces_sends("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dedup_and_caps_on_redis() {
    dedup_and_frequency_caps("postgres", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_dedup_and_caps_in_process() {
    dedup_and_frequency_caps("sqlite", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dedup_and_caps_in_process() {
    dedup_and_frequency_caps("postgres", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_policies() {
    policies_record_their_outcome("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_policies() {
    policies_record_their_outcome("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_disabled_template() {
    a_disabled_template_discards_waiting_messages("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_disabled_template() {
    a_disabled_template_discards_waiting_messages("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_webhook_dispatch() {
    webhook_messages_reach_the_receiver_and_record_their_outcome("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_webhook_dispatch() {
    webhook_messages_reach_the_receiver_and_record_their_outcome("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_inbox_dispatch() {
    inbox_messages_are_delivered_on_send("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_inbox_dispatch() {
    inbox_messages_are_delivered_on_send("sqlite").await;
}
