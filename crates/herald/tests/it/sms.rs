//! SMS end to end: a template message sent through GraphQL goes to Tencent Cloud SMS; while
//! Tencent fails it fails over to Aliyun; receipts come back from both, pulled from Tencent and
//! asked of Aliyun, and land on the message streams. The two fakes check each call's signature
//! the way the real services do (the signing functions are pinned to the suppliers' documented
//! examples in the dispatch crate's tests) and answer in the suppliers' formats.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};
use store::EventStore;

use crate::app::{TestApp, accounts_from_toml, serve_fake, spawn};
use crate::dispatch::wait_for;

const TENCENT_ID: &str = "AKIDtest";
const TENCENT_KEY: &str = "tencent-key";
const ALIYUN_ID: &str = "LTAItest";
const ALIYUN_SECRET: &str = "aliyun-secret";

#[derive(Default)]
struct Sms {
    tencent_down: AtomicBool,
    tencent_broke: AtomicBool,
    /// Sends that got through: (supplier, phone, herald message id, template params).
    sent: Mutex<Vec<(&'static str, String, String, Value)>>,
    /// Tencent's report queue, drained by `PullSmsSendStatus`.
    tencent_reports: Mutex<Vec<Value>>,
    refused: Mutex<Vec<String>>,
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

async fn tencent(
    State(sms): State<Arc<Sms>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::Json<Value> {
    let timestamp: i64 = header(&headers, "x-tc-timestamp").parse().unwrap_or(0);
    let expected = dispatch::tencent::authorization(
        TENCENT_ID,
        TENCENT_KEY,
        "sms",
        &header(&headers, "host"),
        timestamp,
        &body,
    );
    let error = |code: &str| {
        axum::Json(
            json!({ "Response": { "Error": { "Code": code, "Message": code }, "RequestId": "r" } }),
        )
    };
    if header(&headers, "authorization") != expected
        || header(&headers, "x-tc-version") != "2021-01-11"
    {
        sms.refused.lock().unwrap().push("tencent".to_owned());
        return error("AuthFailure.SignatureFailure");
    }
    let payload: Value = serde_json::from_slice(&body).unwrap();
    match header(&headers, "x-tc-action").as_str() {
        "SendSms" => {
            if sms.tencent_down.load(Ordering::SeqCst) {
                return error("InternalError.Timeout");
            }
            if sms.tencent_broke.load(Ordering::SeqCst) {
                return error("FailedOperation.InsufficientBalanceInSmsPackage");
            }
            let phone = payload["PhoneNumberSet"][0].as_str().unwrap().to_owned();
            let context = payload["SessionContext"].as_str().unwrap().to_owned();
            let serial = format!("serial-{context}");
            sms.sent.lock().unwrap().push((
                "tencent",
                phone.clone(),
                context.clone(),
                payload["TemplateParamSet"].clone(),
            ));
            sms.tencent_reports.lock().unwrap().push(json!({
                "UserReceiveTime": 1_700_000_000, "PhoneNumber": phone, "SerialNo": serial,
                "ReportStatus": "SUCCESS", "Description": "DELIVRD", "SessionContext": context,
            }));
            axum::Json(json!({ "Response": { "SendStatusSet": [{
                "SerialNo": serial, "PhoneNumber": phone, "Fee": 1, "SessionContext": context,
                "Code": "Ok", "Message": "send success", "IsoCode": "CN",
            }], "RequestId": "r" } }))
        }
        "PullSmsSendStatus" => {
            let reports: Vec<Value> = std::mem::take(&mut *sms.tencent_reports.lock().unwrap());
            axum::Json(json!({ "Response": { "PullSmsSendStatusSet": reports, "RequestId": "r" } }))
        }
        other => error(&format!("InvalidAction.{other}")),
    }
}

/// `application/x-www-form-urlencoded` as Aliyun's SDKs write it (`%20`, never `+`).
fn form(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    std::str::from_utf8(body)
        .unwrap()
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (decode(k), decode(v))
        })
        .collect()
}

async fn aliyun(State(sms): State<Arc<Sms>>, body: Bytes) -> axum::Json<Value> {
    let params = form(&body);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let signed: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| k != "Signature")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if get("Signature") != dispatch::aliyun::signature("POST", &signed, ALIYUN_SECRET)
        || get("AccessKeyId") != ALIYUN_ID
        || get("Version") != "2017-05-25"
    {
        sms.refused.lock().unwrap().push("aliyun".to_owned());
        return axum::Json(
            json!({ "Code": "SignatureDoesNotMatch", "Message": "bad", "RequestId": "r" }),
        );
    }
    match get("Action").as_str() {
        "SendSms" => {
            let out_id = get("OutId");
            sms.sent.lock().unwrap().push((
                "aliyun",
                get("PhoneNumbers"),
                out_id.clone(),
                serde_json::from_str(&get("TemplateParam")).unwrap(),
            ));
            axum::Json(
                json!({ "Code": "OK", "Message": "OK", "BizId": format!("biz-{out_id}"), "RequestId": "r" }),
            )
        }
        "QuerySendDetails" => {
            let biz = get("BizId");
            let out_id = biz.trim_start_matches("biz-");
            axum::Json(
                json!({ "Code": "OK", "Message": "OK", "RequestId": "r", "TotalCount": 1,
                "SmsSendDetailDTOs": { "SmsSendDetailDTO": [{
                    "PhoneNum": get("PhoneNumber"), "SendStatus": 3, "ErrCode": "DELIVERED",
                    "ReceiveDate": "2026-11-23 10:00:05", "SendDate": "2026-11-23 10:00:00",
                    "OutId": out_id, "Content": "…", "TemplateCode": "SMS_1",
                }] } }),
            )
        }
        other => axum::Json(json!({ "Code": format!("InvalidAction.{other}"), "Message": "?" })),
    }
}

