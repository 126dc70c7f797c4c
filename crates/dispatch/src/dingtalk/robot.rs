//! DingTalk custom group robots (`dingtalk_robot`, 自定义机器人): one JSON POST to the robot's
//! webhook, `https://oapi.dingtalk.com/robot/send?access_token=...`, which is the message's
//! receiver (the group), as DingTalk's "自定义机器人发送群消息" document describes.
//!
//! A robot whose security setting is 加签 (signing) needs `&timestamp={ms}&sign={sign}` on the
//! webhook, where `sign` is `urlencode(base64(HmacSHA256(key = secret, "{timestamp}\n{secret}")))`
//! and the timestamp, in milliseconds, is within an hour of DingTalk's clock. The account's
//! `secret` credential (the `SEC...` string of the robot's security settings) turns signing on;
//! an account without one sends unsigned, for robots guarded by keywords or an IP allowlist.
//!
//! ```toml
//! [[accounts]]
//! id = "ops-robot"
//! channel = "DINGTALK_ROBOT"
//! supplier = "dingtalk_robot"
//! credentials = { secret = "SEC..." }   # optional: only for robots that sign
//! ```
//!
//! Content: `Text` is a `text` message; `Markdown` a `markdown` message (`title` shows in the
//! conversation list only, `text` is the body). A `Card` with a URL is a `link` message: its
//! `title`, `text` and `messageUrl` are exactly a card's title, body and link, and the body is
//! shown as the plain text it is; an `actionCard` would render the body as markdown and needs a
//! button label Herald does not have. A `Card` without a URL cannot be an `actionCard` (which
//! needs `singleURL` or buttons) nor a `link` (which needs `messageUrl`), so it goes as
//! `markdown` with the title as a heading above the body.
//!
//! Robots cannot recall what they posted and report no delivery: a send is the end of it.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use domain::{Channel, TemplateContent};
use hmac::{Hmac, Mac};
use reqwest::Url;
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Answer, read, transport_error};
use crate::accounts::{AccountConfig, AccountError};
use crate::http;
use crate::supplier::{Outbound, SendError, SendFuture, Sent, Supplier};

pub const SUPPLIER: &str = "dingtalk_robot";
/// How long an account is held off after DingTalk's per-robot rate limit (20 messages a
/// minute; DingTalk then holds the robot off for up to ten minutes). A minute, not ten: the
/// account may post to other groups, and a throttled send spends no attempt.
const RATE_PAUSE: Duration = Duration::from_secs(60);

/// The signature DingTalk checks: base64 of HMAC-SHA256 keyed with the secret over
/// `"{timestamp_ms}\n{secret}"`. Not yet URL-encoded; [`signed_url`] encodes it.
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The webhook to POST to: the receiver's URL, with `timestamp` and `sign` (form-encoded, so
/// `+`, `/` and `=` become `%2B`, `%2F` and `%3D`) when there is a secret. A `timestamp` or
/// `sign` already on the receiver (a signed URL copied whole) is replaced. `None`: not an
/// http(s) URL with a host.
pub fn signed_url(webhook: &str, secret: Option<&str>, timestamp_ms: i64) -> Option<Url> {
    let mut url = Url::parse(webhook.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return None;
    }
    if let Some(secret) = secret {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(name, _)| name != "timestamp" && name != "sign")
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair("timestamp", &timestamp_ms.to_string())
            .append_pair("sign", &sign(secret, timestamp_ms));
    }
    Some(url)
}

/// The robot message for a content, as DingTalk's robot message types spell it.
pub fn payload(content: &TemplateContent) -> Option<Value> {
    Some(match content {
        TemplateContent::Text { body } => json!({ "msgtype": "text", "text": { "content": body } }),
        TemplateContent::Markdown { title, body } => {
            json!({ "msgtype": "markdown", "markdown": { "title": title, "text": body } })
        }
        TemplateContent::Card {
            title,
            body,
            url: Some(url),
        } => json!({
            "msgtype": "link",
            "link": { "title": title, "text": body, "messageUrl": url },
        }),
        TemplateContent::Card {
            title,
            body,
            url: None,
        } => json!({
            "msgtype": "markdown",
            "markdown": { "title": title, "text": format!("#### {title}\n\n{body}") },
        }),
        TemplateContent::Email { .. } | TemplateContent::SupplierTemplate { .. } => return None,
    })
}

