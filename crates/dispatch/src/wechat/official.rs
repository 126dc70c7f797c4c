//! WeChat official accounts (`wechat_official`): template messages through
//! `POST /cgi-bin/message/template/send?access_token=...` (sendTemplateMessage), and the
//! `TEMPLATESENDJOBFINISH` event WeChat pushes back when the delivery is over.
//!
//! The body is `{touser, template_id, url, client_msg_id, data}`: `touser` is the receiver's
//! openid, `template_id` the template's `template_code`, and `data` is `{name: {value}}` from
//! the template's parameters. A parameter named `url` is not template data (WeChat's keyword
//! names are `thing1`, `time2`... or the older `first`, `keyword1`, `remark`): it is the link
//! the message opens, falling back to the account's `settings.url`. Herald's message id goes
//! as `client_msg_id`, which WeChat uses to send a retried call only once. The answer's
//! `msgid` is the supplier message id, which the finish event names again as `MsgID`.
//!
//! ```toml
//! [[accounts]]
//! id = "wechat"
//! channel = "WECHAT_OFFICIAL"
//! supplier = "wechat_official"
//! settings = { app_id = "wx1234567890abcdef", url = "https://example.com/messages" }  # url optional
//! credentials = { app_secret = "...", callback_token = "..." }  # callback_token optional
//! ```
//!
//! Receipts arrive on the official account's server URL: set it to
//! `https://HERALD/callbacks/{account id}` in plain-text mode, with the same Token as
//! `credentials.callback_token`. Herald checks each push with [`verify_callback`] and reads
//! the delivery event with [`template_send_finished`].

use std::fmt;

use chrono::DateTime;
use domain::{Channel, ReceiptOutcome, TemplateContent};
use serde::Serialize;
use serde_json::Value;
use sha1::{Digest, Sha1};

use super::{WechatApp, message_id, template_data, with_receiver};
use crate::accounts::{AccountConfig, AccountError};
use crate::supplier::{
    CallbackReply, CallbackRequest, Outbound, SendError, SendFuture, Sent, Supplier,
    SupplierReceipt,
};
use crate::tokens::Tokens;

/// The parameter that carries the link a template message opens.
pub const URL_PARAM: &str = "url";

#[derive(Serialize)]
struct TemplateSend<'a> {
    touser: &'a str,
    template_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    client_msg_id: String,
    data: Value,
}

/// An official account (服务号) that sends template messages.
pub struct WechatOfficial {
    app: WechatApp,
    url: Option<String>,
    /// The Token beside the server URL in the account's settings: it signs WeChat's pushes.
    callback_token: Option<String>,
}