async fn fakes() -> (String, String, Arc<Sms>) {
    let sms = Arc::new(Sms::default());
    let mut urls = Vec::new();
    for router in [
        axum::Router::new()
            .route("/", post(tencent))
            .with_state(Arc::clone(&sms)),
        axum::Router::new()
            .route("/", post(aliyun))
            .with_state(Arc::clone(&sms)),
    ] {
        urls.push(serve_fake(router).await);
    }
    (urls[0].clone(), urls[1].clone(), sms)
}

async fn app(backend: &str, tencent_url: &str, aliyun_url: &str) -> TestApp {
    let accounts = format!(
        r#"
        [[accounts]]
        id = "tencent"
        channel = "SMS"
        supplier = "tencent_sms"
        base_url = "{tencent_url}"
        settings = {{ sdk_app_id = "1400000001", sign_name = "Herald" }}
        credentials = {{ secret_id = "{TENCENT_ID}", secret_key = "{TENCENT_KEY}" }}

        [[accounts]]
        id = "aliyun"
        channel = "SMS"
        supplier = "aliyun_sms"
        base_url = "{aliyun_url}"
        settings = {{ sign_name = "Herald" }}
        credentials = {{ access_key_id = "{ALIYUN_ID}", access_key_secret = "{ALIYUN_SECRET}" }}
        "#
    );
    let accounts = accounts_from_toml(&accounts);
    spawn(backend, move |c| {
        c.accounts = accounts;
        c.dispatch.retry_attempts = 2;
        c.dispatch.retry_base_ms = 20;
        c.dispatch.dedup_window_secs = 0;
        c.dispatch.frequency_cap = 0;
        c.dispatch.receipt_pull_interval_ms = 100;
        c.dispatch.receipt_query_delay_ms = 100;
    })
    .await
}

async fn send_code(app: &TestApp, key: &str, template: &str, phone: &str, code: &str) -> String {
    let query = "mutation($input: SendInput!) { send(input: $input) { messages { id } } }";
    let input =
        json!({ "templateId": template, "receivers": [phone], "variables": { "code": code } });
    let (_, sent) = app.gql(Some(key), query, json!({ "input": input })).await;
    format!(
        "message-{}",
        sent["data"]["send"]["messages"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{sent}"))
    )
}

async fn events(app: &TestApp, stream: &str) -> Vec<(String, Value)> {
    app.store
        .read_stream(stream, 1, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event_type.clone(), e.data_json().unwrap()))
        .collect()
}

