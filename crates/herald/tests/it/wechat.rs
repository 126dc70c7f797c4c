//! WeChat official account end to end: a template message goes out through a fake
//! api.weixin.qq.com with a stable token, and WeChat's `TEMPLATESENDJOBFINISH` push to
//! `/callbacks/{account}` becomes its receipt. A push with a bad signature answers 401 and
//! appends nothing; a push about a message Herald never sent is acknowledged and ignored.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::routing::post;
use serde_json::{Value, json};
use store::EventStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::{TestApp, accounts_from_toml, serve_fake, spawn};
use crate::dispatch::{send, wait_for};

const APP_ID: &str = "wx1234567890abcdef";
const APP_SECRET: &str = "herald-test-app-secret";
const ACCESS_TOKEN: &str = "88_stable-1";
const CALLBACK_TOKEN: &str = "herald-callback-token";
const OPENID: &str = "oia2TjuEGTNoeX76QEjQNrcURxG8";

/// What the fake WeChat saw: template sends with the msgid each was given.
#[derive(Default)]
struct Wechat {
    sends: Mutex<Vec<Value>>,
}

fn error(code: i64, msg: &str) -> axum::Json<Value> {
    axum::Json(json!({ "errcode": code, "errmsg": msg }))
}

async fn stable_token(axum::Json(request): axum::Json<Value>) -> axum::Json<Value> {
    if request["grant_type"] != "client_credential" {
        return error(40002, "invalid grant_type");
    }
    if request["appid"] != APP_ID || request["secret"] != APP_SECRET {
        return error(40125, "invalid appsecret");
    }
    axum::Json(json!({ "access_token": ACCESS_TOKEN, "expires_in": 7200 }))
}

async fn template_send(
    State(wechat): State<Arc<Wechat>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    if query.get("access_token").map(String::as_str) != Some(ACCESS_TOKEN) {
        return error(40001, "invalid credential");
    }
    if body["template_id"] != "TPL_ORDER"
        || body["touser"] != OPENID
        || !body["client_msg_id"].is_string()
        || body["data"]["thing1"]["value"]
            .as_str()
            .is_none_or(str::is_empty)
    {
        return error(47001, "data format error");
    }
    let mut sends = wechat.sends.lock().unwrap();
    sends.push(body);
    let msgid = 200_163_835 + sends.len() as u64;
    axum::Json(json!({ "errcode": 0, "errmsg": "ok", "msgid": msgid }))
}

async fn fake() -> (String, Arc<Wechat>) {
    let wechat = Arc::new(Wechat::default());
    let router = axum::Router::new()
        .route("/cgi-bin/stable_token", post(stable_token))
        .route("/cgi-bin/message/template/send", post(template_send))
        .with_state(Arc::clone(&wechat));
    let url = serve_fake(router).await;
    (url, wechat)
}