/// Classifies a robot `errcode` (see the table in the README).
///
/// Everything a robot refuses is about the robot behind the receiver's URL, not about the
/// account: its token (300001, 300005, 400101), the robot stopped or gone (400102, 400106),
/// the group dissolved (400013), its security settings (310000: keywords missing, signature
/// or timestamp refused, IP not allowed; each robot has its own, so one refusal says nothing
/// about the account's other groups), or the content (400105, 430101..430104). All final.
/// Only the rate limit (130101, 410100) pauses the account, and only DingTalk's own trouble
/// (-1) is retried.
pub fn classify(code: &str, message: String) -> SendError {
    let code_owned = code.to_owned();
    match code {
        "130101" | "410100" => SendError::Throttled {
            code: code_owned,
            message,
            retry_after: Some(RATE_PAUSE),
        },
        "-1" => SendError::Retryable {
            code: code_owned,
            message,
        },
        _ => SendError::Final {
            code: code_owned,
            message,
        },
    }
}

/// Posts to group robots; signs when the account has the robot's secret.
pub struct DingtalkRobot {
    client: reqwest::Client,
    secret: Option<String>,
}

impl fmt::Debug for DingtalkRobot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret stays out: Debug output reaches logs.
        f.debug_struct("DingtalkRobot")
            .field("signs", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl DingtalkRobot {
    /// Builds the supplier from an `[[accounts]]` entry (keys in the module docs).
    pub fn from_account(config: &AccountConfig) -> Result<Self, AccountError> {
        Ok(DingtalkRobot {
            client: http::client(config.timeout()).map_err(|e| config.client_error(e))?,
            secret: config
                .credentials
                .get("secret")
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty()),
        })
    }

    async fn post(&self, message: &Outbound<'_>) -> Result<Sent, SendError> {
        let receiver = message.receiver;
        let url = signed_url(
            receiver.value(),
            self.secret.as_deref(),
            Utc::now().timestamp_millis(),
        )
        .ok_or_else(|| SendError::Final {
            code: "INVALID_WEBHOOK".to_owned(),
            message: format!("not an http(s) robot webhook: {}", receiver.masked()),
        })?;
        let body = payload(message.content).ok_or_else(|| SendError::Final {
            code: "UNSUPPORTED_CONTENT".to_owned(),
            message: format!(
                "{SUPPLIER} sends text, markdown and cards, not {}",
                message.content.kind()
            ),
        })?;
        let response = self
            .client
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(transport_error)?;
        let answer = read(response).await?;
        match Answer::of(&answer) {
            None => Ok(Sent {
                supplier_message_id: None,
            }),
            Some(Answer {
                code,
                message: text,
            }) => Err(classify(&code, format!("{}: {text}", receiver.masked()))),
        }
    }
}

impl Supplier for DingtalkRobot {
    fn name(&self) -> &'static str {
        SUPPLIER
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::DingtalkRobot
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> SendFuture<'a> {
        Box::pin(self.post(message))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const SECRET: &str = "SECf0a3b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1";

    /// Values computed apart from this code, with the Python of DingTalk's document:
    /// `urllib.parse.quote_plus(base64.b64encode(hmac.new(secret, f"{ts}\n{secret}",
    /// hashlib.sha256).digest()))`.
    #[test]
    fn signatures_match_dingtalks_python_example() {
        assert_eq!(
            sign(SECRET, 1_700_000_000_003),
            "iafUcWsIXvnAnnt4+BX+At3HX6lKwvQ/HVYu+G0anWQ="
        );
        assert_eq!(
            sign("this is secret", 1_700_000_000_000),
            "sSFWELbV2YwjdDQhWZwTcWlX5BWUx5J6TPpsZmuPii0="
        );
        let url = signed_url(
            "https://oapi.dingtalk.com/robot/send?access_token=abc123",
            Some(SECRET),
            1_700_000_000_003,
        )
        .expect("url");
        assert_eq!(
            url.as_str(),
            "https://oapi.dingtalk.com/robot/send?access_token=abc123&timestamp=1700000000003\
             &sign=iafUcWsIXvnAnnt4%2BBX%2BAt3HX6lKwvQ%2FHVYu%2BG0anWQ%3D"
        );
    }

