//! Feishu (Lark) group robots (`feishu_robot`): a JSON POST to the custom robot's webhook,
//! `https://open.feishu.cn/open-apis/bot/v2/hook/{token}`, which is the message's receiver.
//!
//! With 签名校验 (signature check) turned on for the robot, the body also carries `timestamp`
//! (Unix seconds, as a string) and `sign`: base64 of HMAC-SHA256 whose *key* is
//! `"{timestamp}\n{secret}"` and whose message is empty, as Feishu's "自定义机器人使用指南"
//! documents (key and message are the other way round from DingTalk's). Feishu accepts a
//! timestamp up to an hour old.
//!
//! Content: `Text` goes as `msg_type: text`. `Markdown` and `Card` go as `msg_type: interactive`
//! message cards (card JSON 1.0): a header with the title and a `markdown` element with the
//! body, because a card's `markdown` element is what renders Markdown for a custom robot (the
//! `post` rich-text type only lays out plain `text`, `a` and `at` tags). A card with a URL
//! gains a button to it. Feishu's robot API has no idempotency key, so Herald's message id
//! does not go out, and it answers no message id either.
//!
//! ```toml
//! [[accounts]]
//! id = "feishu"
//! channel = "FEISHU_ROBOT"
//! supplier = "feishu_robot"
//! credentials = { secret = "..." }          # only for robots with 签名校验 on
//! settings = { button_text = "查看详情" }    # optional: the card button's label
//! ```
//!
//! With `settings.markdown = "post"`, Markdown goes as a `post` (rich text) instead: the title,
//! a paragraph per line, and Markdown links as `a` tags.
//!
//! A secret belongs to one robot, so a signed robot wants its own account; robots without the
//! signature check can share an account with no `secret`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use domain::{Channel, TemplateContent};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::accounts::{AccountConfig, AccountError};
use crate::http;
use crate::supplier::{Outbound, SendError, SendFuture, Sent, Supplier};

const DEFAULT_BUTTON_TEXT: &str = "查看详情";

