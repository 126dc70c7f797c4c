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

use crate::app::{TestApp, spawn};

const SECRET: &str = "hook-secret";

/// A receiving system: verifies Herald's signature, counts calls, answers as its path says.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/hook"), calls)
}

async fn app_with_webhook(backend: &str) -> TestApp {
    spawn(backend, |c| {
        c.dispatch.retry_base_ms = 100;
        c.accounts = vec![toml::from_str(&format!(
            "id = \"hooks\"\nchannel = \"WEBHOOK\"\nsupplier = \"webhook\"\ncredentials = {{ secret = \"{SECRET}\" }}"
        ))
        .unwrap()];
    })
    .await
}

/// Makes an approved template; returns its id and a sender key.
async fn template(app: &TestApp, channel: &str) -> (String, String) {
    let author = app.key("acme", "admin").await;
    let reviewer = app.key("acme", "admin").await;
    let sender = app.key("acme", "send,read").await;
    let create = "mutation($input: CreateTemplateInput!) { createTemplate(input: $input) { id } }";
    let input = json!({ "name": "n", "channel": channel, "msgType": "NOTICE", "content": { "kind": "TEXT", "body": "Build ${n} finished" }, "account": "hooks", "ownerTeam": "ci" });
    let (_, created) = app
        .gql(Some(&author), create, json!({ "input": input }))
        .await;
    let id = created["data"]["createTemplate"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    app.gql(
        Some(&author),
        "mutation($id: ID!) { submitTemplate(id: $id) { latestVersion } }",
        json!({ "id": id }),
    )
    .await;
    app.gql(
        Some(&reviewer),
        "mutation($id: ID!) { approveTemplate(id: $id, version: 1) { approvedVersion } }",
        json!({ "id": id }),
    )
    .await;
    (id, sender)
}

async fn send(app: &TestApp, key: &str, template: &str, receiver: &str) -> String {
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
async fn wait_for(app: &TestApp, stream: &str, last: &str) -> Vec<String> {
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
