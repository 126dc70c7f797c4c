//! Declarative HTTP suppliers, defined at run time through GraphQL: tried with a dry run, refused
//! with coded errors when they cannot work, and used by dispatch within seconds through a local
//! aggregator that checks the HMAC-SHA256 signature the recipe describes; its BUSY answer is
//! retried, and a redefinition is picked up without a restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use store::EventStore;

use crate::app::{TestApp, serve_fake, spawn};
use crate::dispatch::wait_for;

const SECRET: &str = "agg-secret-9d41c2";
const APP_ID: &str = "app-7";

/// One call the aggregator took: the body and the `X-Version` header.
type Calls = Arc<Mutex<Vec<(Value, Option<String>)>>>;

#[derive(Clone)]
struct Aggregator {
    calls: Calls,
    busy_once: Arc<AtomicBool>,
}

fn signature(timestamp: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{APP_ID}\n{timestamp}\n").as_bytes());
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An SMS aggregator as many are: `X-App-Id`, `X-Timestamp` and `X-Signature` = hex
/// HMAC-SHA256 over `appId\ntimestamp\nbody` with the app secret; `{"code":0}` for success.
async fn aggregator() -> (String, Aggregator) {
    let state = Aggregator {
        calls: Arc::default(),
        busy_once: Arc::default(),
    };
    let app = axum::Router::new()
        .route(
            "/v2/sms/send",
            post(
                |State(agg): State<Aggregator>, headers: HeaderMap, body: Bytes| async move {
                    let header = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let timestamp = header("x-timestamp").unwrap_or_default();
                    if header("x-app-id").as_deref() != Some(APP_ID)
                        || header("x-signature") != Some(signature(&timestamp, &body))
                        || header("content-type").as_deref() != Some("application/json")
                    {
                        return (
                            StatusCode::UNAUTHORIZED,
                            axum::Json(json!({ "code": "BAD_SIGN", "msg": "signature mismatch" })),
                        );
                    }
                    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
                        return (
                            StatusCode::BAD_REQUEST,
                            axum::Json(json!({ "code": "BAD_BODY" })),
                        );
                    };
                    if agg.busy_once.swap(false, Ordering::SeqCst) {
                        return (
                            StatusCode::OK,
                            axum::Json(json!({ "code": "BUSY", "msg": "channel busy" })),
                        );
                    }
                    let mut calls = agg.calls.lock().unwrap();
                    calls.push((parsed, header("x-version")));
                    let id = format!("AGG-{}", calls.len());
                    (
                        StatusCode::OK,
                        axum::Json(json!({ "code": 0, "data": { "sid": id } })),
                    )
                },
            ),
        )
        .with_state(state.clone());
    (serve_fake(app).await, state)
}

fn definition(extra_headers: Value) -> Value {
    let mut headers = vec![
        json!({ "name": "X-App-Id", "value": "{{settings.app_id}}" }),
        json!({ "name": "X-Timestamp", "value": "{{timestamp}}" }),
        json!({ "name": "X-Signature", "value": "{{sign}}" }),
    ];
    headers.extend(extra_headers.as_array().cloned().unwrap_or_default());
    json!({
        "name": "agg",
        "channels": ["SMS"],
        "method": "POST",
        "url": "https://api.aggregator.example/v2/sms/send",
        "headers": headers,
        "body": { "format": "JSON", "template": json!({
            "to": "{{receiver}}", "template": "{{template_code}}",
            "params": "{{params}}", "msgId": "{{message_id}}"
        }).to_string() },
        "signing": { "kind": "HMAC", "algorithm": "SHA256", "key": "{{credentials.secret}}",
                     "parts": ["{{settings.app_id}}", "{{timestamp}}", "{{body}}"],
                     "separator": "\n", "encoding": "HEX" },
        "response": { "successPointer": "/code", "successValues": ["0"],
                      "messageIdPointer": "/data/sid", "errorMessagePointer": "/msg" },
        "retryCodes": ["BUSY"],
    })
}

fn dry_run(url: &str, secret: &str) -> Value {
    json!({ "url": url, "channel": "SMS", "receiver": "13800138000", "templateCode": "T-1",
            "params": [{ "name": "code", "value": "1234" }],
            "settings": [{ "name": "app_id", "value": APP_ID }],
            "credentials": [{ "name": "secret", "value": secret }] })
}

