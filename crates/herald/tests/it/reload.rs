//! What reloads while Herald runs: the sensitive-word list and its action, and the concurrency
//! of each lane. In process through the options channel, and in a real process through its
//! configuration file and word list.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use store::EventStore;

use crate::app::{Client, TestApp, serve_fake, spawn, webhook_account};
use crate::deployment::Deployment;
use crate::dispatch::{send, wait_for};
use crate::support::serve;

/// A receiver that keeps every body and how many calls were open at once; each call takes
/// `delay`.
#[derive(Default)]
struct Receiver {
    bodies: Mutex<Vec<Value>>,
    open: AtomicUsize,
    most_open: AtomicUsize,
    delay_ms: u64,
}

async fn hook(State(r): State<Arc<Receiver>>, body: Bytes) -> StatusCode {
    let open = r.open.fetch_add(1, Ordering::SeqCst) + 1;
    r.most_open.fetch_max(open, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(r.delay_ms)).await;
    r.bodies
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    r.open.fetch_sub(1, Ordering::SeqCst);
    StatusCode::OK
}

async fn receiver(delay_ms: u64) -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver {
        delay_ms,
        ..Receiver::default()
    });
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(Arc::clone(&state));
    (format!("{}/hook", serve_fake(app).await), state)
}

fn template_input() -> Value {
    json!({ "name": "n", "channel": "WEBHOOK", "msgType": "NOTICE", "content": { "kind": "TEXT", "body": "Build ${n} finished" }, "account": "hooks", "ownerTeam": "ci" })
}

async fn template(app: &TestApp) -> (String, String) {
    let author = app.key("acme", "admin").await;
    let reviewer = app.key("acme", "admin").await;
    let id = app
        .client()
        .approved_template(&author, &reviewer, template_input())
        .await;
    (id, app.key("acme", "send,read").await)
}

