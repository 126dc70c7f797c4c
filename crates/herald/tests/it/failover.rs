//! Failover between a channel's accounts, and their circuit breakers: the first account fails,
//! messages go out through the second, the first one's breaker opens, and once the account
//! recovers a probe closes the breaker and traffic returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use store::EventStore;

use crate::app::{TestApp, serve_fake, spawn, webhook_account};
use crate::dispatch::{send, wait_for};

/// A receiving system that tells the two accounts apart by their signing secrets, counts the
/// calls of each, and answers 503 to the primary's while `failing` is set.
#[derive(Default)]
struct Receiver {
    failing: AtomicBool,
    primary: AtomicUsize,
    backup: AtomicUsize,
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let timestamp: i64 = header("x-herald-timestamp").parse().unwrap_or(0);
    let signed_by = |secret: &str| {
        header("x-herald-signature")
            == dispatch::webhook::signature(secret.as_bytes(), timestamp, &body)
    };
    if signed_by("primary-secret") {
        r.primary.fetch_add(1, Ordering::SeqCst);
        if r.failing.load(Ordering::SeqCst) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    } else if signed_by("backup-secret") {
        r.backup.fetch_add(1, Ordering::SeqCst);
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    }
}

async fn receiver() -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver {
        failing: AtomicBool::new(true),
        ..Receiver::default()
    });
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(Arc::clone(&state));
    (format!("{}/hook", serve_fake(app).await), state)
}

/// The account that dispatched the message, and the accounts of its failed attempts.
async fn accounts_of(app: &TestApp, stream: &str) -> (String, Vec<String>) {
    let events = app.store.read_stream(stream, 1, 100).await.unwrap();
    let mut failed = Vec::new();
    let mut dispatched = String::new();
    for event in events {
        let data: Value = event.data_json().unwrap();
        match event.event_type.as_str() {
            "DispatchFailed" => failed.push(data["account"].as_str().unwrap().to_owned()),
            "MessageDispatched" => dispatched = data["account"].as_str().unwrap().to_owned(),
            _ => {}
        }
    }
    (dispatched, failed)
}

