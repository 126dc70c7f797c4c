//! Crash: a dispatch process killed with 10,000 messages in flight against a slow supplier. After
//! a restart every message ends with exactly one outcome; supplier calls beyond one per message
//! (those in flight at the kill, sent again after their lease expired) are counted and reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use serde_json::json;
use store::{EventStore, LogFilter};

use crate::app::{Client, serve_fake};
use crate::deployment::Deployment;
use crate::support::serve;

const MESSAGES: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_dispatcher_leaves_every_message_with_one_outcome() {
    // The supplier: 20 ms a call, counting every call it gets.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let app = axum::Router::new().route(
        "/hook",
        post(move || {
            let counter = Arc::clone(&counter);
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                counter.fetch_add(1, Ordering::SeqCst);
                StatusCode::OK
            }
        }),
    );
    let hook = format!("{}/hook", serve_fake(app).await);

    let deployment = Deployment::new(
        "[dispatch]\nconcurrency = 64\nlease_secs = 3\ndedup_window_secs = 0\nfrequency_cap = 0\n\n\
         [[accounts]]\nid = \"hooks\"\nchannel = \"WEBHOOK\"\nsupplier = \"webhook\"\ncredentials = { secret = \"s\" }\n",
    )
    .await;
    let (author, reviewer, sender) = (&deployment.author, &deployment.reviewer, &deployment.sender);
    let command = || deployment.command();

    let mut first = serve(command()).await;
    let api = Client {
        address: first.address,
    };
    let template = json!({ "name": "n", "channel": "WEBHOOK", "msgType": "NOTICE", "content": { "kind": "TEXT", "body": "m ${i}" }, "account": "hooks", "ownerTeam": "t" });
    let id = api.approved_template(author, reviewer, template).await;

    // 10,000 messages in one request: 100 items of 100 receivers.
    let items: Vec<_> = (0..100)
        .map(|i| json!({ "receivers": (0..100).map(|r| format!("{hook}?m={i}-{r}")).collect::<Vec<_>>(), "variables": { "i": i.to_string() } }))
        .collect();
    let (status, sent) = api
        .gql(
            Some(sender),
            "mutation($input: BatchSendInput!) { batchSend(input: $input) { requestId } }",
            json!({ "input": { "templateId": id, "items": items } }),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    assert!(sent["errors"].is_null(), "{sent}");

    // Kill the first process without warning once a fifth has gone out.
    let deadline = Instant::now() + Duration::from_secs(120);
    while calls.load(Ordering::SeqCst) < MESSAGES / 5 {
        assert!(
            Instant::now() < deadline,
            "dispatch never got going: {} calls",
            calls.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    let at_kill = calls.load(Ordering::SeqCst);

    // A second process takes over: its workers claim what is left, and expired claims.
    let second = serve(command()).await;
    let store = deployment.store().await;
    let outcomes = LogFilter {
        categories: vec!["message".into()],
        event_types: vec!["MessageDispatched".into(), "MessageFailed".into()],
        partition: None,
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut per_stream = std::collections::HashMap::<String, usize>::new();
    let mut at = store::Checkpoint::START;
    while per_stream.len() < MESSAGES {
        let batch = store.read_log(at, &outcomes, 5_000).await.unwrap();
        for event in &batch.events {
            *per_stream.entry(event.stream_id.clone()).or_default() += 1;
        }
        at = batch.next;
        if batch.events.is_empty() {
            assert!(
                Instant::now() < deadline,
                "only {} of {MESSAGES} messages have an outcome",
                per_stream.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Nothing more arrives: exactly one outcome each.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let late = store.read_log(at, &outcomes, 5_000).await.unwrap();
    assert!(
        late.events.is_empty(),
        "a second outcome: {:?}",
        late.events.first().map(|e| &e.stream_id)
    );
    assert!(
        per_stream.values().all(|n| *n == 1),
        "every message has exactly one outcome"
    );
    let dispatched = per_stream.len();
    let total_calls = calls.load(Ordering::SeqCst);
    let extra = total_calls.saturating_sub(MESSAGES);
    eprintln!(
        "crash test: {MESSAGES} messages, killed after {at_kill} supplier calls; {dispatched} with one outcome each; \
         {total_calls} supplier calls in all, {extra} beyond one per message"
    );
    // Only messages in flight at the kill can be sent twice: at most one lane's concurrency.
    assert!(extra <= 64, "{extra} extra supplier calls");
    drop(second);
    if let store::Store::Postgres(s) = &store {
        s.pool().close().await;
    }
    deployment.remove().await;
}
