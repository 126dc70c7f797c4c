//! GeTui push (`getui`, 个推) for the PUSH channel, through RestAPI V2
//! (`https://restapi.getui.com/v2/{app_id}/...`, JSON with `content-type:
//! application/json;charset=utf-8`).
//!
//! - `POST /auth` with `{sign, timestamp, appkey}`, where `sign` is the lowercase hex SHA-256 of
//!   `appkey + timestamp + mastersecret` and `timestamp` the current epoch milliseconds as a
//!   string, answers `data.token` and `data.expire_time` (epoch ms; a day after the call). The
//!   token is shared through [`Tokens`] under `getui:{app_id}` for as long as `expire_time`
//!   says, and every other call carries it in the `token` header. GeTui allows 100 auth calls a
//!   minute, so a burst of sends makes one.
//! - `POST /push/single/cid` sends one notification to one cid: `request_id` is Herald's
//!   message id in the UUID's 32-character simple form (GeTui drops a request id it has seen,
//!   so a retry cannot deliver twice), `settings.ttl` how long an offline device's message is
//!   kept, `audience.cid` the receiver, `push_message.notification` the title, the body and
//!   `click_type` `url` (with the card's `url`) or `startapp`. A card keeps its title; a text
//!   takes the account's `default_title`. The answer's `data` is `{taskid: {cid: status}}`;
//!   the task id is the supplier message id.
//! - `POST /push/single/batch/cid` sends up to 200 such pushes in one call (`is_async: false`,
//!   `msg_list`), answered with every task's `{taskid: {cid: status}}`: see
//!   [`GeTui::send_batch`].
//!
//! ```toml
//! [[accounts]]
//! id = "getui"
//! channel = "PUSH"
//! supplier = "getui"
//! settings = { app_id = "KBUddlhohd8iskWv4ESaM5", default_title = "Herald", ttl_ms = "7200000" }
//! credentials = { app_key = "...", master_secret = "..." }
//! ```
//!
//! `app_id` is required. `default_title` (at most 50 characters; `app_name` is read when it is
//! absent, and one of the two must be set) titles text messages. `ttl_ms` defaults to GeTui's
//! two hours and may be -1 (online devices only) to three days. `base_url` defaults to
//! `https://restapi.getui.com/v2`.
//!
//! GeTui answers errors with HTTP 400, 401 or 403 and `{"code", "msg"}` (HTTP 5xx and answers
//! that are not its JSON are read as any HTTP answer). The codes, and the per-cid statuses of a
//! push answer:
//!
//! | code or status | meaning | class |
//! | --- | --- | --- |
//! | `10001` | token invalid or expired | token forgotten, fetched again, call retried once; then unavailable |
//! | `2`, `30019` | starting up, system busy | retryable |
//! | `10003`, `10005`, `30012`-`30015`, `30018` | per-minute limits | throttled (a minute) |
//! | `30004`, `30006`-`30011` | daily push totals used up | unavailable (five minutes) |
//! | `301`, `404`, `405` | wrong data centre, address or method | unavailable |
//! | `10002`, `10004`, `20001 permission required by …`, other `3xxxx` | blacklisted, or not in the account's plan | unavailable |
//! | `20001` at `/auth` (`sign is invalid`), any other `/auth` refusal | wrong key, secret or clock | unavailable |
//! | `1`, `20001` (`target user is invalid` and every parameter), `21001`, `22001`, `22002`, `23001`, `30005`, `30016`, unknown | the message or its cid | final |
//! | `successed_online`, `successed_offline` | pushed | sent |
//! | `successed_ignore` | cid inactive for 90 days: not pushed | final |
//! | `busy` | GeTui busy | retryable |
//! | `failed`, any other status | not pushed | final |

mod api;

use std::fmt;
use std::time::Duration;

use chrono::Utc;
use domain::{Channel, TemplateContent};
use serde::Serialize;
use serde_json::Value;

pub use api::sign;
use api::{
    Audience, AuthData, AuthRequest, BatchRequest, Notification, PushMessage, PushRequest,
    Settings, TOKEN_INVALID, bad_answer, classify, classify_auth, lifetime, outcome, parse_answer,
};

use crate::accounts::{AccountConfig, AccountError};
use crate::http;
use crate::supplier::{Outbound, SendError, SendFuture, Sent, Supplier};
use crate::tokens::Tokens;

pub const DEFAULT_BASE_URL: &str = "https://restapi.getui.com/v2";
const CONTENT_TYPE: &str = "application/json;charset=utf-8";
/// GeTui's default time an offline device's message is kept: two hours.
const DEFAULT_TTL_MS: i64 = 7_200_000;
/// The longest GeTui keeps a message: three days.
const MAX_TTL_MS: i64 = 3 * 24 * 3_600_000;
/// The most pushes one batch call takes.
pub const BATCH_LIMIT: usize = 200;
/// GeTui's limits on a notification, in characters.
const MAX_TITLE: usize = 50;
const MAX_BODY: usize = 256;
const MAX_URL: usize = 1024;

