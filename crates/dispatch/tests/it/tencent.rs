//! The Tencent Cloud SMS supplier against a local sms.tencentcloudapi.com that checks the
//! TC3-HMAC-SHA256 signature the way Tencent does, recomputed here from the request as
//! received, and answers in Tencent's JSON.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use dispatch::accounts::{AccountConfig, Accounts};
use dispatch::{Outbound, SendError, Sent, Supplier};
use domain::{
    Channel, MessageId, MessageType, ReceiptOutcome, Receiver, ReceiverIdType, TemplateContent,
    TemplateParam, TenantId,
};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const SECRET_ID: &str = "AKIDherald0000000000000000000000test";
const SECRET_KEY: &str = "herald-test-secret-key";
const APP_ID: &str = "1400006666";

/// Template ids that tell the fake how to answer a `SendSms`.
const TEMPLATE_OK: &str = "1001";
const TEMPLATE_THROTTLED: &str = "1002";
const TEMPLATE_DOWN: &str = "1003";
const TEMPLATE_DAILY_LIMIT: &str = "1004";
const TEMPLATE_TIMEOUT: &str = "1005";

/// The calls that passed the signature check: action, region, payload.
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn error(code: &str, message: &str) -> axum::response::Response {
    let body = json!({"Response": {
        "Error": {"Code": code, "Message": message},
        "RequestId": "fake-request-id",
    }});
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// What Tencent checks before it looks at the call: the `Authorization` header, recomputed
/// from the signed headers named in it and the body as received.
fn check_signature(headers: &HeaderMap, body: &[u8]) -> Result<(), (&'static str, String)> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let authorization = header("authorization");
    let rest = authorization
        .strip_prefix("TC3-HMAC-SHA256 ")
        .ok_or(("AuthFailure.InvalidAuthorization", authorization.clone()))?;
    let mut parts = BTreeMap::new();
    for part in rest.split(", ") {
        let (key, value) = part
            .split_once('=')
            .ok_or(("AuthFailure.InvalidAuthorization", part.to_owned()))?;
        parts.insert(key, value);
    }
    let credential: Vec<&str> = parts
        .get("Credential")
        .copied()
        .unwrap_or("")
        .split('/')
        .collect();
    let [secret_id, date, service, "tc3_request"] = credential[..] else {
        return Err(("AuthFailure.InvalidAuthorization", authorization.clone()));
    };
    if secret_id != SECRET_ID {
        return Err(("AuthFailure.SecretIdNotFound", secret_id.to_owned()));
    }
    let timestamp: i64 = header("x-tc-timestamp").parse().unwrap_or(0);
    if (chrono::Utc::now().timestamp() - timestamp).abs() > 300 {
        return Err(("AuthFailure.SignatureExpire", timestamp.to_string()));
    }
    let utc_date = chrono::DateTime::from_timestamp(timestamp, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    if date != utc_date || service != "sms" {
        return Err((
            "AuthFailure.SignatureFailure",
            format!("scope {date}/{service}"),
        ));
    }
    let signed_headers = parts.get("SignedHeaders").copied().unwrap_or("");
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"content-type") || !names.contains(&"host") {
        return Err(("AuthFailure.SignatureFailure", signed_headers.to_owned()));
    }
    let canonical_headers: String = names
        .iter()
        .map(|name| format!("{name}:{}\n", header(name).trim().to_lowercase()))
        .collect();
    let canonical_request = format!(
        "POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}",
        hex(&Sha256::digest(body))
    );
    let string_to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{date}/{service}/tc3_request\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let key = hmac_sha256(
        &hmac_sha256(
            &hmac_sha256(format!("TC3{SECRET_KEY}").as_bytes(), date.as_bytes()),
            service.as_bytes(),
        ),
        b"tc3_request",
    );
    let expected = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
    if parts.get("Signature").copied() != Some(expected.as_str()) {
        return Err((
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature is correct.".to_owned(),
        ));
    }
    Ok(())
}

async fn tencent(
    State(seen): State<Seen>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    if let Err((code, message)) = check_signature(&headers, &body) {
        return error(code, &message);
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    if header("content-type") != "application/json; charset=utf-8" {
        return error("InvalidParameter", "content-type");
    }
    if header("x-tc-version") != "2021-01-11" {
        return error("NoSuchVersion", "version");
    }
    if header("x-tc-region") != "ap-guangzhou" {
        return error("UnsupportedRegion", "region");
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return error("FailedOperation.JsonParseFail", "body");
    };
    if payload["SmsSdkAppId"] != APP_ID {
        return error("InvalidParameterValue.SdkAppIdNotExist", "SmsSdkAppId");
    }
    let action = header("x-tc-action");
    seen.lock()
        .unwrap()
        .push((action.clone(), header("x-tc-region"), payload.clone()));
    match action.as_str() {
        "SendSms" => send_sms(&payload),
        "PullSmsSendStatus" => {
            if payload["Limit"]
                .as_u64()
                .is_none_or(|l| !(1..=100).contains(&l))
            {
                return error("InvalidParameterValue.LimitVerifyFail", "Limit");
            }
            let body = json!({"Response": {
                "PullSmsSendStatusSet": [
                    {
                        "UserReceiveTime": 1_700_000_005,
                        "CountryCode": "86",
                        "SubscriberNumber": "13800138000",
                        "PhoneNumber": "+8613800138000",
                        "SerialNo": "2433:delivered",
                        "ReportStatus": "SUCCESS",
                        "Description": "DELIVRD",
                        "SessionContext": "0190b7a2-6a1d-7c3e-8f00-000000000001",
                    },
                    {
                        "UserReceiveTime": 1_700_000_009,
                        "CountryCode": "86",
                        "SubscriberNumber": "13900139000",
                        "PhoneNumber": "+8613900139000",
                        "SerialNo": "2433:failed",
                        "ReportStatus": "FAIL",
                        "Description": "MK:0001",
                        "SessionContext": "sent-by-another-system",
                    },
                ],
                "RequestId": "fake-request-id",
            }});
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        _ => error("InvalidAction", "action"),
    }
}

fn send_sms(payload: &Value) -> axum::response::Response {
    let phones = payload["PhoneNumberSet"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if phones.is_empty() {
        return error("MissingParameter.EmptyPhoneNumberSet", "PhoneNumberSet");
    }
    if phones
        .iter()
        .any(|p| !p.as_str().is_some_and(|p| p.starts_with('+')))
    {
        return error(
            "InvalidParameterValue.IncorrectPhoneNumber",
            "PhoneNumberSet",
        );
    }
    let status = |code: &str, message: &str, serial: &str| {
        json!({
            "SerialNo": serial,
            "PhoneNumber": phones[0],
            "Fee": 1,
            "SessionContext": payload["SessionContext"],
            "Code": code,
            "Message": message,
            "IsoCode": "CN",
        })
    };
    let set = match payload["TemplateId"].as_str().unwrap_or("") {
        TEMPLATE_OK => status("Ok", "send success", "2433:1045710669157053657849499619"),
        TEMPLATE_THROTTLED => {
            return error(
                "RequestLimitExceeded",
                "The number of requests exceeds the frequency limit.",
            );
        }
        TEMPLATE_DOWN => {
            return (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response();
        }
        TEMPLATE_DAILY_LIMIT => status(
            "LimitExceeded.PhoneNumberDailyLimit",
            "the number of sms messages sent from a single mobile number every day exceeds the upper limit",
            "",
        ),
        TEMPLATE_TIMEOUT => status("InternalError.Timeout", "request timeout", ""),
        _ => return error("FailedOperation.TemplateIncorrectOrUnapproved", "template"),
    };
    let body = json!({"Response": {"SendStatusSet": [set], "RequestId": "fake-request-id"}});
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn start() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/", post(tencent))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, seen)
}

/// The supplier as the configuration builds it.
fn supplier(address: SocketAddr, secret_key: &str) -> Arc<dyn Supplier> {
    let config = AccountConfig {
        id: "tencent".to_owned(),
        channel: Channel::Sms,
        supplier: "tencent_sms".to_owned(),
        base_url: Some(format!("http://{address}")),
        weight: 1,
        settings: BTreeMap::from([
            ("sdk_app_id".to_owned(), APP_ID.to_owned()),
            ("sign_name".to_owned(), "Herald".to_owned()),
        ]),
        credentials: BTreeMap::from([
            ("secret_id".to_owned(), SECRET_ID.to_owned()),
            ("secret_key".to_owned(), secret_key.to_owned()),
        ]),
        timeout_secs: 2,
        rate_limit_per_sec: None,
        rate_limit_burst: None,
        http_supplier: None,
    };
    let accounts =
        Accounts::from_config(&[config], &dispatch::tokens::Tokens::in_process()).unwrap();
    Arc::clone(&accounts.find("tencent").unwrap().supplier)
}

fn template(code: &str) -> TemplateContent {
    TemplateContent::SupplierTemplate {
        template_code: code.to_owned(),
        sign_name: None,
        params: vec![
            TemplateParam {
                name: "code".to_owned(),
                value: "4370".to_owned(),
            },
            TemplateParam {
                name: "minutes".to_owned(),
                value: "5".to_owned(),
            },
        ],
    }
}

async fn send(
    supplier: &dyn Supplier,
    content: &TemplateContent,
) -> (MessageId, Result<Sent, SendError>) {
    let tenant = TenantId::parse("acme").unwrap();
    let receiver = Receiver::parse(ReceiverIdType::Phone, "13800138000").unwrap();
    let message_id = MessageId::generate();
    let outbound = Outbound {
        message_id,
        tenant: &tenant,
        channel: Channel::Sms,
        msg_type: MessageType::Notice,
        receiver: &receiver,
        content,
        attempt: 1,
    };
    (message_id, supplier.send(&outbound).await)
}

#[tokio::test]
async fn a_signed_send_sms_returns_the_serial_number() {
    let (address, seen) = start().await;
    let supplier = supplier(address, SECRET_KEY);
    assert_eq!(supplier.name(), "tencent_sms");
    assert!(supplier.supports(Channel::Sms) && !supplier.supports(Channel::Email));

    let (id, sent) = send(supplier.as_ref(), &template(TEMPLATE_OK)).await;
    assert_eq!(
        sent.unwrap().supplier_message_id.as_deref(),
        Some("2433:1045710669157053657849499619")
    );
    let seen = seen.lock().unwrap();
    let (action, region, payload) = &seen[0];
    assert_eq!(action, "SendSms");
    assert_eq!(region, "ap-guangzhou");
    assert_eq!(
        payload,
        &json!({
            "PhoneNumberSet": ["+8613800138000"],
            "SmsSdkAppId": APP_ID,
            "TemplateId": TEMPLATE_OK,
            "SignName": "Herald",
            "TemplateParamSet": ["4370", "5"],
            "SessionContext": id.to_string(),
        })
    );
}

#[tokio::test]
async fn the_template_sign_name_wins_over_the_account_default() {
    let (address, seen) = start().await;
    let supplier = supplier(address, SECRET_KEY);
    let content = TemplateContent::SupplierTemplate {
        template_code: TEMPLATE_OK.to_owned(),
        sign_name: Some("腾讯云".to_owned()),
        params: Vec::new(),
    };
    let (_, sent) = send(supplier.as_ref(), &content).await;
    assert!(sent.is_ok(), "{sent:?}");
    let payload = &seen.lock().unwrap()[0].2;
    assert_eq!(payload["SignName"], "腾讯云");
    assert_eq!(payload["TemplateParamSet"], json!([]));
}

#[tokio::test]
async fn a_wrong_secret_key_makes_the_account_unavailable() {
    let (address, seen) = start().await;
    let supplier = supplier(address, "not-the-secret-key");
    let (_, result) = send(supplier.as_ref(), &template(TEMPLATE_OK)).await;
    assert!(
        matches!(&result, Err(SendError::Unavailable { code, message, .. })
            if code == "AuthFailure.SignatureFailure" && message.contains("fake-request-id")),
        "{result:?}"
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn answers_are_classified() {
    let (address, _) = start().await;
    let supplier = supplier(address, SECRET_KEY);

    let (_, throttled) = send(supplier.as_ref(), &template(TEMPLATE_THROTTLED)).await;
    assert!(
        matches!(&throttled, Err(SendError::Throttled { code, retry_after: None, .. }) if code == "RequestLimitExceeded"),
        "{throttled:?}"
    );
    let (_, down) = send(supplier.as_ref(), &template(TEMPLATE_DOWN)).await;
    assert!(
        matches!(&down, Err(SendError::Retryable { code, .. }) if code == "HTTP_502"),
        "{down:?}"
    );
    let (_, limited) = send(supplier.as_ref(), &template(TEMPLATE_DAILY_LIMIT)).await;
    assert!(
        matches!(&limited, Err(SendError::Final { code, message })
            if code == "LimitExceeded.PhoneNumberDailyLimit" && message.starts_with("+86138****8000")),
        "{limited:?}"
    );
    let (_, timeout) = send(supplier.as_ref(), &template(TEMPLATE_TIMEOUT)).await;
    assert!(
        matches!(&timeout, Err(SendError::Retryable { code, .. }) if code == "InternalError.Timeout"),
        "{timeout:?}"
    );
    let (_, unapproved) = send(supplier.as_ref(), &template("9999")).await;
    assert!(
        matches!(&unapproved, Err(SendError::Final { code, .. }) if code == "FailedOperation.TemplateIncorrectOrUnapproved"),
        "{unapproved:?}"
    );
}

#[tokio::test]
async fn only_supplier_templates_are_sent() {
    let (address, seen) = start().await;
    let supplier = supplier(address, SECRET_KEY);
    let text = TemplateContent::Text {
        body: "Your code is 4370".to_owned(),
    };
    let (_, result) = send(supplier.as_ref(), &text).await;
    assert!(
        matches!(&result, Err(SendError::Final { code, message })
            if code == "UNSUPPORTED_CONTENT" && message.contains("TEXT")),
        "{result:?}"
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn pulled_receipts_map_back_to_messages() {
    let (address, seen) = start().await;
    let supplier = supplier(address, SECRET_KEY);
    let receipts = supplier
        .pull_receipts()
        .expect("tencent pulls")
        .await
        .unwrap();
    assert_eq!(receipts.len(), 2);

    let delivered = &receipts[0];
    assert_eq!(
        delivered.message_id,
        Some("0190b7a2-6a1d-7c3e-8f00-000000000001".parse().unwrap())
    );
    assert_eq!(
        delivered.supplier_message_id.as_deref(),
        Some("2433:delivered")
    );
    assert_eq!(delivered.receiver.as_deref(), Some("+8613800138000"));
    assert_eq!(delivered.outcome, ReceiptOutcome::Delivered);
    assert_eq!(delivered.supplier_status, "DELIVRD");
    assert_eq!(delivered.reported_at.timestamp(), 1_700_000_005);

    let failed = &receipts[1];
    assert_eq!(failed.message_id, None, "not a Herald message id");
    assert_eq!(failed.supplier_message_id.as_deref(), Some("2433:failed"));
    assert_eq!(failed.outcome, ReceiptOutcome::Undelivered);
    assert_eq!(failed.supplier_status, "MK:0001");
    assert_eq!(failed.reported_at.timestamp(), 1_700_000_009);

    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0, "PullSmsSendStatus");
    assert_eq!(seen[0].2, json!({"SmsSdkAppId": APP_ID, "Limit": 100}));
}

#[tokio::test]
async fn a_pull_with_a_wrong_secret_key_fails() {
    let (address, _) = start().await;
    let supplier = supplier(address, "not-the-secret-key");
    let result = supplier.pull_receipts().expect("tencent pulls").await;
    assert!(
        matches!(&result, Err(SendError::Unavailable { code, .. }) if code == "AuthFailure.SignatureFailure"),
        "{result:?}"
    );
}
