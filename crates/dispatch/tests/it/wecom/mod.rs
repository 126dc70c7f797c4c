//! The WeCom suppliers against a local qyapi.weixin.qq.com that does what WeCom does: hands out
//! access tokens for the right corp id and secret (and counts how often), refuses unknown and
//! expired tokens, checks each message's fields, and answers in WeCom's JSON and codes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use cache::{Cache, RedisCache};
use dispatch::accounts::{AccountConfig, Accounts};
use dispatch::tokens::Tokens;
use dispatch::{Outbound, SendError, Sent, Supplier};
use domain::{
    Channel, MessageId, MessageType, Receiver, ReceiverIdType, TemplateContent, TenantId,
};
use serde_json::{Value, json};

mod app;
mod robot;

const CORP_ID: &str = "ww7a3f0c5e2b1d4f60";
const SECRET: &str = "app-secret-from-the-admin-console";
const AGENT_ID: i64 = 1_000_002;
const ROBOT_KEY: &str = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa";
/// The token a test puts in the cache as if fetched earlier; the fake says it has expired.
const STALE_TOKEN: &str = "stale-token";

type Params = Query<HashMap<String, String>>;

/// What the fake WeCom remembers.
#[derive(Default)]
struct Wecom {
    gettoken_calls: AtomicUsize,
    /// Tokens handed out and still good.
    tokens: Mutex<HashSet<String>>,
    /// Sends to answer with 42001 although their token is good (a token revoked mid-way).
    refuse_next_sends: AtomicUsize,
    /// Every `message/send` that reached the payload checks, with the token it came with.
    sends: Mutex<Vec<(String, Value)>>,
    /// Message ids handed out, and those recalled.
    msgids: Mutex<Vec<String>>,
    recalls: Mutex<Vec<String>>,
    /// Every robot message that reached the group.
    robot: Mutex<Vec<Value>>,
}

fn answer(errcode: i64, errmsg: &str) -> axum::response::Response {
    axum::Json(json!({"errcode": errcode, "errmsg": errmsg})).into_response()
}

async fn gettoken(State(wecom): State<Arc<Wecom>>, Query(q): Params) -> axum::response::Response {
    wecom.gettoken_calls.fetch_add(1, Ordering::SeqCst);
    // WeCom takes a moment to answer: a burst that would fetch more than once overlaps here.
    tokio::time::sleep(Duration::from_millis(20)).await;
    if q.get("corpid").map(String::as_str) != Some(CORP_ID) {
        return answer(40013, "invalid corpid");
    }
    if q.get("corpsecret").map(String::as_str) != Some(SECRET) {
        return answer(40001, "invalid credential");
    }
    let token = format!("token-{}", uuid::Uuid::now_v7().simple());
    wecom.tokens.lock().unwrap().insert(token.clone());
    axum::Json(json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}))
        .into_response()
}

/// The token check every API call makes: the token from the query string, or WeCom's refusal.
fn check_token(wecom: &Wecom, q: &HashMap<String, String>) -> Result<String, (i64, &'static str)> {
    let Some(token) = q.get("access_token").filter(|t| !t.is_empty()) else {
        return Err((41001, "access_token missing"));
    };
    if token == STALE_TOKEN {
        return Err((42001, "access_token expired"));
    }
    if !wecom.tokens.lock().unwrap().contains(token) {
        return Err((40014, "invalid access_token"));
    }
    Ok(token.clone())
}

async fn send(
    State(wecom): State<Arc<Wecom>>,
    Query(q): Params,
    body: Bytes,
) -> axum::response::Response {
    let token = match check_token(&wecom, &q) {
        Ok(token) => token,
        Err((code, message)) => return answer(code, message),
    };
    if wecom
        .refuse_next_sends
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return answer(42001, "access_token expired");
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return answer(40058, "Warning: wrong json format.");
    };
    if payload["agentid"].as_i64() != Some(AGENT_ID) {
        return answer(
            301002,
            "not allow operate another agent with this accesstoken.",
        );
    }
    let msgtype = payload["msgtype"].as_str().unwrap_or_default();
    let fields = &payload[msgtype];
    let complete = match msgtype {
        "text" | "markdown" => fields["content"].as_str().is_some_and(|c| !c.is_empty()),
        "textcard" => ["title", "description", "url"]
            .iter()
            .all(|f| fields[f].as_str().is_some_and(|v| !v.is_empty())),
        _ => return answer(40008, "invalid message type"),
    };
    if !complete {
        return answer(44004, "empty content");
    }
    wecom.sends.lock().unwrap().push((token, payload.clone()));
    let user = payload["touser"].as_str().unwrap_or_default();
    match user {
        "left-the-company" => answer(81013, "user & party & tag all invalid"),
        "flood" => answer(45009, "api freq out of limit"),
        "busy" => answer(-1, "system busy"),
        "outside-ip" => answer(
            60020,
            "not allow to access from your ip, from ip: 203.0.113.7",
        ),
        "ghost" => axum::Json(json!({
            "errcode": 0, "errmsg": "ok", "invaliduser": "ghost", "msgid": "",
        }))
        .into_response(),
        _ => {
            let msgid = format!("msgid-{}", uuid::Uuid::now_v7().simple());
            wecom.msgids.lock().unwrap().push(msgid.clone());
            axum::Json(json!({
                "errcode": 0, "errmsg": "ok", "invaliduser": "", "invalidparty": "",
                "invalidtag": "", "unlicenseduser": "", "msgid": msgid,
            }))
            .into_response()
        }
    }
}