/// The `sign` Feishu checks: base64(HMAC-SHA256(key = "{timestamp}\n{secret}", message = "")).
pub fn sign(secret: &str, timestamp: i64) -> String {
    let key = format!("{timestamp}\n{secret}");
    // HMAC accepts keys of any length, so this cannot fail.
    let mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap_or_else(|_| unreachable!());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The body for one message, without the signature fields.
pub fn payload(content: &TemplateContent, button_text: &str) -> Result<Value, SendError> {
    Ok(match content {
        TemplateContent::Text { body } => json!({"msg_type": "text", "content": {"text": body}}),
        TemplateContent::Markdown { title, body } => card(title, body, None, button_text),
        TemplateContent::Card { title, body, url } => {
            card(title, body, url.as_deref(), button_text)
        }
        other => {
            return Err(SendError::Final {
                code: "UNSUPPORTED_CONTENT".to_owned(),
                message: format!(
                    "feishu_robot sends text, markdown and cards, not {}",
                    other.kind()
                ),
            });
        }
    })
}

/// A `post` (rich-text) message: the title, then one paragraph per line of `body`, where a
/// Markdown link `[label](https://...)` becomes an `a` tag and everything else stays text. For
/// accounts with `settings.markdown = "post"`, whose readers want a plain message rather than a
/// card.
pub fn post(title: &str, body: &str) -> Value {
    let paragraphs: Vec<Value> = body
        .lines()
        .map(|line| Value::Array(rich_line(line)))
        .collect();
    json!({
        "msg_type": "post",
        "content": {"post": {"zh_cn": {"title": title, "content": paragraphs}}},
    })
}

/// One line as `text` and `a` tags.
fn rich_line(line: &str) -> Vec<Value> {
    let mut tags: Vec<Value> = Vec::new();
    let mut text = String::new();
    let mut rest = line;
    while let Some(open) = rest.find('[') {
        let link = rest[open + 1..].split_once("](").and_then(|(label, tail)| {
            let (href, after) = tail.split_once(')')?;
            let web = href.starts_with("https://") || href.starts_with("http://");
            (web && !label.contains('[') && !href.contains(char::is_whitespace))
                .then_some((label, href, after))
        });
        match link {
            Some((label, href, after)) => {
                text.push_str(&rest[..open]);
                if !text.is_empty() {
                    tags.push(json!({"tag": "text", "text": std::mem::take(&mut text)}));
                }
                tags.push(json!({"tag": "a", "text": label, "href": href}));
                rest = after;
            }
            None => {
                text.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() || tags.is_empty() {
        tags.push(json!({"tag": "text", "text": text}));
    }
    tags
}

/// An interactive message card: the title in the header, the body rendered as Markdown, and a
/// button to `url` when there is one.
fn card(title: &str, body: &str, url: Option<&str>, button_text: &str) -> Value {
    let mut elements = vec![json!({"tag": "markdown", "content": body})];
    if let Some(url) = url {
        elements.push(json!({
            "tag": "action",
            "actions": [{
                "tag": "button",
                "text": {"tag": "plain_text", "content": button_text},
                "type": "primary",
                "url": url,
            }],
        }));
    }
    json!({
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": true},
            "header": {"title": {"tag": "plain_text", "content": title}},
            "elements": elements,
        },
    })
}

/// Classifies a non-zero `code` of Feishu's answer.
fn classify(code: i64, message: String) -> SendError {
    let code_text = code.to_string();
    let lower = message.to_ascii_lowercase();
    // Feishu answers an over-rate robot with 11232 "frequency limited psm...", and sometimes
    // with 9499 "too many request"; the robot's limit is 100 a minute and 5 a second.
    if code == 11232 || lower.contains("frequency limit") || lower.contains("too many request") {
        return SendError::Throttled {
            code: code_text,
            message,
            retry_after: None,
        };
    }
    match code {
        // The signature did not match the robot's secret (or the clock is off by over an
        // hour), or the robot's IP allow-list leaves Herald out: the account's configuration,
        // not the message.
        19021 | 19022 => SendError::Unavailable {
            code: code_text,
            message,
            retry_after: None,
        },
        // Everything else names the message or its receiver: 9499 bad request, 19001 a
        // webhook token that does not exist, 19002 a missing msg_type, 19007 a robot that was
        // switched off, 19024 a message without the robot's custom keyword.
        _ => SendError::Final {
            code: code_text,
            message,
        },
    }
}

/// An answer that is not the JSON Feishu documents. The call may have gone through, so it
/// is retried like a lost answer.
fn bad_answer(error: impl fmt::Display) -> SendError {
    SendError::Retryable {
        code: "BAD_RESPONSE".to_owned(),
        message: error.to_string(),
    }
}

/// Reads Feishu's answer: `{"code": 0, "msg": "success", "data": {}}`, or from older robots
/// `{"StatusCode": 0, "StatusMessage": "success"}`. Some answers carry both, with the real
/// outcome in `code` (`{"StatusCode": 0, "code": 9499, "msg": "too many request"}`), so `code`
/// wins. `None`: the body has neither.
fn answer_code(body: &Value) -> Option<(i64, String)> {
    let text = |key: &str| {
        body.get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    if let Some(code) = body.get("code").and_then(Value::as_i64) {
        return Some((code, text("msg")));
    }
    body.get("StatusCode")
        .and_then(Value::as_i64)
        .map(|code| (code, text("StatusMessage")))
}

/// A Feishu custom robot, or several that share no secret.
pub struct FeishuRobot {
    client: reqwest::Client,
    secret: Option<String>,
    button_text: String,
    /// Markdown goes as a `post` rather than a card.
    markdown_post: bool,
}

impl fmt::Debug for FeishuRobot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret stays out: Debug output reaches logs.
        f.debug_struct("FeishuRobot")
            .field("signed", &self.secret.is_some())
            .field("button_text", &self.button_text)
            .field("markdown_post", &self.markdown_post)
            .finish_non_exhaustive()
    }
}

impl FeishuRobot {
    /// Builds the supplier from an `[[accounts]]` entry (keys in the module docs).
    pub fn from_account(config: &AccountConfig) -> Result<Self, AccountError> {
        let markdown_post = match config.settings.get("markdown").map(String::as_str) {
            None | Some("card") => false,
            Some("post") => true,
            Some(other) => {
                return Err(config.client_error(format!(
                    "settings.markdown must be \"card\" or \"post\", not {other:?}"
                )));
            }
        };
        Ok(FeishuRobot {
            markdown_post,
            client: http::client(config.timeout()).map_err(|e| config.client_error(e))?,
            secret: config.credentials.get("secret").cloned(),
            button_text: config
                .settings
                .get("button_text")
                .cloned()
                .unwrap_or_else(|| DEFAULT_BUTTON_TEXT.to_owned()),
        })
    }

    async fn post(&self, message: &Outbound<'_>) -> Result<Sent, SendError> {
        let url = reqwest::Url::parse(message.receiver.value())
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .ok_or_else(|| SendError::Final {
                code: "INVALID_WEBHOOK_URL".to_owned(),
                message: format!("not a robot webhook URL: {}", message.receiver.masked()),
            })?;
        let mut body = match message.content {
            TemplateContent::Markdown { title, body } if self.markdown_post => post(title, body),
            content => payload(content, &self.button_text)?,
        };
        if let (Some(secret), Value::Object(fields)) = (&self.secret, &mut body) {
            let timestamp = Utc::now().timestamp();
            fields.insert("timestamp".to_owned(), json!(timestamp.to_string()));
            fields.insert("sign".to_owned(), json!(sign(secret, timestamp)));
        }
        let response = self
            .client
            .post(url)
            .json(&body)
            .send()
            .await
            // The webhook URL holds the robot's token: keep it out of the error.
            .map_err(|e| http::transport_error(&e.without_url()))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|e| http::transport_error(&e.without_url()))?;
        // Feishu explains a refusal in its JSON even on a 4xx; other answers read as HTTP.
        let code = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| answer_code(&v));
        match code {
            Some((0, _)) if status.is_success() => Ok(Sent {
                supplier_message_id: None,
            }),
            Some((code, msg)) if code != 0 => Err(classify(code, msg)),
            _ if !status.is_success() => Err(http::status_error(status, &headers, &text)),
            _ => Err(bad_answer(format!(
                "no code in the answer: {}",
                text.chars().take(200).collect::<String>()
            ))),
        }
    }
}

