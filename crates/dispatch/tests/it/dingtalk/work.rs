//! `dingtalk_work` against a fake oapi.dingtalk.com: `gettoken` checks the app key and secret
//! and counts its requests; the `topapi` calls accept only tokens it handed out and has not
//! expired, check the agent and the payload, and keep tasks for recall and `getsendresult`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use dispatch::tokens::Tokens;
use dispatch::{SendError, Supplier};
use domain::{Channel, ReceiptOutcome, ReceiverIdType, TemplateContent};
use serde_json::{Value, json};

use super::{Message, card, class, markdown, serve, supplier, text};

const APP_KEY: &str = "dingtestappkey";
const APP_SECRET: &str = "dingtalk-test-app-secret";
const AGENT: i64 = 2_345_678_901;

#[derive(Default)]
struct Fake {
    gettoken: usize,
    /// Tokens handed out and still good.
    valid: HashSet<String>,
    /// Tokens handed out that have expired.
    expired: HashSet<String>,
    /// Refuse this many next calls' tokens as invalid (the token is then forgotten).
    refuse: usize,
    /// Every `topapi` call that came with a good token: path, token, body.
    calls: Vec<(String, String, Value)>,
    /// Task id → receiver.
    tasks: HashMap<i64, String>,
    recalled: Vec<i64>,
}

type Shared = Arc<Mutex<Fake>>;

fn answer(code: i64, message: &str) -> Response {
    axum::Json(json!({ "errcode": code, "errmsg": message, "request_id": "fake" })).into_response()
}

fn auth_error(sub_code: &str, sub_msg: &str) -> Response {
    axum::Json(json!({
        "errcode": 88, "sub_code": sub_code, "sub_msg": sub_msg,
        "errmsg": format!("ding talk error[subcode={sub_code},submsg={sub_msg}]"),
        "request_id": "fake",
    }))
    .into_response()
}

async fn gettoken(
    State(fake): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let issued = {
        let mut fake = fake.lock().unwrap();
        fake.gettoken += 1;
        if query.get("appkey").map(String::as_str) != Some(APP_KEY)
            || query.get("appsecret").map(String::as_str) != Some(APP_SECRET)
        {
            return answer(40089, "不合法的corpid或corpsecret");
        }
        let token = format!("token-{}", fake.gettoken);
        fake.valid.insert(token.clone());
        token
    };
    // A token request takes a moment, long enough for a burst to pile up behind it.
    tokio::time::sleep(Duration::from_millis(30)).await;
    axum::Json(json!({ "errcode": 0, "access_token": issued, "errmsg": "ok", "expires_in": 7200 }))
        .into_response()
}

fn well_formed(msg: &Value) -> bool {
    let has = |object: &str, fields: &[&str]| {
        fields
            .iter()
            .all(|f| msg[object][*f].as_str().is_some_and(|s| !s.is_empty()))
    };
    match msg["msgtype"].as_str() {
        Some("text") => has("text", &["content"]),
        Some("markdown") => has("markdown", &["title", "text"]),
        Some("action_card") => has(
            "action_card",
            &["title", "markdown", "single_title", "single_url"],
        ),
        _ => false,
    }
}