async fn recall(
    State(wecom): State<Arc<Wecom>>,
    Query(q): Params,
    body: Bytes,
) -> axum::response::Response {
    if let Err((code, message)) = check_token(&wecom, &q) {
        return answer(code, message);
    }
    let payload: Value = serde_json::from_slice(&body).unwrap_or_default();
    let msgid = payload["msgid"].as_str().unwrap_or_default().to_owned();
    if !wecom.msgids.lock().unwrap().contains(&msgid) {
        return answer(42052, "msgid expired");
    }
    wecom.recalls.lock().unwrap().push(msgid);
    answer(0, "ok")
}

async fn robot(
    State(wecom): State<Arc<Wecom>>,
    Query(q): Params,
    body: Bytes,
) -> axum::response::Response {
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return answer(40058, "Warning: wrong json format.");
    };
    match q.get("key").map(String::as_str) {
        Some(ROBOT_KEY) => {}
        Some("limited") => return answer(45009, "api freq out of limit"),
        Some("busy") => return answer(-1, "system busy"),
        Some("down") => return (StatusCode::BAD_GATEWAY, "<html>502</html>").into_response(),
        _ => return answer(93000, "invalid webhook url"),
    }
    wecom.robot.lock().unwrap().push(payload);
    answer(0, "ok")
}

/// The fake on a free port; returns its base URL.
async fn start() -> (String, Arc<Wecom>) {
    let wecom = Arc::new(Wecom::default());
    let app = Router::new()
        .route("/cgi-bin/gettoken", get(gettoken))
        .route("/cgi-bin/message/send", post(send))
        .route("/cgi-bin/message/recall", post(recall))
        .route("/cgi-bin/webhook/send", post(robot))
        .with_state(Arc::clone(&wecom));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), wecom)
}

fn account(channel: Channel, supplier: &str, base_url: &str, secret: &str) -> AccountConfig {
    AccountConfig {
        id: supplier.to_owned(),
        channel,
        supplier: supplier.to_owned(),
        base_url: Some(base_url.to_owned()),
        weight: 1,
        settings: BTreeMap::from([
            ("corp_id".to_owned(), CORP_ID.to_owned()),
            ("agent_id".to_owned(), AGENT_ID.to_string()),
        ]),
        credentials: BTreeMap::from([("secret".to_owned(), secret.to_owned())]),
        timeout_secs: 5,
        rate_limit_per_sec: None,
        rate_limit_burst: None,
        http_supplier: None,
    }
}

/// The app supplier as the configuration builds it.
fn app(base_url: &str, secret: &str, tokens: &Tokens) -> Arc<dyn Supplier> {
    let config = account(Channel::WecomApp, "wecom_app", base_url, secret);
    let accounts = Accounts::from_config(&[config], tokens).unwrap();
    Arc::clone(&accounts.find("wecom_app").unwrap().supplier)
}

fn robot_supplier() -> Arc<dyn Supplier> {
    let mut config = account(Channel::WecomRobot, "wecom_robot", "http://unused", "");
    config.credentials.clear();
    config.settings.clear();
    let accounts = Accounts::from_config(&[config], &Tokens::in_process()).unwrap();
    Arc::clone(&accounts.find("wecom_robot").unwrap().supplier)
}

fn text(body: &str) -> TemplateContent {
    TemplateContent::Text {
        body: body.to_owned(),
    }
}

async fn deliver(
    supplier: &dyn Supplier,
    channel: Channel,
    receiver: &str,
    content: &TemplateContent,
) -> Result<Sent, SendError> {
    let tenant = TenantId::parse("acme").unwrap();
    let id_type = match channel {
        Channel::WecomRobot => ReceiverIdType::WebhookUrl,
        _ => ReceiverIdType::WecomUser,
    };
    let receiver = Receiver::parse(id_type, receiver)
        .or_else(|_| Receiver::parse(ReceiverIdType::UserId, receiver))
        .unwrap();
    let outbound = Outbound {
        message_id: MessageId::generate(),
        tenant: &tenant,
        channel,
        msg_type: MessageType::Notice,
        receiver: &receiver,
        content,
        attempt: 1,
    };
    supplier.send(&outbound).await
}

async fn recall_msgid(supplier: &dyn Supplier, msgid: Option<&str>) -> Result<Sent, SendError> {
    let tenant = TenantId::parse("acme").unwrap();
    let receiver = Receiver::parse(ReceiverIdType::WecomUser, "zhangsan").unwrap();
    let content = text("x");
    let outbound = Outbound {
        message_id: MessageId::generate(),
        tenant: &tenant,
        channel: Channel::WecomApp,
        msg_type: MessageType::Notice,
        receiver: &receiver,
        content: &content,
        attempt: 1,
    };
    supplier
        .recall(&outbound, msgid)
        .expect("wecom_app recalls")
        .await
}

fn app_with(base: &str, change: impl FnOnce(&mut AccountConfig)) -> Arc<dyn Supplier> {
    let mut config = account(Channel::WecomApp, "wecom_app", base, SECRET);
    change(&mut config);
    let accounts = Accounts::from_config(&[config], &Tokens::in_process()).unwrap();
    Arc::clone(&accounts.find("wecom_app").unwrap().supplier)
}
