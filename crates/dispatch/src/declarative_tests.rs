//! Declarative suppliers: rendering, signing against vectors computed elsewhere, reading
//! answers, and a dry run against a local server that checks the bearer token.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use domain::http_supplier::{
    BodyFormat, DryRunRequest, HmacAlgorithm, HttpBody, HttpHeader, HttpMethod, HttpResponseRule,
    HttpSupplierSpec, SignEncoding, Signing,
};
use domain::{
    Channel, MessageId, MessageType, Receiver, ReceiverIdType, TemplateContent, TemplateParam,
    TenantId,
};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::*;
use crate::accounts::AccountConfig;
use crate::supplier::SendError;

fn spec(signing: Signing, body: Option<HttpBody>) -> HttpSupplierSpec {
    HttpSupplierSpec {
        channels: vec![Channel::Sms],
        method: HttpMethod::Post,
        url: "https://sms.example.com/v1/send?app={{settings.app_id}}&to={{receiver}}".to_owned(),
        headers: vec![HttpHeader {
            name: "X-Sign".to_owned(),
            value: "{{sign}}".to_owned(),
        }],
        body,
        signing,
        response: HttpResponseRule {
            success_pointer: Some("/code".to_owned()),
            success_values: vec!["0".to_owned()],
            message_id_pointer: Some("/data/id".to_owned()),
            error_code_pointer: None,
            error_message_pointer: Some("/msg".to_owned()),
        },
        retry_codes: vec!["BUSY".to_owned()],
    }
}

fn supplier(spec: HttpSupplierSpec, base_url: Option<String>) -> HttpSupplier {
    let mut credentials = BTreeMap::new();
    credentials.insert("secret".to_owned(), "key".to_owned());
    credentials.insert("password".to_owned(), "hunter2".to_owned());
    let mut settings = BTreeMap::new();
    settings.insert("app_id".to_owned(), "A1".to_owned());
    let config = AccountConfig {
        id: "agg".to_owned(),
        channel: Channel::Sms,
        supplier: "http:agg".to_owned(),
        base_url,
        weight: 1,
        settings,
        credentials,
        timeout_secs: 5,
        rate_limit_per_sec: None,
        rate_limit_burst: None,
        http_supplier: Some(Arc::new(spec)),
    };
    HttpSupplier::from_account(&config).unwrap()
}

fn content() -> TemplateContent {
    TemplateContent::SupplierTemplate {
        template_code: "T1".to_owned(),
        sign_name: Some("Acme".to_owned()),
        params: vec![TemplateParam {
            name: "code".to_owned(),
            value: "1234".to_owned(),
        }],
    }
}

fn prepare(supplier: &HttpSupplier) -> Prepared {
    let tenant = TenantId::parse("acme").unwrap();
    let receiver = Receiver::parse(ReceiverIdType::Phone, "+8613800000000").unwrap();
    let content = content();
    let message = Outbound {
        message_id: MessageId::generate(),
        tenant: &tenant,
        channel: Channel::Sms,
        msg_type: MessageType::AuthCode,
        receiver: &receiver,
        content: &content,
        attempt: 1,
    };
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    supplier.prepare(&message, now, "n0nce".to_owned()).unwrap()
}

fn header<'a>(prepared: &'a Prepared, name: &str) -> &'a str {
    prepared
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap()
}

