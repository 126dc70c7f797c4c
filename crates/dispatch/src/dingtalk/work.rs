//! DingTalk work notices (`dingtalk_work`, 工作通知): messages an internal app sends to one
//! employee, through the server API at `https://oapi.dingtalk.com` (the account's `base_url`
//! replaces it):
//!
//! - `GET /gettoken?appkey=&appsecret=`: the app's access token, valid `expires_in` (7200)
//!   seconds, shared by every process through [`Tokens`] under `dingtalk:{app_key}`.
//! - `POST /topapi/message/corpconversation/asyncsend_v2?access_token=`: `{agent_id,
//!   userid_list, msg}` with the receiver's userid; the answer's `task_id` is the supplier
//!   message id. DingTalk has no idempotency field, but delivers the same content to the same
//!   employee once a day, so a send repeated after a lost answer is not shown twice.
//! - `POST /topapi/message/corpconversation/recall?access_token=`: `{agent_id, msg_task_id}`.
//! - `POST /topapi/message/corpconversation/getsendresult?access_token=`: `{agent_id,
//!   task_id}`: the receipt. A receiver in `read_user_id_list` or `unread_user_id_list` has
//!   the notice (Delivered, `READ` or `UNREAD`); one in `invalid_user_id_list`,
//!   `forbidden_user_id_list` (DingTalk's per-employee limits: the same content twice a day,
//!   over 500 a day) or `failed_user_id_list` does not (Undelivered). In none of them, the
//!   task is still being worked on: no receipt yet, asked again later. DingTalk keeps results
//!   for 24 hours.
//!
//! A call whose token DingTalk refuses (40001, 40014, 41001, 42001, also as `sub_code` of 88)
//! forgets the token, fetches a new one and is made once more.
//!
//! ```toml
//! [[accounts]]
//! id = "dingtalk"
//! channel = "DINGTALK_WORK"
//! supplier = "dingtalk_work"
//! settings = { agent_id = "2345678901" }        # card_button = "查看详情" (optional)
//! credentials = { app_key = "dingxxxx", app_secret = "..." }
//! ```
//!
//! Content: `Text` is `text`; `Markdown` is `markdown` {title, text}; a `Card` with a URL is an
//! `action_card` whose one button (`single_title`, setting `card_button`, default 查看详情)
//! opens the URL. A work notice `link` would fit a card too, but DingTalk requires its
//! `picUrl`, an image Herald's cards do not have. A `Card` without a URL is `markdown` with the
//! title as a heading.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::{Channel, ReceiptOutcome, TemplateContent};
use reqwest::Url;
use serde_json::{Value, json};

use super::{Answer, read, transport_error};
use crate::accounts::{AccountConfig, AccountError};
use crate::http;
use crate::supplier::{
    Outbound, ReceiptFuture, SendError, SendFuture, Sent, Supplier, SupplierReceipt,
};
use crate::tokens::Tokens;

pub const SUPPLIER: &str = "dingtalk_work";
pub const DEFAULT_BASE_URL: &str = "https://oapi.dingtalk.com";
const DEFAULT_BUTTON: &str = "查看详情";
/// How long an account over one of DingTalk's rates is held off: the rates are per second or
/// per minute, and a ban by the frequency control lasts minutes.
const RATE_PAUSE: Duration = Duration::from_secs(60);
/// How long an account whose monthly API quota is used up (90020) is held off.
const QUOTA_PAUSE: Duration = Duration::from_secs(3600);

/// The codes that say the access token is not (or no longer) good.
pub const TOKEN_REFUSED: [&str; 4] = ["40001", "40014", "41001", "42001"];

