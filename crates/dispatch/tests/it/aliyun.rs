//! The Aliyun SMS supplier against a local `dysmsapi` that checks what Aliyun checks: the access
//! key, a signature it recomputes from the received form, a fresh nonce and timestamp, the
//! action and version, and the payload; and answers in Aliyun's JSON.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use dispatch::accounts::{AccountConfig, Accounts};
use dispatch::{Outbound, SendError, Sent, Supplier, SupplierReceipt};
use domain::{
    Channel, MessageId, MessageType, ReceiptOutcome, Receiver, ReceiverIdType, TemplateContent,
    TemplateParam, TenantId,
};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

const KEY_ID: &str = "LTAI-test-key";
const SECRET: &str = "test-access-key-secret";

/// A sent message as the fake keeps it, for `QuerySendDetails`.
struct Record {
    biz_id: String,
    phone: String,
    send_date: String,
    status: u8,
    err_code: &'static str,
    receive_date: Option<&'static str>,
    out_id: String,
}

#[derive(Default)]
struct Fake {
    requests: usize,
    nonces: HashSet<String>,
    /// The parameters of every accepted `SendSms`.
    sent: Vec<BTreeMap<String, String>>,
    records: Vec<Record>,
}

type Shared = Arc<Mutex<Fake>>;

/// Aliyun's percent-encoding, written out again here so that the fake does not trust the code
/// under test: unreserved bytes stay, everything else is `%XX` in upper case.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn aliyun_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "RequestId": "8906582E-6722-4D7F-9A1B-000000000000",
            "HostId": "dysmsapi.aliyuncs.com",
            "Code": code,
            "Message": message,
        })),
    )
        .into_response()
}

fn shanghai_today() -> String {
    let offset = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    Utc::now()
        .with_timezone(&offset)
        .format("%Y%m%d")
        .to_string()
}

async fn dysmsapi(State(fake): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mut fake = fake.lock().unwrap();
    fake.requests += 1;
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/x-www-form-urlencoded" {
        return aliyun_error(StatusCode::BAD_REQUEST, "InvalidParameter", "form only");
    }
    let mut params = BTreeMap::new();
    for pair in std::str::from_utf8(&body).unwrap().split('&') {
        let (name, value) = pair.split_once('=').unwrap();
        let (name, value) = (decode(name).unwrap(), decode(value).unwrap());
        assert!(params.insert(name.clone(), value).is_none(), "{name} twice");
    }
    if params.get("AccessKeyId").map(String::as_str) != Some(KEY_ID) {
        return aliyun_error(
            StatusCode::NOT_FOUND,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        );
    }
    let received = params.remove("Signature").unwrap_or_default();
    let canonical = params
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&");
    let to_sign = format!("POST&%2F&{}", encode(&canonical));
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(format!("{SECRET}&").as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if received != expected {
        return aliyun_error(
            StatusCode::BAD_REQUEST,
            "SignatureDoesNotMatch",
            &format!(
                "Specified signature is not matched with our calculation. server string to sign is:{to_sign}"
            ),
        );
    }
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    assert_eq!(param("SignatureMethod"), "HMAC-SHA1");
    assert_eq!(param("SignatureVersion"), "1.0");
    assert_eq!(param("Format"), "JSON");
    assert_eq!(param("RegionId"), "cn-hangzhou");
    if param("Version") != "2017-05-25" {
        return aliyun_error(StatusCode::BAD_REQUEST, "InvalidVersion", "bad version");
    }
    let timestamp = NaiveDateTime::parse_from_str(&param("Timestamp"), "%Y-%m-%dT%H:%M:%SZ")
        .map(|t| t.and_utc());
    if !timestamp.is_ok_and(|t| (Utc::now() - t).num_minutes().abs() < 15) {
        return aliyun_error(
            StatusCode::BAD_REQUEST,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        );
    }
    let nonce = param("SignatureNonce");
    if nonce.is_empty() || !fake.nonces.insert(nonce) {
        return aliyun_error(
            StatusCode::BAD_REQUEST,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        );
    }

    match param("Action").as_str() {
        "SendSms" => send_sms(&mut fake, params),
        "QuerySendDetails" => query_send_details(&fake, &params),
        _ => aliyun_error(
            StatusCode::NOT_FOUND,
            "InvalidAction.NotFound",
            "Specified api is not found",
        ),
    }
}

