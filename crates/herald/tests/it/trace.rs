//! The trace: `message(id)` shows each message's life in order with its details, and
//! `messages(filter)` finds them for customer service. Also clicks: `/c/{token}` records
//! `MessageClicked` and redirects; a tampered token is a 404 and records nothing.

use std::time::Duration;

use serde_json::{Value, json};
use store::EventStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::{TestApp, spawn, webhook_account};

const QUERY: &str = "query($id: ID!) { message(id: $id) { message { id status channel receiver account supplier attempts clicks timeline { kind at detail } } asOf { position head caughtUp behind } } }";

/// Makes an approved template for `channel` with `content`; returns its id and a sender key.
pub(crate) async fn template(
    app: &TestApp,
    channel: &str,
    content: Value,
    shield: &str,
) -> (String, String) {
    let author = app.key("acme", "admin").await;
    let reviewer = app.key("acme", "admin").await;
    let input = json!({ "name": "n", "channel": channel, "msgType": "NOTICE", "shieldType": shield,
        "content": content, "account": "hooks", "ownerTeam": "ci" });
    let id = app
        .client()
        .approved_template(&author, &reviewer, input)
        .await;
    (id, app.key("acme", "send,read,recall").await)
}

pub(crate) async fn send(
    app: &TestApp,
    key: &str,
    template: &str,
    receiver: &str,
    extra: Value,
) -> String {
    let mut input =
        json!({ "templateId": template, "receivers": [receiver], "variables": { "n": "42" } });
    if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
        input.extend(extra.clone());
    }
    let query = "mutation($input: SendInput!) { send(input: $input) { messages { id } } }";
    let (_, sent) = app.gql(Some(key), query, json!({ "input": input })).await;
    sent["data"]["send"]["messages"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{sent}"))
        .to_owned()
}

/// The message once its timeline has `kinds` (the projection follows the log a moment later).
pub(crate) async fn until_timeline(app: &TestApp, key: &str, id: &str, kinds: &[&str]) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (_, answer) = app.gql(Some(key), QUERY, json!({ "id": id })).await;
        let message = answer["data"]["message"]["message"].clone();
        let seen: Vec<&str> = message["timeline"]
            .as_array()
            .map(|t| t.iter().filter_map(|s| s["kind"].as_str()).collect())
            .unwrap_or_default();
        if seen == kinds {
            return answer["data"]["message"].clone();
        }
        last = answer;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{id} never showed {kinds:?}: {last}");
}

/// A GET with a user agent: status and `Location`.
async fn follow(app: &TestApp, path: &str) -> (u16, Option<String>) {
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0 (iPhone) MicroMessenger\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let location = response
        .lines()
        .find_map(|l| l.strip_prefix("location: ").map(str::to_owned));
    (status, location)
}