/// Classifies a work-notice `errcode` (or the `sub_code` of an 88); see the README's table.
pub fn classify(code: &str, message: String) -> SendError {
    let code_owned = code.to_owned();
    match code {
        // DingTalk is busy.
        "-1" => SendError::Retryable {
            code: code_owned,
            message,
        },
        // Frequency control: DingTalk-wide per API (90002), the company's or the app's calls
        // (90005, 90006, 90018, 90019), the app's notices per minute (143103, 143104,
        // 143203, 143204) and the system protection (1430003).
        "90002" | "90005" | "90006" | "90018" | "90019" | "143103" | "143104" | "143203"
        | "143204" | "1430003" => SendError::Throttled {
            code: code_owned,
            message,
            retry_after: Some(RATE_PAUSE),
        },
        // The month's API calls are used up.
        "90020" => SendError::Unavailable {
            code: code_owned,
            message,
            retry_after: Some(QUOTA_PAUSE),
        },
        // The app itself: its key or secret (40089, 40001 from gettoken), a token refused
        // even fresh, the company (33001), the agent (40056), its permissions (88, 60011)
        // or the server's IP not on its allowlist (60020).
        "88" | "33001" | "40001" | "40014" | "41001" | "42001" | "40056" | "40089" | "60011"
        | "60020" => SendError::Unavailable {
            code: code_owned,
            message,
            retry_after: None,
        },
        // The message or its receiver: parameters (40035), the userid (33012, 40003), the
        // employee's daily limits (143105, 143106, 143205, 143206), no receiver (1430000),
        // forbidden content (1430002), an executive shielded from notices (1430004).
        _ => SendError::Final {
            code: code_owned,
            message,
        },
    }
}

/// The work-notice `msg` for a content.
pub fn payload(content: &TemplateContent, button: &str) -> Option<Value> {
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
            "msgtype": "action_card",
            "action_card": {
                "title": title, "markdown": body, "single_title": button, "single_url": url,
            },
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

/// The receipt `getsendresult`'s `send_result` gives for `userid`; `None` while it is in none
/// of the lists (the task is still being worked on).
pub fn receipt_status(send_result: &Value, userid: &str) -> Option<(ReceiptOutcome, String)> {
    let listed = |list: &str| {
        send_result
            .get(list)
            .and_then(Value::as_array)
            .is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(userid)))
    };
    if listed("read_user_id_list") {
        return Some((ReceiptOutcome::Delivered, "READ".to_owned()));
    }
    if listed("unread_user_id_list") {
        return Some((ReceiptOutcome::Delivered, "UNREAD".to_owned()));
    }
    if listed("invalid_user_id_list") {
        return Some((ReceiptOutcome::Undelivered, "INVALID_USER".to_owned()));
    }
    if listed("forbidden_user_id_list") {
        // `forbidden_list` says which limit: `{code, count, userid}`.
        let limit = send_result
            .get("forbidden_list")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|f| f.get("userid").and_then(Value::as_str) == Some(userid))
            .and_then(|f| match f.get("code") {
                Some(Value::String(code)) => Some(code.clone()),
                Some(Value::Number(code)) => Some(code.to_string()),
                _ => None,
            });
        let status = match limit {
            Some(code) => format!("FORBIDDEN:{code}"),
            None => "FORBIDDEN".to_owned(),
        };
        return Some((ReceiptOutcome::Undelivered, status));
    }
    if listed("failed_user_id_list") {
        return Some((ReceiptOutcome::Undelivered, "FAILED".to_owned()));
    }
    None
}