async fn topapi(
    State(fake): State<Shared>,
    Path(call): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut fake = fake.lock().unwrap();
    let Some(token) = query.get("access_token").cloned() else {
        return answer(41001, "缺少access_token参数");
    };
    if fake.expired.contains(&token) {
        return answer(42001, "access_token超时");
    }
    if !fake.valid.contains(&token) {
        return auth_error("40014", "不合法的access_token");
    }
    if fake.refuse > 0 {
        fake.refuse -= 1;
        fake.valid.remove(&token);
        return auth_error("40014", "不合法的access_token");
    }
    fake.calls.push((call.clone(), token, body.clone()));
    if body["agent_id"].as_i64() != Some(AGENT) {
        return answer(40056, "不合法的agentid");
    }
    match call.as_str() {
        "asyncsend_v2" => {
            let Some(user) = body["userid_list"].as_str().filter(|u| !u.is_empty()) else {
                return answer(1_430_000, "接受者为空");
            };
            match user {
                "throttled" => return answer(90018, "当前应用调用该接口超过限流阈值"),
                "busy" => return answer(-1, "系统繁忙"),
                "forbidden-app" => return auth_error("60011", "没有调用该接口的权限"),
                _ => {}
            }
            if !well_formed(&body["msg"]) {
                return answer(40035, "不合法的参数");
            }
            let task_id = 256_271_667_526 + fake.tasks.len() as i64;
            fake.tasks.insert(task_id, user.to_owned());
            axum::Json(json!({ "errcode": 0, "task_id": task_id, "request_id": "fake" }))
                .into_response()
        }
        "recall" => {
            let task = body["msg_task_id"].as_i64().unwrap_or(0);
            if !fake.tasks.contains_key(&task) {
                return answer(40035, "不合法的参数");
            }
            fake.recalled.push(task);
            answer(0, "ok")
        }
        "getsendresult" => {
            let Some(user) = body["task_id"].as_i64().and_then(|t| fake.tasks.get(&t)) else {
                return answer(40035, "不合法的参数");
            };
            let list = |name: &str| {
                if name == user {
                    json!([user])
                } else {
                    json!([])
                }
            };
            let mut result = json!({
                "read_user_id_list": list("reader"),
                "unread_user_id_list": list("unread"),
                "invalid_user_id_list": list("ghost"),
                "forbidden_user_id_list": list("spammed"),
                "failed_user_id_list": list("broken"),
                "invalid_dept_id_list": [],
            });
            if user == "spammed" {
                result["forbidden_list"] =
                    json!([{ "code": "143106", "count": 1, "userid": user }]);
            }
            axum::Json(json!({ "errcode": 0, "send_result": result, "request_id": "fake" }))
                .into_response()
        }
        _ => answer(404, "请求的URI地址不存在"),
    }
}

async fn start() -> (String, Shared) {
    let fake: Shared = Arc::default();
    let app = Router::new()
        .route("/gettoken", get(gettoken))
        .route("/topapi/message/corpconversation/{call}", post(topapi))
        .route(
            "/down/gettoken",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "upstream down") }),
        )
        .with_state(Arc::clone(&fake));
    (serve(app).await, fake)
}

fn work(base: &str, secret: &str, tokens: &Tokens) -> Arc<dyn Supplier> {
    let supplier = supplier(
        json!({
            "id": "dingtalk",
            "channel": "DINGTALK_WORK",
            "supplier": "dingtalk_work",
            "base_url": base,
            "settings": { "agent_id": AGENT.to_string(), "card_button": "Open" },
            "credentials": { "app_key": APP_KEY, "app_secret": secret },
            "timeout_secs": 5,
        }),
        tokens,
    );
    assert_eq!(supplier.name(), "dingtalk_work");
    assert!(supplier.supports(Channel::DingtalkWork) && !supplier.supports(Channel::DingtalkRobot));
    assert!(supplier.queries_receipts());
    supplier
}

fn notice(user: &str, content: TemplateContent) -> Message {
    Message::new(
        Channel::DingtalkWork,
        ReceiverIdType::DingtalkUser,
        user,
        content,
    )
}

#[tokio::test]
async fn work_notices_go_out_with_one_token() {
    let (base, fake) = start().await;
    let work = work(&base, APP_SECRET, &Tokens::in_process());
    let mut tasks = Vec::new();
    for content in [
        text("Build 42 finished"),
        markdown("Build 42", "**finished**"),
        card("Build 42", "finished", Some("https://ci.example.com/42")),
    ] {
        let sent = notice("manager7", content)
            .send(work.as_ref())
            .await
            .unwrap();
        tasks.push(sent.supplier_message_id.unwrap());
    }
    assert_eq!(tasks, ["256271667526", "256271667527", "256271667528"]);
    let fake = fake.lock().unwrap();
    assert_eq!(fake.gettoken, 1);
    let bodies: Vec<&Value> = fake.calls.iter().map(|(_, _, b)| b).collect();
    assert_eq!(
        bodies,
        [
            &json!({ "agent_id": AGENT, "userid_list": "manager7",
                "msg": { "msgtype": "text", "text": { "content": "Build 42 finished" } } }),
            &json!({ "agent_id": AGENT, "userid_list": "manager7",
                "msg": { "msgtype": "markdown", "markdown": { "title": "Build 42", "text": "**finished**" } } }),
            &json!({ "agent_id": AGENT, "userid_list": "manager7",
                "msg": { "msgtype": "action_card", "action_card": {
                    "title": "Build 42", "markdown": "finished",
                    "single_title": "Open", "single_url": "https://ci.example.com/42" } } }),
        ]
    );
    assert!(
        fake.calls
            .iter()
            .all(|(call, token, _)| call == "asyncsend_v2" && token == "token-1")
    );
}

