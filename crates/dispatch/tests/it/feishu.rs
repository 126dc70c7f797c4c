//! The Feishu robot supplier against local custom robots that check the body's `sign` the way
//! Feishu does, recomputed here from the `timestamp` and the robot's secret, and answer in
//! Feishu's JSON with its error codes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dispatch::accounts::{AccountConfig, Accounts};
use dispatch::tokens::Tokens;
use dispatch::{Outbound, SendError, Sent, Supplier};
use domain::{
    Channel, MessageId, MessageType, Receiver, ReceiverIdType, TemplateContent, TenantId,
};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "herald-feishu-robot-secret";

/// The bodies that passed the robot's checks, by hook.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

fn answer(status: StatusCode, body: Value) -> axum::response::Response {
    (status, axum::Json(body)).into_response()
}

fn refuse(code: i64, msg: &str) -> axum::response::Response {
    answer(
        StatusCode::OK,
        json!({"code": code, "data": {}, "msg": msg}),
    )
}

/// Feishu's check: `sign` is base64(HMAC-SHA256(key = "{timestamp}\n{secret}", "")) and the
/// timestamp (seconds, as a string) is within an hour of now.
fn signed(body: &Value) -> bool {
    let Some(timestamp) = body["timestamp"].as_str() else {
        return false;
    };
    let Ok(seconds) = timestamp.parse::<i64>() else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - seconds).abs() > 3600 {
        return false;
    }
    let key = format!("{timestamp}\n{SECRET}");
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
    body["sign"].as_str() == Some(STANDARD.encode(mac.finalize().into_bytes()).as_str())
}

/// The shapes Feishu accepts; anything else is a 400 with code 9499.
fn well_formed(body: &Value) -> bool {
    match body["msg_type"].as_str() {
        Some("text") => body["content"]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        // Rich text: a title and paragraphs of text and link tags, in one language at least.
        Some("post") => body["content"]["post"]["zh_cn"]["content"]
            .as_array()
            .is_some_and(|paragraphs| {
                !paragraphs.is_empty()
                    && paragraphs.iter().all(|p| {
                        p.as_array().is_some_and(|tags| {
                            tags.iter().all(|t| match t["tag"].as_str() {
                                Some("text") => t["text"].is_string(),
                                Some("a") => t["text"].is_string() && t["href"].is_string(),
                                _ => false,
                            })
                        })
                    })
            }),
        Some("interactive") => {
            body["card"]["header"]["title"]["content"].is_string()
                && body["card"]["elements"]
                    .as_array()
                    .is_some_and(|e| !e.is_empty())
        }
        _ => false,
    }
}

/// A robot per hook: `signed` and `legacy` check the signature (and `legacy` answers like an
/// old robot), `open` has no signature check, `keyword` wants "Herald" in the text; the rest
/// answer with Feishu's refusals.
async fn robot(
    State(seen): State<Seen>,
    Path(hook): Path<String>,
    raw: Bytes,
) -> axum::response::Response {
    let Ok(body) = serde_json::from_slice::<Value>(&raw) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"code": 9499, "msg": "Bad Request", "data": {}}),
        );
    };
    let checks_sign = matches!(hook.as_str(), "signed" | "legacy" | "keyword");
    if checks_sign && !signed(&body) {
        return refuse(
            19021,
            "sign match fail or timestamp is not within one hour from current time",
        );
    }
    if !well_formed(&body) {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"code": 9499, "msg": "Bad Request", "data": {}}),
        );
    }
    seen.lock().unwrap().push((hook.clone(), body.clone()));
    match hook.as_str() {
        "signed" | "open" => answer(
            StatusCode::OK,
            json!({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}),
        ),
        "legacy" => answer(
            StatusCode::OK,
            json!({"Extra": null, "StatusCode": 0, "StatusMessage": "success"}),
        ),
        "keyword"
            if body["content"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("Herald")) =>
        {
            refuse(0, "success")
        }
        "keyword" => refuse(19024, "Key Words Not Found"),
        "ip" => refuse(19022, "Ip Not Allowed"),
        "busy" => refuse(
            11232,
            "frequency limited psm[lark.oapi.app_platform_runtime]appID[1500]",
        ),
        "too-many" => answer(
            StatusCode::OK,
            json!({"StatusCode": 0, "StatusMessage": "", "code": 9499, "msg": "too many request"}),
        ),
        "disabled" => refuse(19007, "Bot Not Enabled"),
        "down" => (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response(),
        _ => refuse(
            19001,
            "param invalid: incoming webhook access token invalid",
        ),
    }
}

