//! WeChat mini-programs (`mini_program`): subscribe messages through
//! `POST /cgi-bin/message/subscribe/send?access_token=...` (subscribeMessage.send), with the
//! mini-program's own app id, secret and access token.
//!
//! The body is `{touser, template_id, page, data, miniprogram_state, lang}`: `touser` is the
//! receiver's openid, `template_id` the template's `template_code`, `data` is `{name: {value}}`
//! from the template's parameters. A parameter named `page` is not template data (keyword
//! names are `thing1`, `time2`...): it is the mini-program page the message opens, such as
//! `pages/order/detail?id=42`, falling back to the account's `settings.page`; with neither the
//! message opens no page. The user must have accepted the template in the mini-program
//! (`wx.requestSubscribeMessage`), once per message for one-off subscriptions; otherwise
//! WeChat answers 43101. WeChat's answer may carry a `msgid`, kept as the supplier message id.
//!
//! ```toml
//! [[accounts]]
//! id = "mini"
//! channel = "MINI_PROGRAM"
//! supplier = "mini_program"
//! settings = { app_id = "wx0123456789abcdef", page = "pages/index/index", miniprogram_state = "formal", lang = "zh_CN" }
//! credentials = { app_secret = "..." }
//! ```
//!
//! `miniprogram_state` is `developer`, `trial` or `formal` (the default): which version of the
//! mini-program the message opens. `lang` is `zh_CN` (the default), `en_US`, `zh_HK` or `zh_TW`.

use std::fmt;

use domain::{Channel, TemplateContent};
use serde::Serialize;
use serde_json::Value;

use super::{WechatApp, message_id, template_data, with_receiver};
use crate::accounts::{AccountConfig, AccountError};
use crate::supplier::{Outbound, SendError, SendFuture, Sent, Supplier};
use crate::tokens::Tokens;

/// The parameter that carries the page a subscribe message opens.
pub const PAGE_PARAM: &str = "page";
const STATES: [&str; 3] = ["developer", "trial", "formal"];
const LANGS: [&str; 4] = ["zh_CN", "en_US", "zh_HK", "zh_TW"];

#[derive(Serialize)]
struct SubscribeSend<'a> {
    touser: &'a str,
    template_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<String>,
    data: Value,
    miniprogram_state: &'a str,
    lang: &'a str,
}

/// A mini-program that sends subscribe messages.
pub struct MiniProgram {
    app: WechatApp,
    page: Option<String>,
    state: String,
    lang: String,
}

impl fmt::Debug for MiniProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MiniProgram")
            .field("app", &self.app)
            .field("page", &self.page)
            .field("state", &self.state)
            .field("lang", &self.lang)
            .finish()
    }
}

impl MiniProgram {
    /// Builds the supplier from an `[[accounts]]` entry (keys in the module docs).
    pub fn from_account(config: &AccountConfig, tokens: &Tokens) -> Result<Self, AccountError> {
        let choice = |name: &'static str, default: &str, allowed: &[&str]| {
            let value = config.settings.get(name).map_or(default, String::as_str);
            if allowed.contains(&value) {
                Ok(value.to_owned())
            } else {
                Err(config.client_error(format!(
                    "settings.{name} must be one of {}, not {value:?}",
                    allowed.join(", ")
                )))
            }
        };
        Ok(MiniProgram {
            app: WechatApp::from_account(config, tokens)?,
            page: config.settings.get("page").cloned(),
            state: choice("miniprogram_state", "formal", &STATES)?,
            lang: choice("lang", "zh_CN", &LANGS)?,
        })
    }

    async fn send_subscribe(&self, message: &Outbound<'_>) -> Result<Sent, SendError> {
        let TemplateContent::SupplierTemplate {
            template_code,
            params,
            ..
        } = message.content
        else {
            return Err(SendError::Final {
                code: "UNSUPPORTED_CONTENT".to_owned(),
                message: format!(
                    "mini_program sends subscribe messages only, not {}",
                    message.content.kind()
                ),
            });
        };
        let (data, page) = template_data(params, PAGE_PARAM);
        let request = SubscribeSend {
            touser: message.receiver.value(),
            template_id: template_code,
            page: page.or_else(|| self.page.clone()),
            data,
            miniprogram_state: &self.state,
            lang: &self.lang,
        };
        let reply = self
            .app
            .call("/cgi-bin/message/subscribe/send", &request)
            .await
            .map_err(|e| with_receiver(e, message))?;
        Ok(Sent {
            supplier_message_id: message_id(&reply, "msgid"),
        })
    }
}

impl Supplier for MiniProgram {
    fn name(&self) -> &'static str {
        "mini_program"
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::MiniProgram
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> SendFuture<'a> {
        Box::pin(self.send_subscribe(message))
    }
}