const DEFINE: &str = "mutation($input: HttpSupplierInput!, $dryRun: HttpDryRunInput) { defineHttpSupplier(input: $input, dryRun: $dryRun) { name accountSupplier version url history { actor changed } } }";
const TRY: &str = "mutation($input: HttpSupplierInput!, $dryRun: HttpDryRunInput!) { dryRunHttpSupplier(input: $input, dryRun: $dryRun) { outcome code status supplierMessageId url headers { name value } body response } }";
const CREATE: &str = "mutation($input: CreateChannelAccountInput!) { createChannelAccount(input: $input) { id supplier } }";

fn error(answer: &Value) -> (&str, &str, &Value) {
    let ext = &answer["errors"][0]["extensions"];
    (
        ext["code"].as_str().unwrap_or_else(|| panic!("{answer}")),
        ext["reason"].as_str().unwrap_or(""),
        ext,
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

async fn send_code(app: &TestApp, key: &str, template: &str, code: &str) -> String {
    let query = "mutation($input: SendInput!) { send(input: $input) { messages { id } } }";
    let input = json!({ "templateId": template, "receivers": ["13800138000"], "variables": { "code": code } });
    let (_, sent) = app.gql(Some(key), query, json!({ "input": input })).await;
    format!(
        "message-{}",
        sent["data"]["send"]["messages"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{sent}"))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declarative_supplier_defined_at_run_time_sends_signed_calls() {
    let (url, agg) = aggregator().await;
    let app = spawn("postgres", |c| {
        c.security.secret_key = commands::secrets::Keyring::generate();
        c.runtime.poll_ms = 200;
        c.dispatch.dedup_window_secs = 0;
        c.dispatch.frequency_cap = 0;
        c.dispatch.retry_base_ms = 100;
    })
    .await;
    let admin = app.key("acme", "admin").await;
    let reviewer = app.key("acme", "admin").await;
    let sender = app.key("acme", "send,read").await;

    // A dry run calls the URL given, for real, and shows what went out with the secret masked.
    let (_, tried) = app
        .gql(
            Some(&admin),
            TRY,
            json!({ "input": definition(json!([])), "dryRun": dry_run(&url, SECRET) }),
        )
        .await;
    let report = &tried["data"]["dryRunHttpSupplier"];
    assert_eq!(report["outcome"], "SENT", "{tried}");
    assert_eq!(report["supplierMessageId"], "AGG-1");
    assert_eq!(report["status"], 200);
    assert_eq!(report["url"], format!("{url}/v2/sms/send"));
    assert!(!tried.to_string().contains(SECRET));
    let (_, wrong) = app
        .gql(
            Some(&admin),
            TRY,
            json!({ "input": definition(json!([])), "dryRun": dry_run(&url, "not-the-secret") }),
        )
        .await;
    let report = &wrong["data"]["dryRunHttpSupplier"];
    assert_eq!(
        (&report["outcome"], &report["code"], &report["status"]),
        (&json!("FINAL"), &json!("HTTP_401"), &json!(401)),
        "{wrong}"
    );

    // A definition whose dry run fails is not stored; a bad one is refused naming its field.
    let (_, refused) = app
        .gql(
            Some(&admin),
            DEFINE,
            json!({ "input": definition(json!([])), "dryRun": dry_run(&url, "not-the-secret") }),
        )
        .await;
    let (code, reason, ext) = error(&refused);
    assert_eq!(
        (code, reason),
        ("VALIDATION", "HTTP_SUPPLIER_DRY_RUN_FAILED")
    );
    assert_eq!(ext["status"], 401, "{refused}");
    let mut bad = definition(json!([]));
    bad["headers"][1]["value"] = json!("{{timestamps}}");
    let (_, invalid) = app.gql(Some(&admin), DEFINE, json!({ "input": bad })).await;
    let (code, reason, ext) = error(&invalid);
    assert_eq!((code, reason), ("VALIDATION", "INVALID_HTTP_SUPPLIER"));
    assert_eq!(ext["field"], "headers[1].value", "{invalid}");
    assert!(
        invalid["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("timestamps"),
        "{invalid}"
    );
    let (_, none) = app
        .gql(Some(&admin), "{ httpSuppliers { name } }", json!({}))
        .await;
    assert_eq!(none["data"]["httpSuppliers"], json!([]), "{none}");

    // Defined after a good dry run; an account must hold what the recipe names.
    let (_, defined) = app
        .gql(
            Some(&admin),
            DEFINE,
            json!({ "input": definition(json!([])), "dryRun": dry_run(&url, SECRET) }),
        )
        .await;
    let defined = &defined["data"]["defineHttpSupplier"];
    assert_eq!(defined["accountSupplier"], "http:agg", "{defined}");
    assert_eq!(defined["version"], 1);
    let account = |secrets: Value, supplier: &str| {
        json!({ "input": { "id": "agg-sms", "channel": "SMS", "supplier": supplier,
            "baseUrl": url, "settings": [{ "name": "app_id", "value": APP_ID }], "secrets": secrets } })
    };
    let (_, missing) = app
        .gql(Some(&admin), CREATE, account(json!([]), "http:agg"))
        .await;
    let (_, reason, _) = error(&missing);
    assert_eq!(reason, "ACCOUNT_UNUSABLE");
    assert!(
        missing.to_string().contains("credential \\\"secret\\\""),
        "{missing}"
    );
    let secret = json!([{ "name": "secret", "value": SECRET }]);
    let (_, unknown) = app
        .gql(Some(&admin), CREATE, account(secret.clone(), "http:nope"))
        .await;
    assert_eq!(error(&unknown).1, "ACCOUNT_UNUSABLE", "{unknown}");
    let created_at = Instant::now();
    let (_, created) = app
        .gql(Some(&admin), CREATE, account(secret, "http:agg"))
        .await;
    assert_eq!(
        created["data"]["createChannelAccount"]["supplier"], "http:agg",
        "{created}"
    );

    // A template on that account sends through the aggregator within seconds, signed.
    let template = json!({ "name": "login code", "channel": "SMS", "msgType": "AUTH_CODE",
        "content": { "kind": "SUPPLIER_TEMPLATE", "template_code": "T-1",
                     "params": [{ "name": "code", "value": "${code}" }] },
        "account": "agg-sms", "ownerTeam": "identity" });
    let template = app
        .client()
        .approved_template(&admin, &reviewer, template)
        .await;
    let first = send_code(&app, &sender, &template, "4711").await;
    wait_for(&app, &first, "MessageDispatched").await;
    assert!(
        created_at.elapsed() < Duration::from_secs(5),
        "sent {:?} after the account was made",
        created_at.elapsed()
    );
    let history = events(&app, &first).await;
    let dispatched = &history.last().unwrap().1;
    assert_eq!(dispatched["account"], "agg-sms");
    assert_eq!(dispatched["supplier"], "http");
    // The two dry runs that passed made AGG-1 and AGG-2.
    assert_eq!(dispatched["supplier_message_id"], "AGG-3");
    {
        let calls = agg.calls.lock().unwrap();
        let (body, version) = calls.last().unwrap();
        assert_eq!(
            body,
            &json!({ "to": "+8613800138000", "template": "T-1", "params": { "code": "4711" },
                     "msgId": first.trim_start_matches("message-") })
        );
        assert_eq!(*version, None);
    }

    // BUSY is one of the recipe's retry codes: the message is tried again and goes out.
    agg.busy_once.store(true, Ordering::SeqCst);
    let second = send_code(&app, &sender, &template, "4712").await;
    let kinds = wait_for(&app, &second, "MessageDispatched").await;
    assert_eq!(
        kinds,
        [
            "MessageAccepted",
            "DispatchFailed",
            "MessageDeferred",
            "MessageDispatched"
        ]
    );
    let failed = &events(&app, &second).await[1].1;
    assert_eq!(
        (&failed["error_code"], &failed["retryable"]),
        (&json!("BUSY"), &json!(true)),
        "{failed}"
    );
    assert_eq!(failed["error_message"], "channel busy");

    // A redefinition reaches dispatch without a restart.
    let (_, redefined) = app
        .gql(
            Some(&admin),
            DEFINE,
            json!({ "input": definition(json!([{ "name": "X-Version", "value": "2" }])) }),
        )
        .await;
    let redefined = &redefined["data"]["defineHttpSupplier"];
    assert_eq!(redefined["version"], 2, "{redefined}");
    assert_eq!(redefined["history"][1]["changed"], json!(["headers"]));
    let changed_at = Instant::now();
    loop {
        let stream = send_code(&app, &sender, &template, "4713").await;
        wait_for(&app, &stream, "MessageDispatched").await;
        if agg.calls.lock().unwrap().last().unwrap().1.as_deref() == Some("2") {
            break;
        }
        assert!(
            changed_at.elapsed() < Duration::from_secs(5),
            "the redefinition was not used within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Another tenant does not see it.
    let other = app.key("beta", "admin").await;
    let (_, seen) = app
        .gql(
            Some(&other),
            "{ httpSuppliers { name } httpSupplier(name: \"agg\") { name } }",
            json!({}),
        )
        .await;
    assert_eq!(
        seen["data"],
        json!({ "httpSuppliers": [], "httpSupplier": null })
    );
    app.finish().await;
}
