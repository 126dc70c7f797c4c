//! The in-app inbox: delivered INBOX messages appear for their receiver only, in their tenant
//! only, newest first and paged, with the unread count; following a link reads a message, and a
//! recalled message goes away.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::{TestApp, spawn};
use crate::dispatch::wait_for;

const INBOX: &str = "query($r: String!, $first: Int! = 20, $after: String) { inbox(receiver: $r, first: $first, after: $after) { nodes { id templateId kind title body url read readAt deliveredAt } pageInfo { hasNextPage endCursor } unread asOf { caughtUp } } }";

/// A CARD template of `tenant` on the INBOX channel, and a key that sends, reads and recalls.
async fn card(app: &TestApp, tenant: &str) -> (String, String) {
    let author = app.key(tenant, "admin").await;
    let reviewer = app.key(tenant, "admin").await;
    let input = json!({ "name": "order", "channel": "INBOX", "msgType": "NOTICE",
        "content": { "kind": "CARD", "title": "Order ${n}", "body": "Your order ${n} shipped",
            "url": "https://shop.test/o/${n}" },
        "account": "inbox", "ownerTeam": "ci" });
    let id = app
        .client()
        .approved_template(&author, &reviewer, input)
        .await;
    (id, app.key(tenant, "send,read,recall").await)
}

async fn send(app: &TestApp, key: &str, template: &str, receiver: &str, n: &str) -> String {
    let query = "mutation($input: SendInput!) { send(input: $input) { messages { id } } }";
    let input = json!({ "templateId": template, "receivers": [receiver], "variables": { "n": n } });
    let (_, sent) = app.gql(Some(key), query, json!({ "input": input })).await;
    let id = sent["data"]["send"]["messages"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{sent}"))
        .to_owned();
    wait_for(app, &format!("message-{id}"), "ReceiptReceived").await;
    id
}

/// The inbox once its projection has caught up and `ready` holds.
async fn inbox_when(
    app: &TestApp,
    key: &str,
    variables: Value,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (_, answer) = app.gql(Some(key), INBOX, variables.clone()).await;
        assert!(answer["errors"].is_null(), "{answer}");
        let inbox = answer["data"]["inbox"].clone();
        if inbox["asOf"]["caughtUp"] == true && ready(&inbox) {
            return inbox;
        }
        last = inbox;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the inbox never got there: {last}");
}

fn ids(inbox: &Value) -> Vec<String> {
    inbox["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn follow(app: &TestApp, url: &str) {
    let path = url.strip_prefix("https://h.test").unwrap();
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 302"), "{response}");
}

async fn inbox_messages_reach_their_receiver_only(backend: &str) {
    let app = spawn(backend, |c| c.api.public_url = "https://h.test".into()).await;
    let (template, key) = card(&app, "acme").await;
    let first = send(&app, &key, &template, "user-1", "1").await;
    let second = send(&app, &key, &template, "user-1", "2").await;
    let for_user_2 = send(&app, &key, &template, "user-2", "3").await;
    let (their_template, their_key) = card(&app, "globex").await;
    let theirs = send(&app, &their_key, &their_template, "user-1", "9").await;

    // Newest first, with the content as rendered.
    let user_1 = json!({ "r": "user-1" });
    let inbox = inbox_when(&app, &key, user_1.clone(), |i| ids(i).len() == 2).await;
    assert_eq!(ids(&inbox), [second.clone(), first.clone()]);
    let newest = &inbox["nodes"][0];
    assert_eq!(
        (
            &newest["kind"],
            &newest["title"],
            &newest["body"],
            &newest["read"]
        ),
        (
            &json!("CARD"),
            &json!("Order 2"),
            &json!("Your order 2 shipped"),
            &json!(false)
        )
    );
    assert_eq!(newest["templateId"], template.as_str());
    assert!(
        newest["url"]
            .as_str()
            .unwrap()
            .starts_with("https://h.test/c/"),
        "the link is tracked: {newest}"
    );
    assert_eq!(inbox["unread"], 2);

    // Paged.
    let page = inbox_when(&app, &key, json!({ "r": "user-1", "first": 1 }), |_| true).await;
    assert_eq!(ids(&page), std::slice::from_ref(&second));
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let next = inbox_when(
        &app,
        &key,
        json!({ "r": "user-1", "first": 1, "after": page["pageInfo"]["endCursor"] }),
        |_| true,
    )
    .await;
    assert_eq!(ids(&next), std::slice::from_ref(&first));
    assert_eq!(next["pageInfo"]["hasNextPage"], false);
    assert_eq!(next["unread"], 2, "the count covers the whole inbox");

    // Each receiver and each tenant sees its own.
    let user_2 = inbox_when(&app, &key, json!({ "r": "user-2" }), |i| !ids(i).is_empty()).await;
    assert_eq!(ids(&user_2), [for_user_2]);
    let other = inbox_when(&app, &their_key, user_1.clone(), |i| !ids(i).is_empty()).await;
    assert_eq!(ids(&other), [theirs]);
    let nobody = inbox_when(&app, &key, json!({ "r": "user-3" }), |_| true).await;
    assert_eq!((ids(&nobody).len(), &nobody["unread"]), (0, &json!(0)));

    // Following the first message's link reads it.
    let url = inbox["nodes"][1]["url"].as_str().unwrap().to_owned();
    follow(&app, &url).await;
    let inbox = inbox_when(&app, &key, user_1.clone(), |i| i["unread"] == 1).await;
    assert_eq!(inbox["nodes"][1]["read"], true, "{inbox}");
    assert!(inbox["nodes"][1]["readAt"].is_string());

    // A recalled message goes away.
    let recall =
        "mutation($ids: [ID!]) { recall(input: { messageIds: $ids }) { messages { status } } }";
    let (_, answer) = app
        .gql(Some(&key), recall, json!({ "ids": [second] }))
        .await;
    assert!(answer["errors"].is_null(), "{answer}");
    wait_for(&app, &format!("message-{second}"), "MessageRecalled").await;
    let inbox = inbox_when(&app, &key, user_1, |i| ids(i).len() == 1).await;
    assert_eq!(ids(&inbox), [first]);
    assert_eq!(inbox["unread"], 0);

    // A bad cursor is refused with a reason.
    let (_, answer) = app
        .gql(Some(&key), INBOX, json!({ "r": "user-1", "after": "nope" }))
        .await;
    assert_eq!(
        answer["errors"][0]["extensions"]["reason"],
        "INVALID_CURSOR"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_inbox() {
    inbox_messages_reach_their_receiver_only("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_inbox() {
    inbox_messages_reach_their_receiver_only("postgres").await;
}
