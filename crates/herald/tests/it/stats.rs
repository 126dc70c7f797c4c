//! Statistics and reconciliation through the API after a realistic mix of sends (inbox and
//! webhook, delivered, clicked, recalled, deduplicated, discarded, shielded, failed after
//! retries), and the lag of every projection.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use store::EventStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::{TestApp, spawn, webhook_account};
use crate::dispatch::{SECRET, night_now, receiver, wait_for};

const STATS: &str = "query($f: StatsFilterInput) { stats(filter: $f) { rows { day templateId channel account accepted deduplicated shielded discarded deferred dispatched dispatchFailed failed delivered undelivered clicked recalled successRatio deliveryRatio } asOf { caughtUp behind } } }";

/// An approved template of `tenant` on `channel`; returns its id.
async fn template(app: &TestApp, tenant: &str, channel: &str, shield: &str, body: &str) -> String {
    let author = app.key(tenant, "admin").await;
    let reviewer = app.key(tenant, "admin").await;
    let account = if channel == "INBOX" { "inbox" } else { "hooks" };
    let input = json!({ "name": "n", "channel": channel, "msgType": "NOTICE", "shieldType": shield,
        "content": { "kind": "TEXT", "body": body }, "account": account, "ownerTeam": "ci" });
    app.client()
        .approved_template(&author, &reviewer, input)
        .await
}

/// Sends; returns the message ids.
async fn send(
    app: &TestApp,
    key: &str,
    template: &str,
    receivers: &[&str],
    extra: Value,
) -> Vec<String> {
    let mut input =
        json!({ "templateId": template, "receivers": receivers, "variables": { "n": "1" } });
    if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
        input.extend(extra.clone());
    }
    let query = "mutation($input: SendInput!) { send(input: $input) { messages { id } } }";
    let (_, sent) = app.gql(Some(key), query, json!({ "input": input })).await;
    sent["data"]["send"]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{sent}"))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Follows the first tracked link of a message, as its receiver would.
async fn click(app: &TestApp, id: &str) {
    let accepted = app
        .store
        .read_stream(&format!("message-{id}"), 1, 1)
        .await
        .unwrap()[0]
        .data_json()
        .unwrap();
    let body = accepted["content"]["body"].as_str().unwrap();
    let token = body.split("https://h.test/c/").nth(1).unwrap();
    let token: String = token.chars().take_while(|c| !c.is_whitespace()).collect();
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let request = format!("GET /c/{token} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 302"), "{response}");
}

async fn recall(app: &TestApp, key: &str, id: &str) {
    let query =
        "mutation($ids: [ID!]) { recall(input: { messageIds: $ids }) { messages { status } } }";
    let (_, answer) = app.gql(Some(key), query, json!({ "ids": [id] })).await;
    assert!(answer["errors"].is_null(), "{answer}");
}

