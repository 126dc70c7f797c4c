//! Self-alerting: with the evaluator ticking every 100 ms, a window in which the webhook
//! channel's failure ratio crosses 5 % sends exactly one alert to a fake DingTalk robot (which
//! checks every post's signature), however many ticks and failures follow; rules on another
//! channel, or with a threshold the ratio stays under, send nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::post;
use herald::config::{AlertKind, AlertRule};
use serde_json::{Value, json};

use crate::app::{TestApp, accounts_from_toml, serve_fake, spawn, webhook_account};
use crate::dispatch::{SECRET, receiver, send, template, wait_for};

const ROBOT_SECRET: &str = "SECa1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";

/// Robot posts that passed the signature check: access token, text; and refused calls.
#[derive(Default)]
struct Robot {
    posts: Vec<(String, String)>,
    refused: usize,
}

type Shared = Arc<Mutex<Robot>>;

async fn robot(
    State(fake): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    axum::Json(payload): axum::Json<Value>,
) -> axum::Json<Value> {
    let mut fake = fake.lock().unwrap();
    let timestamp: i64 = query
        .get("timestamp")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let fresh = (chrono::Utc::now().timestamp_millis() - timestamp).abs() < 3_600_000;
    if !fresh
        || query.get("sign") != Some(&dispatch::dingtalk::robot::sign(ROBOT_SECRET, timestamp))
    {
        fake.refused += 1;
        return axum::Json(json!({ "errcode": 310000, "errmsg": "sign not match" }));
    }
    let token = query.get("access_token").cloned().unwrap_or_default();
    let text = payload["text"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    fake.posts.push((token, text));
    axum::Json(json!({ "errcode": 0, "errmsg": "ok" }))
}

fn rule(name: &str, channel: Option<&str>, threshold: f64, webhook: &str) -> AlertRule {
    AlertRule {
        name: name.to_owned(),
        kind: AlertKind::FailureRatio,
        channel: channel.map(|c| c.parse().unwrap()),
        account: None,
        threshold,
        // A day: the test runs well inside one window.
        window_secs: 86_400,
        min_messages: 4,
        notify_account: "ops-robot".to_owned(),
        notify_receiver: webhook.to_owned(),
    }
}

async fn app(backend: &str, robot_base: &str) -> TestApp {
    let webhook = format!("{robot_base}/robot/send?access_token=ops");
    let mut accounts = accounts_from_toml(&format!(
        r#"
        [[accounts]]
        id = "ops-robot"
        channel = "DINGTALK_ROBOT"
        supplier = "dingtalk_robot"
        credentials = {{ secret = "{ROBOT_SECRET}" }}
        "#
    ));
    accounts.push(webhook_account(SECRET, ""));
    spawn(backend, move |c| {
        c.accounts = accounts;
        c.dispatch.dedup_window_secs = 0;
        c.dispatch.frequency_cap = 0;
        c.dispatch.retry_base_ms = 100;
        c.alerting.interval_ms = 100;
        c.alerts = vec![
            rule("webhook-failures", Some("WEBHOOK"), 0.05, &webhook),
            rule("sms-failures", Some("SMS"), 0.05, &webhook),
            rule("most-failing", None, 0.9, &webhook),
        ];
        c.validate().unwrap();
    })
    .await
}

async fn posts_after(fake: &Shared, wait: Duration) -> Vec<(String, String)> {
    tokio::time::sleep(wait).await;
    fake.lock().unwrap().posts.clone()
}

async fn fires_once_per_window(backend: &str) {
    let fake = Shared::default();
    let base = serve_fake(
        axum::Router::new()
            .route("/robot/send", post(robot))
            .with_state(Arc::clone(&fake)),
    )
    .await;
    let app = app(backend, &base).await;
    let (hook, _) = receiver().await;
    let (id, key) = template(&app, "WEBHOOK").await;

    // Four dispatched messages: enough outcomes, no failure, no alert.
    for _ in 0..4 {
        let ok = send(&app, &key, &id, &format!("{hook}/ok")).await;
        wait_for(&app, &ok, "MessageDispatched").await;
    }
    assert!(
        posts_after(&fake, Duration::from_millis(800))
            .await
            .is_empty()
    );

    // One refused message: 1 of 5 failed, 20 % > 5 %.
    let refused = send(&app, &key, &id, &format!("{hook}/refuse")).await;
    wait_for(&app, &refused, "MessageFailed").await;
    let mut posts = Vec::new();
    for _ in 0..100 {
        posts = posts_after(&fake, Duration::from_millis(100)).await;
        if !posts.is_empty() {
            break;
        }
    }
    assert_eq!(posts.len(), 1, "{posts:?}");
    // More failures and many more ticks in the same window: still the one alert.
    let again = send(&app, &key, &id, &format!("{hook}/refuse")).await;
    wait_for(&app, &again, "MessageFailed").await;
    let posts = posts_after(&fake, Duration::from_millis(1500)).await;
    assert_eq!(posts.len(), 1, "{posts:?}");
    let (token, text) = &posts[0];
    assert_eq!(token, "ops");
    assert!(text.contains("webhook-failures"), "{text}");
    assert!(text.contains("failure ratio of WEBHOOK"), "{text}");
    assert!(
        text.contains("20.0 %") && text.contains("threshold 5.0 %"),
        "{text}"
    );
    assert_eq!(fake.lock().unwrap().refused, 0);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_alert_fires_once_per_window() {
    fires_once_per_window("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_alert_fires_once_per_window() {
    fires_once_per_window("sqlite").await;
}
