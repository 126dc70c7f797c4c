//! WeCom app messages (`wecom_app`): a self-built app writes to one member, by userid.
//!
//! - `GET /cgi-bin/gettoken?corpid=&corpsecret=` ("获取access_token", document 91039) hands
//!   out an access token for `expires_in` seconds; it is shared through [`Tokens`] under
//!   `wecom:{corp_id}:{agent_id}`.
//! - `POST /cgi-bin/message/send?access_token=` ("发送应用消息", document 90236) with `touser`
//!   (the receiver), `agentid` and `text`, `markdown` (the title as a heading line above the
//!   body) or `textcard` (a CARD with a link; a CARD without one goes as text). Its `msgid` is
//!   the supplier message id.
//! - `POST /cgi-bin/message/recall?access_token=` ("撤回应用消息", document 94867) with
//!   `{"msgid": ...}`, within 24 hours of the send.
//!
//! A token WeCom refuses (40014 invalid, 42001 expired, 41001 missing) is dropped and the call
//! is made once more with a fresh one.
//!
//! ```toml
//! [[accounts]]
//! id = "wecom-app"
//! channel = "WECOM_APP"
//! supplier = "wecom_app"
//! settings = { corp_id = "ww1234567890abcdef", agent_id = "1000002" }
//! credentials = { secret = "..." }
//! # base_url = "https://qyapi.weixin.qq.com"
//! ```
//!
//! The optional setting `duplicate_check_secs` turns on WeCom's duplicate check
//! (`enable_duplicate_check`): the same request within that many seconds (at most 14400) is
//! not delivered twice, so a send retried after a lost answer does not reach the member twice.

use std::fmt;
use std::time::Duration;

use domain::{Channel, TemplateContent};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{TOKEN_REFUSED, bad_answer, read_answer, transport_error};
use crate::accounts::{AccountConfig, AccountError};
use crate::http;
use crate::supplier::{Outbound, SendError, SendFuture, Sent, Supplier};
use crate::tokens::Tokens;

pub const DEFAULT_BASE_URL: &str = "https://qyapi.weixin.qq.com";
/// What WeCom documents as a token's life, for an answer that leaves `expires_in` out.
const DEFAULT_TOKEN_LIFE: Duration = Duration::from_secs(7200);
/// The longest duplicate-check interval WeCom accepts: four hours.
const MAX_DUPLICATE_CHECK_SECS: u64 = 4 * 3600;

/// An app message, as `message/send` takes it.
#[derive(Serialize, Debug, PartialEq)]
struct SendRequest<'a> {
    touser: &'a str,
    agentid: i64,
    #[serde(flatten)]
    body: AppMessage<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_duplicate_check: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate_check_interval: Option<u64>,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(tag = "msgtype", rename_all = "lowercase")]
enum AppMessage<'a> {
    Text { text: Content },
    Markdown { markdown: Content },
    Textcard { textcard: Textcard<'a> },
}

#[derive(Serialize, Debug, PartialEq)]
struct Content {
    content: String,
}

#[derive(Serialize, Debug, PartialEq)]
struct Textcard<'a> {
    title: &'a str,
    description: &'a str,
    url: &'a str,
}

#[derive(Serialize)]
struct RecallRequest<'a> {
    msgid: &'a str,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: u64,
}

#[derive(Deserialize)]
struct SendAnswer {
    #[serde(default)]
    invaliduser: String,
    #[serde(default)]
    unlicenseduser: String,
    #[serde(default)]
    msgid: String,
}

/// An answer whose fields do not matter beyond `errcode`.
#[derive(Deserialize)]
struct Nothing {}