impl fmt::Debug for WechatOfficial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WechatOfficial")
            .field("app", &self.app)
            .field("url", &self.url)
            .field(
                "callback_token",
                &self.callback_token.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

impl WechatOfficial {
    /// Builds the supplier from an `[[accounts]]` entry (keys in the module docs).
    pub fn from_account(config: &AccountConfig, tokens: &Tokens) -> Result<Self, AccountError> {
        Ok(WechatOfficial {
            app: WechatApp::from_account(config, tokens)?,
            url: config.settings.get("url").cloned(),
            callback_token: config
                .credentials
                .get("callback_token")
                .filter(|t| !t.is_empty())
                .cloned(),
        })
    }

    async fn send_template(&self, message: &Outbound<'_>) -> Result<Sent, SendError> {
        let TemplateContent::SupplierTemplate {
            template_code,
            params,
            ..
        } = message.content
        else {
            return Err(SendError::Final {
                code: "UNSUPPORTED_CONTENT".to_owned(),
                message: format!(
                    "wechat_official sends template messages only, not {}",
                    message.content.kind()
                ),
            });
        };
        let (data, url) = template_data(params, URL_PARAM);
        let request = TemplateSend {
            touser: message.receiver.value(),
            template_id: template_code,
            url: url.or_else(|| self.url.clone()),
            client_msg_id: message.message_id.to_string(),
            data,
        };
        let reply = self
            .app
            .call("/cgi-bin/message/template/send", &request)
            .await
            .map_err(|e| with_receiver(e, message))?;
        Ok(Sent {
            supplier_message_id: message_id(&reply, "msgid"),
        })
    }
}

impl Supplier for WechatOfficial {
    fn name(&self) -> &'static str {
        "wechat_official"
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::WechatOfficial
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> SendFuture<'a> {
        Box::pin(self.send_template(message))
    }

    /// WeChat's pushes to the server URL (`/callbacks/{account}`), signed with the account's
    /// `credentials.callback_token`: a GET with `echostr` when the URL is configured (answered
    /// with `echostr`), and POSTed events, of which `TEMPLATESENDJOBFINISH` is a receipt
    /// (answered `success`, as WeChat asks; other events are acknowledged and ignored). A
    /// missing or wrong signature answers 401 and carries nothing. `None` when the account
    /// has no `callback_token`.
    fn callback(&self, request: &CallbackRequest<'_>) -> Option<CallbackReply> {
        let token = self.callback_token.as_deref()?;
        let query = query_pairs(request.query);
        let param = |name: &str| {
            query
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        let (timestamp, nonce, signature) =
            (param("timestamp"), param("nonce"), param("signature"));
        if timestamp.is_empty()
            || nonce.is_empty()
            || !verify_callback(token, timestamp, nonce, signature)
        {
            return Some(CallbackReply::text(401, "bad signature"));
        }
        if request.method.eq_ignore_ascii_case("GET") {
            return Some(CallbackReply::text(200, param("echostr")));
        }
        let mut reply = CallbackReply::text(200, "success");
        if let Some(receipt) = std::str::from_utf8(request.body)
            .ok()
            .and_then(template_send_finished)
        {
            reply.receipts.push(receipt);
        }
        Some(reply)
    }
}

/// A query string's decoded `name=value` pairs.
fn query_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse("http://callback.invalid/")
        .map(|mut url| {
            url.set_query(Some(query));
            url.query_pairs()
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The signature WeChat puts in the `signature` query parameter of every push to the server
/// URL: the lowercase hex SHA-1 of `token`, `timestamp` and `nonce` sorted as strings and
/// joined with nothing. `token` is the Token set beside the server URL in the official
/// account's settings (not an access token).
pub fn callback_signature(token: &str, timestamp: &str, nonce: &str) -> String {
    let mut parts = [token, timestamp, nonce];
    parts.sort_unstable();
    Sha1::digest(parts.concat().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a push to the server URL comes from WeChat: `signature` (from the query, with
/// `timestamp` and `nonce`) is [`callback_signature`] of them and the account's `token`. For
/// plain-text mode, where the body is the XML itself. The comparison takes the same time
/// wherever the strings differ.
pub fn verify_callback(token: &str, timestamp: &str, nonce: &str, signature: &str) -> bool {
    let expected = callback_signature(token, timestamp, nonce);
    let given = signature.trim().to_ascii_lowercase();
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0_u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// The receipt in a `TEMPLATESENDJOBFINISH` event, the XML WeChat pushes once a template
/// message's delivery is over:
///
/// ```xml
/// <xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>
/// <FromUserName><![CDATA[oia2TjuEGTNoeX76QEjQNrcURxG8]]></FromUserName>
/// <CreateTime>1395658920</CreateTime><MsgType><![CDATA[event]]></MsgType>
/// <Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID>
/// <Status><![CDATA[success]]></Status></xml>
/// ```
///
/// `MsgID` is the `msgid` the send answered (the supplier message id), `FromUserName` the
/// receiver's openid and `CreateTime` when it was reported. `Status` `success` is delivered;
/// `failed:user block` (the user blocks the account's messages) and `failed: system failed`
/// are undelivered, with the status kept as the supplier status. `None` for any other push
/// (a different event, a user's message), for a status WeChat does not document, and for
/// anything that is not such a document; never a panic. WeChat does not echo
/// `client_msg_id`, so the receipt names no Herald message id: match it by `MsgID`.
pub fn template_send_finished(xml: &str) -> Option<SupplierReceipt> {
    let fields = xml_fields(xml)?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.trim())
    };
    if field("MsgType")? != "event" || field("Event")? != "TEMPLATESENDJOBFINISH" {
        return None;
    }
    let status = field("Status")?;
    let outcome = if status == "success" {
        ReceiptOutcome::Delivered
    } else if status.starts_with("failed") {
        ReceiptOutcome::Undelivered
    } else {
        return None;
    };
    let msg_id =
        field("MsgID").filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))?;
    let reported_at = DateTime::from_timestamp(field("CreateTime")?.parse().ok()?, 0)?;
    Some(SupplierReceipt {
        message_id: None,
        supplier_message_id: Some(msg_id.to_owned()),
        receiver: field("FromUserName")
            .filter(|r| !r.is_empty())
            .map(str::to_owned),
        outcome,
        supplier_status: status.to_owned(),
        reported_at,
    })
}

/// The top-level fields of a WeChat push, `<xml><Name>value</Name>...</xml>`, in order, with
/// CDATA sections unwrapped and the predefined entities decoded. `None`: not such a document.
/// A DOCTYPE, attributes or processing instructions inside make it not such a document, so
/// no entity is ever expanded beyond the five XML predefines.
fn xml_fields(xml: &str) -> Option<Vec<(&str, String)>> {
    let mut rest = xml.trim_start_matches('\u{feff}').trim();
    if let Some(prolog) = rest.strip_prefix("<?xml") {
        rest = prolog.split_once("?>")?.1.trim_start();
    }
    let mut rest = rest.strip_prefix("<xml>")?.strip_suffix("</xml>")?;
    let mut fields = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Some(fields);
        }
        let (name, after_name) = rest.strip_prefix('<')?.split_once('>')?;
        if let Some(empty) = name.strip_suffix('/') {
            if !is_name(empty) {
                return None;
            }
            fields.push((empty, String::new()));
            rest = after_name;
            continue;
        }
        if !is_name(name) {
            return None;
        }
        let close = format!("</{name}>");
        let (value, after_value) = match after_name.strip_prefix("<![CDATA[") {
            Some(cdata) => {
                let (value, after) = cdata.split_once("]]>")?;
                (
                    value.to_owned(),
                    after.trim_start().strip_prefix(close.as_str())?,
                )
            }
            None => {
                let (raw, after) = after_name.split_once(close.as_str())?;
                (unescape(raw), after)
            }
        };
        fields.push((name, value));
        rest = after_value;
    }
}

fn is_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Decodes the five entities XML predefines; anything else is left as written.
fn unescape(raw: &str) -> String {
    raw.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_documents_are_read_without_panicking() {
        for xml in [
            "",
            "<xml>",
            "</xml>",
            "<xml><MsgID>1</xml>",
            "<xml><MsgType><![CDATA[event</MsgType></xml>",
            "<!DOCTYPE xml [<!ENTITY e \"x\">]><xml><Event>&e;</Event></xml>",
            "<xml><Event a=\"1\">x</Event></xml>",
            "<xml><é>1</é></xml>",
            "<xml><Status>成功</Status><MsgID>",
        ] {
            assert_eq!(template_send_finished(xml), None, "{xml}");
        }
        assert_eq!(
            xml_fields(
                "<?xml version=\"1.0\"?>\n<xml> <A>x &amp; &lt;y&gt;</A><B/><C><![CDATA[<z>]]></C></xml>"
            ),
            Some(vec![
                ("A", "x & <y>".to_owned()),
                ("B", String::new()),
                ("C", "<z>".to_owned()),
            ])
        );
    }

    #[test]
    fn an_unknown_status_or_another_event_is_not_a_receipt() {
        let event = |event: &str, status: &str| {
            format!(
                "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>\
                 <CreateTime>1395658920</CreateTime><MsgType><![CDATA[event]]></MsgType>\
                 <Event><![CDATA[{event}]]></Event><MsgID>7</MsgID><Status><![CDATA[{status}]]></Status></xml>"
            )
        };
        assert!(template_send_finished(&event("TEMPLATESENDJOBFINISH", "success")).is_some());
        assert_eq!(
            template_send_finished(&event("TEMPLATESENDJOBFINISH", "pending")),
            None
        );
        assert_eq!(template_send_finished(&event("subscribe", "success")), None);
    }
}
