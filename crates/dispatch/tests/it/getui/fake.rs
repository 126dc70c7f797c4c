//! A local restapi.getui.com: it checks the auth sign, recomputed here from the request with
//! sha2; the `token` header of every push, against the tokens it issued and has not expired;
//! and the push payloads. It answers in GeTui's JSON with its codes, and counts auth calls.
//!
//! The cid's first word tells it how to answer: `online`, `offline`, `inactive`, `failed` and
//! `busy` get that per-cid status; a single push to `invalid`, `quota`, `rate`, `starting` or
//! `down` gets GeTui's bad-cid, daily-quota, rate-limit, starting-up answer or a 502.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use dispatch::accounts::AccountConfig;
use dispatch::getui::GeTui;
use dispatch::tokens::Tokens;
use domain::Channel;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const APP_ID: &str = "HeraldTestApp01";
pub const APP_KEY: &str = "heraldAppKey000000000001";
pub const MASTER_SECRET: &str = "herald-master-secret-0001";
const DAY_MS: i64 = 86_400_000;

/// One call that reached a push endpoint.
#[derive(Clone, Debug)]
pub struct Call {
    pub path: &'static str,
    pub token: String,
    pub payload: Value,
    pub accepted: bool,
}

#[derive(Default)]
pub struct Fake {
    auth_calls: AtomicUsize,
    /// The tokens GeTui accepts now.
    valid: Mutex<HashSet<String>>,
    /// Refuse every token, fresh ones too.
    pub refuse_all: AtomicBool,
    calls: Mutex<Vec<Call>>,
}

impl Fake {
    pub fn auth_calls(&self) -> usize {
        self.auth_calls.load(Ordering::SeqCst)
    }

    /// GeTui forgets every token it issued, as when they expire.
    pub fn expire_tokens(&self) {
        self.valid.lock().unwrap().clear();
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

/// GeTui's refusal of a request: HTTP status, code, msg.
struct Refusal(StatusCode, i64, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        answer(self.0, self.1, &self.2, None)
    }
}

fn answer(status: StatusCode, code: i64, msg: &str, data: Option<Value>) -> Response {
    let mut body = json!({"code": code, "msg": msg});
    if let Some(data) = data {
        body["data"] = data;
    }
    (status, axum::Json(body)).into_response()
}

fn refuse(status: StatusCode, code: i64, msg: &str) -> Refusal {
    Refusal(status, code, msg.to_owned())
}

fn invalid(param: &str) -> Refusal {
    refuse(
        StatusCode::BAD_REQUEST,
        20001,
        &format!("{param} is invalid"),
    )
}

/// A JSON body; anything else is GeTui's code 1.
fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, Refusal> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Err(refuse(StatusCode::OK, 1, "失败"));
    }
    serde_json::from_slice(body).map_err(|_| refuse(StatusCode::OK, 1, "失败"))
}

