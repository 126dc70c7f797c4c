//! Tencent Cloud SMS (`tencent_sms`): `SendSms` and `PullSmsSendStatus` of API 3.0, version
//! 2021-01-11, each a JSON POST to `https://sms.tencentcloudapi.com/` signed with TC3-HMAC-SHA256.
//!
//! The `Authorization` header signs the `content-type` and `host` headers and the body with a
//! key derived from the secret key, the UTC date of `X-TC-Timestamp` and the service (`sms`);
//! `X-TC-Action`, `X-TC-Version` and `X-TC-Region` name the call. Herald's message id goes out
//! as `SessionContext`, which Tencent echoes in receipts. Only approved supplier templates are
//! sent (`TemplateId`, `SignName`, `TemplateParamSet` in the template's order).
//!
//! ```toml
//! [[accounts]]
//! id = "tencent"
//! channel = "SMS"
//! supplier = "tencent_sms"
//! settings = { sdk_app_id = "1400006666", region = "ap-guangzhou", sign_name = "Herald" }
//! credentials = { secret_id = "AKID...", secret_key = "..." }
//! ```
//!
//! `sdk_app_id` is required, `region` defaults to `ap-guangzhou`, and `sign_name` is used when
//! the template names no sign.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::{Channel, MessageId, ReceiptOutcome, TemplateContent};
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::accounts::{AccountConfig, AccountError};
use crate::http;
use crate::supplier::{
    Outbound, ReceiptFuture, SendError, SendFuture, Sent, Supplier, SupplierReceipt,
};

