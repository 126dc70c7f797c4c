//! WeCom end to end: a WECOM_APP message goes out through a fake qyapi.weixin.qq.com with a
//! fetched access token and is then recalled there by its msgid; a WECOM_ROBOT message goes to
//! its group, and its recall fails because a robot message cannot be taken back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use serde_json::{Value, json};
use store::EventStore;

use crate::app::{TestApp, accounts_from_toml, serve_fake, spawn};
use crate::dispatch::{send, wait_for};

const CORP_ID: &str = "ww7a3f0c5e2b1d4f60";
const SECRET: &str = "wecom-app-secret";
const TOKEN: &str = "wecom-access-token";
const ROBOT_KEY: &str = "robot-key-1";

/// What the fake WeCom saw: app sends (touser, content, msgid), recalls, robot messages.
#[derive(Default)]
struct Wecom {
    sends: Mutex<Vec<(String, String, String)>>,
    recalls: Mutex<Vec<String>>,
    robot: Mutex<Vec<Value>>,
}

type Params = Query<HashMap<String, String>>;

fn answer(errcode: i64, errmsg: &str) -> axum::Json<Value> {
    axum::Json(json!({ "errcode": errcode, "errmsg": errmsg }))
}

async fn gettoken(Query(q): Params) -> axum::Json<Value> {
    if q.get("corpid").map(String::as_str) != Some(CORP_ID)
        || q.get("corpsecret").map(String::as_str) != Some(SECRET)
    {
        return answer(40001, "invalid credential");
    }
    axum::Json(json!({ "errcode": 0, "errmsg": "ok", "access_token": TOKEN, "expires_in": 7200 }))
}

async fn message_send(
    State(wecom): State<Arc<Wecom>>,
    Query(q): Params,
    body: Bytes,
) -> axum::Json<Value> {
    if q.get("access_token").map(String::as_str) != Some(TOKEN) {
        return answer(40014, "invalid access_token");
    }
    let payload: Value = serde_json::from_slice(&body).unwrap();
    if payload["agentid"] != 1_000_002 || payload["msgtype"] != "text" {
        return answer(40058, "invalid parameter");
    }
    let msgid = format!("msgid-{}", wecom.sends.lock().unwrap().len() + 1);
    wecom.sends.lock().unwrap().push((
        payload["touser"].as_str().unwrap().to_owned(),
        payload["text"]["content"].as_str().unwrap().to_owned(),
        msgid.clone(),
    ));
    axum::Json(json!({ "errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": msgid }))
}

async fn message_recall(
    State(wecom): State<Arc<Wecom>>,
    Query(q): Params,
    body: Bytes,
) -> axum::Json<Value> {
    if q.get("access_token").map(String::as_str) != Some(TOKEN) {
        return answer(40014, "invalid access_token");
    }
    let payload: Value = serde_json::from_slice(&body).unwrap();
    let msgid = payload["msgid"].as_str().unwrap_or_default().to_owned();
    if !wecom.sends.lock().unwrap().iter().any(|s| s.2 == msgid) {
        return answer(42052, "msgid expired");
    }
    wecom.recalls.lock().unwrap().push(msgid);
    answer(0, "ok")
}

async fn robot(
    State(wecom): State<Arc<Wecom>>,
    Query(q): Params,
    body: Bytes,
) -> axum::Json<Value> {
    if q.get("key").map(String::as_str) != Some(ROBOT_KEY) {
        return answer(93000, "invalid webhook url");
    }
    wecom
        .robot
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    answer(0, "ok")
}

async fn fake() -> (String, Arc<Wecom>) {
    let wecom = Arc::new(Wecom::default());
    let router = axum::Router::new()
        .route("/cgi-bin/gettoken", get(gettoken))
        .route("/cgi-bin/message/send", post(message_send))
        .route("/cgi-bin/message/recall", post(message_recall))
        .route("/cgi-bin/webhook/send", post(robot))
        .with_state(Arc::clone(&wecom));
    let url = serve_fake(router).await;
    (url, wecom)
}

async fn app(backend: &str, base_url: &str) -> TestApp {
    let accounts = format!(
        r#"
        [[accounts]]
        id = "wecom-app"
        channel = "WECOM_APP"
        supplier = "wecom_app"
        base_url = "{base_url}"
        settings = {{ corp_id = "{CORP_ID}", agent_id = "1000002" }}
        credentials = {{ secret = "{SECRET}" }}

        [[accounts]]
        id = "wecom-robot"
        channel = "WECOM_ROBOT"
        supplier = "wecom_robot"
        timeout_secs = 5
        "#
    );
    let accounts = accounts_from_toml(&accounts);
    spawn(backend, move |c| {
        c.accounts = accounts;
        c.dispatch.dedup_window_secs = 0;
        c.dispatch.frequency_cap = 0;
    })
    .await
}

