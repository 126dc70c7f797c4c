//! Crowd sends: a CSV uploaded to `/uploads` becomes one message per good row, bad rows are
//! reported by line while the rest go out, and a cancel stops what has not gone out.

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::{TestApp, spawn};
use crate::support::{empty_dir, herald};

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
    crate::crowd_crash::upload_to(app.address, key, csv.to_vec()).await
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

/// Serves `body` with `status` at `http://127.0.0.1:PORT/audience.csv`, as a slow file server
/// does: the body in five pieces, a little apart. Counts the GETs it answers.
async fn serve_csv(status: u16, body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/audience.csv", listener.local_addr().unwrap());
    let gets = Arc::new(AtomicUsize::new(0));
    let seen = gets.clone();
    let body = Arc::new(body);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (seen, body) = (seen.clone(), body.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if head.starts_with(b"GET /audience.csv ") {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                let reason = if status == 200 { "OK" } else { "Not Found" };
                let header = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: text/csv\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                if socket.write_all(header.as_bytes()).await.is_err() {
                    return;
                }
                for piece in body.chunks(body.len().div_ceil(5).max(1)) {
                    if socket.write_all(piece).await.is_err() || socket.flush().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            });
        }
    });
    (url, gets)
}

/// A crowd send read from a URL: every row of a file streamed in pieces becomes one message,
/// and the file is fetched once.
async fn a_url_source_is_read_once_to_its_end(app: &TestApp) {
    let (template, key) = template(app).await;
    let mut csv = String::from("receiver,name,code\n");
    for i in 0..2_000 {
        csv.push_str(&format!("+86138{i:08},P{i},{i:06}\n"));
    }
    let (url, gets) = serve_csv(200, csv.clone().into_bytes()).await;
    let input = json!({ "templateId": template, "requestId": "from-url", "url": url });
    let answer = crowd_send(app, &key, input).await;
    let id = answer["data"]["crowdSend"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned();
    let done = until_status(app, &key, &id, "COMPLETED").await;
    assert_eq!(done["failure"], Value::Null, "{done}");
    assert_eq!(done["rowsRead"], 2_000, "{done}");
    assert_eq!(done["accepted"], 2_000, "{done}");
    assert_eq!(done["rejected"], 0, "{done}");
    assert_eq!(done["bytesRead"], csv.len(), "{done}");
    assert_eq!(done["totalBytes"], csv.len(), "{done}");
    assert_eq!(count_events(app, "MessageAccepted").await, 2_000);
    assert_eq!(gets.load(Ordering::SeqCst), 1);
}

/// A URL that answers 404: the run fails with a code, and no row becomes a message.
async fn a_url_that_answers_404_fails_the_run_with_a_code(app: &TestApp) {
    let (template, key) = template(app).await;
    let (url, gets) = serve_csv(404, b"no such file".to_vec()).await;
    let input = json!({ "templateId": template, "requestId": "gone", "url": url });
    let answer = crowd_send(app, &key, input).await;
    let id = answer["data"]["crowdSend"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned();
    // A one-off send whose only run failed is over, with the failure recorded.
    let done = until_status(app, &key, &id, "COMPLETED").await;
    assert_eq!(done["failure"]["code"], "SOURCE_UNAVAILABLE", "{done}");
    let message = done["failure"]["message"].as_str().unwrap();
    assert!(message.contains("404"), "{done}");
    assert_eq!(done["accepted"], 0, "{done}");
    assert_eq!(done["rowsRead"], 0, "{done}");
    assert_eq!(count_events(app, "MessageAccepted").await, 0);
    assert_eq!(gets.load(Ordering::SeqCst), 1);

    // The operator sees the same failure.
    let output = herald_crowd(app, &["status", &id]).await;
    let stdout = success(&output);
    assert!(
        stdout.contains(&format!(
            "failure     SOURCE_UNAVAILABLE: {url} answered 404"
        )),
        "{stdout}"
    );
}

/// `1234567` as `1,234,567`, as the CLI prints counts.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Runs `herald --database-url … crowd ARGS` against the app's store.
async fn herald_crowd(app: &TestApp, args: &[&str]) -> Output {
    let dir = empty_dir();
    let output = herald(&dir)
        .args(["--database-url", &app.database_url, "crowd"])
        .args(args)
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);
    output
}

#[track_caller]
fn success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// `herald crowd status` prints what `crowdSend(id)` answers: as a table, as JSON, and with
/// `--watch` on a finished send, once; an unknown or malformed id exits 2.
async fn herald_crowd_status_shows_the_progress(app: &TestApp) {
    let (template, key) = template(app).await;
    let mut csv = String::from("receiver,name,code\n");
    for i in 0..1_200 {
        csv.push_str(&format!("+86138{i:08},P{i},{i:06}\n"));
        if i % 100 == 7 {
            csv.push_str("not-a-phone,Bad,1\n");
        }
    }
    let (_, uploaded) = upload(app, &key, csv.as_bytes()).await;
    let input = json!({ "templateId": template, "requestId": "cli", "uploadId": uploaded["id"] });
    let answer = crowd_send(app, &key, input).await;
    let id = answer["data"]["crowdSend"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned();
    let done = until_status(app, &key, &id, "COMPLETED").await;
    let count = |name: &str| done[name].as_u64().unwrap();
    assert_eq!(
        (count("rowsRead"), count("accepted"), count("rejected")),
        (1_212, 1_200, 12),
        "{done}"
    );

    let stdout = success(&herald_crowd(app, &["status", &id]).await);
    for line in [
        format!("crowd send  {id}\n"),
        "tenant      acme\n".to_owned(),
        format!("template    {template}\n"),
        "request     cli\n".to_owned(),
        format!("source      upload {}\n", uploaded["id"].as_str().unwrap()),
        "schedule    once, at once\n".to_owned(),
        "status      COMPLETED\n".to_owned(),
        format!(
            "rows        {} read, {} accepted, {} rejected\n",
            thousands(count("rowsRead")),
            thousands(count("accepted")),
            thousands(count("rejected"))
        ),
        format!(
            "bytes       {} of {} (100.0%)\n",
            thousands(count("bytesRead")),
            thousands(count("totalBytes"))
        ),
        "failure     -\n".to_owned(),
        "… and 2 more rejected rows\n".to_owned(),
    ] {
        assert!(stdout.contains(&line), "{line:?} in\n{stdout}");
    }
    // The first ten row errors, by line, as the API reports them.
    let printed: Vec<(u64, String)> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("LINE"))
        .skip(1)
        .take_while(|l| !l.starts_with('…'))
        .map(|l| {
            let mut words = l.split_whitespace();
            (
                words.next().unwrap().parse().unwrap(),
                words.next().unwrap().to_owned(),
            )
        })
        .collect();
    let reported: Vec<(u64, String)> = done["errors"]
        .as_array()
        .unwrap()
        .iter()
        .take(10)
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(printed, reported, "{stdout}");
    assert_eq!(printed[0], (10, "INVALID_PHONE".to_owned()), "{stdout}");

    let stdout = success(&herald_crowd(app, &["status", &id, "--json"]).await);
    let value: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(value["id"], id.as_str());
    assert_eq!(value["tenant"], "acme");
    assert_eq!(value["status"], "COMPLETED");
    for name in [
        "rowsRead",
        "accepted",
        "rejected",
        "bytesRead",
        "totalBytes",
    ] {
        assert_eq!(value[name], done[name], "{name}: {value}");
    }
    assert_eq!(value["percent"], 100.0);
    assert_eq!(value["errors"], done["errors"]);
    assert_eq!(value["failure"], Value::Null);

    // Watching a finished send shows it once and exits.
    let watched = success(&herald_crowd(app, &["status", &id, "--watch"]).await);
    assert_eq!(
        watched.matches("status      COMPLETED").count(),
        1,
        "{watched}"
    );

    for (args, expected) in [
        (
            vec!["status".to_owned(), uuid::Uuid::now_v7().to_string()],
            "not found",
        ),
        (
            vec!["status".to_owned(), "not-an-id".to_owned()],
            "is not a crowd send id",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = herald_crowd(app, &args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        // The error is the last line (Postgres may log a notice from the migration check first).
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("herald: ") && last.contains(expected),
            "{stderr}"
        );
        assert!(output.stdout.is_empty());
    }
}

crate::app::both_backends!(
    good_rows_go_out_and_bad_rows_are_reported_by_line,
    bad_requests_are_refused_with_a_code,
    a_url_source_is_read_once_to_its_end,
    a_url_that_answers_404_fails_the_run_with_a_code,
    herald_crowd_status_shows_the_progress
);

/// `herald crowd status --watch --json` beside a running send: a line per change, the counts
/// only growing, until the send completes, and then it exits by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_crowd_status_watches_a_send_to_its_end() {
    let app = spawn("sqlite", |c| {
        c.crowd.batch_size = 100;
        c.crowd.rows_per_sec = 500;
    })
    .await;
    let (template, key) = template(&app).await;
    let mut csv = String::from("receiver,name,code\n");
    for i in 0..2_000 {
        csv.push_str(&format!("+86138{i:08},P{i},{i}\n"));
    }
    let (_, uploaded) = upload(&app, &key, csv.as_bytes()).await;
    let input =
        json!({ "templateId": template, "requestId": "watched", "uploadId": uploaded["id"] });
    let answer = crowd_send(&app, &key, input).await;
    let id = answer["data"]["crowdSend"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        herald_crowd(&app, &["status", &id, "--watch", "--json"]),
    )
    .await
    .expect("the watch ends when the send does");
    let stdout = success(&output);
    let seen: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(seen.len() >= 2, "{stdout}");
    let accepted: Vec<u64> = seen
        .iter()
        .map(|v| v["accepted"].as_u64().unwrap())
        .collect();
    assert!(accepted.windows(2).all(|w| w[0] <= w[1]), "{accepted:?}");
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "COMPLETED", "{last}");
    assert_eq!(last["accepted"], 2_000, "{last}");
    assert!(
        seen[..seen.len() - 1]
            .iter()
            .all(|v| v["status"] != "COMPLETED"),
        "{stdout}"
    );
    app.finish().await;
}

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