fn send_sms(fake: &mut Fake, params: BTreeMap<String, String>) -> Response {
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    match param("TemplateCode").as_str() {
        "SMS_BUSY" => {
            return aliyun_error(
                StatusCode::BAD_REQUEST,
                "Throttling.User",
                "Request was denied due to user flow control.",
            );
        }
        "SMS_DOWN" => return aliyun_error(StatusCode::OK, "isp.SYSTEM_ERROR", "isp.SYSTEM_ERROR"),
        "SMS_MAINTENANCE" => {
            return aliyun_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The request has failed due to a temporary failure of the server.",
            );
        }
        "SMS_71390007" => {}
        _ => return aliyun_error(StatusCode::OK, "isv.SMS_TEMPLATE_ILLEGAL", "模板不合法"),
    }
    let phone = param("PhoneNumbers");
    let digits = !phone.is_empty() && phone.bytes().all(|b| b.is_ascii_digit());
    let mainland = phone.len() == 11 && phone.starts_with('1');
    let hong_kong = phone.len() == 11 && phone.starts_with("852");
    if !(digits && (mainland || hong_kong)) {
        return aliyun_error(StatusCode::OK, "isv.MOBILE_NUMBER_ILLEGAL", "非法手机号");
    }
    if !["Herald", "阿里云短信测试专用"].contains(&param("SignName").as_str()) {
        return aliyun_error(StatusCode::OK, "isv.SMS_SIGNATURE_ILLEGAL", "签名不合法");
    }
    if let Some(template_param) = params.get("TemplateParam")
        && !serde_json::from_str::<Value>(template_param).is_ok_and(|v| v.is_object())
    {
        return aliyun_error(StatusCode::OK, "isv.INVALID_JSON_PARAM", "JSON参数不合法");
    }
    let biz_id = format!("90061974693649844{}^0", fake.sent.len());
    fake.records.push(Record {
        biz_id: biz_id.clone(),
        phone,
        send_date: shanghai_today(),
        status: 1,
        err_code: "",
        receive_date: None,
        out_id: param("OutId"),
    });
    fake.sent.push(params);
    axum::Json(json!({
        "Message": "OK",
        "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8D28D0",
        "Code": "OK",
        "BizId": biz_id,
    }))
    .into_response()
}

fn query_send_details(fake: &Fake, params: &BTreeMap<String, String>) -> Response {
    let param = |name: &str| params.get(name).cloned().unwrap_or_default();
    let date = param("SendDate");
    let page_size: u32 = param("PageSize").parse().unwrap_or(0);
    let page: u32 = param("CurrentPage").parse().unwrap_or(0);
    if param("PhoneNumber").is_empty()
        || date.len() != 8
        || !(1..=50).contains(&page_size)
        || page < 1
    {
        return aliyun_error(StatusCode::OK, "isv.INVALID_PARAMETERS", "参数异常");
    }
    let details: Vec<Value> = fake
        .records
        .iter()
        .filter(|r| r.phone == param("PhoneNumber") && r.send_date == date)
        .filter(|r| params.get("BizId").is_none_or(|id| *id == r.biz_id))
        .map(|r| {
            let mut detail = json!({
                "PhoneNum": r.phone,
                "SendStatus": r.status,
                "ErrCode": r.err_code,
                "TemplateCode": "SMS_71390007",
                "Content": "【Herald】您的验证码是1234",
                "SendDate": format!("{}-{}-{} 01:30:00", &r.send_date[..4], &r.send_date[4..6], &r.send_date[6..]),
                "OutId": r.out_id,
            });
            if let Some(received) = r.receive_date {
                detail["ReceiveDate"] = json!(received);
            }
            detail
        })
        .collect();
    axum::Json(json!({
        "TotalCount": details.len(),
        "Message": "OK",
        "RequestId": "819BE656-D2E0-4858-8B21-B2E477085AAF",
        "SmsSendDetailDTOs": { "SmsSendDetailDTO": details },
        "Code": "OK",
    }))
    .into_response()
}

async fn start() -> (SocketAddr, Shared) {
    let fake: Shared = Arc::default();
    let app = Router::new()
        .route("/", post(dysmsapi))
        .with_state(Arc::clone(&fake));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, fake)
}

/// The supplier as the account factory builds it from `[[accounts]]`.
fn supplier(address: SocketAddr, secret: &str, sign_name: Option<&str>) -> Arc<dyn Supplier> {
    let mut settings = json!({});
    if let Some(sign_name) = sign_name {
        settings["sign_name"] = json!(sign_name);
    }
    let config: AccountConfig = serde_json::from_value(json!({
        "id": "aliyun",
        "channel": "SMS",
        "supplier": "aliyun_sms",
        "base_url": format!("http://{address}/"),
        "settings": settings,
        "credentials": { "access_key_id": KEY_ID, "access_key_secret": secret },
        "timeout_secs": 2,
    }))
    .unwrap();
    let accounts =
        Accounts::from_config(&[config], &dispatch::tokens::Tokens::in_process()).unwrap();
    let supplier = Arc::clone(&accounts.find("aliyun").unwrap().supplier);
    assert_eq!(supplier.name(), "aliyun_sms");
    assert!(supplier.supports(Channel::Sms) && !supplier.supports(Channel::Email));
    supplier
}

