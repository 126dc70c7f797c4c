//! A local api.weixin.qq.com: stable tokens handed out the way WeChat does (normal mode keeps
//! the current token, force mode revokes it), the token checked on every send, the payloads
//! checked as WeChat checks them, and answers in WeChat's JSON with its error codes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};

pub(super) const APP_ID: &str = "wx1234567890abcdef";
pub(super) const APP_SECRET: &str = "herald-test-app-secret";
pub(super) const OPENID: &str = "oia2TjuEGTNoeX76QEjQNrcURxG8";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Health {
    Valid,
    /// WeChat answers 42001, and normal mode hands out a new token.
    Expired,
    /// WeChat answers 40001, yet normal mode still hands it out: only force mode replaces it.
    Revoked,
}

/// What the fake WeChat knows and saw.
#[derive(Default)]
pub(super) struct Fake {
    pub(super) token_calls: usize,
    pub(super) force_calls: usize,
    pub(super) current: Option<String>,
    pub(super) tokens: HashMap<String, Health>,
    /// Every token refused with 40001, whatever its health.
    pub(super) refuse_all: bool,
    /// Sends refused for their token: (token, errcode).
    pub(super) refused: Vec<(String, i64)>,
    /// Sends that passed the token check: (path, token, body).
    pub(super) sent: Vec<(String, String, Value)>,
}

pub(super) type Shared = Arc<Mutex<Fake>>;

fn error(code: i64, msg: &str) -> axum::response::Response {
    axum::Json(json!({"errcode": code, "errmsg": format!("{msg} rid: 6601a2b3-1c2d3e4f-5a6b7c8d")}))
        .into_response()
}

/// `POST /cgi-bin/stable_token`: checks grant_type, appid and secret; normal mode hands out the
/// current token while it has not expired, force mode revokes it and issues another.
async fn stable_token(
    State(fake): State<Shared>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(47001, "data format error");
    };
    if request["grant_type"] != "client_credential" {
        return error(40002, "invalid grant_type");
    }
    if request["appid"] != APP_ID {
        return error(40013, "invalid appid");
    }
    if request["secret"] != APP_SECRET {
        return error(40125, "invalid appsecret");
    }
    let force = match request.get("force_refresh") {
        None => false,
        Some(Value::Bool(force)) => *force,
        Some(_) => return error(47001, "data format error"),
    };
    let mut fake = fake.lock().unwrap();
    fake.token_calls += 1;
    fake.force_calls += usize::from(force);
    let reusable = fake
        .current
        .clone()
        .filter(|t| !force && fake.tokens[t] != Health::Expired);
    let token = match reusable {
        Some(token) => token,
        None => {
            // Force mode revokes the token it replaces; an expired one stays expired.
            if let Some(old) = fake.current.clone().filter(|_| force) {
                fake.tokens.insert(old, Health::Revoked);
            }
            let token = format!("88_stable-{}", fake.token_calls);
            fake.tokens.insert(token.clone(), Health::Valid);
            fake.current = Some(token.clone());
            token
        }
    };
    axum::Json(json!({"access_token": token, "expires_in": 7200})).into_response()
}

/// The token check every API call makes; `None` when the token is good.
fn check_token(
    fake: &mut Fake,
    query: &HashMap<String, String>,
) -> Option<axum::response::Response> {
    let token = query.get("access_token").cloned().unwrap_or_default();
    let (code, msg) = match fake.tokens.get(&token) {
        None if token.is_empty() => (41001, "access_token missing"),
        None => (40014, "invalid access_token"),
        Some(_) if fake.refuse_all => (
            40001,
            "invalid credential, access_token is invalid or not latest",
        ),
        Some(Health::Expired) => (42001, "access_token expired"),
        Some(Health::Revoked) => (
            40001,
            "invalid credential, access_token is invalid or not latest",
        ),
        Some(Health::Valid) => return None,
    };
    fake.refused.push((token, code));
    Some(error(code, msg))
}

/// `data` must be `{name: {value: string}}`; the name of the first empty value otherwise.
fn check_data(data: &Value) -> Result<(), String> {
    let fields = data.as_object().ok_or_else(|| "data".to_owned())?;
    for (name, field) in fields {
        if field.as_object().map(|f| f.len()) != Some(1)
            || field["value"].as_str().is_none_or(str::is_empty)
        {
            return Err(name.clone());
        }
    }
    Ok(())
}

/// `POST /cgi-bin/message/template/send`.
async fn template_send(
    State(fake): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    axum::Json(body): axum::Json<Value>,
) -> axum::response::Response {
    let mut fake = fake.lock().unwrap();
    if let Some(refusal) = check_token(&mut fake, &query) {
        return refusal;
    }
    let token = query["access_token"].clone();
    fake.sent.push(("template".to_owned(), token, body.clone()));
    if !body["client_msg_id"].is_string() || body.get("url").is_some_and(|u| !u.is_string()) {
        return error(47001, "data format error");
    }
    if check_data(&body["data"]).is_err() {
        return error(47001, "data format error");
    }
    match (
        body["touser"].as_str().unwrap_or(""),
        body["template_id"].as_str().unwrap_or(""),
    ) {
        ("o-not-ours", _) | ("", _) => error(40003, "invalid openid"),
        ("o-unfollowed", _) => error(43004, "require subscribe"),
        (_, "TPL_QUOTA") => error(45009, "reach max api daily quota limit"),
        (_, "TPL_BUSY") => error(-1, "system error"),
        (_, "TPL_ORDER") => {
            axum::Json(json!({"errcode": 0, "errmsg": "ok", "msgid": 200_163_836})).into_response()
        }
        _ => error(40037, "invalid template_id"),
    }
}

/// `POST /cgi-bin/message/subscribe/send`.
async fn subscribe_send(
    State(fake): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    axum::Json(body): axum::Json<Value>,
) -> axum::response::Response {
    let mut fake = fake.lock().unwrap();
    if let Some(refusal) = check_token(&mut fake, &query) {
        return refusal;
    }
    let token = query["access_token"].clone();
    fake.sent
        .push(("subscribe".to_owned(), token, body.clone()));
    if !matches!(
        body["miniprogram_state"].as_str(),
        Some("developer" | "trial" | "formal")
    ) || !matches!(
        body["lang"].as_str(),
        Some("zh_CN" | "en_US" | "zh_HK" | "zh_TW")
    ) {
        return error(47001, "data format error");
    }
    if let Err(name) = check_data(&body["data"]) {
        return error(
            47003,
            &format!("argument invalid! data.{name}.value is empty"),
        );
    }
    match (
        body["touser"].as_str().unwrap_or(""),
        body["template_id"].as_str().unwrap_or(""),
    ) {
        ("o-not-ours", _) | ("", _) => error(40003, "invalid openid"),
        ("o-refused", _) => error(43101, "user refuse to accept the msg"),
        (_, "SUB_QUOTA") => error(45009, "reach max api daily quota limit"),
        (_, "SUB_ORDER") => axum::Json(
            json!({"errcode": 0, "errmsg": "ok", "msgid": 3_248_682_510_344_192_008_u64}),
        )
        .into_response(),
        _ => error(40037, "invalid template_id"),
    }
}

pub(super) async fn start() -> (SocketAddr, Shared) {
    let fake: Shared = Arc::default();
    let app = Router::new()
        .route("/cgi-bin/stable_token", post(stable_token))
        .route("/cgi-bin/message/template/send", post(template_send))
        .route("/cgi-bin/message/subscribe/send", post(subscribe_send))
        .with_state(Arc::clone(&fake));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, fake)
}
