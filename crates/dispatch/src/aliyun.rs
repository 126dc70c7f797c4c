//! Aliyun SMS (`aliyun_sms`): the RPC-style `dysmsapi` API, version 2017-05-25, signed with
//! HMAC-SHA1 over the sorted, percent-encoded parameters (`SignatureVersion` 1.0).
//!
//! Every call is a form-encoded POST to `https://dysmsapi.aliyuncs.com/` (or the account's
//! `base_url`) carrying the common parameters, the action's own and `Signature`.
//! `SendSms` takes the `SupplierTemplate` content and sends Herald's message id as `OutId`;
//! `QuerySendDetails` reads back one message's delivery receipt by its `BizId`.
//!
//! `[[accounts]]` keys: `supplier = "aliyun_sms"`, `channel = "SMS"`,
//! `credentials.access_key_id`, `credentials.access_key_secret`,
//! `settings.sign_name` (used when the template names no sign),
//! `settings.region` (`RegionId`, default `cn-hangzhou`).

use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};
use domain::{Channel, MessageId, ReceiptOutcome, TemplateContent};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde::Deserialize;
use serde_json::Value;
use sha1::Sha1;

use crate::accounts::{AccountConfig, AccountError};
use crate::http;
use crate::supplier::{
    Outbound, ReceiptFuture, SendError, SendFuture, Sent, Supplier, SupplierReceipt,
};

const DEFAULT_BASE_URL: &str = "https://dysmsapi.aliyuncs.com";
const DEFAULT_REGION: &str = "cn-hangzhou";
const VERSION: &str = "2017-05-25";
/// The method every call uses; it is part of the string to sign. POST keeps phone numbers
/// out of URLs, and so out of proxy logs.
const METHOD: &str = "POST";