async fn app(backend: &str, base_url: &str) -> TestApp {
    let accounts = format!(
        r#"
        [[accounts]]
        id = "wechat"
        channel = "WECHAT_OFFICIAL"
        supplier = "wechat_official"
        base_url = "{base_url}"
        settings = {{ app_id = "{APP_ID}", url = "https://example.com/orders" }}
        credentials = {{ app_secret = "{APP_SECRET}", callback_token = "{CALLBACK_TOKEN}" }}
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

/// A raw HTTP/1.1 request to Herald: status and body.
async fn http(app: &TestApp, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The query WeChat signs its pushes with.
fn signed(token: &str, timestamp: &str, nonce: &str) -> String {
    let signature = dispatch::wechat::official::callback_signature(token, timestamp, nonce);
    format!("signature={signature}&timestamp={timestamp}&nonce={nonce}")
}

fn finished(msgid: &str, status: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>\
         <FromUserName><![CDATA[{OPENID}]]></FromUserName>\
         <CreateTime>1395658920</CreateTime><MsgType><![CDATA[event]]></MsgType>\
         <Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>{msgid}</MsgID>\
         <Status><![CDATA[{status}]]></Status></xml>"
    )
}

/// Every event in the store, by count.
async fn events(app: &TestApp) -> usize {
    let mut total = 0;
    let mut at = store::Checkpoint::START;
    loop {
        let batch = app
            .store
            .read_log(at, &store::LogFilter::all(), 1000)
            .await
            .unwrap();
        if batch.events.is_empty() && !batch.blocked {
            return total;
        }
        total += batch.events.len();
        at = batch.next;
    }
}

async fn template_receipts_arrive_by_callback(backend: &str) {
    let (base_url, wechat) = fake().await;
    let app = app(backend, &base_url).await;

    let author = app.key("acme", "admin").await;
    let reviewer = app.key("acme", "admin").await;
    let key = app.key("acme", "send,read").await;
    let input = json!({ "name": "order shipped", "channel": "WECHAT_OFFICIAL", "msgType": "NOTICE",
        "content": { "kind": "SUPPLIER_TEMPLATE", "template_code": "TPL_ORDER",
                     "params": [{ "name": "thing1", "value": "${n}" }] },
        "account": "wechat", "ownerTeam": "orders" });
    let template = app
        .client()
        .approved_template(&author, &reviewer, input)
        .await;
    let sent = send(&app, &key, &template, OPENID).await;
    wait_for(&app, &sent, "MessageDispatched").await;
    let dispatched = app.store.read_stream(&sent, 2, 1).await.unwrap()[0]
        .data_json()
        .unwrap();
    assert_eq!(dispatched["supplier"], "wechat_official");
    assert_eq!(dispatched["supplier_message_id"], "200163836");
    {
        let sends = wechat.sends.lock().unwrap();
        assert_eq!(sends.len(), 1);
        assert_eq!(sends[0]["data"], json!({ "thing1": { "value": "42" } }));
        assert_eq!(sends[0]["url"], "https://example.com/orders");
    }

    // WeChat checks the server URL with a signed GET and expects echostr back.
    let query = signed(CALLBACK_TOKEN, "1700000000", "nonce-1");
    let (status, body) = http(
        &app,
        "GET",
        &format!("/callbacks/wechat?{query}&echostr=4711abc"),
        "",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "4711abc"));
    let (status, _) = http(
        &app,
        "GET",
        "/callbacks/wechat?signature=0000&timestamp=1700000000&nonce=nonce-1&echostr=4711abc",
        "",
    )
    .await;
    assert_eq!(status, 401);

    // A push signed with another token, or unsigned: 401 and nothing appended.
    let before = events(&app).await;
    let forged = signed("not-the-token", "1700000001", "nonce-2");
    let (status, _) = http(
        &app,
        "POST",
        &format!("/callbacks/wechat?{forged}"),
        &finished("200163836", "success"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = http(
        &app,
        "POST",
        "/callbacks/wechat",
        &finished("200163836", "success"),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(events(&app).await, before, "a forged push appends nothing");

    // A push about a message Herald never sent: acknowledged, nothing appended.
    let query = signed(CALLBACK_TOKEN, "1700000002", "nonce-3");
    let (status, body) = http(
        &app,
        "POST",
        &format!("/callbacks/wechat?{query}"),
        &finished("999", "success"),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "success"));
    assert_eq!(events(&app).await, before);

    // The real push: the message is delivered.
    let (status, body) = http(
        &app,
        "POST",
        &format!("/callbacks/wechat?{query}"),
        &finished("200163836", "failed:user block"),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "success"));
    assert_eq!(
        wait_for(&app, &sent, "ReceiptReceived").await,
        ["MessageAccepted", "MessageDispatched", "ReceiptReceived"]
    );
    let receipt = app.store.read_stream(&sent, 3, 1).await.unwrap()[0]
        .data_json()
        .unwrap();
    assert_eq!(receipt["outcome"], "UNDELIVERED", "{receipt}");
    assert_eq!(receipt["supplier_status"], "failed:user block", "{receipt}");

    // A push to an account that takes none, and to no account.
    let (status, _) = http(&app, "POST", "/callbacks/nobody", "").await;
    assert_eq!(status, 404);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wechat_receipts_by_callback() {
    template_receipts_arrive_by_callback("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wechat_receipts_by_callback() {
    template_receipts_arrive_by_callback("postgres").await;
}