/// A GeTui app, reached with its app key and master secret.
pub struct GeTui {
    client: reqwest::Client,
    /// `{base_url}/{app_id}`: every path hangs off it.
    app_url: String,
    app_id: String,
    app_key: String,
    master_secret: String,
    tokens: Tokens,
    /// `getui:{app_id}`.
    token_name: String,
    ttl_ms: i64,
    default_title: String,
}

impl fmt::Debug for GeTui {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The app key and master secret stay out, and so does the token: Debug reaches logs.
        f.debug_struct("GeTui")
            .field("app_url", &self.app_url)
            .field("app_id", &self.app_id)
            .field("ttl_ms", &self.ttl_ms)
            .field("default_title", &self.default_title)
            .finish_non_exhaustive()
    }
}

impl GeTui {
    /// Builds the supplier from an `[[accounts]]` entry (keys in the module docs); its token is
    /// shared through `tokens`.
    pub fn from_account(config: &AccountConfig, tokens: &Tokens) -> Result<Self, AccountError> {
        let app_id = config.setting("app_id")?;
        if app_id.is_empty()
            || !app_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(config.client_error(format!("app_id {app_id:?} is not a GeTui app id")));
        }
        let base = config.base_url_or(DEFAULT_BASE_URL);
        let app_url = format!("{base}/{app_id}");
        reqwest::Url::parse(&app_url)
            .map_err(|e| config.client_error(format!("base_url {base:?}: {e}")))?;
        let ttl_ms = match config.settings.get("ttl_ms") {
            None => DEFAULT_TTL_MS,
            Some(raw) => raw
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|t| *t == -1 || (0..=MAX_TTL_MS).contains(t))
                .ok_or_else(|| {
                    config.client_error(format!(
                        "ttl_ms {raw:?} must be -1 or 0 to {MAX_TTL_MS} milliseconds"
                    ))
                })?,
        };
        let default_title = config
            .settings
            .get("default_title")
            .or_else(|| config.settings.get("app_name"))
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AccountError::MissingSetting {
                id: config.id.clone(),
                name: "default_title",
            })?;
        if default_title.chars().count() > MAX_TITLE {
            return Err(config.client_error(format!(
                "default_title is longer than GeTui's {MAX_TITLE} characters"
            )));
        }
        Ok(GeTui {
            client: http::client(config.timeout()).map_err(|e| config.client_error(e))?,
            app_url,
            app_id: app_id.to_owned(),
            app_key: config.credential("app_key")?.to_owned(),
            master_secret: config.credential("master_secret")?.to_owned(),
            tokens: tokens.clone(),
            token_name: format!("getui:{app_id}"),
            ttl_ms,
            default_title,
        })
    }

    /// One POST under the app's address. GeTui's envelope comes back whatever its code; HTTP
    /// 5xx and answers without the envelope become the HTTP classification.
    async fn post(
        &self,
        path: &str,
        body: Vec<u8>,
        token: Option<&str>,
    ) -> Result<api::Answer, SendError> {
        let mut request = self
            .client
            .post(format!("{}/{path}", self.app_url))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(body);
        if let Some(token) = token {
            request = request.header("token", token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| http::transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|e| http::transport_error(&e))?;
        if status.is_server_error() {
            return Err(http::status_error(status, &headers, &text));
        }
        match parse_answer(&text) {
            Some(answer) => Ok(answer),
            None if status.is_success() => Err(bad_answer(format!(
                "not GeTui's JSON: {}",
                text.chars().take(200).collect::<String>()
            ))),
            None => Err(http::status_error(status, &headers, &text)),
        }
    }

    /// A fresh token and how long it lives.
    async fn fetch_token(&self) -> Result<(String, Duration), SendError> {
        let timestamp = Utc::now().timestamp_millis().to_string();
        let request = AuthRequest {
            sign: sign(&self.app_key, &timestamp, &self.master_secret),
            timestamp,
            appkey: &self.app_key,
        };
        let answer = self.post("auth", encode(&request)?, None).await?;
        if answer.code != 0 {
            return Err(classify_auth(answer.code, &answer.msg));
        }
        let data: AuthData = serde_json::from_value(answer.data).map_err(bad_answer)?;
        if data.token.is_empty() {
            return Err(bad_answer("auth answered no token"));
        }
        let lifetime = lifetime(&data.expire_time, Utc::now().timestamp_millis())
            .ok_or_else(|| bad_answer(format!("auth expire_time {}", data.expire_time)))?;
        Ok((data.token, lifetime))
    }

    /// A call with the app's token; a token GeTui calls invalid is forgotten and the call made
    /// once more with a fresh one. Answers `data`.
    async fn call(&self, path: &str, payload: &impl Serialize) -> Result<Value, SendError> {
        let body = encode(payload)?;
        let mut refreshed = false;
        loop {
            let token = self
                .tokens
                .get(&self.token_name, || self.fetch_token())
                .await?;
            let answer = self.post(path, body.clone(), Some(&token)).await?;
            match answer.code {
                0 => return Ok(answer.data),
                TOKEN_INVALID if !refreshed => {
                    self.tokens.invalidate(&self.token_name, &token).await?;
                    refreshed = true;
                }
                code => return Err(classify(code, &answer.msg)),
            }
        }
    }

    /// The push of one message, or why it cannot go: content GeTui does not take, or longer
    /// than it allows.
    fn push_request<'a>(&'a self, message: &'a Outbound<'a>) -> Result<PushRequest<'a>, SendError> {
        let (title, body, url) = match message.content {
            TemplateContent::Card { title, body, url } => (
                title.as_str(),
                body.as_str(),
                url.as_deref().filter(|u| !u.is_empty()),
            ),
            TemplateContent::Text { body } => (self.default_title.as_str(), body.as_str(), None),
            other => {
                return Err(SendError::Final {
                    code: "UNSUPPORTED_CONTENT".to_owned(),
                    message: format!("getui pushes cards and texts, not {}", other.kind()),
                });
            }
        };
        let too_long = |field: &str, limit: usize| SendError::Final {
            code: "CONTENT_TOO_LONG".to_owned(),
            message: format!("the {field} is longer than GeTui's {limit} characters"),
        };
        if title.trim().is_empty() || body.trim().is_empty() {
            return Err(SendError::Final {
                code: "EMPTY_CONTENT".to_owned(),
                message: "GeTui needs a title and a body".to_owned(),
            });
        }
        if title.chars().count() > MAX_TITLE {
            return Err(too_long("title", MAX_TITLE));
        }
        if body.chars().count() > MAX_BODY {
            return Err(too_long("body", MAX_BODY));
        }
        if url.is_some_and(|u| u.chars().count() > MAX_URL) {
            return Err(too_long("url", MAX_URL));
        }
        let cid = message.receiver.value();
        if cid.is_empty() {
            return Err(SendError::Final {
                code: "INVALID_CID".to_owned(),
                message: "no cid".to_owned(),
            });
        }
        Ok(PushRequest {
            request_id: message.message_id.as_uuid().simple().to_string(),
            settings: Settings { ttl: self.ttl_ms },
            audience: Audience { cid: [cid] },
            push_message: PushMessage {
                notification: Notification {
                    title,
                    body,
                    click_type: if url.is_some() { "url" } else { "startapp" },
                    url,
                },
            },
        })
    }

    async fn push(&self, message: &Outbound<'_>) -> Result<Sent, SendError> {
        let request = self.push_request(message)?;
        let data = self.call("push/single/cid", &request).await?;
        outcome(&data, request.cid(), &message.receiver.masked())
    }

    /// Pushes many messages with `push/single/batch/cid`, in calls of at most [`BATCH_LIMIT`]
    /// with no cid twice in a call (GeTui refuses repeated cids, and a cid names its result).
    /// The results come in the order of `messages`: a message GeTui cannot take fails alone, a
    /// call that fails fails each of its messages, and each cid's status decides its own.
    pub async fn send_batch(&self, messages: &[Outbound<'_>]) -> Vec<Result<Sent, SendError>> {
        let mut results: Vec<Option<Result<Sent, SendError>>> = vec![None; messages.len()];
        let mut pending = Vec::with_capacity(messages.len());
        for (at, message) in messages.iter().enumerate() {
            match self.push_request(message) {
                Ok(request) => pending.push((at, request)),
                Err(error) => results[at] = Some(Err(error)),
            }
        }
        while !pending.is_empty() {
            let mut call = Vec::new();
            let mut later = Vec::new();
            let mut cids = std::collections::HashSet::new();
            for (at, request) in pending {
                if call.len() < BATCH_LIMIT && cids.insert(request.cid()) {
                    call.push((at, request));
                } else {
                    later.push((at, request));
                }
            }
            pending = later;
            let body = BatchRequest {
                is_async: false,
                msg_list: call.iter().map(|(_, request)| request).collect(),
            };
            match self.call("push/single/batch/cid", &body).await {
                Ok(data) => {
                    for (at, request) in &call {
                        let masked = messages[*at].receiver.masked();
                        results[*at] = Some(outcome(&data, request.cid(), &masked));
                    }
                }
                Err(error) => {
                    for (at, _) in &call {
                        results[*at] = Some(Err(error.clone()));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(bad_answer("no result"))))
            .collect()
    }
}

fn encode(payload: &impl Serialize) -> Result<Vec<u8>, SendError> {
    serde_json::to_vec(payload).map_err(|e| SendError::Final {
        code: "ENCODE".to_owned(),
        message: e.to_string(),
    })
}

impl Supplier for GeTui {
    fn name(&self) -> &'static str {
        "getui"
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::Push
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> SendFuture<'a> {
        Box::pin(self.push(message))
    }
}