async fn failover_and_breaker(backend: &str, redis: bool) {
    const OPEN_MS: u64 = 3_000;
    let prefix = format!("herald-test-{}", uuid::Uuid::now_v7().simple());
    let app = spawn(backend, |c| {
        let mut primary = webhook_account("primary-secret", "");
        primary.id = "primary".to_owned();
        let mut backup = webhook_account("backup-secret", "");
        backup.id = "backup".to_owned();
        c.accounts = vec![primary, backup];
        c.dispatch.retry_attempts = 2;
        c.dispatch.retry_base_ms = 20;
        c.dispatch.breaker_min_calls = 4;
        c.dispatch.breaker_failure_ratio = 0.5;
        c.dispatch.breaker_open_ms = OPEN_MS;
        c.dispatch.dedup_window_secs = 0;
        c.dispatch.frequency_cap = 0;
        if redis {
            c.cache.redis_url = crate::support::redis_url();
            c.cache.key_prefix = prefix.clone();
        }
    })
    .await;
    let (url, receiver) = receiver().await;
    let author = app.key("acme", "admin").await;
    let reviewer = app.key("acme", "admin").await;
    let key = app.key("acme", "send,read").await;
    // The template names the primary account: every message tries it first.
    let input = json!({ "name": "n", "channel": "WEBHOOK", "msgType": "NOTICE", "content": { "kind": "TEXT", "body": "Build ${n} finished" }, "account": "primary", "ownerTeam": "ci" });
    let template = app
        .client()
        .approved_template(&author, &reviewer, input)
        .await;

    // Wave 1: the primary fails. Each message spends its attempts there (or finds the breaker
    // open), then goes out through the backup.
    let mut wave1 = Vec::new();
    for _ in 0..6 {
        wave1.push(send(&app, &key, &template, &url).await);
    }
    for stream in &wave1 {
        wait_for(&app, stream, "MessageDispatched").await;
        let (dispatched, failed) = accounts_of(&app, stream).await;
        assert_eq!(dispatched, "backup", "{stream}");
        assert!(failed.iter().all(|a| a == "primary"), "{failed:?}");
        assert!(failed.len() <= 2, "at most the retry attempts: {failed:?}");
    }
    let primary_calls = receiver.primary.load(Ordering::SeqCst);
    assert!(
        (4..12).contains(&primary_calls),
        "the breaker opened after 4 failures and spared some attempts: {primary_calls}"
    );

    // Wave 2, while the breaker is open: straight to the backup, no call to the primary.
    let mut wave2 = Vec::new();
    for _ in 0..4 {
        wave2.push(send(&app, &key, &template, &url).await);
    }
    for stream in &wave2 {
        wait_for(&app, stream, "MessageDispatched").await;
        assert_eq!(
            accounts_of(&app, stream).await,
            ("backup".to_owned(), Vec::new())
        );
    }
    assert_eq!(receiver.primary.load(Ordering::SeqCst), primary_calls);

    // The primary recovers; after the open period a probe goes through and closes the breaker.
    receiver.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(OPEN_MS + 200)).await;
    let probe = send(&app, &key, &template, &url).await;
    wait_for(&app, &probe, "MessageDispatched").await;
    assert_eq!(
        accounts_of(&app, &probe).await,
        ("primary".to_owned(), Vec::new())
    );
    let mut wave3 = Vec::new();
    for _ in 0..4 {
        wave3.push(send(&app, &key, &template, &url).await);
    }
    for stream in &wave3 {
        wait_for(&app, stream, "MessageDispatched").await;
        assert_eq!(
            accounts_of(&app, stream).await,
            ("primary".to_owned(), Vec::new())
        );
    }
    app.finish().await;
}

/// When every account is used up, the message fails with the last error.
async fn a_message_fails_once_every_account_had_its_attempts(backend: &str) {
    let app = spawn(backend, |c| {
        let mut primary = webhook_account("primary-secret", "");
        primary.id = "primary".to_owned();
        let mut other = webhook_account("other-secret", "");
        other.id = "other".to_owned();
        c.accounts = vec![primary, other];
        c.dispatch.retry_attempts = 2;
        c.dispatch.retry_base_ms = 20;
    })
    .await;
    // The receiver knows neither secret: every call is refused as unauthorised... which is
    // final, so use a closed port instead: a connection error is retryable.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let author = app.key("acme", "admin").await;
    let reviewer = app.key("acme", "admin").await;
    let key = app.key("acme", "send,read").await;
    let input = json!({ "name": "n", "channel": "WEBHOOK", "msgType": "NOTICE", "content": { "kind": "TEXT", "body": "Build ${n} finished" }, "account": "primary", "ownerTeam": "ci" });
    let template = app
        .client()
        .approved_template(&author, &reviewer, input)
        .await;
    let stream = send(&app, &key, &template, &format!("http://{closed}/hook")).await;
    let types = wait_for(&app, &stream, "MessageFailed").await;
    let (_, failed) = accounts_of(&app, &stream).await;
    assert_eq!(
        failed,
        ["primary", "primary", "other", "other"],
        "{types:?}"
    );
    let last = app.store.read_stream(&stream, 1, 100).await.unwrap();
    let reason = last.last().unwrap().data_json().unwrap()["reason"].clone();
    assert_eq!(reason, "CONNECT");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failover_with_breaker_on_redis() {
    failover_and_breaker("postgres", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_failover_with_breaker_in_process() {
    failover_and_breaker("sqlite", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_account_used_up() {
    a_message_fails_once_every_account_had_its_attempts("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_account_used_up() {
    a_message_fails_once_every_account_had_its_attempts("sqlite").await;
}