/// `stats` once the projection has applied everything in the log; with `filter`.
async fn stats_caught_up(app: &TestApp, key: &str, filter: Value) -> Vec<Value> {
    for _ in 0..200 {
        let (_, answer) = app.gql(Some(key), STATS, json!({ "f": filter })).await;
        let stats = &answer["data"]["stats"];
        assert!(answer["errors"].is_null(), "{answer}");
        if stats["asOf"]["caughtUp"] == true {
            return stats["rows"].as_array().unwrap().clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the stats projection never caught up");
}

/// The rows summed over days, by (template, channel, account): the counters that are not 0.
fn by_dimension(rows: &[Value]) -> BTreeMap<(String, String, String), BTreeMap<String, i64>> {
    let mut out: BTreeMap<_, BTreeMap<String, i64>> = BTreeMap::new();
    for row in rows {
        let key = (
            row["templateId"].as_str().unwrap().to_owned(),
            row["channel"].as_str().unwrap().to_owned(),
            row["account"].as_str().unwrap_or("-").to_owned(),
        );
        let counts = out.entry(key).or_default();
        for (name, value) in row.as_object().unwrap() {
            if let Some(n) = value.as_i64().filter(|n| *n != 0)
                && !name.ends_with("Ratio")
            {
                *counts.entry(name.clone()).or_default() += n;
            }
        }
    }
    out
}

fn counts(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

fn key_of(template: &str, channel: &str, account: &str) -> (String, String, String) {
    (template.to_owned(), channel.to_owned(), account.to_owned())
}

async fn a_mix_of_sends_is_counted_exactly(backend: &str) {
    let words = crate::support::empty_dir().join("words.txt");
    std::fs::write(&words, "forbidden\n").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = spawn(backend, |c| {
        c.api.public_url = "https://h.test".into();
        c.accounts = vec![webhook_account(SECRET, "")];
        c.dispatch.retry_attempts = 2;
        c.dispatch.retry_base_ms = 20;
        c.dispatch.sensitive_words_file = words.display().to_string();
        c.dispatch.sensitive_action = dispatch::sensitive::SensitiveAction::Reject;
        night_now(c);
    })
    .await;
    let (url, _calls) = receiver().await;
    let key = app.key("acme", "send,read,recall").await;

    // Three inbox messages, delivered on send; one clicked, one recalled.
    let inbox = template(
        &app,
        "acme",
        "INBOX",
        "NONE",
        "Order ${n}: https://shop.test/o",
    )
    .await;
    let ids = send(&app, &key, &inbox, &["u1", "u2", "u3"], json!({})).await;
    for id in &ids {
        wait_for(&app, &format!("message-{id}"), "ReceiptReceived").await;
    }
    click(&app, &ids[0]).await;
    wait_for(&app, &format!("message-{}", ids[0]), "MessageClicked").await;
    recall(&app, &key, &ids[1]).await;
    wait_for(&app, &format!("message-{}", ids[1]), "MessageRecalled").await;

    // Webhooks: one sent, its repeat deduplicated, one failing twice, one with a forbidden
    // word discarded, one scheduled and recalled before it was due.
    let hook = template(&app, "acme", "WEBHOOK", "NONE", "Build ${n} finished").await;
    let ok = send(&app, &key, &hook, &[&format!("{url}/ok")], json!({})).await;
    wait_for(&app, &format!("message-{}", ok[0]), "MessageDispatched").await;
    let again = send(&app, &key, &hook, &[&format!("{url}/ok")], json!({})).await;
    wait_for(
        &app,
        &format!("message-{}", again[0]),
        "MessageDeduplicated",
    )
    .await;
    let down = send(
        &app,
        &key,
        &hook,
        &[&format!("http://{closed}/hook")],
        json!({}),
    )
    .await;
    assert_eq!(
        wait_for(&app, &format!("message-{}", down[0]), "MessageFailed").await,
        [
            "MessageAccepted",
            "DispatchFailed",
            "MessageDeferred",
            "DispatchFailed",
            "MessageFailed"
        ]
    );
    let rude = send(
        &app,
        &key,
        &hook,
        &[&format!("{url}/ok?n=2")],
        json!({ "variables": { "n": "forbidden" } }),
    )
    .await;
    wait_for(&app, &format!("message-{}", rude[0]), "MessageDiscarded").await;
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let scheduled = send(
        &app,
        &key,
        &hook,
        &[&format!("{url}/ok?n=3")],
        json!({ "sendAt": later }),
    )
    .await;
    recall(&app, &key, &scheduled[0]).await;
    wait_for(
        &app,
        &format!("message-{}", scheduled[0]),
        "MessageRecalled",
    )
    .await;

    // At night a NIGHT_DISCARD template's message is shielded.
    let night = template(&app, "acme", "WEBHOOK", "NIGHT_DISCARD", "Night ${n}").await;
    let shielded = send(&app, &key, &night, &[&format!("{url}/ok?n=4")], json!({})).await;
    wait_for(&app, &format!("message-{}", shielded[0]), "MessageShielded").await;

    // Another tenant's inbox message.
    let other_key = app.key("globex", "send,read").await;
    let other = template(&app, "globex", "INBOX", "NONE", "Hi ${n}").await;
    let theirs = send(&app, &other_key, &other, &["u1"], json!({})).await;
    wait_for(&app, &format!("message-{}", theirs[0]), "ReceiptReceived").await;

    let today = chrono::Utc::now().date_naive();
    let window = json!({ "from": (today - chrono::Duration::days(1)).to_string(),
        "to": (today + chrono::Duration::days(1)).to_string() });
    let rows = stats_caught_up(&app, &key, window.clone()).await;
    let expected = BTreeMap::from([
        (key_of(&inbox, "INBOX", "-"), counts(&[("accepted", 3)])),
        (
            key_of(&inbox, "INBOX", "inbox"),
            counts(&[
                ("dispatched", 3),
                ("delivered", 3),
                ("clicked", 1),
                ("recalled", 1),
            ]),
        ),
        (
            key_of(&hook, "WEBHOOK", "-"),
            counts(&[
                ("accepted", 5),
                ("deduplicated", 1),
                ("discarded", 1),
                ("recalled", 1),
            ]),
        ),
        (
            key_of(&hook, "WEBHOOK", "hooks"),
            counts(&[
                ("dispatched", 1),
                ("dispatchFailed", 2),
                ("deferred", 1),
                ("failed", 1),
            ]),
        ),
        (
            key_of(&night, "WEBHOOK", "-"),
            counts(&[("accepted", 1), ("shielded", 1)]),
        ),
    ]);
    assert_eq!(by_dimension(&rows), expected, "{rows:#?}");
    let hooks = rows
        .iter()
        .find(|r| r["account"] == "hooks")
        .unwrap_or_else(|| panic!("{rows:#?}"));
    assert_eq!(hooks["successRatio"], 0.5, "1 dispatched, 1 failed");
    assert_eq!(
        hooks["deliveryRatio"],
        Value::Null,
        "webhooks send no receipts"
    );
    let inboxed = rows.iter().find(|r| r["account"] == "inbox").unwrap();
    assert_eq!(
        (
            inboxed["successRatio"].as_f64(),
            inboxed["deliveryRatio"].as_f64()
        ),
        (Some(1.0), Some(1.0))
    );

    // Filters narrow the rows.
    let mut filter = window.clone();
    filter["account"] = json!("hooks");
    let rows = stats_caught_up(&app, &key, filter).await;
    assert_eq!(
        by_dimension(&rows).into_keys().collect::<Vec<_>>(),
        [key_of(&hook, "WEBHOOK", "hooks")]
    );
    let mut filter = window.clone();
    filter["channel"] = json!("INBOX");
    let rows = stats_caught_up(&app, &key, filter).await;
    assert!(
        rows.iter().all(|r| r["templateId"] == inbox.as_str()),
        "{rows:#?}"
    );
    let mut filter = window.clone();
    filter["templateId"] = json!(night);
    let rows = stats_caught_up(&app, &key, filter).await;
    assert_eq!(by_dimension(&rows).len(), 1);

    // The other tenant sees its own message only.
    let rows = stats_caught_up(&app, &other_key, window.clone()).await;
    assert_eq!(
        by_dimension(&rows),
        BTreeMap::from([
            (key_of(&other, "INBOX", "-"), counts(&[("accepted", 1)])),
            (
                key_of(&other, "INBOX", "inbox"),
                counts(&[("dispatched", 1), ("delivered", 1)])
            ),
        ])
    );

    // Bad ranges are refused with a reason.
    let (_, answer) = app
        .gql(
            Some(&key),
            STATS,
            json!({ "f": { "from": "2024-05-02", "to": "2024-05-01" } }),
        )
        .await;
    assert_eq!(
        answer["errors"][0]["extensions"]["reason"], "INVALID_RANGE",
        "{answer}"
    );
    let (_, answer) = app
        .gql(
            Some(&key),
            STATS,
            json!({ "f": { "from": "2023-01-01", "to": "2024-05-01" } }),
        )
        .await;
    assert_eq!(
        answer["errors"][0]["extensions"]["reason"], "RANGE_TOO_LONG",
        "{answer}"
    );

    // Reconciliation, tenant-scoped: the day the messages were dispatched.
    let dispatched = app
        .store
        .read_stream(&format!("message-{}", ids[0]), 2, 1)
        .await
        .unwrap()[0]
        .data_json()
        .unwrap();
    let day = dispatched["at"].as_str().unwrap()[..10].to_owned();
    let query = "query($a: String!, $d: Date!, $b: Int) { reconciliation(account: $a, date: $d, billed: $b) { account date zone dispatched delivered undelivered pending withoutSupplierId billed gapPercent flagged supplierMessageIds { ids pageInfo { hasNextPage } } asOf { caughtUp } } }";
    let reconciliation = |key: String, account: &'static str, billed: Option<i64>| {
        let (app, day) = (&app, day.clone());
        async move {
            for _ in 0..200 {
                let (_, answer) = app
                    .gql(
                        Some(&key),
                        query,
                        json!({ "a": account, "d": day, "b": billed }),
                    )
                    .await;
                let r = answer["data"]["reconciliation"].clone();
                assert!(answer["errors"].is_null(), "{answer}");
                if r["asOf"]["caughtUp"] == true {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("the reconciliation projection never caught up");
        }
    };
    let r = reconciliation(key.clone(), "inbox", None).await;
    assert_eq!(
        [
            &r["dispatched"],
            &r["delivered"],
            &r["undelivered"],
            &r["pending"],
            &r["withoutSupplierId"]
        ],
        [3, 3, 0, 0, 3],
        "{r}"
    );
    assert_eq!(
        (&r["billed"], &r["flagged"], &r["zone"]),
        (&Value::Null, &Value::Null, &json!("+00:00"))
    );
    assert_eq!(
        r["supplierMessageIds"]["ids"],
        json!([]),
        "the inbox has no supplier ids"
    );
    let r = reconciliation(key.clone(), "hooks", Some(1)).await;
    assert_eq!(
        [
            &r["dispatched"],
            &r["delivered"],
            &r["pending"],
            &r["gapPercent"],
            &r["flagged"]
        ],
        [&json!(1), &json!(0), &json!(1), &json!(0.0), &json!(false)],
        "{r}"
    );
    let r = reconciliation(key.clone(), "hooks", Some(2)).await;
    assert_eq!(
        (&r["gapPercent"], &r["flagged"]),
        (&json!(100.0), &json!(true)),
        "{r}"
    );
    let r = reconciliation(other_key.clone(), "inbox", None).await;
    assert_eq!(
        (&r["dispatched"], &r["delivered"]),
        (&json!(1), &json!(1)),
        "{r}"
    );
    app.finish().await;
}

/// `projections` lists every projection with its place in the log; all catch up.
async fn every_projection_reports_its_lag(backend: &str) {
    let app = spawn(backend, |_| {}).await;
    let key = app.key("acme", "send,read").await;
    let inbox = template(&app, "acme", "INBOX", "NONE", "Hello ${n}").await;
    let ids = send(&app, &key, &inbox, &["u1"], json!({})).await;
    wait_for(&app, &format!("message-{}", ids[0]), "ReceiptReceived").await;
    let query = "{ projections { name caughtUp behind position head } }";
    let mut last = Value::Null;
    for _ in 0..200 {
        let (_, answer) = app.gql(Some(&key), query, json!({})).await;
        let list = answer["data"]["projections"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let names: Vec<&str> = list.iter().filter_map(|p| p["name"].as_str()).collect();
        assert_eq!(
            names,
            ["trace", "stats", "reconciliation", "inbox"],
            "{answer}"
        );
        if list.iter().all(|p| p["caughtUp"] == true) {
            for p in &list {
                assert_eq!(p["behind"], 0, "{answer}");
                assert_eq!(p["position"], p["head"], "{answer}");
                assert!(p["head"].as_i64().unwrap() > 0, "{answer}");
            }
            // A key without the read scope may not ask.
            let sender = app.key("acme", "send").await;
            let (_, refused) = app.gql(Some(&sender), query, json!({})).await;
            assert_eq!(
                refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
                "{refused}"
            );
            app.finish().await;
            return;
        }
        last = answer;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the projections never caught up: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stats_and_reconciliation() {
    a_mix_of_sends_is_counted_exactly("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stats_and_reconciliation() {
    a_mix_of_sends_is_counted_exactly("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_projection_lag() {
    every_projection_reports_its_lag("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_projection_lag() {
    every_projection_reports_its_lag("postgres").await;
}
