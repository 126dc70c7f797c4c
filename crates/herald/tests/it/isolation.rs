//! Isolation: 50,000 MARKETING messages queued behind a slow supplier; NOTICE messages sent
//! meanwhile go out in their own lane, each within 2 seconds of acceptance.

use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use store::EventStore;

use crate::app::{TestApp, serve_fake, spawn, webhook_account};

async fn approved(app: &TestApp, msg_type: &str) -> (String, String) {
    let author = app.key("acme", "admin").await;
    let reviewer = app.key("acme", "admin").await;
    let sender = app.key("acme", "send").await;
    let template = json!({ "name": msg_type, "channel": "WEBHOOK", "msgType": msg_type, "content": { "kind": "TEXT", "body": "m ${i}" }, "account": "hooks", "ownerTeam": "t" });
    let id = app
        .client()
        .approved_template(&author, &reviewer, template)
        .await;
    (id, sender)
}

fn at(event: &store::RecordedEvent) -> DateTime<Utc> {
    event.data_json().unwrap()["at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketing_flood_never_delays_notices() {
    let app = axum::Router::new()
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                StatusCode::OK
            }),
        )
        .route("/fast", post(|| async { StatusCode::OK }));
    let base = serve_fake(app).await;

    let herald = spawn("postgres", |c| {
        c.dispatch.dedup_window_secs = 0;
        c.dispatch.frequency_cap = 0;
        c.accounts = vec![webhook_account("s", "")];
    })
    .await;
    let (marketing, marketer) = approved(&herald, "MARKETING").await;
    let (notice, notifier) = approved(&herald, "NOTICE").await;

    // The flood: 5 requests of 10,000.
    for round in 0..5 {
        let items: Vec<Value> = (0..100)
            .map(|i| json!({ "receivers": (0..100).map(|r| format!("{base}/slow?m={round}-{i}-{r}")).collect::<Vec<_>>(), "variables": { "i": i.to_string() } }))
            .collect();
        let (status, sent) = herald
            .gql(
                Some(&marketer),
                "mutation($input: BatchSendInput!) { batchSend(input: $input) { requestId } }",
                json!({ "input": { "templateId": marketing, "items": items } }),
            )
            .await;
        assert!(status == 200 && sent["errors"].is_null(), "{sent}");
    }

    // Notices, one every 50 ms, while the flood is queued.
    let mut streams = Vec::new();
    for n in 0..50 {
        let input = json!({ "templateId": notice, "receivers": [format!("{base}/fast?n={n}")], "variables": { "i": n.to_string() } });
        let (_, sent) = herald
            .gql(
                Some(&notifier),
                "mutation($input: SendInput!) { send(input: $input) { messages { id } } }",
                json!({ "input": input }),
            )
            .await;
        streams.push(format!(
            "message-{}",
            sent["data"]["send"]["messages"][0]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{sent}"))
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut latencies = Vec::new();
    for stream in &streams {
        let mut events = Vec::new();
        for _ in 0..200 {
            events = herald.store.read_stream(stream, 1, 10).await.unwrap();
            if events.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            events.get(1).map(|e| e.event_type.as_str()),
            Some("MessageDispatched"),
            "{stream}"
        );
        latencies.push((at(&events[1]) - at(&events[0])).num_milliseconds());
    }
    latencies.sort_unstable();
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "isolation: 50,000 MARKETING queued behind a 2 s supplier; NOTICE accepted-to-dispatched p50 {} ms, p99 {p99} ms",
        latencies[latencies.len() / 2]
    );
    assert!(p99 < 2_000, "NOTICE p99 {p99} ms: {latencies:?}");
    herald.finish().await;
}
