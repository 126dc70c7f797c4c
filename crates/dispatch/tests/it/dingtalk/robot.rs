//! `dingtalk_robot` against a fake `/robot/send` that knows its robots by access token, checks
//! each one's security setting the way DingTalk does (the signature recomputed here from the
//! query as received, within an hour; or a keyword in the content) and keeps what it accepts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use chrono::Utc;
use dispatch::tokens::Tokens;
use dispatch::{SendError, Supplier};
use domain::{Channel, ReceiverIdType};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Message, card, class, markdown, serve, supplier, text};

const SECRET: &str = "SEC1f2e3d4c5b6a79880f1e2d3c4b5a69788f0e1d2c3b4a5968778695a4b3c2d1e0";

/// Robots by access token: how each guards itself.
enum Guard {
    /// 加签 with this secret.
    Signed(&'static str),
    /// A keyword the content must hold.
    Keyword(&'static str),
    /// Answers this errcode whatever comes.
    Refuses(i64, &'static str),
}

fn robots() -> HashMap<&'static str, Guard> {
    HashMap::from([
        ("signed", Guard::Signed(SECRET)),
        ("keyword", Guard::Keyword("Build")),
        (
            "fast",
            Guard::Refuses(130101, "send too fast, exceed 20 times per minute"),
        ),
        ("busy", Guard::Refuses(-1, "系统繁忙")),
        ("stopped", Guard::Refuses(400102, "机器人已停用")),
    ])
}

#[derive(Default)]
struct Seen {
    /// Accepted messages: access token, query parameter names, payload.
    accepted: Vec<(String, Vec<String>, Value)>,
    refused: Vec<i64>,
}

type Shared = Arc<Mutex<Seen>>;

fn answer(code: i64, message: &str) -> Response {
    axum::Json(json!({ "errcode": code, "errmsg": message })).into_response()
}

/// The signature, written out again here so that the fake does not trust the code under test.
fn expected_sign(secret: &str, timestamp: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Every string in the payload, for the keyword check (DingTalk looks in the whole message).
fn strings(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => out.push_str(s),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// Whether the payload has what its `msgtype` requires.
fn well_formed(payload: &Value) -> bool {
    let has = |object: &str, fields: &[&str]| {
        fields
            .iter()
            .all(|f| payload[object][*f].as_str().is_some_and(|s| !s.is_empty()))
    };
    match payload["msgtype"].as_str() {
        Some("text") => has("text", &["content"]),
        Some("markdown") => has("markdown", &["title", "text"]),
        Some("link") => has("link", &["title", "text", "messageUrl"]),
        Some("actionCard") => has("actionCard", &["title", "text", "singleTitle", "singleURL"]),
        _ => false,
    }
}

async fn robot_send(
    State(seen): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut seen = seen.lock().unwrap();
    let robots = robots();
    let token = query.get("access_token").cloned().unwrap_or_default();
    let refuse = |seen: &mut Seen, code: i64, message: &str| {
        seen.refused.push(code);
        answer(code, message)
    };
    let Some(guard) = robots.get(token.as_str()) else {
        return refuse(&mut seen, 300001, "token is not exist");
    };
    let json_body = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return refuse(&mut seen, 40035, "缺少参数 json");
    };
    if !json_body || !well_formed(&payload) {
        return refuse(&mut seen, 40035, "缺少参数 json");
    }
    match guard {
        Guard::Refuses(code, message) => return refuse(&mut seen, *code, message),
        Guard::Signed(secret) => {
            let timestamp = query.get("timestamp").cloned().unwrap_or_default();
            let fresh = timestamp
                .parse::<i64>()
                .is_ok_and(|ms| (Utc::now().timestamp_millis() - ms).abs() < 3_600_000);
            if !fresh {
                return refuse(&mut seen, 310000, "invalid timestamp");
            }
            // `Query` has undone the URL encoding, as DingTalk's server does.
            if query.get("sign") != Some(&expected_sign(secret, &timestamp)) {
                return refuse(&mut seen, 310000, "sign not match");
            }
        }
        Guard::Keyword(keyword) => {
            let mut all = String::new();
            strings(&payload, &mut all);
            if !all.contains(keyword) {
                return refuse(&mut seen, 310000, "keywords not in content");
            }
        }
    }
    let mut names: Vec<String> = query.keys().cloned().collect();
    names.sort();
    seen.accepted.push((token, names, payload));
    answer(0, "ok")
}

async fn start() -> (String, Shared) {
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route("/robot/send", post(robot_send))
        .route(
            "/down/robot/send",
            post(|| async { (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>") }),
        )
        .with_state(Arc::clone(&seen));
    (serve(app).await, seen)
}

fn robot(secret: Option<&str>) -> Arc<dyn Supplier> {
    let mut config = json!({
        "id": "robot",
        "channel": "DINGTALK_ROBOT",
        "supplier": "dingtalk_robot",
        "timeout_secs": 2,
    });
    if let Some(secret) = secret {
        config["credentials"] = json!({ "secret": secret });
    }
    let supplier = supplier(config, &Tokens::in_process());
    assert_eq!(supplier.name(), "dingtalk_robot");
    assert!(supplier.supports(Channel::DingtalkRobot) && !supplier.supports(Channel::DingtalkWork));
    supplier
}

fn to(url: &str, content: domain::TemplateContent) -> Message {
    Message::new(
        Channel::DingtalkRobot,
        ReceiverIdType::WebhookUrl,
        url,
        content,
    )
}

#[tokio::test]
async fn messages_reach_a_signing_robot_as_text_markdown_and_link() {
    let (base, seen) = start().await;
    let robot = robot(Some(SECRET));
    let group = format!("{base}/robot/send?access_token=signed");
    for content in [
        text("Build 42 finished"),
        markdown("Build 42", "**finished** in 3 minutes"),
        card("Build 42", "finished", Some("https://ci.example.com/42")),
        card("Build 42", "finished", None),
    ] {
        let sent = to(&group, content).send(robot.as_ref()).await.unwrap();
        // Robots give no message id: nothing to recall or ask about.
        assert_eq!(sent.supplier_message_id, None);
    }
    let seen = seen.lock().unwrap();
    assert!(seen.refused.is_empty(), "{:?}", seen.refused);
    let payloads: Vec<&Value> = seen.accepted.iter().map(|(_, _, p)| p).collect();
    assert_eq!(
        payloads,
        [
            &json!({ "msgtype": "text", "text": { "content": "Build 42 finished" } }),
            &json!({ "msgtype": "markdown", "markdown": {
                "title": "Build 42", "text": "**finished** in 3 minutes" } }),
            &json!({ "msgtype": "link", "link": {
                "title": "Build 42", "text": "finished", "messageUrl": "https://ci.example.com/42" } }),
            &json!({ "msgtype": "markdown", "markdown": {
                "title": "Build 42", "text": "#### Build 42\n\nfinished" } }),
        ]
    );
    for (token, names, _) in &seen.accepted {
        assert_eq!(token, "signed");
        assert_eq!(names, &["access_token", "sign", "timestamp"]);
    }
}

#[tokio::test]
async fn an_account_without_a_secret_posts_unsigned() {
    let (base, seen) = start().await;
    let robot = robot(None);
    let group = format!("{base}/robot/send?access_token=keyword");
    to(&group, text("Build 42 finished"))
        .send(robot.as_ref())
        .await
        .unwrap();
    // The keyword robot refuses content without its keyword: the message's fault, final.
    let error = to(&group, text("all good"))
        .send(robot.as_ref())
        .await
        .unwrap_err();
    assert_eq!(class(&error), ("final", "310000"));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.accepted.len(), 1);
    assert_eq!(seen.accepted[0].1, ["access_token"]);
}

#[tokio::test]
async fn a_wrong_or_missing_secret_is_refused() {
    let (base, seen) = start().await;
    let group = format!("{base}/robot/send?access_token=signed");
    let wrong = robot(Some("SECnot-the-robots-secret"))
        .send(&to(&group, text("Build 42")).outbound())
        .await
        .unwrap_err();
    assert_eq!(class(&wrong), ("final", "310000"));
    assert!(wrong.to_string().contains("sign not match"), "{wrong}");
    let unsigned = robot(None)
        .send(&to(&group, text("Build 42")).outbound())
        .await
        .unwrap_err();
    assert_eq!(class(&unsigned), ("final", "310000"));
    let seen = seen.lock().unwrap();
    assert!(seen.accepted.is_empty());
    assert_eq!(seen.refused, [310000, 310000]);
}

#[tokio::test]
async fn robot_errors_are_classified_without_leaking_the_webhook() {
    let (base, _seen) = start().await;
    let robot = robot(Some(SECRET));
    let error = |token: &str| {
        let message = to(
            &format!("{base}/robot/send?access_token={token}"),
            text("Build 42"),
        );
        let robot = Arc::clone(&robot);
        async move { message.send(robot.as_ref()).await.unwrap_err() }
    };

    let fast = error("fast").await;
    assert_eq!(class(&fast), ("throttled", "130101"));
    assert!(matches!(
        fast,
        SendError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(60)
    ));
    assert_eq!(class(&error("busy").await), ("retryable", "-1"));
    assert_eq!(class(&error("stopped").await), ("final", "400102"));
    let unknown = error("e8d0c1a2b3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2").await;
    assert_eq!(class(&unknown), ("final", "300001"));
    // The access token is the robot's credential: an error never shows it.
    assert!(!unknown.to_string().contains("e8d0c1a2b3f4"), "{unknown}");

    // Not DingTalk's JSON: the HTTP status decides.
    let down = to(
        &format!("{base}/down/robot/send?access_token=signed"),
        text("x"),
    )
    .send(robot.as_ref())
    .await
    .unwrap_err();
    assert_eq!(class(&down), ("retryable", "HTTP_502"));

    // Nobody listening: retryable, and the signed URL stays out of the message.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let gone = to(
        &format!("http://{closed}/robot/send?access_token=secret-robot-token"),
        text("x"),
    )
    .send(robot.as_ref())
    .await
    .unwrap_err();
    assert_eq!(class(&gone), ("retryable", "CONNECT"));
    assert!(
        !gone.to_string().contains("secret-robot-token") && !gone.to_string().contains("sign="),
        "{gone}"
    );

    // Receivers that are no http(s) webhook, and content a robot cannot post.
    let ftp = Message::new(
        Channel::DingtalkRobot,
        ReceiverIdType::UserId,
        "ftp://oapi.dingtalk.com/robot/send?access_token=signed",
        text("x"),
    );
    assert_eq!(
        class(&ftp.send(robot.as_ref()).await.unwrap_err()),
        ("final", "INVALID_WEBHOOK")
    );
    let email = to(
        &format!("{base}/robot/send?access_token=signed"),
        domain::TemplateContent::Email {
            subject: "s".into(),
            html: None,
            text: Some("t".into()),
            attachments: Vec::new(),
        },
    );
    assert_eq!(
        class(&email.send(robot.as_ref()).await.unwrap_err()),
        ("final", "UNSUPPORTED_CONTENT")
    );
}
