//! GeTui's wire format: the auth sign, the JSON of requests and answers, and what each of
//! GeTui's codes and per-cid statuses means for dispatch (the table is in the module docs of
//! [`crate::getui`]).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::supplier::{SendError, Sent};

/// `token错误/失效`: the token expired or was replaced; fetch a new one and call again.
pub(super) const TOKEN_INVALID: i64 = 10001;
/// GeTui's rate limits are per minute, so a throttled account waits for the next minute.
const MINUTE: Duration = Duration::from_secs(60);
/// How long an account whose daily push quota is spent is held off: the quota resets once a
/// day, so asking every second would only burn requests.
const QUOTA_PAUSE: Duration = Duration::from_secs(300);

/// The auth sign: lowercase hex SHA-256 of `appkey + timestamp + mastersecret`, the timestamp
/// in epoch milliseconds exactly as sent.
pub fn sign(app_key: &str, timestamp_ms: &str, master_secret: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(app_key.as_bytes());
    digest.update(timestamp_ms.as_bytes());
    digest.update(master_secret.as_bytes());
    digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The body of `POST {app}/auth`.
#[derive(Serialize)]
pub(super) struct AuthRequest<'a> {
    pub sign: String,
    pub timestamp: String,
    pub appkey: &'a str,
}

/// `data` of a successful auth.
#[derive(Deserialize)]
pub(super) struct AuthData {
    #[serde(default)]
    pub token: String,
    /// Epoch milliseconds; a string in the docs, read as a number too.
    #[serde(default)]
    pub expire_time: Value,
}

/// How long a token lives: from `now_ms` to its `expire_time`, at least a second. `None`
/// when `expire_time` is not a number of milliseconds.
pub(super) fn lifetime(expire_time: &Value, now_ms: i64) -> Option<Duration> {
    let expire_ms = match expire_time {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    let left = u64::try_from(expire_ms.saturating_sub(now_ms)).unwrap_or(0);
    Some(Duration::from_millis(left.max(1000)))
}

/// `{"code": 0, "msg": "", "data": ...}`, the envelope of every answer, success or not (GeTui
/// answers its errors with HTTP 400, 401 and 403 and this same body).
#[derive(Debug)]
pub(super) struct Answer {
    pub code: i64,
    pub msg: String,
    pub data: Value,
}

/// The envelope, or `None` when `text` is not one (an HTML error page, a proxy's answer).
pub(super) fn parse_answer(text: &str) -> Option<Answer> {
    let Value::Object(mut body) = serde_json::from_str::<Value>(text).ok()? else {
        return None;
    };
    let code = match body.get("code")? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    let msg = match body.get("msg") {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    Some(Answer {
        code,
        msg,
        data: body.remove("data").unwrap_or(Value::Null),
    })
}

/// The body of `POST {app}/push/single/cid`, and one entry of a batch.
#[derive(Serialize)]
pub(super) struct PushRequest<'a> {
    /// 10 to 32 characters; GeTui drops a push whose request id it has seen, so a retry after a
    /// lost answer does not deliver twice.
    pub request_id: String,
    pub settings: Settings,
    pub audience: Audience<'a>,
    pub push_message: PushMessage<'a>,
}

impl<'a> PushRequest<'a> {
    pub fn cid(&self) -> &'a str {
        self.audience.cid[0]
    }
}

#[derive(Serialize)]
pub(super) struct Settings {
    /// Milliseconds an offline device's message is kept.
    pub ttl: i64,
}

#[derive(Serialize)]
pub(super) struct Audience<'a> {
    /// One cid: the single push takes no more.
    pub cid: [&'a str; 1],
}

#[derive(Serialize)]
pub(super) struct PushMessage<'a> {
    pub notification: Notification<'a>,
}

#[derive(Serialize)]
pub(super) struct Notification<'a> {
    pub title: &'a str,
    pub body: &'a str,
    /// `url` (open `url`) or `startapp` (open the app's home page).
    pub click_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<&'a str>,
}

/// The body of `POST {app}/push/single/batch/cid`.
#[derive(Serialize)]
pub(super) struct BatchRequest<'a> {
    /// Synchronous, so the answer carries every cid's status.
    pub is_async: bool,
    pub msg_list: Vec<&'a PushRequest<'a>>,
}