fn code(template_code: &str, sign_name: Option<&str>) -> TemplateContent {
    TemplateContent::SupplierTemplate {
        template_code: template_code.into(),
        sign_name: sign_name.map(str::to_owned),
        params: vec![
            TemplateParam {
                name: "code".into(),
                value: "1234".into(),
            },
            TemplateParam {
                name: "minutes".into(),
                value: "5".into(),
            },
        ],
    }
}

struct Message {
    id: MessageId,
    tenant: TenantId,
    receiver: Receiver,
    content: TemplateContent,
}

impl Message {
    fn new(phone: &str, content: TemplateContent) -> Self {
        Message {
            id: MessageId::generate(),
            tenant: TenantId::parse("acme").unwrap(),
            receiver: Receiver::parse(ReceiverIdType::Phone, phone).unwrap(),
            content,
        }
    }

    fn outbound(&self) -> Outbound<'_> {
        Outbound {
            message_id: self.id,
            tenant: &self.tenant,
            channel: Channel::Sms,
            msg_type: MessageType::Notice,
            receiver: &self.receiver,
            content: &self.content,
            attempt: 1,
        }
    }

    async fn send(&self, supplier: &dyn Supplier) -> Result<Sent, SendError> {
        supplier.send(&self.outbound()).await
    }

    async fn receipts(
        &self,
        supplier: &dyn Supplier,
        biz_id: &str,
        sent_at: DateTime<Utc>,
    ) -> Vec<SupplierReceipt> {
        let outbound = self.outbound();
        supplier
            .query_receipt(&outbound, biz_id, sent_at)
            .expect("aliyun answers receipt queries")
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_template_message_is_sent_signed_with_the_message_id_as_out_id() {
    let (address, fake) = start().await;
    let supplier = supplier(address, SECRET, Some("Herald"));

    let mainland = Message::new("+8613800138000", code("SMS_71390007", None));
    let sent = mainland.send(supplier.as_ref()).await.unwrap();
    assert_eq!(
        sent.supplier_message_id.as_deref(),
        Some("900619746936498440^0")
    );
    // The template's own sign wins over the account's; an international number keeps its
    // country code without the plus.
    let hong_kong = Message::new(
        "+85291234567",
        code("SMS_71390007", Some("阿里云短信测试专用")),
    );
    let sent = hong_kong.send(supplier.as_ref()).await.unwrap();
    assert_eq!(
        sent.supplier_message_id.as_deref(),
        Some("900619746936498441^0")
    );

    {
        let fake = fake.lock().unwrap();
        let first = &fake.sent[0];
        assert_eq!(first["Action"], "SendSms");
        assert_eq!(first["AccessKeyId"], KEY_ID);
        assert_eq!(first["PhoneNumbers"], "13800138000");
        assert_eq!(first["SignName"], "Herald");
        assert_eq!(first["TemplateCode"], "SMS_71390007");
        assert_eq!(first["OutId"], mainland.id.to_string());
        assert_eq!(
            serde_json::from_str::<Value>(&first["TemplateParam"]).unwrap(),
            json!({ "code": "1234", "minutes": "5" })
        );
        let second = &fake.sent[1];
        assert_eq!(second["PhoneNumbers"], "85291234567");
        assert_eq!(second["SignName"], "阿里云短信测试专用");
        assert_eq!(second["OutId"], hong_kong.id.to_string());
        assert_ne!(first["SignatureNonce"], second["SignatureNonce"]);
    }

    // Until the carrier reports, the query finds the message but no receipt.
    let receipts = mainland
        .receipts(supplier.as_ref(), "900619746936498440^0", Utc::now())
        .await;
    assert_eq!(receipts, vec![]);
    assert_eq!(fake.lock().unwrap().requests, 3);
}

#[tokio::test]
async fn a_wrong_secret_makes_the_account_unavailable() {
    let (address, fake) = start().await;
    let supplier = supplier(address, "not-the-secret", Some("Herald"));
    let result = Message::new("+8613800138000", code("SMS_71390007", None))
        .send(supplier.as_ref())
        .await;
    assert!(
        matches!(&result, Err(SendError::Unavailable { code, message, .. })
            if code == "SignatureDoesNotMatch" && message.starts_with("Specified signature")),
        "{result:?}"
    );
    assert!(fake.lock().unwrap().sent.is_empty());
}

#[tokio::test]
async fn aliyun_error_codes_are_classified() {
    let (address, _fake) = start().await;
    let supplier = supplier(address, SECRET, Some("Herald"));
    let send = |phone: &'static str, template: &'static str| {
        let supplier = Arc::clone(&supplier);
        async move {
            Message::new(phone, code(template, None))
                .send(supplier.as_ref())
                .await
        }
    };

    let throttled = send("+8613800138000", "SMS_BUSY").await;
    assert!(
        matches!(&throttled, Err(SendError::Throttled { code, retry_after: None, .. }) if code == "Throttling.User"),
        "{throttled:?}"
    );
    let down = send("+8613800138000", "SMS_DOWN").await;
    assert!(
        matches!(&down, Err(SendError::Retryable { code, .. }) if code == "isp.SYSTEM_ERROR"),
        "{down:?}"
    );
    let maintenance = send("+8613800138000", "SMS_MAINTENANCE").await;
    assert!(
        matches!(&maintenance, Err(SendError::Retryable { code, .. }) if code == "ServiceUnavailable"),
        "{maintenance:?}"
    );
    // A number the domain accepts as E.164 but Aliyun cannot reach.
    let illegal = send("+999123456789", "SMS_71390007").await;
    assert!(
        matches!(&illegal, Err(SendError::Final { code, .. }) if code == "isv.MOBILE_NUMBER_ILLEGAL"),
        "{illegal:?}"
    );
    let template = send("+8613800138000", "SMS_NOT_APPROVED").await;
    assert!(
        matches!(&template, Err(SendError::Final { code, .. }) if code == "isv.SMS_TEMPLATE_ILLEGAL"),
        "{template:?}"
    );
    let refused = Message::new("+8613800138000", code("SMS_71390007", None))
        .send(self::supplier("127.0.0.1:1".parse().unwrap(), SECRET, Some("Herald")).as_ref())
        .await;
    assert!(
        matches!(&refused, Err(SendError::Retryable { code, .. }) if code == "CONNECT"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn content_that_is_not_a_supplier_template_is_final_without_a_call() {
    let (address, fake) = start().await;
    let text = Message::new(
        "+8613800138000",
        TemplateContent::Text {
            body: "Your code is 1234".into(),
        },
    );
    let result = text
        .send(supplier(address, SECRET, Some("Herald")).as_ref())
        .await;
    assert!(
        matches!(&result, Err(SendError::Final { code, .. }) if code == "UNSUPPORTED_CONTENT"),
        "{result:?}"
    );
    // With no sign on the template nor on the account there is nothing to send either.
    let unsigned = Message::new("+8613800138000", code("SMS_71390007", None));
    let result = unsigned
        .send(supplier(address, SECRET, None).as_ref())
        .await;
    assert!(
        matches!(&result, Err(SendError::Final { code, .. }) if code == "MISSING_SIGN_NAME"),
        "{result:?}"
    );
    assert_eq!(fake.lock().unwrap().requests, 0);
}

#[tokio::test]
async fn receipts_are_read_back_by_biz_id_on_the_beijing_send_date() {
    let (address, fake) = start().await;
    let supplier = supplier(address, SECRET, Some("Herald"));
    let message = Message::new("+8613800138000", code("SMS_71390007", None));
    // 17:30 UTC is 01:30 the next day in Beijing: Aliyun files the message under May 1st.
    let sent_at: DateTime<Utc> = "2024-04-30T17:30:00Z".parse().unwrap();
    {
        let mut fake = fake.lock().unwrap();
        for (biz_id, status, err_code, receive_date) in [
            ("1001^0", 3, "DELIVERED", Some("2024-05-01 01:30:05")),
            ("1002^0", 2, "MK:0001", Some("2024-05-01 01:31:00")),
            ("1003^0", 1, "", None),
        ] {
            fake.records.push(Record {
                biz_id: biz_id.into(),
                phone: "13800138000".into(),
                send_date: "20240501".into(),
                status,
                err_code,
                receive_date,
                out_id: message.id.to_string(),
            });
        }
    }

    let delivered = message.receipts(supplier.as_ref(), "1001^0", sent_at).await;
    assert_eq!(
        delivered,
        vec![SupplierReceipt {
            message_id: Some(message.id),
            supplier_message_id: Some("1001^0".into()),
            receiver: Some("13800138000".into()),
            outcome: ReceiptOutcome::Delivered,
            supplier_status: "DELIVERED".into(),
            reported_at: "2024-04-30T17:30:05Z".parse().unwrap(),
        }]
    );
    let undelivered = message.receipts(supplier.as_ref(), "1002^0", sent_at).await;
    assert_eq!(undelivered.len(), 1);
    assert_eq!(undelivered[0].outcome, ReceiptOutcome::Undelivered);
    assert_eq!(undelivered[0].supplier_status, "MK:0001");
    assert_eq!(
        undelivered[0].reported_at,
        "2024-04-30T17:31:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    let waiting = message.receipts(supplier.as_ref(), "1003^0", sent_at).await;
    assert_eq!(waiting, vec![]);
}