fn message(content: &TemplateContent) -> Result<AppMessage<'_>, SendError> {
    Ok(match content {
        TemplateContent::Text { body } => AppMessage::Text {
            text: Content {
                content: body.clone(),
            },
        },
        TemplateContent::Markdown { title, body } => AppMessage::Markdown {
            markdown: Content {
                content: super::robot::titled_markdown(title, body),
            },
        },
        TemplateContent::Card {
            title,
            body,
            url: Some(url),
        } => AppMessage::Textcard {
            textcard: Textcard {
                title,
                description: body,
                url,
            },
        },
        // A text card needs a link. Text, unlike markdown, shows in the WeChat plugin too.
        TemplateContent::Card {
            title,
            body,
            url: None,
        } => AppMessage::Text {
            text: Content {
                content: format!("{title}\n{body}"),
            },
        },
        other => {
            return Err(SendError::Final {
                code: "UNSUPPORTED_CONTENT".to_owned(),
                message: format!(
                    "wecom_app sends TEXT, MARKDOWN and CARD, not {}",
                    other.kind()
                ),
            });
        }
    })
}

/// A WeCom self-built app, reached with its corp id, agent id and secret.
pub struct WecomApp {
    client: reqwest::Client,
    tokens: Tokens,
    /// `wecom:{corp_id}:{agent_id}`: the key, never the secret, names the token.
    token_name: String,
    token_url: reqwest::Url,
    send_url: reqwest::Url,
    recall_url: reqwest::Url,
    corp_id: String,
    agent_id: i64,
    secret: String,
    duplicate_check_secs: Option<u64>,
}

impl fmt::Debug for WecomApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret and the token stay out: Debug output reaches logs.
        f.debug_struct("WecomApp")
            .field("send_url", &self.send_url.as_str())
            .field("corp_id", &self.corp_id)
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

impl WecomApp {
    /// Builds the supplier from an `[[accounts]]` entry (keys in the module docs).
    pub fn from_account(config: &AccountConfig, tokens: &Tokens) -> Result<Self, AccountError> {
        let base = config.base_url_or(DEFAULT_BASE_URL);
        let url = |path: &str| {
            reqwest::Url::parse(&format!("{base}{path}"))
                .map_err(|e| config.client_error(format!("base_url {base:?}: {e}")))
        };
        let corp_id = config.setting("corp_id")?.to_owned();
        let agent_text = config.setting("agent_id")?;
        let agent_id: i64 = agent_text.trim().parse().map_err(|_| {
            config.client_error(format!("agent_id must be a number, not {agent_text:?}"))
        })?;
        let duplicate_check_secs = match config.settings.get("duplicate_check_secs") {
            None => None,
            Some(raw) => match raw.trim().parse::<u64>() {
                Ok(0) => None,
                Ok(secs) if secs <= MAX_DUPLICATE_CHECK_SECS => Some(secs),
                _ => {
                    return Err(config.client_error(format!(
                        "duplicate_check_secs must be 0 to {MAX_DUPLICATE_CHECK_SECS}, not {raw:?}"
                    )));
                }
            },
        };
        Ok(WecomApp {
            client: http::client(config.timeout()).map_err(|e| config.client_error(e))?,
            tokens: tokens.clone(),
            token_name: format!("wecom:{corp_id}:{agent_id}"),
            token_url: url("/cgi-bin/gettoken")?,
            send_url: url("/cgi-bin/message/send")?,
            recall_url: url("/cgi-bin/message/recall")?,
            corp_id,
            agent_id,
            secret: config.credential("secret")?.to_owned(),
            duplicate_check_secs,
        })
    }

    /// `gettoken`: the token and its life.
    async fn fetch_token(&self) -> Result<(String, Duration), SendError> {
        let mut url = self.token_url.clone();
        url.query_pairs_mut()
            .append_pair("corpid", &self.corp_id)
            .append_pair("corpsecret", &self.secret);
        let response = self.client.get(url).send().await.map_err(transport_error)?;
        let text = read_answer(response).await?;
        let answer: TokenAnswer = serde_json::from_str(&text).map_err(bad_answer)?;
        if answer.access_token.is_empty() {
            return Err(bad_answer("gettoken answered no access_token"));
        }
        let life = match answer.expires_in {
            0 => DEFAULT_TOKEN_LIFE,
            secs => Duration::from_secs(secs),
        };
        Ok((answer.access_token, life))
    }

    async fn token(&self) -> Result<String, SendError> {
        self.tokens
            .get(&self.token_name, || self.fetch_token())
            .await
    }

