//! Crowd sends: a CSV uploaded to `/uploads` becomes one message per good row, bad rows are
//! reported by line while the rest go out, and a cancel stops what has not gone out.

use std::time::Duration;

use serde_json::{Value, json};

use crate::app::{TestApp, spawn};

const CROWD: &str = "id status run rowsRead accepted rejected bytesRead totalBytes \
    estimatedEnd finishedAt recalled errors { line code message } failure { code message }";

/// An approved INBOX template addressed by phone number, and a key that may send, read and
/// recall.
async fn template(app: &TestApp) -> (String, String) {
    let author = app.key("acme", "admin").await;
    let reviewer = app.key("acme", "admin").await;
    let input = json!({ "name": "crowd", "channel": "INBOX", "msgType": "MARKETING",
        "receiverIdType": "PHONE", "shieldType": "NONE",
        "content": { "kind": "TEXT", "body": "Hi ${name}, your code is ${code}" },
        "account": "inbox", "ownerTeam": "ci" });
    let id = app
        .client()
        .approved_template(&author, &reviewer, input)
        .await;
    (id, app.key("acme", "send,read,recall").await)
}

/// Uploads `csv` as multipart form data; the answer's status and JSON.
pub(crate) async fn upload(app: &TestApp, key: &str, csv: &[u8]) -> (u16, Value) {
    let boundary = "herald-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"audience.csv\"\r\nContent-Type: text/csv\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(csv);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = reqwest::Client::new()
        .post(format!("http://{}/uploads", app.address))
        .header("Authorization", format!("Bearer {key}"))
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn crowd_send(app: &TestApp, key: &str, input: Value) -> Value {
    let query =
        format!("mutation($input: CrowdSendInput!) {{ crowdSend(input: $input) {{ {CROWD} }} }}");
    let (_, answer) = app.gql(Some(key), &query, json!({ "input": input })).await;
    answer
}

async fn progress(app: &TestApp, key: &str, id: &str) -> Value {
    let query = format!("query($id: ID!) {{ crowdSend(id: $id) {{ {CROWD} }} }}");
    let (_, answer) = app.gql(Some(key), &query, json!({ "id": id })).await;
    answer["data"]["crowdSend"].clone()
}

/// Polls until the crowd send has `status`.
async fn until_status(app: &TestApp, key: &str, id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..600 {
        last = progress(app, key, id).await;
        if last["status"] == status {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("crowd send never reached {status}: {last}");
}

/// How many events of `event_type` the store holds.
async fn count_events(app: &TestApp, event_type: &str) -> i64 {
    store::on_read!(&app.store, |pool| {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
            .bind(event_type)
            .fetch_one(pool)
            .await
    })
    .unwrap()
}

async fn good_rows_go_out_and_bad_rows_are_reported_by_line(app: &TestApp) {
    let (template, key) = template(app).await;
    let mut csv = String::from("receiver,name,code,unused\n");
    for i in 0..1_000 {
        csv.push_str(&format!("+86138{i:08},Person {i},{i:06},x\n"));
        match i {
            // Line numbers: the header is 1, row i is i + 2, then the inserted bad rows.
            100 => csv.push_str("not-a-phone,Bad,123,x\n"),
            200 => csv.push_str("+8613900000001,,123,x\n"),
            300 => csv.push_str("+8613900000002,\"Broken,123,x\n"),
            400 => csv.push('\n'),
            _ => {}
        }
    }
    let (status, uploaded) = upload(app, &key, csv.as_bytes()).await;
    assert_eq!(status, 201, "{uploaded}");
    assert_eq!(uploaded["bytes"], csv.len());
    assert_eq!(uploaded["lines"], 1_005);
    let upload_id = uploaded["id"].as_str().unwrap();

    let input = json!({ "templateId": template, "requestId": "crowd-1", "uploadId": upload_id });
    let answer = crowd_send(app, &key, input.clone()).await;
    let id = answer["data"]["crowdSend"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned();
    // The same request again is the same crowd send.
    let again = crowd_send(app, &key, input).await;
    assert_eq!(again["data"]["crowdSend"]["id"], id.as_str(), "{again}");

    let done = until_status(app, &key, &id, "COMPLETED").await;
    assert_eq!(done["rowsRead"], 1_003, "{done}");
    assert_eq!(done["accepted"], 1_000, "{done}");
    assert_eq!(done["rejected"], 3, "{done}");
    assert_eq!(done["bytesRead"], csv.len(), "{done}");
    let errors: Vec<(u64, &str)> = done["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        errors,
        [
            (103, "INVALID_PHONE"),
            (204, "MISSING_VARIABLE"),
            (305, "BAD_CSV")
        ],
        "{done}"
    );
    // Exactly one message per good row, each rendered with its own row.
    assert_eq!(count_events(app, "MessageAccepted").await, 1_000);
    let body: String = store::on_read!(&app.store, |pool| {
        sqlx::query_scalar(
            "SELECT CAST(data AS TEXT) FROM events WHERE event_type = 'MessageAccepted' \
             AND CAST(data AS TEXT) LIKE '%8613800000042%'",
        )
        .fetch_one(pool)
        .await
    })
    .unwrap_or_default();
    assert!(body.contains("Hi Person 42, your code is 000042"), "{body}");
}

async fn bad_requests_are_refused_with_a_code(app: &TestApp) {
    let (template, key) = template(app).await;
    let reader = app.key("acme", "read").await;
    let (status, answer) = upload(app, &reader, b"receiver\n1\n").await;
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = upload(app, &key, b"").await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["errors"][0]["extensions"]["reason"], "EMPTY_FILE");

    // A header without a column for every placeholder is refused up front.
    let (_, uploaded) = upload(app, &key, b"phone,name\n+8613800000000,Ann\n").await;
    let upload_id = uploaded["id"].as_str().unwrap();
    for (input, reason) in [
        (
            json!({ "templateId": template, "requestId": "r1", "uploadId": upload_id }),
            "MISSING_COLUMN",
        ),
        (
            json!({ "templateId": template, "requestId": "r2", "uploadId": upload_id,
                "receiverColumn": "phone" }),
            "MISSING_COLUMN",
        ),
        (
            json!({ "templateId": template, "requestId": "r3", "uploadId": "nope" }),
            "NOT_FOUND",
        ),
        (
            json!({ "templateId": template, "requestId": "r4", "url": "ftp://x/y.csv" }),
            "INVALID_SOURCE_URL",
        ),
        (
            json!({ "templateId": template, "requestId": "r5", "url": "https://x/y.csv",
                "cron": { "expression": "61 * * * *" } }),
            "INVALID_SCHEDULE",
        ),
        (
            json!({ "templateId": template, "requestId": "r6" }),
            "SOURCE",
        ),
    ] {
        let answer = crowd_send(app, &key, input).await;
        assert_eq!(
            answer["errors"][0]["extensions"]["reason"], reason,
            "{answer}"
        );
    }
}

crate::app::both_backends!(
    good_rows_go_out_and_bad_rows_are_reported_by_line,
    bad_requests_are_refused_with_a_code
);

/// A crowd send cancelled half way: no more rows become messages, the messages not yet out are
/// recalled, and none is dispatched after the cancel.
async fn cancelled_half_way(backend: &str) {
    let app = spawn(backend, |c| {
        c.crowd.batch_size = 50;
        c.crowd.rows_per_sec = 1_000;
    })
    .await;
    let (template, key) = template(&app).await;
    let mut csv = String::from("receiver,name,code\n");
    for i in 0..5_000 {
        csv.push_str(&format!("+86138{i:08},P{i},{i}\n"));
    }
    let (_, uploaded) = upload(&app, &key, csv.as_bytes()).await;
    let input = json!({ "templateId": template, "requestId": "big", "uploadId": uploaded["id"] });
    let answer = crowd_send(&app, &key, input).await;
    let id = answer["data"]["crowdSend"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Wait until it is well under way.
    loop {
        let now = progress(&app, &key, &id).await;
        if now["accepted"].as_u64().unwrap_or(0) >= 500 {
            assert!(now["estimatedEnd"].is_string(), "{now}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let query = format!("mutation($id: ID!) {{ cancelCrowdSend(id: $id) {{ {CROWD} }} }}");
    let (_, answer) = app.gql(Some(&key), &query, json!({ "id": id })).await;
    let cancelled = answer["data"]["cancelCrowdSend"].clone();
    assert_eq!(cancelled["status"], "CANCELLED", "{answer}");
    let accepted = cancelled["accepted"].as_u64().unwrap();
    assert!(accepted < 5_000, "{cancelled}");
    let dispatched_at_cancel = count_events(&app, "MessageDispatched").await;
    let recalled = cancelled["recalled"].as_u64().unwrap();
    // Give the runner and the workers time to do anything they still would.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = progress(&app, &key, &id).await;
    assert_eq!(after["accepted"].as_u64().unwrap(), accepted, "{after}");
    assert_eq!(
        count_events(&app, "MessageDispatched").await,
        dispatched_at_cancel
    );
    assert_eq!(count_events(&app, "MessageAccepted").await as u64, accepted);
    // Every message is either out (before the cancel) or recalled.
    assert_eq!(
        dispatched_at_cancel as u64 + recalled,
        accepted,
        "{cancelled}"
    );
    // Cancelling again is a conflict with a code.
    let (_, again) = app.gql(Some(&key), &query, json!({ "id": id })).await;
    assert_eq!(
        again["errors"][0]["extensions"]["reason"], "CROWD_SEND_CANCELLED",
        "{again}"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_crowd_send_cancelled_half_way() {
    cancelled_half_way("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_crowd_send_cancelled_half_way() {
    cancelled_half_way("sqlite").await;
}
