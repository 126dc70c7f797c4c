//! DingTalk (钉钉): custom group robots and work notices.
//!
//! - [`robot`]: `dingtalk_robot`, the DINGTALK_ROBOT channel: a JSON POST to a group robot's
//!   webhook (`https://oapi.dingtalk.com/robot/send?access_token=...`, the receiver), signed
//!   with the robot's 加签 secret when the account has one.
//! - [`work`]: `dingtalk_work`, the DINGTALK_WORK channel: work notices (工作通知) from an
//!   internal app through the `oapi.dingtalk.com` server API, with an access token shared by
//!   every process, recall, and read receipts asked per message.
//!
//! Both APIs answer HTTP 200 with `{"errcode": 0, "errmsg": "ok", ...}` on success and a
//! non-zero `errcode` otherwise; DingTalk asks callers to judge by `errcode`, never by the
//! wording of `errmsg`. An `errcode` of 88 carries the real reason in `sub_code`.

pub mod robot;
pub mod work;

pub use robot::DingtalkRobot;
pub use work::DingtalkWork;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::http;
use crate::supplier::SendError;

/// The longest `errmsg` kept in an error; DingTalk's are short, a proxy's page is not.
const MAX_MESSAGE: usize = 256;

/// The outcome fields of a DingTalk answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// `errcode`, or `sub_code` when `errcode` is 88 and names one.
    pub code: String,
    pub message: String,
}

impl Answer {
    /// `None` when the answer says success (`errcode` 0).
    pub(crate) fn of(body: &Value) -> Option<Answer> {
        let errcode = match body.get("errcode") {
            Some(Value::Number(n)) => n.as_i64().unwrap_or(-1),
            Some(Value::String(s)) => s.trim().parse().unwrap_or(-1),
            // No errcode at all: not an answer DingTalk documents.
            _ => -1,
        };
        if errcode == 0 {
            return None;
        }
        let text = |name: &str| match body.get(name) {
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let sub_code = text("sub_code");
        let (code, message) = if errcode == 88 && !sub_code.is_empty() {
            (sub_code, text("sub_msg"))
        } else {
            (errcode.to_string(), text("errmsg"))
        };
        Some(Answer {
            code,
            message: message.chars().take(MAX_MESSAGE).collect(),
        })
    }
}

/// Reads a DingTalk answer: a JSON object on a 2xx, whatever its `errcode`. A non-2xx with no
/// such object is classified by its HTTP status; a 2xx that is not JSON is retried like a lost
/// answer.
pub(crate) async fn read(response: reqwest::Response) -> Result<Value, SendError> {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response
        .text()
        .await
        .map_err(|e| http::transport_error(&e.without_url()))?;
    parse(status, &headers, &text)
}

fn parse(status: StatusCode, headers: &HeaderMap, text: &str) -> Result<Value, SendError> {
    match serde_json::from_str::<Value>(text) {
        Ok(body @ Value::Object(_)) if status.is_success() => Ok(body),
        _ if !status.is_success() => Err(http::status_error(status, headers, text)),
        _ => Err(SendError::Retryable {
            code: "BAD_RESPONSE".to_owned(),
            message: text.chars().take(MAX_MESSAGE).collect(),
        }),
    }
}

/// A transport error without its URL: DingTalk URLs carry the robot's access token, the
/// signature, the app secret or an access token, none of which may reach an event or a log.
pub(crate) fn transport_error(error: reqwest::Error) -> SendError {
    http::transport_error(&error.without_url())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn answers_are_read_by_errcode_and_sub_code() {
        assert_eq!(Answer::of(&json!({ "errcode": 0, "errmsg": "ok" })), None);
        assert_eq!(
            Answer::of(&json!({ "errcode": 130101, "errmsg": "send too fast" })),
            Some(Answer {
                code: "130101".into(),
                message: "send too fast".into()
            })
        );
        assert_eq!(
            Answer::of(&json!({
                "errcode": 88, "sub_code": "40014", "sub_msg": "不合法的access_token",
                "errmsg": "ding talk error[subcode=40014,submsg=不合法的access_token]"
            })),
            Some(Answer {
                code: "40014".into(),
                message: "不合法的access_token".into()
            })
        );
        assert_eq!(
            Answer::of(&json!({ "errcode": 88, "errmsg": "鉴权异常" })).map(|a| a.code),
            Some("88".into())
        );
        assert_eq!(
            Answer::of(&json!({ "errcode": "-1" })).map(|a| a.code),
            Some("-1".into())
        );
        assert_eq!(Answer::of(&json!({})).map(|a| a.code), Some("-1".into()));
    }

    #[test]
    fn answers_that_are_not_json_are_classified_by_status() {
        let headers = HeaderMap::new();
        assert!(matches!(
            parse(StatusCode::OK, &headers, "<html>busy</html>"),
            Err(SendError::Retryable { code, .. }) if code == "BAD_RESPONSE"
        ));
        assert!(matches!(
            parse(StatusCode::BAD_GATEWAY, &headers, "<html>bad gateway</html>"),
            Err(SendError::Retryable { code, .. }) if code == "HTTP_502"
        ));
        assert!(matches!(
            parse(StatusCode::NOT_FOUND, &headers, "{}"),
            Err(SendError::Final { code, .. }) if code == "HTTP_404"
        ));
        assert!(parse(StatusCode::OK, &headers, r#"{"errcode":0}"#).is_ok());
    }
}