    /// One POST with the token in the query string.
    async fn post_with<T: DeserializeOwned>(
        &self,
        url: &reqwest::Url,
        token: &str,
        body: &[u8],
    ) -> Result<T, SendError> {
        let mut url = url.clone();
        url.query_pairs_mut().append_pair("access_token", token);
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await
            .map_err(transport_error)?;
        let text = read_answer(response).await?;
        serde_json::from_str(&text).map_err(bad_answer)
    }

    /// A POST with the shared token; a refused token is dropped and the call made once more.
    async fn call<T: DeserializeOwned>(
        &self,
        url: &reqwest::Url,
        payload: &impl Serialize,
    ) -> Result<T, SendError> {
        let body = serde_json::to_vec(payload).map_err(|e| SendError::Final {
            code: "ENCODE".to_owned(),
            message: e.to_string(),
        })?;
        let token = self.token().await?;
        match self.post_with(url, &token, &body).await {
            Err(error) if is_token_refusal(&error) => {
                tracing::info!(name = %self.token_name, code = error.code(), "wecom_app: token refused, fetching a new one");
                self.tokens.invalidate(&self.token_name, &token).await?;
                let token = self.token().await?;
                self.post_with(url, &token, &body).await
            }
            other => other,
        }
    }

    async fn send_message(&self, outbound: &Outbound<'_>) -> Result<Sent, SendError> {
        let user = outbound.receiver.value();
        // `touser` takes a `|`-separated list and `@all`; a receiver is one member.
        if user.contains('|') || user.trim().eq_ignore_ascii_case("@all") || user.is_empty() {
            return Err(SendError::Final {
                code: "INVALID_RECEIVER".to_owned(),
                message: format!(
                    "a wecom_app receiver is one member's userid, not {}",
                    outbound.receiver.masked()
                ),
            });
        }
        let request = SendRequest {
            touser: user,
            agentid: self.agent_id,
            body: message(outbound.content)?,
            enable_duplicate_check: self.duplicate_check_secs.map(|_| 1),
            duplicate_check_interval: self.duplicate_check_secs,
        };
        let answer: SendAnswer =
            self.call(&self.send_url, &request)
                .await
                .map_err(|error| match error {
                    SendError::Final { code, message } => SendError::Final {
                        message: format!("{}: {message}", outbound.receiver.masked()),
                        code,
                    },
                    other => other,
                })?;
        // WeCom answers 0 when some receivers were refused; with one receiver, that one was.
        if named(&answer.invaliduser, user) {
            return Err(SendError::Final {
                code: "INVALID_USER".to_owned(),
                message: format!(
                    "{} is not a member the app can reach (invaliduser)",
                    outbound.receiver.masked()
                ),
            });
        }
        if named(&answer.unlicenseduser, user) {
            return Err(SendError::Final {
                code: "UNLICENSED_USER".to_owned(),
                message: format!(
                    "{} has no interface licence (unlicenseduser)",
                    outbound.receiver.masked()
                ),
            });
        }
        Ok(Sent {
            supplier_message_id: (!answer.msgid.is_empty()).then_some(answer.msgid),
        })
    }

    async fn recall_message(&self, msgid: Option<&str>) -> Result<Sent, SendError> {
        let Some(msgid) = msgid.filter(|m| !m.is_empty()) else {
            return Err(SendError::Final {
                code: "NO_MSGID".to_owned(),
                message: "WeCom gave no msgid for this message, so it cannot be recalled".into(),
            });
        };
        let _: Nothing = self
            .call(&self.recall_url, &RecallRequest { msgid })
            .await?;
        Ok(Sent {
            supplier_message_id: Some(msgid.to_owned()),
        })
    }
}

fn is_token_refusal(error: &SendError) -> bool {
    error
        .code()
        .parse::<i64>()
        .is_ok_and(|code| TOKEN_REFUSED.contains(&code))
}

/// Whether a `|`-separated list from WeCom names `user`; WeCom lowercases userids there.
fn named(list: &str, user: &str) -> bool {
    list.split('|')
        .any(|u| !u.is_empty() && u.eq_ignore_ascii_case(user))
}