/// A number DingTalk sent where it documents one (`task_id`, `expires_in`), whether it came as
/// a JSON number or a string.
fn number(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn bad_answer(what: &str) -> SendError {
    SendError::Retryable {
        code: "BAD_RESPONSE".to_owned(),
        message: what.to_owned(),
    }
}

/// A DingTalk internal app sending work notices as one agent.
pub struct DingtalkWork {
    client: reqwest::Client,
    base: String,
    app_key: String,
    app_secret: String,
    agent_id: i64,
    button: String,
    tokens: Tokens,
    token_name: String,
}

impl fmt::Debug for DingtalkWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The app secret and the token stay out: Debug output reaches logs.
        f.debug_struct("DingtalkWork")
            .field("base", &self.base)
            .field("app_key", &self.app_key)
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

/// One call's answer: its body, or DingTalk saying the token is no good.
enum Reply {
    Done(Value),
    TokenRefused(Answer),
}

impl DingtalkWork {
    /// Builds the supplier from an `[[accounts]]` entry (keys in the module docs); its token is
    /// shared through `tokens`.
    pub fn from_account(config: &AccountConfig, tokens: &Tokens) -> Result<Self, AccountError> {
        let agent = config.setting("agent_id")?;
        let agent_id = agent
            .trim()
            .parse()
            .map_err(|_| config.client_error(format!("agent_id {agent:?} is not a number")))?;
        let base = config.base_url_or(DEFAULT_BASE_URL);
        Url::parse(&base).map_err(|e| config.client_error(format!("base_url {base:?}: {e}")))?;
        let app_key = config.credential("app_key")?.to_owned();
        Ok(DingtalkWork {
            client: http::client(config.timeout()).map_err(|e| config.client_error(e))?,
            base,
            token_name: format!("dingtalk:{app_key}"),
            app_key,
            app_secret: config.credential("app_secret")?.to_owned(),
            agent_id,
            button: config
                .settings
                .get("card_button")
                .cloned()
                .unwrap_or_else(|| DEFAULT_BUTTON.to_owned()),
            tokens: tokens.clone(),
        })
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, SendError> {
        let mut url =
            Url::parse(&format!("{}{path}", self.base)).map_err(|e| SendError::Final {
                code: "BAD_BASE_URL".to_owned(),
                message: e.to_string(),
            })?;
        url.query_pairs_mut().extend_pairs(query);
        Ok(url)
    }

    /// Fetches a new access token: `GET /gettoken`.
    async fn fetch_token(&self) -> Result<(String, Duration), SendError> {
        let url = self.url(
            "/gettoken",
            &[("appkey", &self.app_key), ("appsecret", &self.app_secret)],
        )?;
        let response = self.client.get(url).send().await.map_err(transport_error)?;
        let body = read(response).await?;
        if let Some(Answer { code, message }) = Answer::of(&body) {
            // Whatever gettoken refuses is the app's: its key or secret, or its rate.
            return Err(match classify(&code, message) {
                SendError::Final { code, message } => SendError::Unavailable {
                    code,
                    message,
                    retry_after: None,
                },
                other => other,
            });
        }
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad_answer("gettoken answered no access_token"))?;
        let seconds = number(body.get("expires_in")).unwrap_or(7200).max(1);
        Ok((
            token.to_owned(),
            Duration::from_secs(u64::try_from(seconds).unwrap_or(7200)),
        ))
    }

    async fn token(&self) -> Result<String, SendError> {
        self.tokens
            .get(&self.token_name, || self.fetch_token())
            .await
    }

    async fn post_once(&self, path: &str, token: &str, body: &Value) -> Result<Reply, SendError> {
        let url = self.url(path, &[("access_token", token)])?;
        let response = self
            .client
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(transport_error)?;
        let answer = read(response).await?;
        match Answer::of(&answer) {
            None => Ok(Reply::Done(answer)),
            Some(refused) if TOKEN_REFUSED.contains(&refused.code.as_str()) => {
                Ok(Reply::TokenRefused(refused))
            }
            Some(Answer { code, message }) => Err(classify(&code, message)),
        }
    }

    /// POSTs `body` to `path` with the access token; a refused token is replaced and the call
    /// made once more. Returns the answer when `errcode` is 0.
    async fn call(&self, path: &str, body: &Value) -> Result<Value, SendError> {
        let mut refused = None;
        for _ in 0..2 {
            let token = self.token().await?;
            match self.post_once(path, &token, body).await? {
                Reply::Done(answer) => return Ok(answer),
                Reply::TokenRefused(answer) => {
                    self.tokens.invalidate(&self.token_name, &token).await?;
                    refused = Some(answer);
                }
            }
        }
        // A token fetched a moment ago was refused too: the app cannot send for now.
        let Answer { code, message } = refused.unwrap_or_else(|| unreachable!("looped twice"));
        Err(SendError::Unavailable {
            code,
            message: format!("a fresh access token was refused too: {message}"),
            retry_after: None,
        })
    }

    fn task_id(supplier_message_id: Option<&str>) -> Result<i64, SendError> {
        supplier_message_id
            .and_then(|id| id.trim().parse().ok())
            .ok_or_else(|| SendError::Final {
                code: "NO_TASK_ID".to_owned(),
                message: format!("not a DingTalk task id: {supplier_message_id:?}"),
            })
    }

    async fn send_notice(&self, message: &Outbound<'_>) -> Result<Sent, SendError> {
        let msg = payload(message.content, &self.button).ok_or_else(|| SendError::Final {
            code: "UNSUPPORTED_CONTENT".to_owned(),
            message: format!(
                "{SUPPLIER} sends text, markdown and cards, not {}",
                message.content.kind()
            ),
        })?;
        let body = json!({
            "agent_id": self.agent_id,
            "userid_list": message.receiver.value(),
            "msg": msg,
        });
        let answer = self
            .call("/topapi/message/corpconversation/asyncsend_v2", &body)
            .await?;
        let task_id = number(answer.get("task_id"))
            .ok_or_else(|| bad_answer("asyncsend_v2 answered no task_id"))?;
        Ok(Sent {
            supplier_message_id: Some(task_id.to_string()),
        })
    }

    async fn recall_notice(&self, supplier_message_id: Option<&str>) -> Result<Sent, SendError> {
        let task_id = Self::task_id(supplier_message_id)?;
        let body = json!({ "agent_id": self.agent_id, "msg_task_id": task_id });
        self.call("/topapi/message/corpconversation/recall", &body)
            .await?;
        Ok(Sent {
            supplier_message_id: Some(task_id.to_string()),
        })
    }

    async fn query(
        &self,
        message: &Outbound<'_>,
        supplier_message_id: &str,
    ) -> Result<Vec<SupplierReceipt>, SendError> {
        let task_id = Self::task_id(Some(supplier_message_id))?;
        let body = json!({ "agent_id": self.agent_id, "task_id": task_id });
        let answer = self
            .call("/topapi/message/corpconversation/getsendresult", &body)
            .await?;
        let userid = message.receiver.value();
        let status = answer
            .get("send_result")
            .and_then(|result| receipt_status(result, userid));
        Ok(status
            .map(|(outcome, supplier_status)| SupplierReceipt {
                message_id: Some(message.message_id),
                supplier_message_id: Some(task_id.to_string()),
                receiver: Some(userid.to_owned()),
                outcome,
                supplier_status,
                // DingTalk says whether, not when.
                reported_at: Utc::now(),
            })
            .into_iter()
            .collect())
    }
}

impl Supplier for DingtalkWork {
    fn name(&self) -> &'static str {
        SUPPLIER
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::DingtalkWork
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> SendFuture<'a> {
        Box::pin(self.send_notice(message))
    }

    fn recall<'a>(
        &'a self,
        _message: &'a Outbound<'a>,
        supplier_message_id: Option<&'a str>,
    ) -> Option<SendFuture<'a>> {
        Some(Box::pin(self.recall_notice(supplier_message_id)))
    }

    fn queries_receipts(&self) -> bool {
        true
    }

    fn query_receipt<'a>(
        &'a self,
        message: &'a Outbound<'a>,
        supplier_message_id: &'a str,
        _sent_at: DateTime<Utc>,
    ) -> Option<ReceiptFuture<'a>> {
        Some(Box::pin(self.query(message, supplier_message_id)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn error_codes_are_classified() {
        let class = |code: &str| match classify(code, String::new()) {
            SendError::Retryable { .. } => "retryable",
            SendError::Final { .. } => "final",
            SendError::Throttled { .. } => "throttled",
            SendError::Unavailable { .. } => "unavailable",
        };
        assert_eq!(class("-1"), "retryable");
        for code in [
            "90002", "90005", "90006", "90018", "90019", "143103", "143104", "143203", "143204",
            "1430003",
        ] {
            assert_eq!(class(code), "throttled", "{code}");
        }
        for code in [
            "88", "33001", "40001", "40014", "41001", "42001", "40056", "40089", "60011", "60020",
            "90020",
        ] {
            assert_eq!(class(code), "unavailable", "{code}");
        }
        for code in [
            "40035", "33012", "40003", "143105", "143106", "143205", "143206", "1430000",
            "1430002", "1430004",
        ] {
            assert_eq!(class(code), "final", "{code}");
        }
        assert!(matches!(
            classify("90020", String::new()),
            SendError::Unavailable { retry_after: Some(d), .. } if d == QUOTA_PAUSE
        ));
    }

    #[test]
    fn contents_become_work_notices() {
        assert_eq!(
            payload(&TemplateContent::Text { body: "hi".into() }, "Open"),
            Some(json!({ "msgtype": "text", "text": { "content": "hi" } }))
        );
        assert_eq!(
            payload(
                &TemplateContent::Card {
                    title: "Build 42".into(),
                    body: "**finished**".into(),
                    url: Some("https://ci.example.com/42".into()),
                },
                "Open"
            ),
            Some(json!({ "msgtype": "action_card", "action_card": {
                "title": "Build 42", "markdown": "**finished**",
                "single_title": "Open", "single_url": "https://ci.example.com/42",
            } }))
        );
        assert_eq!(
            payload(
                &TemplateContent::Card {
                    title: "Build 42".into(),
                    body: "finished".into(),
                    url: None,
                },
                "Open"
            ),
            Some(json!({ "msgtype": "markdown", "markdown": {
                "title": "Build 42", "text": "#### Build 42\n\nfinished",
            } }))
        );
    }

    #[test]
    fn send_results_become_receipts() {
        let result = json!({
            "read_user_id_list": ["reader"],
            "unread_user_id_list": ["busy"],
            "invalid_user_id_list": ["ghost"],
            "forbidden_user_id_list": ["spammed", "limited"],
            "failed_user_id_list": ["broken"],
            "forbidden_list": [{ "code": "143106", "count": 1, "userid": "spammed" }],
        });
        let status = |user: &str| receipt_status(&result, user);
        assert_eq!(
            status("reader"),
            Some((ReceiptOutcome::Delivered, "READ".into()))
        );
        assert_eq!(
            status("busy"),
            Some((ReceiptOutcome::Delivered, "UNREAD".into()))
        );
        assert_eq!(
            status("ghost"),
            Some((ReceiptOutcome::Undelivered, "INVALID_USER".into()))
        );
        assert_eq!(
            status("spammed"),
            Some((ReceiptOutcome::Undelivered, "FORBIDDEN:143106".into()))
        );
        assert_eq!(
            status("limited"),
            Some((ReceiptOutcome::Undelivered, "FORBIDDEN".into()))
        );
        assert_eq!(
            status("broken"),
            Some((ReceiptOutcome::Undelivered, "FAILED".into()))
        );
        assert_eq!(status("pending"), None);
        assert_eq!(receipt_status(&json!({}), "reader"), None);
    }

    #[test]
    fn debug_leaves_the_secret_out_and_bad_agents_are_refused() {
        let mut config = AccountConfig {
            id: "dingtalk".into(),
            channel: Channel::DingtalkWork,
            supplier: SUPPLIER.into(),
            base_url: None,
            weight: 1,
            settings: BTreeMap::from([("agent_id".to_owned(), "2345678901".to_owned())]),
            credentials: BTreeMap::from([
                ("app_key".to_owned(), "dingkey".to_owned()),
                ("app_secret".to_owned(), "very-secret-value".to_owned()),
            ]),
            timeout_secs: 1,
            rate_limit_per_sec: None,
            rate_limit_burst: None,
            http_supplier: None,
        };
        let work = DingtalkWork::from_account(&config, &Tokens::in_process()).expect("supplier");
        let debug = format!("{work:?}");
        assert!(!debug.contains("very-secret-value"), "{debug}");
        assert!(
            debug.contains("2345678901") && debug.contains("dingkey"),
            "{debug}"
        );
        assert_eq!(work.token_name, "dingtalk:dingkey");
        config
            .settings
            .insert("agent_id".into(), "agent-one".into());
        assert!(matches!(
            DingtalkWork::from_account(&config, &Tokens::in_process()),
            Err(AccountError::Client { .. })
        ));
    }
}