/// An approved TEXT template on `channel` through `account`; returns its id and a sender key.
async fn template(app: &TestApp, channel: &str, account: &str) -> (String, String) {
    let author = app.key("acme", "admin").await;
    let reviewer = app.key("acme", "admin").await;
    let sender = app.key("acme", "send,read").await;
    let input = json!({ "name": "build", "channel": channel, "msgType": "NOTICE",
        "shieldType": "NONE", "content": { "kind": "TEXT", "body": "Build ${n} finished" },
        "account": account, "ownerTeam": "ci" });
    let id = app
        .client()
        .approved_template(&author, &reviewer, input)
        .await;
    (id, sender)
}

async fn event(app: &TestApp, stream: &str, version: u64) -> Value {
    app.store.read_stream(stream, version, 1).await.unwrap()[0]
        .data_json()
        .unwrap()
}

async fn recall(app: &TestApp, stream: &str) {
    let recaller = app.key("acme", "recall").await;
    let mutation =
        "mutation($ids: [ID!]!) { recall(input: { messageIds: $ids }) { messages { status } } }";
    let id = stream.trim_start_matches("message-");
    let (_, answer) = app
        .gql(Some(&recaller), mutation, json!({ "ids": [id] }))
        .await;
    assert_eq!(
        answer["data"]["recall"]["messages"][0]["status"], "REQUESTED",
        "{answer}"
    );
}

async fn wecom_messages_are_sent_and_recalled(backend: &str) {
    let (base_url, wecom) = fake().await;
    let app = app(backend, &base_url).await;

    // An app message: sent with the fetched token, then recalled by the msgid WeCom gave.
    let (to_members, key) = template(&app, "WECOM_APP", "wecom-app").await;
    let sent = send(&app, &key, &to_members, "zhangsan").await;
    wait_for(&app, &sent, "MessageDispatched").await;
    let dispatched = event(&app, &sent, 2).await;
    assert_eq!(dispatched["account"], "wecom-app");
    assert_eq!(dispatched["supplier"], "wecom_app");
    assert_eq!(dispatched["supplier_message_id"], "msgid-1");
    assert_eq!(
        *wecom.sends.lock().unwrap(),
        [(
            "zhangsan".to_owned(),
            "Build 42 finished".to_owned(),
            "msgid-1".to_owned()
        )]
    );
    recall(&app, &sent).await;
    assert_eq!(
        wait_for(&app, &sent, "MessageRecalled").await,
        [
            "MessageAccepted",
            "MessageDispatched",
            "RecallRequested",
            "MessageRecalled"
        ]
    );
    assert_eq!(event(&app, &sent, 4).await["via_supplier"], true);
    assert_eq!(*wecom.recalls.lock().unwrap(), ["msgid-1"]);

    // A robot message reaches its group; a robot cannot take it back.
    let (to_group, key) = template(&app, "WECOM_ROBOT", "wecom-robot").await;
    let hook = format!("{base_url}/cgi-bin/webhook/send?key={ROBOT_KEY}");
    let posted = send(&app, &key, &to_group, &hook).await;
    wait_for(&app, &posted, "MessageDispatched").await;
    assert_eq!(event(&app, &posted, 2).await["supplier"], "wecom_robot");
    assert_eq!(
        *wecom.robot.lock().unwrap(),
        [json!({ "msgtype": "text", "text": { "content": "Build 42 finished" } })]
    );
    recall(&app, &posted).await;
    assert_eq!(
        wait_for(&app, &posted, "RecallFailed").await,
        [
            "MessageAccepted",
            "MessageDispatched",
            "RecallRequested",
            "RecallFailed"
        ]
    );
    let failed = event(&app, &posted, 4).await;
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .starts_with("CHANNEL_CANNOT_RECALL"),
        "{failed}"
    );
    assert_eq!(wecom.recalls.lock().unwrap().len(), 1);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wecom_send_and_recall() {
    wecom_messages_are_sent_and_recalled("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wecom_send_and_recall() {
    wecom_messages_are_sent_and_recalled("postgres").await;
}