#[test]
fn hmac_over_the_body_matches_a_known_vector_and_the_json_body_is_typed() {
    let signing = Signing::Hmac {
        algorithm: HmacAlgorithm::Sha256,
        key: "{{credentials.secret}}".to_owned(),
        parts: vec!["{{timestamp}}".to_owned(), "{{body}}".to_owned()],
        separator: ".".to_owned(),
        encoding: SignEncoding::Hex,
    };
    let body = HttpBody {
        format: BodyFormat::Json,
        template: json!({"a": "{{params}}", "t": "{{timestamp}}"}),
    };
    let prepared = prepare(&supplier(spec(signing, Some(body)), None));
    assert_eq!(
        prepared.body.as_deref(),
        Some(r#"{"a":{"code":"1234"},"t":1700000000}"#)
    );
    // printf '1700000000.{"a":{"code":"1234"},"t":1700000000}' | openssl dgst -sha256 -hmac key
    assert_eq!(
        header(&prepared, "x-sign"),
        "152d1d22ab45a91bbf112b9815dbdb444e23d1df4d519ce3c86fe7724529ef16"
    );
    assert_eq!(header(&prepared, "content-type"), "application/json");
    assert_eq!(
        prepared.url,
        "https://sms.example.com/v1/send?app=A1&to=%2B8613800000000"
    );
}

#[test]
fn md5_sign_goes_into_a_form_body_and_the_origin_is_replaced() {
    let signing = Signing::Md5 {
        parts: vec![
            "{{settings.app_id}}".to_owned(),
            "{{credentials.password}}".to_owned(),
            "{{timestamp}}".to_owned(),
        ],
        separator: String::new(),
        encoding: SignEncoding::HexUpper,
    };
    let body = HttpBody {
        format: BodyFormat::Form,
        template: json!({"to": "{{receiver}}", "sign": "{{sign}}", "text": "code {{params.code}}"}),
    };
    let mut spec = spec(signing, Some(body));
    spec.headers.clear();
    let prepared = prepare(&supplier(spec, Some("http://127.0.0.1:9/base/".to_owned())));
    // printf 'A1hunter21700000000' | md5sum, upper-cased
    let sign = "2DB04BFE9A3315121315D4CCB15EBCFC";
    assert_eq!(
        prepared.body.as_deref(),
        Some(format!("sign={sign}&text=code%201234&to=%2B8613800000000").as_str())
    );
    assert_eq!(
        prepared.url,
        "http://127.0.0.1:9/base/v1/send?app=A1&to=%2B8613800000000"
    );
    assert_eq!(
        header(&prepared, "content-type"),
        "application/x-www-form-urlencoded"
    );
}

#[test]
fn basic_and_bearer_set_authorization() {
    let mut basic = spec(
        Signing::Basic {
            username: "{{settings.app_id}}".to_owned(),
            password: "{{credentials.password}}".to_owned(),
        },
        None,
    );
    basic.headers.clear();
    let prepared = prepare(&supplier(basic, None));
    // printf 'A1:hunter2' | base64
    assert_eq!(header(&prepared, "authorization"), "Basic QTE6aHVudGVyMg==");
    let mut bearer = spec(
        Signing::Bearer {
            token: "{{credentials.secret}}".to_owned(),
        },
        None,
    );
    bearer.headers.clear();
    assert_eq!(
        header(&prepare(&supplier(bearer, None)), "authorization"),
        "Bearer key"
    );
}

#[test]
fn answers_are_read_through_the_pointers() {
    let s = supplier(spec(Signing::None, None), None);
    let read = |status: u16, body: Value| {
        s.interpret(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            &body.to_string(),
        )
    };
    assert_eq!(
        read(200, json!({"code": 0, "data": {"id": "S-1"}}))
            .unwrap()
            .supplier_message_id
            .as_deref(),
        Some("S-1")
    );
    assert!(matches!(
        read(200, json!({"code": "BUSY", "msg": "try later"})),
        Err(SendError::Retryable { code, message }) if code == "BUSY" && message == "try later"
    ));
    assert!(matches!(
        read(200, json!({"code": "BAD_NUMBER"})),
        Err(SendError::Final { code, .. }) if code == "BAD_NUMBER"
    ));
    assert!(matches!(
        read(503, json!({})),
        Err(SendError::Retryable { code, .. }) if code == "HTTP_503"
    ));
    assert!(matches!(
        read(429, json!({})),
        Err(SendError::Throttled { .. })
    ));
    assert!(matches!(
        s.interpret(StatusCode::OK, &HeaderMap::new(), "<html>"),
        Err(SendError::Final { code, .. }) if code == "UNREADABLE_ANSWER"
    ));
}

#[tokio::test]
async fn a_dry_run_calls_the_given_url_and_masks_the_secrets() {
    use axum::http::HeaderMap as AxumHeaders;
    let app = axum::Router::new().route(
        "/v1/send",
        axum::routing::post(|headers: AxumHeaders| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            if auth == "Bearer s3cret-token" {
                axum::Json(json!({"code": 0, "data": {"id": "D-1"}}))
            } else {
                axum::Json(json!({"code": "AUTH", "msg": "bad token"}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut spec = spec(
        Signing::Bearer {
            token: "{{credentials.token}}".to_owned(),
        },
        Some(HttpBody {
            format: BodyFormat::Json,
            template: json!({"to": "{{receiver}}", "echo": "{{credentials.token}}"}),
        }),
    );
    spec.headers.clear();
    let tenant = TenantId::parse("acme").unwrap();
    let request = |token: &str| {
        let mut credentials = BTreeMap::new();
        credentials.insert("token".to_owned(), token.to_owned());
        let mut settings = BTreeMap::new();
        settings.insert("app_id".to_owned(), "A1".to_owned());
        DryRunRequest {
            url: format!("http://{address}"),
            channel: Channel::Sms,
            receiver: "13800000000".to_owned(),
            content: content(),
            credentials,
            settings,
        }
    };
    let report = dry_run(
        &spec,
        &tenant,
        request("s3cret-token"),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(report.outcome, "SENT", "{report:?}");
    assert_eq!(report.supplier_message_id.as_deref(), Some("D-1"));
    assert_eq!(report.status, Some(200));
    assert!(
        report
            .url
            .starts_with(&format!("http://{address}/v1/send?"))
    );
    let shown = format!("{report:?}");
    assert!(!shown.contains("s3cret-token"), "{shown}");
    assert!(report.body.unwrap().contains("***"));

    let refused = dry_run(
        &spec,
        &tenant,
        request("wrong-token"),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(refused.outcome, "FINAL");
    assert_eq!(refused.code.as_deref(), Some("AUTH"));
    assert_eq!(refused.message.as_deref(), Some("bad token"));

    let mut missing = request("s3cret-token");
    missing.credentials.clear();
    let unusable = dry_run(&spec, &tenant, missing, Duration::from_secs(5)).await;
    assert_eq!(unusable.outcome, "NOT_SENT");
    assert_eq!(unusable.code.as_deref(), Some("ACCOUNT_UNUSABLE"));
}