async fn start() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/open-apis/bot/v2/hook/{hook}", post(robot))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, seen)
}

/// The supplier as the configuration builds it; `secret: None` for robots without 签名校验.
fn supplier(secret: Option<&str>) -> Arc<dyn Supplier> {
    supplier_with(secret, &[])
}

fn supplier_with(secret: Option<&str>, settings: &[(&str, &str)]) -> Arc<dyn Supplier> {
    let mut config = AccountConfig {
        id: "feishu".to_owned(),
        channel: Channel::FeishuRobot,
        supplier: "feishu_robot".to_owned(),
        base_url: None,
        weight: 1,
        settings: BTreeMap::from([("button_text".to_owned(), "Open".to_owned())]),
        credentials: secret
            .map(|s| BTreeMap::from([("secret".to_owned(), s.to_owned())]))
            .unwrap_or_default(),
        timeout_secs: 2,
        rate_limit_per_sec: None,
        rate_limit_burst: None,
        http_supplier: None,
    };
    for (name, value) in settings {
        config
            .settings
            .insert((*name).to_owned(), (*value).to_owned());
    }
    let accounts = Accounts::from_config(&[config], &Tokens::in_process()).unwrap();
    let supplier = Arc::clone(&accounts.find("feishu").unwrap().supplier);
    assert_eq!(supplier.name(), "feishu_robot");
    assert!(supplier.supports(Channel::FeishuRobot) && !supplier.supports(Channel::WecomRobot));
    supplier
}

fn hook(address: SocketAddr, name: &str) -> Receiver {
    Receiver::parse(
        ReceiverIdType::WebhookUrl,
        &format!("http://{address}/open-apis/bot/v2/hook/{name}"),
    )
    .unwrap()
}

async fn send(
    supplier: &dyn Supplier,
    receiver: &Receiver,
    content: &TemplateContent,
) -> Result<Sent, SendError> {
    let tenant = TenantId::parse("acme").unwrap();
    let outbound = Outbound {
        message_id: MessageId::generate(),
        tenant: &tenant,
        channel: Channel::FeishuRobot,
        msg_type: MessageType::Notice,
        receiver,
        content,
        attempt: 1,
    };
    supplier.send(&outbound).await
}

fn text(body: &str) -> TemplateContent {
    TemplateContent::Text {
        body: body.to_owned(),
    }
}

#[tokio::test]
async fn a_text_message_carries_the_signature_feishu_recomputes() {
    let (address, seen) = start().await;
    let supplier = supplier(Some(SECRET));
    let sent = send(
        supplier.as_ref(),
        &hook(address, "signed"),
        &text("Deploy finished"),
    )
    .await
    .unwrap();
    assert_eq!(sent.supplier_message_id, None);

    let seen = seen.lock().unwrap();
    let (hook, body) = &seen[0];
    assert_eq!(hook, "signed");
    let mut fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["content", "msg_type", "sign", "timestamp"]);
    assert_eq!(body["msg_type"], "text");
    assert_eq!(body["content"], json!({"text": "Deploy finished"}));
    let timestamp: i64 = body["timestamp"].as_str().unwrap().parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() <= 5);
}

