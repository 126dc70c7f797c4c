//! Logs of a real `herald serve` with `log.format = "json"`: every line is JSON; a send made
//! with a `traceparent` keeps its trace id in its events' metadata and in dispatch's log lines;
//! and no receiver, content, credential or key appears in the clear, even when a supplier's
//! error text echoes a phone number and an email address.

use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use store::EventStore;

use crate::app::{Client, serve_fake};
use crate::deployment::Deployment;
use crate::support::serve_logged;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const HOOK_SECRET: &str = "whsec-9c1d2e3f4a5b";
const HOOK_KEY: &str = "hookkey8d7c6b5a";
const CONTENT: &str = "Quarterly figures 7f3a9";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_trace_id_and_mask_receivers_and_secrets() {
    // A receiving system that refuses with a message naming a phone and an email.
    let app = axum::Router::new().route(
        "/hook",
        post(
            |Query(query): Query<std::collections::HashMap<String, String>>| async move {
                if query.contains_key("refuse") {
                    (
                        StatusCode::BAD_REQUEST,
                        "bad number +8613812345678 for ann.lee@example.com",
                    )
                } else {
                    (StatusCode::OK, "{}")
                }
            },
        ),
    );
    let hook = format!("{}/hook", serve_fake(app).await);
    let deployment = Deployment::new(&format!(
        "[log]\nformat = \"json\"\n\n[dispatch]\ndedup_window_secs = 0\n\n\
         [[accounts]]\nid = \"hooks\"\nchannel = \"WEBHOOK\"\nsupplier = \"webhook\"\ncredentials = {{ secret = \"{HOOK_SECRET}\" }}\n"
    ))
    .await;
    let sender = deployment.key("send,read").await;
    let mut command = deployment.command();
    command.env("RUST_LOG", "info,dispatch=debug");
    let (server, logs) = serve_logged(command).await;
    let api = Client {
        address: server.address,
    };
    let template = json!({ "name": "n", "channel": "WEBHOOK", "msgType": "NOTICE",
        "content": { "kind": "TEXT", "body": format!("{CONTENT} ${{n}}") }, "account": "hooks", "ownerTeam": "t" });
    let template = api
        .approved_template(&deployment.author, &deployment.reviewer, template)
        .await;

    // One send with the caller's trace, to a receiver that takes it and one that refuses.
    let receivers = [
        format!("{hook}?key={HOOK_KEY}"),
        format!("{hook}?refuse=1&key={HOOK_KEY}"),
    ];
    let response = dispatch::http::client(Duration::from_secs(30))
        .unwrap()
        .post(format!("http://{}/graphql", server.address))
        .header("Authorization", format!("Bearer {sender}"))
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(&json!({
            "query": "mutation($input: SendInput!) { send(input: $input) { messages { id } } }",
            "variables": { "input": { "templateId": template, "receivers": receivers, "variables": { "n": "1" } } }
        }))
        .send()
        .await
        .unwrap();
    let echoed = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(echoed.starts_with(&format!("00-{TRACE}-")), "{echoed}");
    let sent: Value = response.json().await.unwrap();
    let ids: Vec<String> = sent["data"]["send"]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{sent}"))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();

    // Both reach an outcome; every event of theirs carries the trace id.
    let store = deployment.store().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    for (id, last) in ids.iter().zip(["MessageDispatched", "MessageFailed"]) {
        let stream = format!("message-{id}");
        loop {
            let events = store.read_stream(&stream, 1, 100).await.unwrap();
            if events.last().map(|e| e.event_type.as_str()) == Some(last) {
                for event in &events {
                    let metadata: Value = serde_json::from_str(&event.metadata).unwrap();
                    assert_eq!(metadata["trace_id"], TRACE, "{}", event.event_type);
                }
                break;
            }
            assert!(Instant::now() < deadline, "{stream} never reached {last}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The log lines of both outcomes have arrived once a line names the refusal.
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines = logs.lock().unwrap().clone();
        if lines.iter().any(|l| l.contains("the supplier refused")) {
            break lines;
        }
        assert!(Instant::now() < deadline, "no refusal logged: {lines:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let traced: Vec<&Value> = parsed
        .iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("dispatch"))
                && l["spans"]
                    .as_array()
                    .is_some_and(|spans| spans.iter().any(|s| s["trace_id"] == TRACE))
        })
        .collect();
    assert!(
        traced
            .iter()
            .any(|l| l["fields"]["message"] == "handed to the supplier"),
        "no dispatch line with the trace id: {lines:#?}"
    );
    let refused = traced
        .iter()
        .find(|l| l["fields"]["message"] == "the supplier refused or failed")
        .unwrap_or_else(|| panic!("no refusal with the trace id: {lines:#?}"));
    let error = refused["fields"]["error"].as_str().unwrap();
    assert!(
        error.contains("+861****5678") && error.contains("a***@example.com"),
        "{error}"
    );
    let all = lines.join("\n");
    for secret in [
        "13812345678",
        "ann.lee@example.com",
        HOOK_KEY,
        HOOK_SECRET,
        CONTENT,
        sender.as_str(),
    ] {
        assert!(!all.contains(secret), "{secret:?} is in the logs:\n{all}");
    }

    drop(server);
    if let store::Store::Postgres(s) = &store {
        s.pool().close().await;
    }
    deployment.remove().await;
}
