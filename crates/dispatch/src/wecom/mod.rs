//! WeCom (企业微信): group robots (`wecom_robot`, [`robot`]) and messages from a self-built app to
//! members (`wecom_app`, [`app`]), both on `qyapi.weixin.qq.com`.
//!
//! Every WeCom answer is JSON with `errcode` (0 when the call succeeded) and `errmsg`, and the
//! codes are global (document 90313, "全局错误码"), so one [`classify`] serves both suppliers.
//! URLs carry secrets in their query string (the robot's `key`, the app's `corpsecret` and
//! `access_token`), so no URL ever reaches an error message.

mod app;
mod robot;

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

pub use app::{DEFAULT_BASE_URL, WecomApp};
pub use robot::WecomRobot;

use crate::http;
use crate::supplier::SendError;

/// How long an app over WeCom's rate is held off: WeCom lifts a frequency block after the
/// period it counts over, a minute for the send limits.
const FREQUENCY_PAUSE: Duration = Duration::from_secs(60);

/// The codes by which WeCom refuses an access token: invalid (40014), expired (42001), missing
/// (41001). The caller fetches a new token and tries once more.
pub(crate) const TOKEN_REFUSED: [i64; 3] = [40014, 42001, 41001];

/// The part of every answer that says whether the call worked.
#[derive(Deserialize)]
struct Status {
    /// Absent in an answer that is not WeCom's; such an answer is not taken as success.
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: String,
}

/// Classifies one of WeCom's error codes (`errcode` other than 0).
pub(crate) fn classify(code: i64, message: String) -> SendError {
    let code_text = code.to_string();
    match code {
        // System busy: WeCom asks for a retry a little later.
        -1 | 6000 | 81026 => SendError::Retryable {
            code: code_text,
            message,
        },
        // A refused token outlived the one retry with a fresh token: try again later.
        40014 | 42001 | 41001 => SendError::Retryable {
            code: code_text,
            message,
        },
        // 45009: over the frequency limit (the block lasts the period counted over);
        // 45033: too many calls at once.
        45009 => SendError::Throttled {
            code: code_text,
            message,
            retry_after: Some(FREQUENCY_PAUSE),
        },
        45033 => SendError::Throttled {
            code: code_text,
            message,
            retry_after: None,
        },
        // The account, whatever the message: a wrong or reset secret (40001, 40091, 45031), a
        // wrong corp id (40013, 41002), a wrong agent id or one the token is not for (40056,
        // 41011, 301002), a caller outside the app's trusted IPs (60020), an app disabled or
        // without the right to send (50003, 48002, 48006).
        40001 | 40013 | 40056 | 40091 | 41002 | 41004 | 41011 | 45031 | 48002 | 48006 | 50003
        | 60020 | 301002 => SendError::Unavailable {
            code: code_text,
            message,
            retry_after: None,
        },
        // Everything else is about the message or its receiver, which a retry cannot change:
        // 40003 / 60111 / 81013 / 82001 / 60011 the user is unknown or outside the app's
        // visible range, 44004 empty content, 45002 content too long, 40008 / 40058 / 41016 /
        // 41033 malformed message, 42052 a recall after 24 hours, 93000 / 93004 / 93008 a
        // robot removed from its group or stopped.
        _ => SendError::Final {
            code: code_text,
            message,
        },
    }
}

/// An answer that is not the JSON WeCom documents. The call may have gone through, so it is
/// retried like a lost answer.
fn bad_answer(error: impl fmt::Display) -> SendError {
    SendError::Retryable {
        code: "BAD_RESPONSE".to_owned(),
        message: error.to_string(),
    }
}

/// A transport failure, without the URL: WeCom's URLs carry keys and tokens.
fn transport_error(error: reqwest::Error) -> SendError {
    http::transport_error(&error.without_url())
}

/// Reads an answer: a non-2xx status is classified as HTTP, a 2xx body must be WeCom's JSON
/// with `errcode` 0. Returns the body for the caller's own fields.
async fn read_answer(response: reqwest::Response) -> Result<String, SendError> {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.map_err(transport_error)?;
    if !status.is_success() {
        return Err(http::status_error(status, &headers, &text));
    }
    let answer: Status = serde_json::from_str(&text).map_err(bad_answer)?;
    match answer.errcode {
        Some(0) => Ok(text),
        Some(code) => Err(classify(code, answer.errmsg)),
        None => Err(bad_answer(format!(
            "no errcode in {}",
            text.chars().take(200).collect::<String>()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(code: i64) -> &'static str {
        match classify(code, String::new()) {
            SendError::Retryable { .. } => "retryable",
            SendError::Final { .. } => "final",
            SendError::Throttled { .. } => "throttled",
            SendError::Unavailable { .. } => "unavailable",
        }
    }

    #[test]
    fn error_codes_are_classified() {
        for code in [-1, 6000, 81026, 40014, 42001, 41001] {
            assert_eq!(class(code), "retryable", "{code}");
        }
        assert!(matches!(
            classify(45009, String::new()),
            SendError::Throttled { retry_after: Some(d), .. } if d == FREQUENCY_PAUSE
        ));
        assert_eq!(class(45033), "throttled");
        for code in [
            40001, 40013, 40056, 40091, 41002, 41004, 41011, 45031, 48002, 48006, 50003, 60020,
            301002,
        ] {
            assert_eq!(class(code), "unavailable", "{code}");
        }
        for code in [
            40003, 60011, 60111, 81013, 82001, 44004, 45002, 40008, 40058, 41016, 41033, 42052,
            93000, 93004, 93008,
        ] {
            assert_eq!(class(code), "final", "{code}");
        }
        assert_eq!(
            classify(93000, "invalid webhook url".into()).code(),
            "93000"
        );
    }
}