/// What GeTui says of `cid` in a push answer's `data`, `{taskid: {cid: status}}`: the task id
/// and the status. When `cid` is not there but the answer holds a single task (a single push
/// GeTui accepted with code 0), the push is taken as sent with that task id.
pub(super) fn outcome(data: &Value, cid: &str, masked: &str) -> Result<Sent, SendError> {
    let tasks = data.as_object();
    let found = tasks.into_iter().flatten().find_map(|(taskid, statuses)| {
        let status = statuses.as_object()?.get(cid)?;
        Some((taskid, status.as_str().unwrap_or_default()))
    });
    let Some((taskid, status)) = found else {
        let sole = tasks
            .filter(|t| t.len() == 1)
            .and_then(|t| t.keys().next().cloned());
        return Ok(Sent {
            supplier_message_id: sole,
        });
    };
    match status {
        "successed_ignore" => Err(SendError::Final {
            code: status.to_owned(),
            message: format!("{masked}: inactive for 90 days, GeTui does not push to it"),
        }),
        s if s.starts_with("successed") => Ok(Sent {
            supplier_message_id: Some(taskid.clone()),
        }),
        "busy" => Err(SendError::Retryable {
            code: status.to_owned(),
            message: format!("{masked}: GeTui was busy"),
        }),
        _ => Err(SendError::Final {
            code: if status.is_empty() {
                "UNKNOWN_STATUS"
            } else {
                status
            }
            .to_owned(),
            message: format!("{masked}: GeTui did not push (task {taskid})"),
        }),
    }
}

/// Classifies a non-zero `code` of a push (`10001` only reaches here when a fresh token was
/// refused too).
pub(super) fn classify(code: i64, msg: &str) -> SendError {
    let code_text = code.to_string();
    let message = msg.to_owned();
    let throttled = |code: String, message: String| SendError::Throttled {
        code,
        message,
        retry_after: Some(MINUTE),
    };
    let unavailable = |code: String, message: String, retry_after| SendError::Unavailable {
        code,
        message,
        retry_after,
    };
    match code {
        // Starting up, or "system busy, try again later".
        2 | 30019 => SendError::Retryable {
            code: code_text,
            message,
        },
        // Per-minute limits: calls, auth, and the app/list/tag pushes.
        10003 | 10005 | 30012..=30015 | 30018 => throttled(code_text, message),
        // The account's daily totals.
        30004 | 30006..=30011 => unavailable(code_text, message, Some(QUOTA_PAUSE)),
        // The account itself: wrong data centre (301) or address (404, 405), its token
        // refused even fresh, app id or IP blacklisted, a permission its plan lacks.
        301 | 404 | 405 | TOKEN_INVALID | 10002 | 10004 => unavailable(code_text, message, None),
        20001 if msg.starts_with("permission required") => unavailable(code_text, message, None),
        // The rest of 30000-39999 is "套餐相关", the account's plan, but for the tag limits.
        30000..=39999 if !matches!(code, 30005 | 30016) => unavailable(code_text, message, None),
        // 1 (not JSON), 20001 (a parameter, `target user is invalid` for a bad cid), 21001
        // (user invalid), 22001-23001 (tasks and tags), 30005, 30016 and anything unknown: the
        // message itself.
        _ => SendError::Final {
            code: code_text,
            message,
        },
    }
}

/// Classifies a non-zero `code` of `auth`: whatever the code (`20001 sign is invalid` for a
/// wrong master secret or a skewed clock, `10002` blacklisted), an account that cannot get a
/// token cannot send, but for the per-minute limits and GeTui's own trouble.
pub(super) fn classify_auth(code: i64, msg: &str) -> SendError {
    match classify(code, msg) {
        error @ (SendError::Retryable { .. } | SendError::Throttled { .. }) => error,
        _ => SendError::Unavailable {
            code: code.to_string(),
            message: format!("auth refused: {msg}"),
            retry_after: None,
        },
    }
}