async fn sms_through_both_suppliers(backend: &str) {
    let (tencent_url, aliyun_url, sms) = fakes().await;
    let app = app(backend, &tencent_url, &aliyun_url).await;
    let author = app.key("acme", "admin").await;
    let reviewer = app.key("acme", "admin").await;
    let key = app.key("acme", "send,read").await;
    let input = json!({ "name": "login code", "channel": "SMS", "msgType": "AUTH_CODE",
        "content": { "kind": "SUPPLIER_TEMPLATE", "template_code": "1234567",
                     "params": [{ "name": "code", "value": "${code}" }] },
        "account": "tencent", "ownerTeam": "identity" });
    let template = app
        .client()
        .approved_template(&author, &reviewer, input)
        .await;

    // Tencent is up: the code goes through Tencent, and its receipt is pulled.
    let first = send_code(&app, &key, &template, "13800138000", "4711").await;
    wait_for(&app, &first, "ReceiptReceived").await;
    let first_events = events(&app, &first).await;
    let dispatched = &first_events[1];
    assert_eq!(dispatched.0, "MessageDispatched");
    assert_eq!(dispatched.1["account"], "tencent");
    assert_eq!(dispatched.1["supplier"], "tencent_sms");
    let id = first.trim_start_matches("message-");
    assert_eq!(
        dispatched.1["supplier_message_id"],
        format!("serial-{id}").as_str()
    );
    let receipt = &first_events.last().unwrap().1;
    assert_eq!(
        (
            receipt["outcome"].as_str(),
            receipt["supplier_status"].as_str()
        ),
        (Some("DELIVERED"), Some("DELIVRD"))
    );
    {
        let sent = sms.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0],
            (
                "tencent",
                "+8613800138000".to_owned(),
                id.to_owned(),
                json!(["4711"])
            )
        );
    }

    // Tencent fails: two attempts there, then Aliyun; its receipt is asked for by BizId.
    sms.tencent_down.store(true, Ordering::SeqCst);
    let second = send_code(&app, &key, &template, "13900139000", "0815").await;
    wait_for(&app, &second, "ReceiptReceived").await;
    let types: Vec<String> = events(&app, &second)
        .await
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        types,
        [
            "MessageAccepted",
            "DispatchFailed",
            "MessageDeferred",
            "DispatchFailed",
            "MessageDispatched",
            "ReceiptReceived"
        ]
    );
    let second_events = events(&app, &second).await;
    assert_eq!(second_events[1].1["error_code"], "InternalError.Timeout");
    assert_eq!(second_events[4].1["account"], "aliyun");
    let id = second.trim_start_matches("message-");
    assert_eq!(
        second_events[4].1["supplier_message_id"],
        format!("biz-{id}").as_str()
    );
    assert_eq!(second_events[5].1["supplier_status"], "DELIVERED");
    // The supplier's id finds the message, for receipts that name only that id.
    assert_eq!(
        store::supplier_ids::find(&app.store, "aliyun", &format!("biz-{id}"))
            .await
            .unwrap()
            .as_deref(),
        Some(id)
    );
    let sent = sms.sent.lock().unwrap().clone();
    assert_eq!(
        sent[1],
        (
            "aliyun",
            "13900139000".to_owned(),
            id.to_owned(),
            json!({ "code": "0815" })
        )
    );
    assert!(sms.refused.lock().unwrap().is_empty());
    // Receipts are asked for once: the message left the receipt lane with its receipt.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(events(&app, &second).await.len(), 6);

    // Tencent is up but out of balance: the account cannot send, whatever the message. The
    // message fails over at once, with no backoff, and the account is paused, so the next
    // message goes straight to Aliyun.
    sms.tencent_down.store(false, Ordering::SeqCst);
    sms.tencent_broke.store(true, Ordering::SeqCst);
    let third = send_code(&app, &key, &template, "13700137000", "1111").await;
    wait_for(&app, &third, "MessageDispatched").await;
    let third_events = events(&app, &third).await;
    let types: Vec<&str> = third_events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        ["MessageAccepted", "DispatchFailed", "MessageDispatched"]
    );
    assert_eq!(
        third_events[1].1["error_code"],
        "FailedOperation.InsufficientBalanceInSmsPackage"
    );
    assert_eq!(third_events[2].1["account"], "aliyun");
    let fourth = send_code(&app, &key, &template, "13600136000", "2222").await;
    wait_for(&app, &fourth, "MessageDispatched").await;
    let fourth_events = events(&app, &fourth).await;
    assert_eq!(fourth_events.len(), 2, "{fourth_events:?}");
    assert_eq!(fourth_events[1].1["account"], "aliyun");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sms_through_tencent_and_aliyun() {
    sms_through_both_suppliers("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sms_through_tencent_and_aliyun() {
    sms_through_both_suppliers("sqlite").await;
}
