//! WeChat's server API, shared by the official account ([`official`], `wechat_official`) and
//! the mini-program ([`mini_program`], `mini_program`): the access token and the reading of
//! WeChat's `{"errcode": ..., "errmsg": ...}` answers.
//!
//! The token comes from the stable token API, `POST /cgi-bin/stable_token` with
//! `{grant_type: "client_credential", appid, secret, force_refresh}`, which answers
//! `{access_token, expires_in}`. It is shared through [`Tokens`] under `wechat:{app_id}`. In
//! normal mode WeChat hands out the same token until shortly before it expires, so every process
//! may ask; force mode revokes the current token and is limited to 20 calls a day, 30 seconds
//! apart, so it is used only when a token WeChat refused comes back unchanged in normal mode.
//!
//! A call whose answer says the token is invalid or expired (40001, 40014, 42001) forgets the
//! token, takes a fresh one and is made once more.
//!
//! Both suppliers read `settings.app_id` and `credentials.app_secret`; `base_url` defaults to
//! `https://api.weixin.qq.com`.

pub mod mini_program;
pub mod official;

use std::fmt;
use std::time::Duration;

use domain::TemplateParam;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::accounts::{AccountConfig, AccountError};
use crate::http;
use crate::supplier::{Outbound, SendError};
use crate::tokens::Tokens;

pub const DEFAULT_BASE_URL: &str = "https://api.weixin.qq.com";
/// What WeChat says a token lives when an answer leaves `expires_in` out.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(7200);
/// How long an account over an API quota (45009, 45011) is held off. The minute quota frees
/// within this; the daily one does not, but asking once a minute costs little.
const QUOTA_PAUSE: Duration = Duration::from_secs(60);

/// The answers that mean the access token is no good: 40001 invalid credential, 40014 invalid
/// access_token, 42001 access_token expired.
fn is_token_refusal(code: i64) -> bool {
    matches!(code, 40001 | 40014 | 42001)
}

/// Classifies one of WeChat's `errcode`s (other than 0).
pub fn classify(code: i64, message: String) -> SendError {
    let code_text = code.to_string();
    match code {
        // WeChat's "system busy".
        -1 => SendError::Retryable {
            code: code_text,
            message,
        },
        // A token refused again right after a refresh: someone else is revoking the app's
        // tokens; the next attempt takes a new one.
        40001 | 40014 | 42001 => SendError::Retryable {
            code: code_text,
            message,
        },
        // 45009: the API's daily (or the token API's minute) quota; 45011: the minute quota.
        45009 | 45011 => SendError::Throttled {
            code: code_text,
            message,
            retry_after: Some(QUOTA_PAUSE),
        },
        // The app itself: 40013 invalid appid, 40125 invalid appsecret, 40164 caller IP not
        // on the allow-list, 48001 API not granted to the app, 48004 API banned for the app.
        40013 | 40125 | 40164 | 48001 | 48004 => SendError::Unavailable {
            code: code_text,
            message,
            retry_after: None,
        },
        // The message or its receiver: 40003 invalid openid, 40037 invalid template_id,
        // 43004 the user does not follow the official account, 43101 the user did not
        // subscribe to the mini-program's template, 47003 / 47001 template data invalid,
        // 41030 / 40165 invalid page; and every code not named above.
        _ => SendError::Final {
            code: code_text,
            message,
        },
    }
}

/// An answer that is not the JSON WeChat documents. The call may have gone through, so it is
/// retried like a lost answer.
fn bad_answer(error: impl fmt::Display) -> SendError {
    SendError::Retryable {
        code: "BAD_RESPONSE".to_owned(),
        message: error.to_string(),
    }
}

/// The `errcode` of an answer: absent means 0 (the token API and some sends leave it out).
fn errcode(reply: &Value) -> Result<(i64, String), SendError> {
    let message = reply
        .get("errmsg")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match reply.get("errcode") {
        None | Some(Value::Null) => Ok((0, message)),
        Some(code) => code
            .as_i64()
            .map(|code| (code, message))
            .ok_or_else(|| bad_answer(format!("errcode is not a number: {code}"))),
    }
}