#[tokio::test]
async fn markdown_and_cards_are_sent_as_interactive_cards() {
    let (address, seen) = start().await;
    let supplier = supplier(Some(SECRET));
    let markdown = TemplateContent::Markdown {
        title: "Release 1.4".to_owned(),
        body: "**3** services updated\n- api\n- dispatch".to_owned(),
    };
    let card = TemplateContent::Card {
        title: "Order #42 shipped".to_owned(),
        body: "Arrives *Friday*".to_owned(),
        url: Some("https://example.com/orders/42".to_owned()),
    };
    let plain_card = TemplateContent::Card {
        title: "No link".to_owned(),
        body: "Nothing to open".to_owned(),
        url: None,
    };
    for content in [&markdown, &card, &plain_card] {
        let sent = send(supplier.as_ref(), &hook(address, "signed"), content).await;
        assert!(sent.is_ok(), "{sent:?}");
    }

    let seen = seen.lock().unwrap();
    let cards: Vec<&Value> = seen.iter().map(|(_, body)| &body["card"]).collect();
    assert!(
        seen.iter()
            .all(|(_, body)| body["msg_type"] == "interactive")
    );
    assert_eq!(
        cards[0],
        &json!({
            "config": {"wide_screen_mode": true},
            "header": {"title": {"tag": "plain_text", "content": "Release 1.4"}},
            "elements": [{"tag": "markdown", "content": "**3** services updated\n- api\n- dispatch"}],
        })
    );
    assert_eq!(
        cards[1],
        &json!({
            "config": {"wide_screen_mode": true},
            "header": {"title": {"tag": "plain_text", "content": "Order #42 shipped"}},
            "elements": [
                {"tag": "markdown", "content": "Arrives *Friday*"},
                {"tag": "action", "actions": [{
                    "tag": "button",
                    "text": {"tag": "plain_text", "content": "Open"},
                    "type": "primary",
                    "url": "https://example.com/orders/42",
                }]},
            ],
        })
    );
    assert_eq!(cards[2]["elements"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn markdown_goes_as_a_post_when_the_account_asks() {
    let (address, seen) = start().await;
    let supplier = supplier_with(Some(SECRET), &[("markdown", "post")]);
    let markdown = TemplateContent::Markdown {
        title: "Release 1.4".to_owned(),
        body: "3 services updated\nNotes: [changelog](https://example.com/1.4) and [x] done"
            .to_owned(),
    };
    let sent = send(supplier.as_ref(), &hook(address, "signed"), &markdown).await;
    assert!(sent.is_ok(), "{sent:?}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].1["content"],
        json!({"post": {"zh_cn": {"title": "Release 1.4", "content": [
            [{"tag": "text", "text": "3 services updated"}],
            [
                {"tag": "text", "text": "Notes: "},
                {"tag": "a", "text": "changelog", "href": "https://example.com/1.4"},
                {"tag": "text", "text": " and [x] done"},
            ],
        ]}}})
    );
    assert!(signed(&seen[0].1));

    let mut bad = AccountConfig {
        id: "feishu".to_owned(),
        channel: Channel::FeishuRobot,
        supplier: "feishu_robot".to_owned(),
        base_url: None,
        weight: 1,
        settings: BTreeMap::from([("markdown".to_owned(), "html".to_owned())]),
        credentials: BTreeMap::new(),
        timeout_secs: 2,
        rate_limit_per_sec: None,
        rate_limit_burst: None,
        http_supplier: None,
    };
    let refused = Accounts::from_config(std::slice::from_ref(&bad), &Tokens::in_process());
    let Err(error) = refused else {
        panic!("settings.markdown = \"html\" was taken");
    };
    assert!(error.to_string().contains("settings.markdown"), "{error}");
    bad.settings.clear();
    assert!(Accounts::from_config(&[bad], &Tokens::in_process()).is_ok());
}

#[tokio::test]
async fn a_robot_without_the_signature_check_gets_no_sign() {
    let (address, seen) = start().await;
    let sent = send(supplier(None).as_ref(), &hook(address, "open"), &text("hi")).await;
    assert!(sent.is_ok(), "{sent:?}");
    assert_eq!(
        seen.lock().unwrap()[0].1,
        json!({"msg_type": "text", "content": {"text": "hi"}})
    );
}

#[tokio::test]
async fn a_wrong_secret_or_a_missing_one_makes_the_account_unavailable() {
    let (address, seen) = start().await;
    for supplier in [supplier(Some("not-the-secret")), supplier(None)] {
        let result = send(supplier.as_ref(), &hook(address, "signed"), &text("hi")).await;
        assert!(
            matches!(&result, Err(SendError::Unavailable { code, message, .. })
                if code == "19021" && message.starts_with("sign match fail")),
            "{result:?}"
        );
    }
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn refusals_are_classified() {
    let (address, _) = start().await;
    let supplier = supplier(Some(SECRET));
    let outcome = |result: Result<Sent, SendError>| match result {
        Ok(_) => "sent".to_owned(),
        Err(SendError::Retryable { code, .. }) => format!("retryable {code}"),
        Err(SendError::Final { code, .. }) => format!("final {code}"),
        Err(SendError::Throttled { code, .. }) => format!("throttled {code}"),
        Err(SendError::Unavailable { code, .. }) => format!("unavailable {code}"),
    };
    for (name, content, expected) in [
        ("legacy", text("old robot"), "sent"),
        ("keyword", text("Herald: deploy done"), "sent"),
        ("keyword", text("deploy done"), "final 19024"),
        ("ip", text("hi"), "unavailable 19022"),
        ("busy", text("hi"), "throttled 11232"),
        ("too-many", text("hi"), "throttled 9499"),
        ("disabled", text("hi"), "final 19007"),
        ("no-such-robot", text("hi"), "final 19001"),
        ("down", text("hi"), "retryable HTTP_502"),
        // An empty text is refused with a 400 that still carries Feishu's code.
        ("signed", text(""), "final 9499"),
    ] {
        let result = send(supplier.as_ref(), &hook(address, name), &content).await;
        assert_eq!(outcome(result), expected, "{name}");
    }
}

#[tokio::test]
async fn a_bad_request_is_final_and_a_bad_receiver_never_leaves() {
    let (address, seen) = start().await;
    let supplier = supplier(Some(SECRET));
    // Not a robot's content model: refused before any call.
    let template = TemplateContent::SupplierTemplate {
        template_code: "T1".to_owned(),
        sign_name: None,
        params: Vec::new(),
    };
    let result = send(supplier.as_ref(), &hook(address, "signed"), &template).await;
    assert!(
        matches!(&result, Err(SendError::Final { code, .. }) if code == "UNSUPPORTED_CONTENT"),
        "{result:?}"
    );
    // A receiver that is not an http(s) URL.
    let not_a_url = Receiver::parse(
        ReceiverIdType::UserId,
        "ou_7d8a6e6df7621556ce0d21922b676706",
    )
    .unwrap();
    let result = send(supplier.as_ref(), &not_a_url, &text("hi")).await;
    assert!(
        matches!(&result, Err(SendError::Final { code, message })
            if code == "INVALID_WEBHOOK_URL" && !message.contains("7d8a6e6df7621556ce0d2192")),
        "{result:?}"
    );
    assert!(seen.lock().unwrap().is_empty());
    // A URL answering Feishu's 400: final, with Feishu's code.
    let result = send(
        supplier.as_ref(),
        &Receiver::parse(
            ReceiverIdType::WebhookUrl,
            &format!("http://{address}/open-apis/bot/v2/hook/signed/extra"),
        )
        .unwrap(),
        &text("hi"),
    )
    .await;
    assert!(
        matches!(&result, Err(SendError::Final { code, .. }) if code == "HTTP_404"),
        "{result:?}"
    );
}