/// RFC 3986 percent-encoding, as Aliyun's signature wants it: every byte but `A-Z a-z 0-9 - _ . ~`
/// becomes `%XX` in upper-case hex (so a space is `%20`, `*` is `%2A`, and `~` stays).
pub fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// The parameters, each name and value percent-encoded, sorted by name and joined with `&`.
/// It is both what is signed and the request body.
pub fn canonical_query(params: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .map(|(name, value)| (percent_encode(name), percent_encode(value)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `{METHOD}&%2F&{percentEncode(canonical query)}`.
pub fn string_to_sign(method: &str, params: &[(&str, &str)]) -> String {
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonical_query(params))
    )
}

/// The `Signature` parameter: base64 of HMAC-SHA1 over the string to sign, keyed with the
/// secret followed by `&`. `params` are every parameter but `Signature` itself.
pub fn signature(method: &str, params: &[(&str, &str)], access_key_secret: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(format!("{access_key_secret}&").as_bytes())
        .unwrap_or_else(|_| unreachable!());
    mac.update(string_to_sign(method, params).as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// A receiver as Aliyun wants it: a mainland mobile as its 11 national digits, any other number
/// as country code and number with no `+`.
pub fn phone_number(receiver: &str) -> &str {
    match receiver.strip_prefix("+86") {
        Some(national)
            if national.len() == 11
                && national.starts_with('1')
                && national.bytes().all(|b| b.is_ascii_digit()) =>
        {
            national
        }
        _ => receiver.strip_prefix('+').unwrap_or(receiver),
    }
}

/// Aliyun's dates (`SendDate`, `ReceiveDate`) are Beijing time, which has had no daylight
/// saving since 1991.
fn shanghai() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| unreachable!())
}

/// Classifies an answer whose `Code` is not `OK`.
///
/// The code decides where Aliyun documents it; the HTTP status only where it does not.
/// - `Throttling*` is Aliyun's API flow control on the account: pause the account.
/// - The account's credentials refused, its balance, service or daily and monthly quota used
///   up: the account is unavailable; it is paused and messages fail over to another account.
///   The daily quota pauses it for an hour, the rest for the default minute.
/// - `isv.BUSINESS_LIMIT_CONTROL` is the per-number frequency limit (so many messages to one
///   phone a minute, hour or day): the receiver's, not the account's, so final, and never
///   counted against the account's breaker nor sent round the limit through another account.
/// - `isp.*` is Aliyun's side and worth retrying.
/// - Other `isv.*` codes are the request itself (the number, template or sign): final.
pub fn classify(code: &str, message: &str, status: StatusCode, headers: &HeaderMap) -> SendError {
    let code_owned = code.to_owned();
    let message = message.to_owned();
    if code.starts_with("Throttling") {
        return SendError::Throttled {
            code: code_owned,
            message,
            retry_after: http::retry_after(headers),
        };
    }
    let unavailable = |retry_after: Option<Duration>| SendError::Unavailable {
        code: code.to_owned(),
        message: message.clone(),
        retry_after,
    };
    let retryable = match code {
        "isv.DAY_LIMIT_CONTROL" => return unavailable(Some(Duration::from_secs(3600))),
        "isp.RAM_PERMISSION_DENY"
        | "isv.AMOUNT_NOT_ENOUGH"
        | "isv.OUT_OF_SERVICE"
        | "isv.MONTH_LIMIT_CONTROL"
        | "SignatureDoesNotMatch"
        | "InvalidAccessKeyId.NotFound"
        | "InvalidAccessKeyId.Inactive" => return unavailable(None),
        "isp.SYSTEM_ERROR"
        | "isp.GATEWAY_ERROR"
        | "ServiceUnavailable"
        | "InternalError"
        | "SignatureNonceUsed"
        | "InvalidTimeStamp.Expired" => true,
        "isv.BUSINESS_LIMIT_CONTROL"
        | "isv.MOBILE_NUMBER_ILLEGAL"
        | "isv.SMS_TEMPLATE_ILLEGAL"
        | "isv.SMS_SIGNATURE_ILLEGAL" => false,
        other if other.starts_with("InvalidAccessKeyId") => return unavailable(None),
        other if other.starts_with("isp.") => true,
        other if other.starts_with("isv.") => false,
        // A code not documented for SMS: the HTTP status says what kind of failure it was.
        _ => {
            return match http::status_error(status, headers, &message) {
                SendError::Retryable { message, .. } => SendError::Retryable {
                    code: code_owned,
                    message,
                },
                SendError::Final { message, .. } => SendError::Final {
                    code: code_owned,
                    message,
                },
                SendError::Unavailable {
                    message,
                    retry_after,
                    ..
                } => SendError::Unavailable {
                    code: code_owned,
                    message,
                    retry_after,
                },
                SendError::Throttled {
                    message,
                    retry_after,
                    ..
                } => SendError::Throttled {
                    code: code_owned,
                    message,
                    retry_after,
                },
            };
        }
    };
    if retryable {
        SendError::Retryable {
            code: code_owned,
            message,
        }
    } else {
        SendError::Final {
            code: code_owned,
            message,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendAnswer {
    biz_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct QueryAnswer {
    #[serde(rename = "SmsSendDetailDTOs", default)]
    details: DetailList,
}

#[derive(Deserialize, Default)]
struct DetailList {
    #[serde(rename = "SmsSendDetailDTO", default)]
    items: Vec<Detail>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Detail {
    /// 1 waiting for the carrier's receipt, 2 failed, 3 delivered.
    #[serde(default)]
    send_status: Value,
    #[serde(default)]
    err_code: Option<String>,
    #[serde(default)]
    receive_date: Option<String>,
    #[serde(default)]
    out_id: Option<String>,
    #[serde(default)]
    phone_num: Option<String>,
}

/// One `SmsSendDetailDTO` as a receipt; `None` while the carrier has not reported.
fn receipt(detail: Detail, biz_id: &str) -> Option<SupplierReceipt> {
    let status = match &detail.send_status {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    let outcome = match status? {
        3 => ReceiptOutcome::Delivered,
        2 => ReceiptOutcome::Undelivered,
        _ => return None,
    };
    let reported_at = detail
        .receive_date
        .as_deref()
        .and_then(|date| NaiveDateTime::parse_from_str(date.trim(), "%Y-%m-%d %H:%M:%S").ok())
        .and_then(|local| local.and_local_timezone(shanghai()).single())
        .map_or_else(Utc::now, |at| at.with_timezone(&Utc));
    Some(SupplierReceipt {
        message_id: detail
            .out_id
            .as_deref()
            .and_then(|id| id.parse::<MessageId>().ok()),
        supplier_message_id: Some(biz_id.to_owned()),
        receiver: detail.phone_num,
        outcome,
        supplier_status: detail.err_code.unwrap_or_default(),
        reported_at,
    })
}

pub struct AliyunSmsSupplier {
    client: reqwest::Client,
    endpoint: String,
    access_key_id: String,
    access_key_secret: String,
    sign_name: Option<String>,
    region: String,
}

impl std::fmt::Debug for AliyunSmsSupplier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The access key is a credential: neither half is shown.
        f.debug_struct("AliyunSmsSupplier")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("sign_name", &self.sign_name)
            .finish_non_exhaustive()
    }
}

impl AliyunSmsSupplier {
    pub fn from_account(config: &AccountConfig) -> Result<Self, AccountError> {
        Ok(AliyunSmsSupplier {
            client: http::client(config.timeout()).map_err(|e| config.client_error(e))?,
            endpoint: format!("{}/", config.base_url_or(DEFAULT_BASE_URL)),
            access_key_id: config.credential("access_key_id")?.to_owned(),
            access_key_secret: config.credential("access_key_secret")?.to_owned(),
            sign_name: config.setting("sign_name").ok().map(str::to_owned),
            region: config
                .setting("region")
                .unwrap_or(DEFAULT_REGION)
                .to_owned(),
        })
    }

    /// Calls `action` and returns its answer when `Code` is `OK`.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<T, SendError> {
        let nonce = uuid::Uuid::now_v7().to_string();
        let timestamp = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut all: Vec<(&str, &str)> = vec![
            ("AccessKeyId", &self.access_key_id),
            ("Action", action),
            ("Format", "JSON"),
            ("RegionId", &self.region),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", &nonce),
            ("SignatureVersion", "1.0"),
            ("Timestamp", &timestamp),
            ("Version", VERSION),
        ];
        all.extend_from_slice(params);
        let signature = signature(METHOD, &all, &self.access_key_secret);
        let body = format!(
            "{}&Signature={}",
            canonical_query(&all),
            percent_encode(&signature)
        );
        let response = self
            .client
            .post(&self.endpoint)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| http::transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let answer: Value = match serde_json::from_str(&text) {
            Ok(answer @ Value::Object(_)) => answer,
            // No Aliyun answer at all (a proxy's error page, a truncated body).
            _ if !status.is_success() => return Err(http::status_error(status, &headers, &text)),
            _ => {
                return Err(SendError::Retryable {
                    code: "BAD_ANSWER".into(),
                    message: text.chars().take(512).collect(),
                });
            }
        };
        let code = answer.get("Code").and_then(Value::as_str).unwrap_or("");
        let message = answer.get("Message").and_then(Value::as_str).unwrap_or("");
        if code != "OK" || !status.is_success() {
            if code.is_empty() {
                return Err(http::status_error(status, &headers, &text));
            }
            return Err(classify(code, message, status, &headers));
        }
        serde_json::from_value(answer).map_err(|e| SendError::Retryable {
            code: "BAD_ANSWER".into(),
            message: e.to_string(),
        })
    }

    async fn send_sms(&self, message: &Outbound<'_>) -> Result<Sent, SendError> {
        let TemplateContent::SupplierTemplate {
            template_code,
            sign_name,
            params,
        } = message.content
        else {
            return Err(SendError::Final {
                code: "UNSUPPORTED_CONTENT".into(),
                message: format!(
                    "aliyun_sms sends registered templates only, not {} content",
                    message.content.kind()
                ),
            });
        };
        let Some(sign_name) = sign_name.as_deref().or(self.sign_name.as_deref()) else {
            return Err(SendError::Final {
                code: "MISSING_SIGN_NAME".into(),
                message: "neither the template nor the account's sign_name setting names a sign"
                    .into(),
            });
        };
        let template_param = (!params.is_empty()).then(|| {
            let object: serde_json::Map<String, Value> = params
                .iter()
                .map(|p| (p.name.clone(), Value::String(p.value.clone())))
                .collect();
            Value::Object(object).to_string()
        });
        let out_id = message.message_id.to_string();
        let mut request = vec![
            ("PhoneNumbers", phone_number(message.receiver.value())),
            ("SignName", sign_name),
            ("TemplateCode", template_code.as_str()),
            ("OutId", out_id.as_str()),
        ];
        if let Some(template_param) = &template_param {
            request.push(("TemplateParam", template_param));
        }
        let answer: SendAnswer = self.call("SendSms", &request).await?;
        Ok(Sent {
            supplier_message_id: answer.biz_id,
        })
    }

    async fn query(
        &self,
        message: &Outbound<'_>,
        biz_id: &str,
        sent_at: DateTime<Utc>,
    ) -> Result<Vec<SupplierReceipt>, SendError> {
        let send_date = sent_at
            .with_timezone(&shanghai())
            .format("%Y%m%d")
            .to_string();
        let request = [
            ("PhoneNumber", phone_number(message.receiver.value())),
            ("BizId", biz_id),
            ("SendDate", send_date.as_str()),
            ("PageSize", "10"),
            ("CurrentPage", "1"),
        ];
        let answer: QueryAnswer = self.call("QuerySendDetails", &request).await?;
        Ok(answer
            .details
            .items
            .into_iter()
            .filter_map(|detail| receipt(detail, biz_id))
            .collect())
    }
}

impl Supplier for AliyunSmsSupplier {
    fn name(&self) -> &'static str {
        "aliyun_sms"
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::Sms
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> SendFuture<'a> {
        Box::pin(self.send_sms(message))
    }

    fn queries_receipts(&self) -> bool {
        true
    }

    fn query_receipt<'a>(
        &'a self,
        message: &'a Outbound<'a>,
        supplier_message_id: &'a str,
        sent_at: DateTime<Utc>,
    ) -> Option<ReceiptFuture<'a>> {
        Some(Box::pin(self.query(message, supplier_message_id, sent_at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_documented_send_sms_example() {
        // Aliyun's SMS signature document (help.aliyun.com/document_detail/56189): a GET of
        // SendSms with AccessKeyId testId and AccessKeySecret testSecret.
        let params = [
            ("AccessKeyId", "testId"),
            ("Action", "SendSms"),
            ("Format", "XML"),
            ("OutId", "123"),
            ("PhoneNumbers", "15300000001"),
            ("RegionId", "cn-hangzhou"),
            ("SignName", "阿里云短信测试专用"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "45e25e9b-0a6f-4070-8c85-2956eda1b466"),
            ("SignatureVersion", "1.0"),
            ("TemplateCode", "SMS_71390007"),
            ("TemplateParam", r#"{"customer":"test"}"#),
            ("Timestamp", "2017-07-12T02:42:19Z"),
            ("Version", "2017-05-25"),
        ];
        assert_eq!(
            string_to_sign("GET", &params),
            "GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26Format%3DXML%26OutId%3D123\
             %26PhoneNumbers%3D15300000001%26RegionId%3Dcn-hangzhou%26SignName%3D%25E9%2598\
             %25BF%25E9%2587%258C%25E4%25BA%2591%25E7%259F%25AD%25E4%25BF%25A1%25E6%25B5%258B\
             %25E8%25AF%2595%25E4%25B8%2593%25E7%2594%25A8%26SignatureMethod%3DHMAC-SHA1\
             %26SignatureNonce%3D45e25e9b-0a6f-4070-8c85-2956eda1b466%26SignatureVersion%3D1.0\
             %26TemplateCode%3DSMS_71390007%26TemplateParam%3D%257B%2522customer%2522%253A\
             %2522test%2522%257D%26Timestamp%3D2017-07-12T02%253A42%253A19Z\
             %26Version%3D2017-05-25"
        );
        assert_eq!(
            signature("GET", &params, "testSecret"),
            "zJDF+Lrzhj/ThnlvIToysFRq6t4="
        );
        // The order parameters come in does not matter.
        let mut reversed = params;
        reversed.reverse();
        assert_eq!(
            signature("GET", &reversed, "testSecret"),
            "zJDF+Lrzhj/ThnlvIToysFRq6t4="
        );
    }

    #[test]
    fn percent_encoding_follows_aliyun_rules() {
        assert_eq!(
            percent_encode("a b*c~d+e/f=g&h"),
            "a%20b%2Ac~d%2Be%2Ff%3Dg%26h"
        );
        assert_eq!(percent_encode("-_.AZaz09"), "-_.AZaz09");
        assert_eq!(percent_encode("^"), "%5E");
    }

    #[test]
    fn mainland_numbers_lose_plus_86_and_others_their_plus() {
        assert_eq!(phone_number("+8613800138000"), "13800138000");
        assert_eq!(phone_number("+85291234567"), "85291234567");
        assert_eq!(phone_number("+14155550100"), "14155550100");
    }

    #[test]
    fn codes_are_classified() {
        let headers = HeaderMap::new();
        let check = |code: &str, status: StatusCode| classify(code, "m", status, &headers);
        assert!(matches!(
            check("Throttling.User", StatusCode::BAD_REQUEST),
            SendError::Throttled { .. }
        ));
        for retryable in ["isp.SYSTEM_ERROR", "InvalidTimeStamp.Expired"] {
            assert!(matches!(
                check(retryable, StatusCode::OK),
                SendError::Retryable { .. }
            ));
        }
        assert!(matches!(
            check("ServiceUnavailable", StatusCode::SERVICE_UNAVAILABLE),
            SendError::Retryable { code, .. } if code == "ServiceUnavailable"
        ));
        // The per-number limit is the receiver's: final, never the account's failure.
        for fatal in [
            "isv.BUSINESS_LIMIT_CONTROL",
            "isv.MOBILE_NUMBER_ILLEGAL",
            "isv.SMS_TEMPLATE_ILLEGAL",
            "isv.SOMETHING_NEW",
        ] {
            assert!(matches!(
                check(fatal, StatusCode::OK),
                SendError::Final { .. }
            ));
        }
        // The account cannot send: its credentials, balance or quota.
        for unavailable in [
            "isp.RAM_PERMISSION_DENY",
            "isv.AMOUNT_NOT_ENOUGH",
            "isv.OUT_OF_SERVICE",
            "isv.MONTH_LIMIT_CONTROL",
            "InvalidAccessKeyId.NotFound",
        ] {
            assert!(matches!(
                check(unavailable, StatusCode::OK),
                SendError::Unavailable {
                    retry_after: None,
                    ..
                }
            ));
        }
        assert!(matches!(
            check("isv.DAY_LIMIT_CONTROL", StatusCode::OK),
            SendError::Unavailable { retry_after: Some(d), .. } if d == Duration::from_secs(3600)
        ));
        assert!(matches!(
            check("SignatureDoesNotMatch", StatusCode::BAD_REQUEST),
            SendError::Unavailable { .. }
        ));
        // An undocumented code falls back on the HTTP status, keeping Aliyun's code.
        assert!(matches!(
            check("Whatever", StatusCode::BAD_GATEWAY),
            SendError::Retryable { code, .. } if code == "Whatever"
        ));
    }

    #[test]
    fn debug_shows_no_credentials() {
        let mut config: AccountConfig = serde_json::from_value(serde_json::json!({
            "id": "aliyun",
            "channel": "SMS",
            "supplier": "aliyun_sms",
        }))
        .expect("config");
        config
            .credentials
            .insert("access_key_id".into(), "LTAI-key-id-123".into());
        config
            .credentials
            .insert("access_key_secret".into(), "very-secret-value".into());
        let supplier = AliyunSmsSupplier::from_account(&config).expect("supplier");
        let debug = format!("{supplier:?}");
        assert!(!debug.contains("very-secret-value"), "{debug}");
        assert!(!debug.contains("LTAI-key-id-123"), "{debug}");
        assert!(debug.contains("cn-hangzhou"), "{debug}");
    }
}