async fn a_whole_life_shows_in_order(backend: &str) {
    let app = spawn(backend, |c| c.api.public_url = "https://h.test".into()).await;
    let content =
        json!({ "kind": "TEXT", "body": "Order ${n} shipped: https://shop.test/orders/42" });
    let (template, key) = template(&app, "INBOX", content, "NONE").await;
    let id = send(&app, &key, &template, "user-1", json!({})).await;
    let before_click =
        until_timeline(&app, &key, &id, &["ACCEPTED", "DISPATCHED", "DELIVERED"]).await;
    assert_eq!(before_click["message"]["status"], "DELIVERED");

    // The receiver follows the link in the message.
    let stream = format!("message-{id}");
    let accepted = app.store.read_stream(&stream, 1, 1).await.unwrap()[0]
        .data_json()
        .unwrap();
    let body = accepted["content"]["body"].as_str().unwrap();
    let token = body
        .split("https://h.test/c/")
        .nth(1)
        .unwrap_or_else(|| panic!("a tracked link in {body}"));
    let (status, location) = follow(&app, &format!("/c/{token}")).await;
    assert_eq!(
        (status, location.as_deref()),
        (302, Some("https://shop.test/orders/42"))
    );
    // A tampered token: nothing recorded.
    let mut tampered = token.to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(follow(&app, &format!("/c/{tampered}")).await, (404, None));
    assert_eq!(follow(&app, "/c/not-a-token").await, (404, None));

    let answer = until_timeline(
        &app,
        &key,
        &id,
        &["ACCEPTED", "DISPATCHED", "DELIVERED", "CLICKED"],
    )
    .await;
    let message = &answer["message"];
    assert_eq!(message["status"], "DELIVERED");
    assert_eq!(message["channel"], "INBOX");
    assert_eq!(message["receiver"], "user-1");
    assert_eq!(message["account"], "inbox");
    assert_eq!(message["supplier"], "inbox");
    assert_eq!(
        (message["attempts"].as_i64(), message["clicks"].as_i64()),
        (Some(1), Some(1))
    );
    let timeline = message["timeline"].as_array().unwrap();
    assert_eq!(timeline[1]["detail"]["attempt"], 1);
    assert_eq!(timeline[2]["detail"]["outcome"], "DELIVERED");
    assert_eq!(timeline[3]["detail"]["link_index"], 0);
    assert_eq!(timeline[3]["detail"]["user_agent_class"], "mobile");
    let times: Vec<&str> = timeline.iter().map(|s| s["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // Asked again once nothing more happens, the answer says it is up to date.
    let (_, again) = app.gql(Some(&key), QUERY, json!({ "id": id })).await;
    let as_of = &again["data"]["message"]["asOf"];
    assert_eq!(
        (as_of["caughtUp"].as_bool(), as_of["behind"].as_i64()),
        (Some(true), Some(0)),
        "{again}"
    );
    // Exactly one click event was appended.
    let types: Vec<String> = app
        .store
        .read_stream(&stream, 1, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "MessageAccepted",
            "MessageDispatched",
            "ReceiptReceived",
            "MessageClicked"
        ]
    );

    // Another tenant's key sees nothing.
    let stranger = app.key("other", "read").await;
    let (_, answer) = app.gql(Some(&stranger), QUERY, json!({ "id": id })).await;
    assert_eq!(
        answer["data"]["message"]["message"],
        Value::Null,
        "{answer}"
    );
    app.finish().await;
}

/// Dedup, shield, failure and recall each show their own steps.
async fn every_path_shows_its_steps(backend: &str) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = spawn(backend, |c| {
        c.accounts = vec![webhook_account("s", "")];
        c.dispatch.retry_attempts = 2;
        c.dispatch.retry_base_ms = 20;
        let now = chrono::Utc::now();
        // Night from an hour ago to an hour ahead, in UTC: NIGHT_DISCARD shields now.
        c.dispatch.night_zone = "+00:00".into();
        c.dispatch.night_start = (now - chrono::Duration::hours(1))
            .format("%H:%M")
            .to_string();
        c.dispatch.night_end = (now + chrono::Duration::hours(1))
            .format("%H:%M")
            .to_string();
    })
    .await;
    let text = json!({ "kind": "TEXT", "body": "Build ${n} finished" });
    let hook = format!("http://{closed}/hook");

    let (plain, key) = template(&app, "WEBHOOK", text.clone(), "NONE").await;
    let failed = send(&app, &key, &plain, &hook, json!({})).await;
    let answer = until_timeline(
        &app,
        &key,
        &failed,
        &[
            "ACCEPTED",
            "DISPATCH_FAILED",
            "DEFERRED",
            "DISPATCH_FAILED",
            "FAILED",
        ],
    )
    .await;
    assert_eq!(answer["message"]["status"], "FAILED");
    assert_eq!(answer["message"]["attempts"], 2);
    assert_eq!(
        answer["message"]["timeline"][1]["detail"]["error_code"],
        "CONNECT"
    );

    let duplicate = send(&app, &key, &plain, &hook, json!({})).await;
    let answer = until_timeline(&app, &key, &duplicate, &["ACCEPTED", "DEDUPLICATED"]).await;
    assert_eq!(
        answer["message"]["timeline"][1]["detail"]["rule"],
        "CONTENT"
    );

    let (night, key) = template(&app, "WEBHOOK", text.clone(), "NIGHT_DISCARD").await;
    let shielded = send(&app, &key, &night, &format!("{hook}?n=2"), json!({})).await;
    let answer = until_timeline(&app, &key, &shielded, &["ACCEPTED", "SHIELDED"]).await;
    assert_eq!(answer["message"]["status"], "SHIELDED");

    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let scheduled = send(
        &app,
        &key,
        &plain,
        &format!("{hook}?n=3"),
        json!({ "sendAt": later }),
    )
    .await;
    let recall =
        "mutation($ids: [ID!]) { recall(input: { messageIds: $ids }) { messages { status } } }";
    let (_, recalled) = app
        .gql(Some(&key), recall, json!({ "ids": [scheduled] }))
        .await;
    assert!(recalled["errors"].is_null(), "{recalled}");
    let answer = until_timeline(
        &app,
        &key,
        &scheduled,
        &["ACCEPTED", "RECALL_REQUESTED", "RECALLED"],
    )
    .await;
    assert_eq!(answer["message"]["status"], "RECALLED");

    // Customer service: the failed and the duplicate went to one receiver, newest first.
    let list = "query($f: MessageFilterInput, $after: String) { messages(filter: $f, first: 1, after: $after) { nodes { id status } pageInfo { hasNextPage endCursor } asOf { behind } } }";
    let (_, page) = app
        .gql(Some(&key), list, json!({ "f": { "receiver": hook } }))
        .await;
    let page = &page["data"]["messages"];
    assert_eq!(page["nodes"][0]["id"], duplicate.as_str(), "{page}");
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let (_, next) = app
        .gql(
            Some(&key),
            list,
            json!({ "f": { "receiver": hook }, "after": page["pageInfo"]["endCursor"] }),
        )
        .await;
    let next = &next["data"]["messages"];
    assert_eq!(next["nodes"][0]["id"], failed.as_str(), "{next}");
    assert_eq!(next["pageInfo"]["hasNextPage"], false);
    let (_, by_status) = app
        .gql(Some(&key), list, json!({ "f": { "status": "SHIELDED" } }))
        .await;
    assert_eq!(
        by_status["data"]["messages"]["nodes"][0]["id"],
        shielded.as_str()
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_whole_life() {
    a_whole_life_shows_in_order("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_whole_life() {
    a_whole_life_shows_in_order("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_path() {
    every_path_shows_its_steps("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_path() {
    every_path_shows_its_steps("sqlite").await;
}

/// `message_as_of` dates its answer by the trace projection's checkpoint, read with the message
/// (on Postgres in the same statement): not found and behind before the projection ran, found
/// and caught up after, found and behind again once the log moves on.
async fn the_answer_is_dated_by_the_projection(backend: &str) {
    use chrono::{TimeDelta, Utc};
    use domain::{TemplateId, TenantId};
    use projections::Projection;
    use projections::replay::{ReplayOptions, replay};
    use projections::trace::message_as_of;

    let (url, cleanup) = match backend {
        "postgres" => {
            let url = crate::support::postgres_database().await;
            (url.clone(), Some(url))
        }
        _ => (
            format!(
                "sqlite://{}/herald.db",
                crate::support::empty_dir().display()
            ),
            None,
        ),
    };
    let mut config = herald::config::Config::default();
    config.database.url = url;
    // The store only: no role runs, so the projection moves only when the test replays it.
    let store = herald::server::AppState::connect(&config)
        .await
        .unwrap()
        .store;
    let tenant = TenantId::parse("acme").unwrap();
    let t0 = Utc::now() - TimeDelta::hours(1);
    let hook = "https://hooks.example.com/h";
    let first = crate::replay::message(1, &tenant, TemplateId::generate(), hook, t0);
    crate::replay::append(&store, std::slice::from_ref(&first), &tenant).await;
    let id = first.id.to_string();

    let (lag, found) = message_as_of(&store, "acme", &id).await.unwrap();
    assert!(found.is_none());
    assert!(!lag.caught_up() && lag.behind() > 0, "{lag:?}");
    assert_eq!(lag.applied, store::Checkpoint::START);

    replay(
        &store,
        Projection::Trace,
        &ReplayOptions::default(),
        &mut |_| {},
    )
    .await
    .unwrap();
    let (lag, found) = message_as_of(&store, "acme", &id).await.unwrap();
    assert!(lag.caught_up(), "{lag:?}");
    let (view, timeline) = found.expect("the replayed message");
    assert_eq!(view.message_id, id);
    assert_eq!(view.status, first.status);
    assert_eq!(timeline.len(), first.events.len());
    // Another tenant's, or no message at all: not found, dated all the same.
    for (tenant, id) in [
        ("other", id.clone()),
        ("acme", domain::MessageId::generate().to_string()),
    ] {
        let (other_lag, found) = message_as_of(&store, tenant, &id).await.unwrap();
        assert!(found.is_none());
        assert_eq!(other_lag, lag);
    }

    let second = crate::replay::message(2, &tenant, TemplateId::generate(), hook, t0);
    crate::replay::append(&store, std::slice::from_ref(&second), &tenant).await;
    let (later, found) = message_as_of(&store, "acme", &id).await.unwrap();
    assert!(found.is_some());
    assert_eq!(later.applied, lag.applied);
    assert!(!later.caught_up() && later.head > lag.head, "{later:?}");

    if let (Some(url), store::Store::Postgres(s)) = (cleanup, &store) {
        s.pool().close().await;
        crate::support::drop_database(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_answer_is_dated_by_the_projection() {
    the_answer_is_dated_by_the_projection("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_answer_is_dated_by_the_projection() {
    the_answer_is_dated_by_the_projection("sqlite").await;
}