impl Supplier for FeishuRobot {
    fn name(&self) -> &'static str {
        "feishu_robot"
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::FeishuRobot
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> SendFuture<'a> {
        Box::pin(self.post(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_matches_an_independent_computation() {
        // python3: base64.b64encode(hmac.new(b"1599360473\ndemo-secret", b"", hashlib.sha256).digest())
        assert_eq!(
            sign("demo-secret", 1_599_360_473),
            "3/MaVZ8JLIy4TUG+7KSFJqvUkTKd+HWY8g+56DZWq8s="
        );
        assert_eq!(
            sign("herald-feishu-secret", 1_700_000_000),
            "JTqHLynjrPOlUQxk3cQ/r1RtYZpATycL2vG8aVSc/q8="
        );
    }

    #[test]
    fn answers_are_read_from_code_before_status_code() {
        let read = |body: Value| answer_code(&body);
        assert_eq!(
            read(json!({"code": 0, "msg": "success", "data": {}})),
            Some((0, "success".to_owned()))
        );
        assert_eq!(
            read(json!({"StatusCode": 0, "StatusMessage": "success"})),
            Some((0, "success".to_owned()))
        );
        assert_eq!(
            read(
                json!({"StatusCode": 0, "StatusMessage": "", "code": 9499, "msg": "too many request"})
            ),
            Some((9499, "too many request".to_owned()))
        );
        assert_eq!(read(json!({"ok": true})), None);
    }

    #[test]
    fn error_codes_are_classified() {
        let class = |code: i64, msg: &str| match classify(code, msg.to_owned()) {
            SendError::Retryable { .. } => "retryable",
            SendError::Final { .. } => "final",
            SendError::Throttled { .. } => "throttled",
            SendError::Unavailable { .. } => "unavailable",
        };
        assert_eq!(
            class(
                11232,
                "frequency limited psm[lark.oapi.app_platform_runtime]appID[1500]"
            ),
            "throttled"
        );
        assert_eq!(class(9499, "too many request"), "throttled");
        assert_eq!(class(9499, "Bad Request"), "final");
        assert_eq!(
            class(
                19021,
                "sign match fail or timestamp is not within one hour from current time"
            ),
            "unavailable"
        );
        assert_eq!(class(19022, "Ip Not Allowed"), "unavailable");
        assert_eq!(
            class(
                19001,
                "param invalid: incoming webhook access token invalid"
            ),
            "final"
        );
        assert_eq!(class(19002, "params error, msg_type need"), "final");
        assert_eq!(class(19007, "Bot Not Enabled"), "final");
        assert_eq!(class(19024, "Key Words Not Found"), "final");
    }

    #[test]
    fn markdown_and_cards_are_interactive_cards() {
        let markdown = payload(
            &TemplateContent::Markdown {
                title: "Deploy".to_owned(),
                body: "**done**".to_owned(),
            },
            "Open",
        )
        .expect("payload");
        assert_eq!(markdown["msg_type"], "interactive");
        assert_eq!(
            markdown["card"]["elements"].as_array().map(Vec::len),
            Some(1)
        );
        let email = TemplateContent::Email {
            subject: "s".to_owned(),
            html: None,
            text: Some("t".to_owned()),
            attachments: Vec::new(),
        };
        assert!(matches!(
            payload(&email, "Open"),
            Err(SendError::Final { code, .. }) if code == "UNSUPPORTED_CONTENT"
        ));
    }
}