impl Supplier for WecomApp {
    fn name(&self) -> &'static str {
        "wecom_app"
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::WecomApp
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> SendFuture<'a> {
        Box::pin(self.send_message(message))
    }

    fn recall<'a>(
        &'a self,
        _message: &'a Outbound<'a>,
        supplier_message_id: Option<&'a str>,
    ) -> Option<SendFuture<'a>> {
        Some(Box::pin(self.recall_message(supplier_message_id)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn config() -> AccountConfig {
        AccountConfig {
            id: "wecom".to_owned(),
            channel: Channel::WecomApp,
            supplier: "wecom_app".to_owned(),
            base_url: None,
            weight: 1,
            settings: BTreeMap::from([
                ("corp_id".to_owned(), "ww0123".to_owned()),
                ("agent_id".to_owned(), "1000002".to_owned()),
            ]),
            credentials: BTreeMap::from([("secret".to_owned(), "s3cr3t-value".to_owned())]),
            timeout_secs: 1,
            rate_limit_per_sec: None,
            rate_limit_burst: None,
            http_supplier: None,
        }
    }

    #[test]
    fn contents_become_app_messages() {
        let request = |content: TemplateContent| {
            serde_json::to_value(SendRequest {
                touser: "zhangsan",
                agentid: 1_000_002,
                body: message(&content).expect("supported"),
                enable_duplicate_check: None,
                duplicate_check_interval: None,
            })
            .expect("json")
        };
        assert_eq!(
            request(TemplateContent::Text { body: "hi".into() }),
            json!({"touser": "zhangsan", "agentid": 1_000_002, "msgtype": "text", "text": {"content": "hi"}})
        );
        assert_eq!(
            request(TemplateContent::Markdown {
                title: "Build".into(),
                body: "done".into()
            }),
            json!({"touser": "zhangsan", "agentid": 1_000_002, "msgtype": "markdown", "markdown": {"content": "# Build\ndone"}})
        );
        assert_eq!(
            request(TemplateContent::Card {
                title: "Leave approved".into(),
                body: "3 days".into(),
                url: Some("https://example.com/leave/7".into())
            }),
            json!({"touser": "zhangsan", "agentid": 1_000_002, "msgtype": "textcard", "textcard": {
                "title": "Leave approved", "description": "3 days", "url": "https://example.com/leave/7"
            }})
        );
        assert_eq!(
            request(TemplateContent::Card {
                title: "Leave approved".into(),
                body: "3 days".into(),
                url: None
            })["text"],
            json!({"content": "Leave approved\n3 days"})
        );
    }

    #[test]
    fn settings_are_checked_and_debug_leaves_the_secret_out() {
        let tokens = Tokens::in_process();
        let app = WecomApp::from_account(&config(), &tokens).expect("app");
        assert_eq!(app.token_name, "wecom:ww0123:1000002");
        assert_eq!(
            app.send_url.as_str(),
            "https://qyapi.weixin.qq.com/cgi-bin/message/send"
        );
        let debug = format!("{app:?}");
        assert!(
            debug.contains("ww0123") && !debug.contains("s3cr3t"),
            "{debug}"
        );

        let mut bad = config();
        bad.settings.insert("agent_id".into(), "app".into());
        assert!(WecomApp::from_account(&bad, &tokens).is_err());
        let mut bad = config();
        bad.settings
            .insert("duplicate_check_secs".into(), "90000".into());
        assert!(WecomApp::from_account(&bad, &tokens).is_err());
        let mut bad = config();
        bad.credentials.clear();
        assert!(matches!(
            WecomApp::from_account(&bad, &tokens),
            Err(AccountError::MissingCredential { name: "secret", .. })
        ));
    }

    #[test]
    fn refused_users_are_found_in_the_lists() {
        assert!(named("lisi|zhangsan", "ZhangSan"));
        assert!(!named("", "zhangsan"));
        assert!(!named("zhangsan2", "zhangsan"));
    }
}