    #[test]
    fn webhooks_are_checked_and_resigned() {
        // No secret: the receiver as it is.
        let plain = "https://oapi.dingtalk.com/robot/send?access_token=abc123";
        assert_eq!(signed_url(plain, None, 1).expect("url").as_str(), plain);
        // A signed URL pasted whole is signed afresh, not twice.
        let pasted =
            "https://oapi.dingtalk.com/robot/send?access_token=abc123&timestamp=5&sign=old";
        assert_eq!(
            signed_url(pasted, Some("this is secret"), 1_700_000_000_000)
                .expect("url")
                .as_str(),
            "https://oapi.dingtalk.com/robot/send?access_token=abc123&timestamp=1700000000000\
             &sign=sSFWELbV2YwjdDQhWZwTcWlX5BWUx5J6TPpsZmuPii0%3D"
        );
        for bad in [
            "ftp://oapi.dingtalk.com/robot/send",
            "file:///etc/passwd",
            "oapi.dingtalk.com/robot/send",
            "",
        ] {
            assert!(signed_url(bad, None, 1).is_none(), "{bad}");
        }
    }

    #[test]
    fn contents_become_robot_messages() {
        let card = |url: Option<&str>| TemplateContent::Card {
            title: "Build 42".into(),
            body: "finished".into(),
            url: url.map(str::to_owned),
        };
        assert_eq!(
            payload(&TemplateContent::Text { body: "hi".into() }),
            Some(json!({ "msgtype": "text", "text": { "content": "hi" } }))
        );
        assert_eq!(
            payload(&TemplateContent::Markdown {
                title: "t".into(),
                body: "**b**".into()
            }),
            Some(json!({ "msgtype": "markdown", "markdown": { "title": "t", "text": "**b**" } }))
        );
        assert_eq!(
            payload(&card(Some("https://ci.example.com/42"))),
            Some(json!({ "msgtype": "link", "link": {
                "title": "Build 42", "text": "finished", "messageUrl": "https://ci.example.com/42",
            } }))
        );
        assert_eq!(
            payload(&card(None)),
            Some(json!({ "msgtype": "markdown", "markdown": {
                "title": "Build 42", "text": "#### Build 42\n\nfinished",
            } }))
        );
        assert_eq!(
            payload(&TemplateContent::SupplierTemplate {
                template_code: "x".into(),
                sign_name: None,
                params: Vec::new()
            }),
            None
        );
    }

    #[test]
    fn error_codes_are_classified() {
        let class = |code: &str| match classify(code, String::new()) {
            SendError::Retryable { .. } => "retryable",
            SendError::Final { .. } => "final",
            SendError::Throttled { .. } => "throttled",
            SendError::Unavailable { .. } => "unavailable",
        };
        for code in ["130101", "410100"] {
            assert_eq!(class(code), "throttled", "{code}");
        }
        assert_eq!(class("-1"), "retryable");
        for code in [
            "300001", "300005", "310000", "400013", "400101", "400102", "400105", "400106",
            "430101", "430102", "430103", "430104",
        ] {
            assert_eq!(class(code), "final", "{code}");
        }
    }

    #[test]
    fn debug_leaves_the_secret_out() {
        let config = AccountConfig {
            id: "robot".into(),
            channel: Channel::DingtalkRobot,
            supplier: SUPPLIER.into(),
            base_url: None,
            weight: 1,
            settings: BTreeMap::new(),
            credentials: BTreeMap::from([("secret".to_owned(), SECRET.to_owned())]),
            timeout_secs: 1,
            rate_limit_per_sec: None,
            rate_limit_burst: None,
            http_supplier: None,
        };
        let robot = DingtalkRobot::from_account(&config).expect("robot");
        let debug = format!("{robot:?}");
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(debug.contains("signs: true"), "{debug}");
    }
}