/// A message id from an answer, a number (`msgid` of the template send) or a string.
fn message_id(reply: &Value, key: &str) -> Option<String> {
    match reply.get(key)? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Names the (masked) receiver in a refusal that is about it.
fn with_receiver(error: SendError, message: &Outbound<'_>) -> SendError {
    match error {
        SendError::Final {
            code,
            message: text,
        } => SendError::Final {
            code,
            message: format!("{}: {text}", message.receiver.masked()),
        },
        other => other,
    }
}

/// The template's parameters as WeChat's `data`: `{name: {value}}`, leaving out `reserved`
/// (a parameter that is not template data, such as the link to open), whose value is returned.
fn template_data(params: &[TemplateParam], reserved: &str) -> (Value, Option<String>) {
    let mut data = Map::new();
    let mut taken = None;
    for param in params {
        if param.name == reserved {
            taken = Some(param.value.clone()).filter(|v| !v.is_empty());
        } else {
            data.insert(param.name.clone(), json!({"value": param.value}));
        }
    }
    (Value::Object(data), taken)
}

/// One WeChat app (an official account or a mini-program), as its API calls know it.
pub(crate) struct WechatApp {
    client: reqwest::Client,
    base: String,
    app_id: String,
    app_secret: String,
    tokens: Tokens,
    /// `wechat:{app_id}`: by app, never by secret.
    token_name: String,
}

impl fmt::Debug for WechatApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret and the token stay out: Debug output reaches logs.
        f.debug_struct("WechatApp")
            .field("base", &self.base)
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct StableTokenRequest<'a> {
    grant_type: &'static str,
    appid: &'a str,
    secret: &'a str,
    force_refresh: bool,
}

impl WechatApp {
    pub(crate) fn from_account(
        config: &AccountConfig,
        tokens: &Tokens,
    ) -> Result<Self, AccountError> {
        let base = config.base_url_or(DEFAULT_BASE_URL);
        reqwest::Url::parse(&base)
            .map_err(|e| config.client_error(format!("base_url {base:?}: {e}")))?;
        let app_id = config.setting("app_id")?.to_owned();
        Ok(WechatApp {
            client: http::client(config.timeout()).map_err(|e| config.client_error(e))?,
            base,
            app_secret: config.credential("app_secret")?.to_owned(),
            tokens: tokens.clone(),
            token_name: format!("wechat:{app_id}"),
            app_id,
        })
    }