pub const DEFAULT_BASE_URL: &str = "https://sms.tencentcloudapi.com";
const DEFAULT_REGION: &str = "ap-guangzhou";
const VERSION: &str = "2021-01-11";
const SERVICE: &str = "sms";
const ALGORITHM: &str = "TC3-HMAC-SHA256";
/// The content type is signed, so it is sent exactly as written here.
pub const CONTENT_TYPE: &str = "application/json; charset=utf-8";
/// The most receipts one `PullSmsSendStatus` may return.
const PULL_LIMIT: u32 = 100;
/// How long an account whose daily quota is spent is held off before it is tried again: the
/// quota resets once a day, so asking every second would only burn requests.
const QUOTA_PAUSE: Duration = Duration::from_secs(300);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The UTC date of a Unix timestamp, as the credential scope names it. The date must be UTC:
/// a local date would make every call fail for some hours of the day.
fn utc_date(timestamp: i64) -> String {
    DateTime::from_timestamp(timestamp, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// The TC3-HMAC-SHA256 signature (lowercase hex) of an API 3.0 POST to `/` with no query
/// string, signing `content-type` ([`CONTENT_TYPE`]) and `host`.
pub fn signature(
    secret_key: &str,
    service: &str,
    host: &str,
    timestamp: i64,
    payload: &[u8],
) -> String {
    let date = utc_date(timestamp);
    let canonical_request = format!(
        "POST\n/\n\ncontent-type:{CONTENT_TYPE}\nhost:{}\n\ncontent-type;host\n{}",
        host.trim().to_ascii_lowercase(),
        sha256_hex(payload)
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{timestamp}\n{date}/{service}/tc3_request\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let secret_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let secret_service = hmac_sha256(&secret_date, service.as_bytes());
    let secret_signing = hmac_sha256(&secret_service, b"tc3_request");
    hex(&hmac_sha256(&secret_signing, string_to_sign.as_bytes()))
}

/// The whole `Authorization` header of a call.
pub fn authorization(
    secret_id: &str,
    secret_key: &str,
    service: &str,
    host: &str,
    timestamp: i64,
    payload: &[u8],
) -> String {
    format!(
        "{ALGORITHM} Credential={secret_id}/{}/{service}/tc3_request, \
         SignedHeaders=content-type;host, Signature={}",
        utc_date(timestamp),
        signature(secret_key, service, host, timestamp, payload)
    )
}

/// A receiver as Tencent wants it, E.164: a bare 11-digit mainland mobile number gains `+86`.
fn e164(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let bytes = raw.as_bytes();
    if bytes.len() == 11 && bytes[0] == b'1' && bytes.iter().all(u8::is_ascii_digit) {
        return Some(format!("+86{raw}"));
    }
    let digits = raw.strip_prefix('+')?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| raw.to_owned())
}

/// Classifies one of Tencent's error codes, from `Response.Error` or a `SendStatusSet` entry.
fn classify(code: &str, message: String) -> SendError {
    let code_owned = code.to_owned();
    if code.starts_with("RequestLimitExceeded") {
        return SendError::Throttled {
            code: code_owned,
            message,
            retry_after: None,
        };
    }
    // The account's own daily quota, as opposed to the per-number limits below, and the
    // account's credentials or balance: the account cannot send for now, whatever the message.
    // It is paused and the message fails over to another account.
    if code.starts_with("LimitExceeded.App") && code.ends_with("DailyLimit")
        || code == "LimitExceeded.DailyLimit"
    {
        return SendError::Unavailable {
            code: code_owned,
            message,
            retry_after: Some(QUOTA_PAUSE),
        };
    }
    if code.starts_with("AuthFailure")
        || code.starts_with("UnauthorizedOperation")
        || code == "FailedOperation.InsufficientBalanceInSmsPackage"
    {
        return SendError::Unavailable {
            code: code_owned,
            message,
            retry_after: None,
        };
    }
    // Tencent's side failed or timed out (`InternalError.Timeout` is documented as safe to
    // retry); every other code names something about the request or the receiver that a retry
    // cannot change: `InvalidParameter*`, `FailedOperation.*` (unapproved sign or template,
    // blacklisted number) and the per-number limits `LimitExceeded.PhoneNumber*` and
    // `DeliveryFrequencyLimit`.
    if code.starts_with("InternalError")
        || matches!(
            code,
            "RequestTimeout" | "ServiceUnavailable" | "ResourceUnavailable"
        )
    {
        return SendError::Retryable {
            code: code_owned,
            message,
        };
    }
    SendError::Final {
        code: code_owned,
        message,
    }
}

/// An answer that is not the JSON Tencent documents. The call may have gone through, so it
/// is retried like a lost answer.
fn bad_answer(error: impl fmt::Display) -> SendError {
    SendError::Retryable {
        code: "BAD_RESPONSE".to_owned(),
        message: error.to_string(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SendSmsRequest<'a> {
    phone_number_set: [String; 1],
    sms_sdk_app_id: &'a str,
    template_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sign_name: Option<&'a str>,
    template_param_set: Vec<&'a str>,
    session_context: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PullSmsSendStatusRequest<'a> {
    sms_sdk_app_id: &'a str,
    limit: u32,
}

/// `{"Response": {...}}`, the envelope of every API 3.0 answer.
#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(rename = "Response")]
    response: Reply<T>,
}

#[derive(Deserialize)]
struct Reply<T> {
    #[serde(rename = "Error", default)]
    error: Option<ApiError>,
    #[serde(rename = "RequestId", default)]
    request_id: String,
    #[serde(flatten)]
    body: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiError {
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendSmsResponse {
    #[serde(default)]
    send_status_set: Vec<SendStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendStatus {
    #[serde(default)]
    serial_no: String,
    #[serde(default)]
    phone_number: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PullSmsSendStatusResponse {
    #[serde(default)]
    pull_sms_send_status_set: Vec<PullStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PullStatus {
    /// Unix seconds; read loosely, so one odd entry cannot lose the whole batch.
    #[serde(default)]
    user_receive_time: serde_json::Value,
    #[serde(default)]
    phone_number: String,
    #[serde(default)]
    serial_no: String,
    #[serde(default)]
    report_status: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    session_context: String,
}

impl PullStatus {
    /// `None` for a status other than the documented `SUCCESS` and `FAIL`.
    fn into_receipt(self, now: DateTime<Utc>) -> Option<SupplierReceipt> {
        let outcome = match self.report_status.as_str() {
            "SUCCESS" => ReceiptOutcome::Delivered,
            "FAIL" => ReceiptOutcome::Undelivered,
            _ => return None,
        };
        let seconds = match &self.user_receive_time {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let non_empty = |s: String| (!s.is_empty()).then_some(s);
        Some(SupplierReceipt {
            message_id: self.session_context.parse::<MessageId>().ok(),
            supplier_message_id: non_empty(self.serial_no),
            receiver: non_empty(self.phone_number),
            outcome,
            // The description is the carrier's status code (`DELIVRD`, `MK:0001`...), the
            // more useful of the two for reconciliation.
            supplier_status: if self.description.is_empty() {
                self.report_status
            } else {
                self.description
            },
            reported_at: seconds
                .and_then(|s| DateTime::from_timestamp(s, 0))
                .unwrap_or(now),
        })
    }
}

/// A Tencent Cloud SMS application, reached with one API key pair.
pub struct TencentSms {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The `host` header as sent and signed: the URL's host, and its port if not the default.
    host: String,
    secret_id: String,
    secret_key: String,
    sdk_app_id: String,
    region: String,
    sign_name: Option<String>,
}

impl fmt::Debug for TencentSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key pair stays out: Debug output reaches logs.
        f.debug_struct("TencentSms")
            .field("url", &self.url.as_str())
            .field("sdk_app_id", &self.sdk_app_id)
            .field("region", &self.region)
            .field("sign_name", &self.sign_name)
            .finish_non_exhaustive()
    }
}

impl TencentSms {
    /// Builds the supplier from an `[[accounts]]` entry (keys in the module docs).
    pub fn from_account(config: &AccountConfig) -> Result<Self, AccountError> {
        let base = config.base_url_or(DEFAULT_BASE_URL);
        let url = reqwest::Url::parse(&format!("{base}/"))
            .map_err(|e| config.client_error(format!("base_url {base:?}: {e}")))?;
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return Err(config.client_error(format!("base_url {base:?} has no host"))),
        };
        Ok(TencentSms {
            client: http::client(config.timeout()).map_err(|e| config.client_error(e))?,
            url,
            host,
            secret_id: config.credential("secret_id")?.to_owned(),
            secret_key: config.credential("secret_key")?.to_owned(),
            sdk_app_id: config.setting("sdk_app_id")?.to_owned(),
            region: config
                .settings
                .get("region")
                .cloned()
                .unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            sign_name: config.settings.get("sign_name").cloned(),
        })
    }

    /// One signed API call; `Response.Error` becomes the classified error.
    async fn call<T: DeserializeOwned>(
        &self,
        action: &str,
        payload: &impl Serialize,
    ) -> Result<T, SendError> {
        let body = serde_json::to_vec(payload).map_err(|e| SendError::Final {
            code: "ENCODE".to_owned(),
            message: e.to_string(),
        })?;
        let timestamp = Utc::now().timestamp();
        let response = self
            .client
            .post(self.url.clone())
            .header(
                reqwest::header::AUTHORIZATION,
                authorization(
                    &self.secret_id,
                    &self.secret_key,
                    SERVICE,
                    &self.host,
                    timestamp,
                    &body,
                ),
            )
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(reqwest::header::HOST, &self.host)
            .header("X-TC-Action", action)
            .header("X-TC-Version", VERSION)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Region", &self.region)
            .body(body)
            .send()
            .await
            .map_err(|e| http::transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|e| http::transport_error(&e))?;
        if !status.is_success() {
            return Err(http::status_error(status, &headers, &text));
        }
        let envelope: Envelope<T> = serde_json::from_str(&text).map_err(bad_answer)?;
        let reply = envelope.response;
        match reply.error {
            Some(error) => Err(classify(
                &error.code,
                format!("{} (RequestId {})", error.message, reply.request_id),
            )),
            None => Ok(reply.body),
        }
    }

    async fn send_sms(&self, message: &Outbound<'_>) -> Result<Sent, SendError> {
        let TemplateContent::SupplierTemplate {
            template_code,
            sign_name,
            params,
        } = message.content
        else {
            return Err(SendError::Final {
                code: "UNSUPPORTED_CONTENT".to_owned(),
                message: format!(
                    "tencent_sms sends approved supplier templates only, not {}",
                    message.content.kind()
                ),
            });
        };
        let phone = e164(message.receiver.value()).ok_or_else(|| SendError::Final {
            code: "INVALID_PHONE".to_owned(),
            message: format!("not a phone number: {}", message.receiver.masked()),
        })?;
        let request = SendSmsRequest {
            phone_number_set: [phone.clone()],
            sms_sdk_app_id: &self.sdk_app_id,
            template_id: template_code,
            sign_name: sign_name.as_deref().or(self.sign_name.as_deref()),
            template_param_set: params.iter().map(|p| p.value.as_str()).collect(),
            session_context: message.message_id.to_string(),
        };
        let reply: SendSmsResponse = self.call("SendSms", &request).await?;
        // One number was sent, so one status comes back; match it by number all the same.
        let mut statuses = reply.send_status_set;
        let at = statuses
            .iter()
            .position(|s| s.phone_number == phone)
            .unwrap_or(0);
        if statuses.is_empty() {
            return Err(bad_answer("SendStatusSet is empty"));
        }
        let status = statuses.swap_remove(at);
        if status.code != "Ok" {
            return Err(classify(
                &status.code,
                format!("{}: {}", message.receiver.masked(), status.message),
            ));
        }
        Ok(Sent {
            supplier_message_id: (!status.serial_no.is_empty()).then_some(status.serial_no),
        })
    }

    async fn pull(&self) -> Result<Vec<SupplierReceipt>, SendError> {
        let request = PullSmsSendStatusRequest {
            sms_sdk_app_id: &self.sdk_app_id,
            limit: PULL_LIMIT,
        };
        let reply: PullSmsSendStatusResponse = self.call("PullSmsSendStatus", &request).await?;
        let now = Utc::now();
        Ok(reply
            .pull_sms_send_status_set
            .into_iter()
            .filter_map(|status| {
                let report_status = status.report_status.clone();
                let receipt = status.into_receipt(now);
                if receipt.is_none() {
                    tracing::warn!(%report_status, "tencent_sms: receipt with an unknown status skipped");
                }
                receipt
            })
            .collect())
    }
}

impl Supplier for TencentSms {
    fn name(&self) -> &'static str {
        "tencent_sms"
    }

    fn supports(&self, channel: Channel) -> bool {
        channel == Channel::Sms
    }

    fn send<'a>(&'a self, message: &'a Outbound<'a>) -> SendFuture<'a> {
        Box::pin(self.send_sms(message))
    }

    fn pull_receipts(&self) -> Option<ReceiptFuture<'_>> {
        Some(Box::pin(self.pull()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The payload of the example in Tencent's "Signature v3" document (CVM
    /// `DescribeInstances`, Guangzhou, 2019-02-25).
    const DOC_PAYLOAD: &str =
        r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;

    #[test]
    fn signature_matches_the_documented_example() {
        // The intermediate hashes the document prints.
        assert_eq!(
            sha256_hex(DOC_PAYLOAD.as_bytes()),
            "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        // The international document's key pair and its final header, character for character.
        assert_eq!(
            authorization(
                "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
                "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
                "cvm",
                "cvm.tencentcloudapi.com",
                1_551_113_065,
                DOC_PAYLOAD.as_bytes(),
            ),
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/tc3_request, \
             SignedHeaders=content-type;host, \
             Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
        );
        // The Chinese document prints the same example with a masked secret key, signed as printed.
        assert_eq!(
            signature(
                "Gu5t9xGARNpq86cd98joQYCN3*******",
                "cvm",
                "cvm.tencentcloudapi.com",
                1_551_113_065,
                DOC_PAYLOAD.as_bytes(),
            ),
            "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
        );
    }

    #[test]
    fn the_credential_date_is_the_utc_date() {
        // 2019-02-26 00:44:25 in Beijing is still the 25th in UTC, as the document warns.
        assert_eq!(utc_date(1_551_113_065), "2019-02-25");
    }

    #[test]
    fn receivers_become_e164() {
        assert_eq!(e164("13800138000").as_deref(), Some("+8613800138000"));
        assert_eq!(e164("+8613800138000").as_deref(), Some("+8613800138000"));
        assert_eq!(e164("+14155550100").as_deref(), Some("+14155550100"));
        assert_eq!(e164("ops@example.com"), None);
        assert_eq!(e164("+"), None);
    }

    #[test]
    fn error_codes_are_classified() {
        let class = |code: &str| match classify(code, String::new()) {
            SendError::Retryable { .. } => "retryable",
            SendError::Final { .. } => "final",
            SendError::Throttled { .. } => "throttled",
            SendError::Unavailable { .. } => "unavailable",
        };
        for code in [
            "RequestLimitExceeded",
            "RequestLimitExceeded.IPLimitExceeded",
        ] {
            assert_eq!(class(code), "throttled", "{code}");
        }
        // The account, not the message: its quota, credentials or balance.
        for code in [
            "LimitExceeded.AppDailyLimit",
            "LimitExceeded.AppMainlandChinaDailyLimit",
            "LimitExceeded.AppGlobalDailyLimit",
            "LimitExceeded.DailyLimit",
            "AuthFailure.SignatureFailure",
            "AuthFailure.SecretIdNotFound",
            "UnauthorizedOperation.SmsSdkAppIdVerifyFail",
            "FailedOperation.InsufficientBalanceInSmsPackage",
        ] {
            assert_eq!(class(code), "unavailable", "{code}");
        }
        for code in [
            "InternalError",
            "InternalError.Timeout",
            "InternalError.SendAndRecvFail",
            "RequestTimeout",
        ] {
            assert_eq!(class(code), "retryable", "{code}");
        }
        for code in [
            "InvalidParameterValue.IncorrectPhoneNumber",
            "FailedOperation.TemplateIncorrectOrUnapproved",
            "FailedOperation.PhoneNumberInBlacklist",
            "LimitExceeded.PhoneNumberDailyLimit",
            "LimitExceeded.PhoneNumberThirtySecondLimit",
            "LimitExceeded.DeliveryFrequencyLimit",
        ] {
            assert_eq!(class(code), "final", "{code}");
        }
    }

    #[test]
    fn debug_leaves_the_key_pair_out() {
        let config = AccountConfig {
            id: "tencent".to_owned(),
            channel: Channel::Sms,
            supplier: "tencent_sms".to_owned(),
            base_url: None,
            weight: 1,
            settings: BTreeMap::from([("sdk_app_id".to_owned(), "1400006666".to_owned())]),
            credentials: BTreeMap::from([
                ("secret_id".to_owned(), "AKIDsecretid".to_owned()),
                ("secret_key".to_owned(), "very-secret-key".to_owned()),
            ]),
            timeout_secs: 1,
            rate_limit_per_sec: None,
            rate_limit_burst: None,
            http_supplier: None,
        };
        let supplier = TencentSms::from_account(&config).expect("supplier");
        let debug = format!("{supplier:?}");
        assert!(
            debug.contains("1400006666") && debug.contains("ap-guangzhou"),
            "{debug}"
        );
        assert!(
            !debug.contains("very-secret-key") && !debug.contains("AKIDsecretid"),
            "{debug}"
        );
        assert_eq!(supplier.host, "sms.tencentcloudapi.com");
    }
}
