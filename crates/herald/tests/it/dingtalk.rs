//! DingTalk end to end: a work notice sent through GraphQL goes out with the app's access
//! token, its read receipt is asked for and lands on the stream, and a recall takes it back
//! through DingTalk; a group robot message goes out signed, and its recall fails, since robots
//! cannot take a message back. The fake oapi.dingtalk.com checks the app key and secret, the
//! token and the agent of every call, and each robot post's signature (the signing function is
//! pinned to values computed with DingTalk's own Python example in the dispatch crate's tests).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use serde_json::{Value, json};
use store::EventStore;

use crate::app::{TestApp, accounts_from_toml, serve_fake, spawn};
use crate::dispatch::{send, template, wait_for};

const APP_KEY: &str = "dingheraldkey";
const APP_SECRET: &str = "dingtalk-app-secret";
const AGENT: i64 = 2_345_678_901;
const ROBOT_SECRET: &str = "SEC7d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a6f7e8d9c0b1a2f3e4d5c6b7a8f9e0d1c";

#[derive(Default)]
struct DingTalk {
    gettoken: usize,
    /// Work notices sent: task id, userid, msg.
    notices: Vec<(i64, String, Value)>,
    recalled: Vec<i64>,
    /// Robot posts that passed the signature check: access token, payload.
    posts: Vec<(String, Value)>,
    /// Calls refused, by errcode.
    refused: Vec<i64>,
}

type Shared = Arc<Mutex<DingTalk>>;

fn answer(code: i64, message: &str) -> axum::Json<Value> {
    axum::Json(json!({ "errcode": code, "errmsg": message, "request_id": "fake" }))
}

async fn gettoken(
    State(fake): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> axum::Json<Value> {
    let mut fake = fake.lock().unwrap();
    fake.gettoken += 1;
    if query.get("appkey").map(String::as_str) != Some(APP_KEY)
        || query.get("appsecret").map(String::as_str) != Some(APP_SECRET)
    {
        fake.refused.push(40089);
        return answer(40089, "不合法的corpid或corpsecret");
    }
    let token = format!("token-{}", fake.gettoken);
    axum::Json(json!({ "errcode": 0, "access_token": token, "errmsg": "ok", "expires_in": 7200 }))
}

async fn topapi(
    State(fake): State<Shared>,
    Path(call): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    let mut fake = fake.lock().unwrap();
    let issued = format!("token-{}", fake.gettoken);
    if fake.gettoken == 0 || query.get("access_token") != Some(&issued) {
        fake.refused.push(40014);
        return axum::Json(json!({ "errcode": 88, "sub_code": "40014",
            "sub_msg": "不合法的access_token", "errmsg": "ding talk error" }));
    }
    if body["agent_id"].as_i64() != Some(AGENT) {
        fake.refused.push(40056);
        return answer(40056, "不合法的agentid");
    }
    match call.as_str() {
        "asyncsend_v2" => {
            let task = 256_271_667_526 + fake.notices.len() as i64;
            let user = body["userid_list"].as_str().unwrap_or_default().to_owned();
            fake.notices.push((task, user, body["msg"].clone()));
            axum::Json(json!({ "errcode": 0, "task_id": task, "request_id": "fake" }))
        }
        "getsendresult" => {
            let task = body["task_id"].as_i64();
            let Some((_, user, _)) = fake.notices.iter().find(|(t, _, _)| Some(*t) == task) else {
                return answer(40035, "不合法的参数");
            };
            axum::Json(json!({ "errcode": 0, "request_id": "fake", "send_result": {
                "read_user_id_list": [user], "unread_user_id_list": [],
                "invalid_user_id_list": [], "forbidden_user_id_list": [],
                "failed_user_id_list": [], "invalid_dept_id_list": [],
            } }))
        }
        "recall" => {
            let task = body["msg_task_id"].as_i64().unwrap_or_default();
            if !fake.notices.iter().any(|(t, _, _)| *t == task) {
                return answer(40035, "不合法的参数");
            }
            fake.recalled.push(task);
            answer(0, "ok")
        }
        _ => answer(404, "请求的URI地址不存在"),
    }
}

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
        fake.refused.push(310000);
        return answer(310000, "sign not match");
    }
    let token = query.get("access_token").cloned().unwrap_or_default();
    fake.posts.push((token, payload));
    answer(0, "ok")
}

async fn fake() -> (String, Shared) {
    let fake = Shared::default();
    let app = axum::Router::new()
        .route("/gettoken", get(gettoken))
        .route("/topapi/message/corpconversation/{call}", post(topapi))
        .route("/robot/send", post(robot))
        .with_state(Arc::clone(&fake));
    let url = serve_fake(app).await;
    (url, fake)
}