    /// One JSON POST; the answer's JSON, whatever its `errcode`.
    async fn post(&self, url: reqwest::Url, body: &impl Serialize) -> Result<Value, SendError> {
        let response = self
            .client
            .post(url)
            .json(body)
            .send()
            .await
            // The URL holds the access token: keep it out of the error.
            .map_err(|e| http::transport_error(&e.without_url()))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|e| http::transport_error(&e.without_url()))?;
        if !status.is_success() {
            return Err(http::status_error(status, &headers, &text));
        }
        serde_json::from_str(&text).map_err(bad_answer)
    }

    async fn stable_token(&self, force_refresh: bool) -> Result<(String, Duration), SendError> {
        let request = StableTokenRequest {
            grant_type: "client_credential",
            appid: &self.app_id,
            secret: &self.app_secret,
            force_refresh,
        };
        let reply = self
            .post(self.url("/cgi-bin/stable_token", None)?, &request)
            .await?;
        let (code, message) = errcode(&reply)?;
        if code != 0 {
            // The token was refused for the app, not for any message: a code that would
            // condemn a message pauses the account instead.
            return Err(match classify(code, message) {
                SendError::Final { code, message } => SendError::Unavailable {
                    code,
                    message,
                    retry_after: None,
                },
                other => other,
            });
        }
        let token = reply
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad_answer("the stable token answer has no access_token"))?;
        let lifetime = reply
            .get("expires_in")
            .and_then(Value::as_u64)
            .filter(|s| *s > 0)
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        Ok((token.to_owned(), lifetime))
    }

    /// A token, fetched when none is held. After WeChat refused `refused`, a fetch that hands
    /// back that same token in normal mode asks again in force mode.
    async fn token(&self, refused: Option<&str>) -> Result<String, SendError> {
        self.tokens
            .get(&self.token_name, || async {
                let fetched = self.stable_token(false).await?;
                match refused {
                    Some(refused) if fetched.0 == refused => {
                        tracing::warn!(app_id = %self.app_id, "wechat: the refused token came back; forcing a refresh");
                        self.stable_token(true).await
                    }
                    _ => Ok(fetched),
                }
            })
            .await
    }

    /// `POST {base}{path}?access_token=...` with `body`; the answer when its `errcode` is 0.
    /// A refused token is forgotten and the call made once more with a fresh one.
    pub(crate) async fn call(&self, path: &str, body: &impl Serialize) -> Result<Value, SendError> {
        let token = self.token(None).await?;
        let reply = self.post(self.url(path, Some(&token))?, body).await?;
        let (code, message) = errcode(&reply)?;
        let (reply, code, message) = if is_token_refusal(code) {
            tracing::info!(app_id = %self.app_id, code, "wechat: access token refused; refreshing");
            self.tokens.invalidate(&self.token_name, &token).await?;
            let fresh = self.token(Some(&token)).await?;
            let reply = self.post(self.url(path, Some(&fresh))?, body).await?;
            let (code, message) = errcode(&reply)?;
            (reply, code, message)
        } else {
            (reply, code, message)
        };
        if code == 0 {
            Ok(reply)
        } else {
            Err(classify(code, message))
        }
    }

    fn url(&self, path: &str, token: Option<&str>) -> Result<reqwest::Url, SendError> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base)).map_err(|e| {
            SendError::Unavailable {
                code: "BAD_BASE_URL".to_owned(),
                message: e.to_string(),
                retry_after: None,
            }
        })?;
        if let Some(token) = token {
            url.query_pairs_mut().append_pair("access_token", token);
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_classified() {
        let class = |code: i64| match classify(code, String::new()) {
            SendError::Retryable { .. } => "retryable",
            SendError::Final { .. } => "final",
            SendError::Throttled { .. } => "throttled",
            SendError::Unavailable { .. } => "unavailable",
        };
        for code in [-1, 40001, 40014, 42001] {
            assert_eq!(class(code), "retryable", "{code}");
        }
        for code in [45009, 45011] {
            assert_eq!(class(code), "throttled", "{code}");
        }
        for code in [40013, 40125, 40164, 48001, 48004] {
            assert_eq!(class(code), "unavailable", "{code}");
        }
        for code in [40003, 40037, 43004, 43101, 47001, 47003, 41030, 40165] {
            assert_eq!(class(code), "final", "{code}");
        }
        assert!(is_token_refusal(42001) && !is_token_refusal(40003));
    }

    #[test]
    fn answers_are_read_loosely_but_not_wrongly() {
        assert_eq!(
            errcode(&json!({"access_token": "t"})).ok(),
            Some((0, String::new()))
        );
        assert_eq!(
            errcode(&json!({"errcode": 43004, "errmsg": "require subscribe"})).ok(),
            Some((43004, "require subscribe".to_owned()))
        );
        assert!(errcode(&json!({"errcode": "oops"})).is_err());
        assert_eq!(
            message_id(&json!({"msgid": 3_248_682_510_344_192_008_u64}), "msgid").as_deref(),
            Some("3248682510344192008")
        );
        assert_eq!(message_id(&json!({"msgid": ""}), "msgid"), None);
    }

    #[test]
    fn a_reserved_parameter_is_not_template_data() {
        let param = |name: &str, value: &str| TemplateParam {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        let (data, url) = template_data(
            &[
                param("thing1", "Order shipped"),
                param("url", "https://example.com/o/1"),
            ],
            "url",
        );
        assert_eq!(data, json!({"thing1": {"value": "Order shipped"}}));
        assert_eq!(url.as_deref(), Some("https://example.com/o/1"));
    }
}