async fn send_n(app: &TestApp, key: &str, template: &str, url: &str, n: &str) -> String {
    let query = "mutation($input: SendInput!) { send(input: $input) { messages { id } } }";
    let input = json!({ "templateId": template, "receivers": [url], "variables": { "n": n } });
    let (_, sent) = app.gql(Some(key), query, json!({ "input": input })).await;
    format!(
        "message-{}",
        sent["data"]["send"]["messages"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{sent}"))
    )
}

async fn last_event(app: &TestApp, stream: &str) -> Value {
    let events = app.store.read_stream(stream, 1, 100).await.unwrap();
    events.last().unwrap().data_json().unwrap()
}

async fn sensitive_words_mask_then_reject(backend: &str) {
    let app = spawn(backend, |c| {
        c.accounts = vec![webhook_account("s", "")];
        c.dispatch.dedup_window_secs = 0;
        c.dispatch.frequency_cap = 0;
    })
    .await;
    let (url, receiver) = receiver(0).await;
    let (id, key) = template(&app).await;

    let mut options = app.options.borrow().clone();
    options.sensitive_words = dispatch::sensitive::SensitiveWords::parse("casino\n").unwrap();
    app.options.send_replace(options.clone());
    let masked = send_n(&app, &key, &id, &url, "CASINO-7").await;
    wait_for(&app, &masked, "MessageDispatched").await;
    assert_eq!(last_event(&app, &masked).await["masked_words"], 1);
    assert_eq!(
        receiver.bodies.lock().unwrap()[0]["content"]["body"],
        "Build ******-7 finished"
    );

    options.sensitive_action = dispatch::sensitive::SensitiveAction::Reject;
    app.options.send_replace(options);
    let rejected = send_n(&app, &key, &id, &url, "casino").await;
    assert_eq!(
        wait_for(&app, &rejected, "MessageDiscarded").await,
        ["MessageAccepted", "MessageDiscarded"]
    );
    assert_eq!(last_event(&app, &rejected).await["rule"], "SENSITIVE_WORDS");
    // Clean content still goes out, unmasked.
    let clean = send(&app, &key, &id, &url).await;
    wait_for(&app, &clean, "MessageDispatched").await;
    assert!(last_event(&app, &clean).await.get("masked_words").is_none());
    assert_eq!(receiver.bodies.lock().unwrap().len(), 2);
    app.finish().await;
}

/// A lane's concurrency changes while it runs: one at a time, then four.
async fn lane_concurrency_changes_live(backend: &str) {
    let app = spawn(backend, |c| {
        c.accounts = vec![webhook_account("s", "")];
        c.dispatch.dedup_window_secs = 0;
        c.dispatch.frequency_cap = 0;
        c.dispatch
            .lane_concurrency
            .insert("WEBHOOK.NOTICE".to_owned(), 1);
    })
    .await;
    let (url, receiver) = receiver(150).await;
    let (id, key) = template(&app).await;
    let mut streams = Vec::new();
    for i in 0..4 {
        streams.push(send_n(&app, &key, &id, &url, &i.to_string()).await);
    }
    for stream in &streams {
        wait_for(&app, stream, "MessageDispatched").await;
    }
    assert_eq!(receiver.most_open.load(Ordering::SeqCst), 1);

    let mut options = app.options.borrow().clone();
    options
        .lane_concurrency
        .insert("WEBHOOK.NOTICE".to_owned(), 4);
    app.options.send_replace(options);
    let query =
        "mutation($input: BatchSendInput!) { batchSend(input: $input) { messages { id } } }";
    let items: Vec<Value> = (0..8)
        .map(|i| json!({ "receivers": [url], "variables": { "n": format!("b{i}") } }))
        .collect();
    let (_, sent) = app
        .gql(
            Some(&key),
            query,
            json!({ "input": { "templateId": id, "items": items } }),
        )
        .await;
    for message in sent["data"]["batchSend"]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{sent}"))
    {
        let stream = format!("message-{}", message["id"].as_str().unwrap());
        wait_for(&app, &stream, "MessageDispatched").await;
    }
    let most = receiver.most_open.load(Ordering::SeqCst);
    assert!((2..=4).contains(&most), "up to four at once now: {most}");
    app.finish().await;
}

/// A running `herald serve` picks up a new word list and a new action from its files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_reloads_its_word_list_and_configuration() {
    let (url, receiver) = receiver(0).await;
    let config = |action: &str, words: &std::path::Path| {
        format!(
            "[dispatch]\ndedup_window_secs = 0\nfrequency_cap = 0\nreload_interval_ms = 100\n\
             sensitive_action = \"{action}\"\nsensitive_words_file = \"{}\"\n\n\
             [[accounts]]\nid = \"hooks\"\nchannel = \"WEBHOOK\"\nsupplier = \"webhook\"\ncredentials = {{ secret = \"s\" }}\n",
            words.display()
        )
    };
    let words_dir = crate::support::empty_dir();
    let words = words_dir.join("words.txt");
    std::fs::write(&words, "alpha\n").unwrap();
    let deployment = Deployment::new(&config("mask", &words)).await;
    let server = serve(deployment.command()).await;
    let api = Client {
        address: server.address,
    };
    let id = api
        .approved_template(&deployment.author, &deployment.reviewer, template_input())
        .await;
    let store = deployment.store().await;
    let query = "mutation($input: SendInput!) { send(input: $input) { messages { id } } }";
    // Sends `n` and returns the stream's last event once it has an outcome.
    let outcome = |n: &'static str| {
        let (api, store, sender, id, url) = (
            Client {
                address: server.address,
            },
            store.clone(),
            deployment.sender.clone(),
            id.clone(),
            url.clone(),
        );
        async move {
            let input = json!({ "templateId": id, "receivers": [url], "variables": { "n": n } });
            let (_, sent) = api
                .gql(Some(&sender), query, json!({ "input": input }))
                .await;
            let stream = format!(
                "message-{}",
                sent["data"]["send"]["messages"][0]["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{sent}"))
            );
            for _ in 0..200 {
                let events = store.read_stream(&stream, 1, 100).await.unwrap();
                if events.len() > 1 {
                    let last = events.last().unwrap();
                    return (last.event_type.clone(), last.data_json().unwrap());
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("{stream} has no outcome");
        }
    };
    let (event, _) = outcome("alpha beta").await;
    assert_eq!(event, "MessageDispatched");
    assert_eq!(
        receiver.bodies.lock().unwrap()[0]["content"]["body"],
        "Build ***** beta finished"
    );

    // A new list: once it is read, "beta" is masked and "alpha" no longer.
    std::fs::write(&words, "beta\n").unwrap();
    let mut reloaded = false;
    for _ in 0..40 {
        outcome("alpha beta").await;
        let body = receiver.bodies.lock().unwrap().last().unwrap()["content"]["body"].clone();
        if body == "Build alpha **** finished" {
            reloaded = true;
            break;
        }
        assert_eq!(
            body, "Build ***** beta finished",
            "the old list or the new one"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "the new word list was never applied");

    // A new action in the configuration file: the word now stops the message.
    std::fs::write(deployment.dir.join("herald.toml"), config("reject", &words)).unwrap();
    let mut rejected = false;
    for _ in 0..40 {
        let (event, data) = outcome("beta").await;
        if event == "MessageDiscarded" {
            assert_eq!(data["rule"], "SENSITIVE_WORDS");
            rejected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rejected, "the new action was never applied");
    drop(server);
    deployment.remove().await;
    let _ = std::fs::remove_dir_all(words_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sensitive_words() {
    sensitive_words_mask_then_reject("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sensitive_words() {
    sensitive_words_mask_then_reject("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lane_concurrency_live() {
    lane_concurrency_changes_live("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lane_concurrency_live() {
    lane_concurrency_changes_live("sqlite").await;
}