async fn burst(work: &Arc<dyn Supplier>, sends: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..sends {
        let work = Arc::clone(work);
        tasks.spawn(async move {
            notice(&format!("user{i}"), text("Build 42 finished"))
                .send(work.as_ref())
                .await
                .unwrap()
        });
    }
    while let Some(sent) = tasks.join_next().await {
        assert!(sent.unwrap().supplier_message_id.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_makes_one_token_request_and_so_does_an_expired_token() {
    let (base, fake) = start().await;
    let work = work(&base, APP_SECRET, &Tokens::in_process());
    burst(&work, 100).await;
    assert_eq!(fake.lock().unwrap().gettoken, 1);

    // DingTalk expires the token under a hundred sends at once: every one of them is refused
    // (42001), and together they fetch one new token.
    {
        let mut fake = fake.lock().unwrap();
        fake.valid.remove("token-1");
        fake.expired.insert("token-1".to_owned());
    }
    burst(&work, 100).await;
    let fake = fake.lock().unwrap();
    assert_eq!(fake.gettoken, 2);
    assert_eq!(fake.tasks.len(), 200);
    let with_new = fake
        .calls
        .iter()
        .filter(|(_, token, _)| token == "token-2")
        .count();
    assert_eq!(with_new, 100);
}

#[tokio::test]
async fn a_refused_token_is_replaced_and_the_call_made_once_more() {
    let (base, fake) = start().await;
    let work = work(&base, APP_SECRET, &Tokens::in_process());
    notice("manager7", text("first"))
        .send(work.as_ref())
        .await
        .unwrap();
    // Revoked behind Herald's back (someone else fetched with the same secret): refused once.
    fake.lock().unwrap().refuse = 1;
    let sent = notice("manager7", text("second"))
        .send(work.as_ref())
        .await
        .unwrap();
    assert_eq!(sent.supplier_message_id.as_deref(), Some("256271667527"));
    {
        let fake = fake.lock().unwrap();
        assert_eq!(fake.gettoken, 2);
        assert_eq!(fake.calls.last().unwrap().1, "token-2");
    }
    // Refused again with the fresh token: the app cannot send for now. One retry, no loop.
    fake.lock().unwrap().refuse = 2;
    let error = notice("manager7", text("third"))
        .send(work.as_ref())
        .await
        .unwrap_err();
    assert_eq!(class(&error), ("unavailable", "40014"));
    let fake = fake.lock().unwrap();
    assert_eq!(fake.gettoken, 3);
    assert_eq!(fake.tasks.len(), 2);
}

#[tokio::test]
async fn a_recall_reaches_dingtalk_with_the_task_id() {
    let (base, fake) = start().await;
    let work = work(&base, APP_SECRET, &Tokens::in_process());
    let message = notice("manager7", text("Build 42 finished"));
    let task = message
        .send(work.as_ref())
        .await
        .unwrap()
        .supplier_message_id
        .unwrap();
    let outbound = message.outbound();
    work.recall(&outbound, Some(&task))
        .expect("work notices can be recalled")
        .await
        .unwrap();
    {
        let fake = fake.lock().unwrap();
        assert_eq!(fake.recalled, [256_271_667_526]);
        let (call, _, body) = fake.calls.last().unwrap();
        assert_eq!(call, "recall");
        assert_eq!(
            body,
            &json!({ "agent_id": AGENT, "msg_task_id": 256_271_667_526_i64 })
        );
    }
    let no_task = work.recall(&outbound, None).unwrap().await.unwrap_err();
    assert_eq!(class(&no_task), ("final", "NO_TASK_ID"));
    let unknown = work
        .recall(&outbound, Some("999"))
        .unwrap()
        .await
        .unwrap_err();
    assert_eq!(class(&unknown), ("final", "40035"));
}

#[tokio::test]
async fn receipts_say_read_unread_refused_or_not_yet() {
    let (base, fake) = start().await;
    let work = work(&base, APP_SECRET, &Tokens::in_process());
    let mut seen = Vec::new();
    for user in ["reader", "unread", "ghost", "spammed", "broken", "pending"] {
        let message = notice(user, text("Build 42 finished"));
        let task = message
            .send(work.as_ref())
            .await
            .unwrap()
            .supplier_message_id
            .unwrap();
        let outbound = message.outbound();
        let receipts = work
            .query_receipt(&outbound, &task, Utc::now())
            .expect("work notices are asked for receipts")
            .await
            .unwrap();
        for receipt in &receipts {
            assert_eq!(receipt.message_id, Some(message.id));
            assert_eq!(receipt.supplier_message_id.as_deref(), Some(task.as_str()));
            assert_eq!(receipt.receiver.as_deref(), Some(user));
        }
        seen.push(
            receipts
                .into_iter()
                .map(|r| (r.outcome, r.supplier_status))
                .collect::<Vec<_>>(),
        );
    }
    let one = |outcome, status: &str| vec![(outcome, status.to_owned())];
    assert_eq!(
        seen,
        [
            one(ReceiptOutcome::Delivered, "READ"),
            one(ReceiptOutcome::Delivered, "UNREAD"),
            one(ReceiptOutcome::Undelivered, "INVALID_USER"),
            one(ReceiptOutcome::Undelivered, "FORBIDDEN:143106"),
            one(ReceiptOutcome::Undelivered, "FAILED"),
            Vec::new(),
        ]
    );
    let fake = fake.lock().unwrap();
    let (call, _, body) = fake.calls.last().unwrap();
    assert_eq!(call, "getsendresult");
    assert_eq!(
        body,
        &json!({ "agent_id": AGENT, "task_id": 256_271_667_531_i64 })
    );
    assert_eq!(fake.gettoken, 1);
}

#[tokio::test]
async fn work_errors_are_classified() {
    let (base, fake) = start().await;
    let work = work(&base, APP_SECRET, &Tokens::in_process());
    let send = |user: &str| {
        let message = notice(user, text("Build 42 finished"));
        let work = Arc::clone(&work);
        async move { message.send(work.as_ref()).await.unwrap_err() }
    };
    let throttled = send("throttled").await;
    assert_eq!(class(&throttled), ("throttled", "90018"));
    assert!(matches!(
        throttled,
        SendError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(60)
    ));
    assert_eq!(class(&send("busy").await), ("retryable", "-1"));
    assert_eq!(
        class(&send("forbidden-app").await),
        ("unavailable", "60011")
    );
    let email = notice(
        "manager7",
        TemplateContent::SupplierTemplate {
            template_code: "x".into(),
            sign_name: None,
            params: Vec::new(),
        },
    );
    assert_eq!(
        class(&email.send(work.as_ref()).await.unwrap_err()),
        ("final", "UNSUPPORTED_CONTENT")
    );
    assert_eq!(fake.lock().unwrap().gettoken, 1);

    // A wrong app secret: the account cannot send; the secret never shows in the error.
    let wrong = self::work(&base, "not-the-secret", &Tokens::in_process());
    let refused = notice("manager7", text("x"))
        .send(wrong.as_ref())
        .await
        .unwrap_err();
    assert_eq!(class(&refused), ("unavailable", "40089"));
    assert!(!refused.to_string().contains("not-the-secret"), "{refused}");
    // The wrong agent id: the app's, too.
    let other_agent = supplier(
        json!({
            "id": "dingtalk", "channel": "DINGTALK_WORK", "supplier": "dingtalk_work",
            "base_url": base, "settings": { "agent_id": "1" },
            "credentials": { "app_key": APP_KEY, "app_secret": APP_SECRET },
        }),
        &Tokens::in_process(),
    );
    let agent = notice("manager7", text("x"))
        .send(other_agent.as_ref())
        .await
        .unwrap_err();
    assert_eq!(class(&agent), ("unavailable", "40056"));
    // DingTalk unreachable behind a proxy: retryable, and the query with the secret stays out.
    let down = self::work(&format!("{base}/down"), APP_SECRET, &Tokens::in_process());
    let error = notice("manager7", text("x"))
        .send(down.as_ref())
        .await
        .unwrap_err();
    assert_eq!(class(&error), ("retryable", "HTTP_503"));
    assert!(!error.to_string().contains(APP_SECRET), "{error}");
}