async fn auth(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let payload = json_body(&headers, &body)?;
    let (Some(appkey), Some(timestamp), Some(sign)) = (
        payload["appkey"].as_str(),
        payload["timestamp"].as_str(),
        payload["sign"].as_str(),
    ) else {
        return Err(invalid("appkey, timestamp or sign"));
    };
    if appkey != APP_KEY {
        return Err(invalid("appkey"));
    }
    let now = chrono::Utc::now().timestamp_millis();
    if timestamp.len() != 13
        || timestamp
            .parse::<i64>()
            .map_or(true, |t| (now - t).abs() > 600_000)
    {
        return Err(invalid("timestamp"));
    }
    let expected: String = Sha256::digest(format!("{appkey}{timestamp}{MASTER_SECRET}"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if sign != expected {
        return Err(invalid("sign"));
    }
    let n = fake.auth_calls.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("tok-{n}");
    fake.valid.lock().unwrap().insert(token.clone());
    Ok(answer(
        StatusCode::OK,
        0,
        "success",
        Some(json!({"expire_time": (now + DAY_MS).to_string(), "token": token})),
    ))
}

/// Records the call and checks its token.
fn check_token(
    fake: &Fake,
    path: &'static str,
    headers: &HeaderMap,
    payload: &Value,
) -> Result<(), Refusal> {
    let token = headers
        .get("token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let accepted =
        !fake.refuse_all.load(Ordering::SeqCst) && fake.valid.lock().unwrap().contains(&token);
    fake.calls.lock().unwrap().push(Call {
        path,
        token,
        payload: payload.clone(),
        accepted,
    });
    if accepted {
        Ok(())
    } else {
        Err(refuse(StatusCode::UNAUTHORIZED, 10001, "token错误/失效"))
    }
}

/// What GeTui checks of one push; `Ok` is its cid.
fn check_push(push: &Value) -> Result<String, Refusal> {
    let request_id = push["request_id"].as_str().unwrap_or("");
    if !(10..=32).contains(&request_id.len()) {
        return Err(invalid("request_id"));
    }
    let ttl = push["settings"]["ttl"].as_i64().unwrap_or(i64::MIN);
    if !(-1..=3 * DAY_MS).contains(&ttl) {
        return Err(invalid("ttl"));
    }
    let cids = push["audience"]["cid"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let [Value::String(cid)] = &cids[..] else {
        return Err(invalid("cid"));
    };
    let notification = &push["push_message"]["notification"];
    let chars = |field: &str| notification[field].as_str().map(|s| s.chars().count());
    if !chars("title").is_some_and(|n| (1..=50).contains(&n)) {
        return Err(invalid("title"));
    }
    if !chars("body").is_some_and(|n| (1..=256).contains(&n)) {
        return Err(invalid("body"));
    }
    match notification["click_type"].as_str() {
        Some("url") if chars("url").is_some_and(|n| (1..=1024).contains(&n)) => {}
        Some("startapp") if notification.get("url").is_none() => {}
        _ => return Err(invalid("click_type")),
    }
    Ok(cid.clone())
}

/// The per-cid status, told by the cid's first word.
fn status(cid: &str) -> &'static str {
    match cid.split('-').next().unwrap_or("") {
        "offline" => "successed_offline",
        "inactive" => "successed_ignore",
        "failed" => "failed",
        "busy" => "busy",
        _ => "successed_online",
    }
}

fn task_id(push: &Value) -> String {
    format!("RASS_0101_{}", push["request_id"].as_str().unwrap_or(""))
}

async fn single(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let payload = json_body(&headers, &body)?;
    check_token(&fake, "single", &headers, &payload)?;
    let cid = check_push(&payload)?;
    match cid.split('-').next().unwrap_or("") {
        // GeTui's message for a bad cid does not follow the `{param} is invalid` pattern.
        "invalid" => Err(refuse(
            StatusCode::BAD_REQUEST,
            20001,
            "target user is invalid",
        )),
        "quota" => Err(refuse(
            StatusCode::FORBIDDEN,
            30009,
            "推送次数超过每日推送总数限制",
        )),
        "rate" => Err(refuse(
            StatusCode::UNAUTHORIZED,
            10005,
            "每分钟调用频率超限",
        )),
        "starting" => Err(refuse(StatusCode::OK, 2, "服务正在启动")),
        "down" => Ok((StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response()),
        _ => Ok(answer(
            StatusCode::OK,
            0,
            "",
            Some(json!({task_id(&payload): {cid.clone(): status(&cid)}})),
        )),
    }
}

async fn batch(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let payload = json_body(&headers, &body)?;
    check_token(&fake, "batch", &headers, &payload)?;
    let list = payload["msg_list"].as_array().cloned().unwrap_or_default();
    if !(1..=200).contains(&list.len()) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            20001,
            "msg_list size over limit",
        ));
    }
    let mut data = serde_json::Map::new();
    let mut cids = HashSet::new();
    for push in &list {
        let cid = check_push(push)?;
        if !cids.insert(cid.clone()) {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                20001,
                "contains duplicate cid",
            ));
        }
        data.insert(task_id(push), json!({cid.clone(): status(&cid)}));
    }
    // An asynchronous batch is answered without its details.
    if payload["is_async"] == json!(true) {
        return Ok(answer(StatusCode::OK, 0, "", None));
    }
    Ok(answer(StatusCode::OK, 0, "", Some(Value::Object(data))))
}

/// Starts the fake on a free loopback port.
pub async fn start() -> (SocketAddr, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let app = Router::new()
        .route(&format!("/v2/{APP_ID}/auth"), post(auth))
        .route(&format!("/v2/{APP_ID}/push/single/cid"), post(single))
        .route(&format!("/v2/{APP_ID}/push/single/batch/cid"), post(batch))
        .fallback(|| async { answer(StatusCode::NOT_FOUND, 404, "url错误", None) })
        .with_state(Arc::clone(&fake));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, fake)
}

/// The account, with `master_secret` as its secret.
pub fn config(address: SocketAddr, master_secret: &str) -> AccountConfig {
    AccountConfig {
        id: "getui".to_owned(),
        channel: Channel::Push,
        supplier: "getui".to_owned(),
        base_url: Some(format!("http://{address}/v2")),
        weight: 1,
        settings: BTreeMap::from([
            ("app_id".to_owned(), APP_ID.to_owned()),
            ("default_title".to_owned(), "Herald".to_owned()),
        ]),
        credentials: BTreeMap::from([
            ("app_key".to_owned(), APP_KEY.to_owned()),
            ("master_secret".to_owned(), master_secret.to_owned()),
        ]),
        timeout_secs: 5,
        rate_limit_per_sec: None,
        rate_limit_burst: None,
        http_supplier: None,
    }
}

/// The supplier of the account with the right secret, with tokens of its own.
pub fn supplier(address: SocketAddr) -> Arc<GeTui> {
    Arc::new(GeTui::from_account(&config(address, MASTER_SECRET), &Tokens::in_process()).unwrap())
}