async fn app(backend: &str, base: &str) -> TestApp {
    let accounts = format!(
        r#"
        [[accounts]]
        id = "dingtalk"
        channel = "DINGTALK_WORK"
        supplier = "dingtalk_work"
        base_url = "{base}"
        settings = {{ agent_id = "{AGENT}" }}
        credentials = {{ app_key = "{APP_KEY}", app_secret = "{APP_SECRET}" }}

        [[accounts]]
        id = "robot"
        channel = "DINGTALK_ROBOT"
        supplier = "dingtalk_robot"
        credentials = {{ secret = "{ROBOT_SECRET}" }}
        "#
    );
    let accounts = accounts_from_toml(&accounts);
    spawn(backend, move |c| {
        c.accounts = accounts;
        c.dispatch.dedup_window_secs = 0;
        c.dispatch.frequency_cap = 0;
        c.dispatch.receipt_query_delay_ms = 100;
    })
    .await
}

async fn event(app: &TestApp, stream: &str, version: u64) -> (String, Value) {
    let recorded = &app.store.read_stream(stream, version, 1).await.unwrap()[0];
    (recorded.event_type.clone(), recorded.data_json().unwrap())
}

async fn recall(app: &TestApp, key: &str, stream: &str) {
    let query =
        "mutation($ids: [ID!]!) { recall(input: { messageIds: $ids }) { messages { status } } }";
    let id = stream.trim_start_matches("message-");
    let (_, answer) = app.gql(Some(key), query, json!({ "ids": [id] })).await;
    assert_eq!(
        answer["data"]["recall"]["messages"][0]["status"], "REQUESTED",
        "{answer}"
    );
}

async fn work_notices_and_robots(backend: &str) {
    let (base, fake) = fake().await;
    let app = app(backend, &base).await;
    let recaller = app.key("acme", "recall").await;

    // A work notice: sent with the app's token, read, then recalled through DingTalk.
    let (notice_template, key) = template(&app, "DINGTALK_WORK").await;
    let notice = send(&app, &key, &notice_template, "manager7").await;
    assert_eq!(
        wait_for(&app, &notice, "ReceiptReceived").await,
        ["MessageAccepted", "MessageDispatched", "ReceiptReceived"]
    );
    let (_, dispatched) = event(&app, &notice, 2).await;
    assert_eq!(dispatched["account"], "dingtalk");
    assert_eq!(dispatched["supplier"], "dingtalk_work");
    assert_eq!(dispatched["supplier_message_id"], "256271667526");
    let (_, receipt) = event(&app, &notice, 3).await;
    assert_eq!(
        (
            receipt["outcome"].as_str(),
            receipt["supplier_status"].as_str()
        ),
        (Some("DELIVERED"), Some("READ"))
    );
    recall(&app, &recaller, &notice).await;
    assert_eq!(
        wait_for(&app, &notice, "MessageRecalled").await,
        [
            "MessageAccepted",
            "MessageDispatched",
            "ReceiptReceived",
            "RecallRequested",
            "MessageRecalled"
        ]
    );
    assert_eq!(event(&app, &notice, 5).await.1["via_supplier"], true);
    {
        let fake = fake.lock().unwrap();
        assert_eq!(
            fake.notices,
            [(
                256_271_667_526,
                "manager7".to_owned(),
                json!({ "msgtype": "text", "text": { "content": "Build 42 finished" } })
            )]
        );
        assert_eq!(fake.recalled, [256_271_667_526]);
        // One token for the send, the receipt and the recall.
        assert_eq!(fake.gettoken, 1);
    }

    // A robot message: posted signed to the group; robots cannot recall.
    let (robot_template, key) = template(&app, "DINGTALK_ROBOT").await;
    let group = format!("{base}/robot/send?access_token=group-ops");
    let posted = send(&app, &key, &robot_template, &group).await;
    assert_eq!(
        wait_for(&app, &posted, "MessageDispatched").await,
        ["MessageAccepted", "MessageDispatched"]
    );
    assert_eq!(
        event(&app, &posted, 2).await.1["supplier"],
        "dingtalk_robot"
    );
    recall(&app, &recaller, &posted).await;
    assert_eq!(
        wait_for(&app, &posted, "RecallFailed").await,
        [
            "MessageAccepted",
            "MessageDispatched",
            "RecallRequested",
            "RecallFailed"
        ]
    );
    let (_, failed) = event(&app, &posted, 4).await;
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .starts_with("CHANNEL_CANNOT_RECALL"),
        "{failed}"
    );
    {
        let fake = fake.lock().unwrap();
        assert_eq!(
            fake.posts,
            [(
                "group-ops".to_owned(),
                json!({ "msgtype": "text", "text": { "content": "Build 42 finished" } })
            )]
        );
        assert!(fake.refused.is_empty(), "{:?}", fake.refused);
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_dingtalk_work_notices_and_robots() {
    work_notices_and_robots("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_dingtalk_work_notices_and_robots() {
    work_notices_and_robots("sqlite").await;
}