/// An answer that is not the JSON GeTui documents. The call may have gone through, so it is
/// retried like a lost answer (GeTui drops a repeated request id).
pub(super) fn bad_answer(error: impl fmt::Display) -> SendError {
    SendError::Retryable {
        code: "BAD_RESPONSE".to_owned(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_sign_is_the_sha256_of_key_timestamp_and_secret() {
        // Computed independently: printf '%s' 'YZkTKbz91l84HyM0TGlb381608172111917herald-master-secret' | sha256sum
        assert_eq!(
            sign(
                "YZkTKbz91l84HyM0TGlb38",
                "1608172111917",
                "herald-master-secret"
            ),
            "0ded5ec6e0f6d6871838e57f613d765ea15819f435d244bf09d6aab6c4d8400f"
        );
        // The concatenation is all there is: FIPS 180-2's "abc".
        assert_eq!(
            sign("a", "b", "c"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_token_lives_until_its_expire_time() {
        let now = 1_700_000_000_000;
        assert_eq!(
            lifetime(&json!("1700086400000"), now),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            lifetime(&json!(1_700_000_060_000_i64), now),
            Some(Duration::from_secs(60))
        );
        // Already past, or about to be: one second, so it is fetched again at once.
        assert_eq!(
            lifetime(&json!("1600000000000"), now),
            Some(Duration::from_secs(1))
        );
        assert_eq!(lifetime(&json!("soon"), now), None);
        assert_eq!(lifetime(&Value::Null, now), None);
    }

    #[test]
    fn answers_are_read_loosely() {
        let answer = parse_answer(r#"{"code":"10001","msg":"token错误/失效"}"#).expect("answer");
        assert_eq!(
            (answer.code, answer.msg.as_str()),
            (10001, "token错误/失效")
        );
        assert_eq!(answer.data, Value::Null);
        let answer =
            parse_answer(r#"{"code":0,"data":{"t":{"c":"successed_online"}}}"#).expect("answer");
        assert_eq!(answer.code, 0);
        assert_eq!(answer.data, json!({"t": {"c": "successed_online"}}));
        assert!(parse_answer("<html>502 Bad Gateway</html>").is_none());
        assert!(parse_answer(r#"{"msg":"no code"}"#).is_none());
        assert!(parse_answer("[1]").is_none());
    }

    #[test]
    fn per_cid_statuses_are_classified() {
        let data = json!({
            "RASS_1": {"cid-a": "successed_online"},
            "RASS_2": {"cid-b": "successed_offline"},
            "RASS_3": {"cid-c": "successed_ignore"},
            "RASS_4": {"cid-d": "failed"},
            "RASS_5": {"cid-e": "busy"},
            "RASS_6": {"cid-f": 7},
        });
        let sent = |id: &str| {
            Ok(Sent {
                supplier_message_id: Some(id.to_owned()),
            })
        };
        assert_eq!(outcome(&data, "cid-a", "ci***-a"), sent("RASS_1"));
        assert_eq!(outcome(&data, "cid-b", "ci***-b"), sent("RASS_2"));
        assert!(
            matches!(outcome(&data, "cid-c", "ci***-c"), Err(SendError::Final { code, .. }) if code == "successed_ignore")
        );
        assert!(
            matches!(outcome(&data, "cid-d", "ci***-d"), Err(SendError::Final { code, .. }) if code == "failed")
        );
        assert!(
            matches!(outcome(&data, "cid-e", "ci***-e"), Err(SendError::Retryable { code, .. }) if code == "busy")
        );
        assert!(
            matches!(outcome(&data, "cid-f", "ci***-f"), Err(SendError::Final { code, .. }) if code == "UNKNOWN_STATUS")
        );
        // Not there: sent, with the task id when the answer holds a single task.
        assert_eq!(
            outcome(&data, "cid-z", "ci***-z"),
            Ok(Sent {
                supplier_message_id: None
            })
        );
        assert_eq!(
            outcome(&json!({"RASS_9": {}}), "cid-z", "ci***-z"),
            sent("RASS_9")
        );
        assert_eq!(
            outcome(&Value::Null, "cid-z", "ci***-z"),
            Ok(Sent {
                supplier_message_id: None
            })
        );
    }

    #[test]
    fn codes_are_classified() {
        let class = |code: i64, msg: &str| match classify(code, msg) {
            SendError::Retryable { .. } => "retryable",
            SendError::Final { .. } => "final",
            SendError::Throttled { retry_after, .. } => {
                assert_eq!(retry_after, Some(MINUTE), "{code}");
                "throttled"
            }
            SendError::Unavailable { .. } => "unavailable",
        };
        for code in [2, 30019] {
            assert_eq!(class(code, ""), "retryable", "{code}");
        }
        for code in [10003, 10005, 30012, 30013, 30014, 30015, 30018] {
            assert_eq!(class(code, ""), "throttled", "{code}");
        }
        for code in [
            301, 404, 405, 10001, 10002, 10004, 30000, 30001, 30002, 30003, 30004, 30006, 30007,
            30008, 30009, 30010, 30011, 30017, 30020,
        ] {
            assert_eq!(class(code, ""), "unavailable", "{code}");
        }
        assert_eq!(
            class(20001, "permission required by push_channel"),
            "unavailable"
        );
        for code in [1, 20001, 21001, 22001, 22002, 23001, 30005, 30016, 99999] {
            assert_eq!(class(code, "target user is invalid"), "final", "{code}");
        }
        // The daily quota holds the account off for five minutes.
        assert!(matches!(
            classify(30009, ""),
            SendError::Unavailable { retry_after: Some(d), .. } if d == QUOTA_PAUSE
        ));
    }

    #[test]
    fn an_account_that_cannot_get_a_token_is_unavailable() {
        assert!(matches!(
            classify_auth(20001, "sign is invalid"),
            SendError::Unavailable { code, message, retry_after: None }
                if code == "20001" && message == "auth refused: sign is invalid"
        ));
        assert!(matches!(
            classify_auth(10002, ""),
            SendError::Unavailable { .. }
        ));
        assert!(matches!(
            classify_auth(10003, ""),
            SendError::Throttled { .. }
        ));
        assert!(matches!(classify_auth(2, ""), SendError::Retryable { .. }));
    }
}
