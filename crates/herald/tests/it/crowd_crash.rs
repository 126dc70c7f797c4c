//! A crowd send of 200,000 rows through real `herald serve` processes on Postgres: the file is
//! streamed in batches, so the server's memory stays bounded (its RSS is sampled throughout),
//! and a process killed half way is resumed by the next from its last batch, with exactly one
//! message per row in the end.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;

use crate::app::Client;
use crate::deployment::Deployment;
use crate::support::serve;

const ROWS: usize = 200_000;
/// The most a server's resident memory may grow while it runs the send. Holding the file, or
/// the messages, would take several times this.
const MAX_GROWTH_MB: f64 = 64.0;

/// Resident memory of a process, in MiB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

/// `csv` posted to `/uploads` as multipart form data: the status and the answer.
pub(crate) async fn upload_to(address: SocketAddr, key: &str, csv: Vec<u8>) -> (u16, Value) {
    let boundary = "herald-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"audience.csv\"\r\nContent-Type: text/csv\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&csv);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = dispatch::http::client(Duration::from_secs(120))
        .unwrap()
        .post(format!("http://{address}/uploads"))
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

async fn progress(api: &Client, key: &str, id: &str) -> Value {
    let (_, answer) = api
        .gql(
            Some(key),
            "query($id: ID!) { crowdSend(id: $id) { status run rowsRead accepted rejected bytesRead totalBytes } }",
            json!({ "id": id }),
        )
        .await;
    answer["data"]["crowdSend"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200k_row_crowd_send_in_bounded_memory_survives_a_kill() {
    // Dedup and caps are off: every row is its own receiver anyway, and the in-process cache
    // they would fill is not what this test measures.
    let deployment = Deployment::new(
        "[dispatch]\ndedup_window_secs = 0\nfrequency_cap = 0\n\n\
         [crowd]\nbatch_size = 1000\nrows_per_sec = 100000\nmax_backlog = 10000000\nlease_secs = 3\n",
    )
    .await;
    let key = deployment.key("send,read").await;
    let mut first = serve(deployment.command()).await;
    let api = Client {
        address: first.address,
    };
    let template = json!({ "name": "crowd", "channel": "INBOX", "msgType": "MARKETING",
        "receiverIdType": "PHONE", "shieldType": "NONE",
        "content": { "kind": "TEXT", "body": "Hi ${name}" }, "account": "inbox", "ownerTeam": "ci" });
    let template = api
        .approved_template(&deployment.author, &deployment.reviewer, template)
        .await;

    let mut csv = String::from("receiver,name\n");
    for i in 0..ROWS {
        csv.push_str(&format!("+86138{i:08},User {i}\n"));
    }
    let bytes = csv.len();
    let (status, uploaded) = upload_to(first.address, &key, csv.into_bytes()).await;
    assert_eq!(status, 201, "{uploaded}");
    let upload_id = uploaded["id"].as_str().unwrap().to_owned();

    // The first process: its memory before the send, then sampled until it is killed half way.
    let pid = first.child.id().unwrap();
    let before = rss_mb(pid);
    let (_, answer) = api
        .gql(
            Some(&key),
            "mutation($input: CrowdSendInput!) { crowdSend(input: $input) { id } }",
            json!({ "input": { "templateId": template, "requestId": "big-1", "uploadId": upload_id } }),
        )
        .await;
    let id = answer["data"]["crowdSend"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned();
    let mut peak = before;
    let deadline = Instant::now() + Duration::from_secs(300);
    let started = Instant::now();
    let at_kill = loop {
        peak = peak.max(rss_mb(pid));
        let now = progress(&api, &key, &id).await;
        if now["accepted"].as_u64().unwrap_or(0) >= (ROWS / 2) as u64 {
            break now;
        }
        assert!(Instant::now() < deadline, "the send stalled: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    let first_rate = at_kill["accepted"].as_f64().unwrap() / started.elapsed().as_secs_f64();

    // The second process resumes the send from its last batch once the dead claim runs out.
    let second = serve(deployment.command()).await;
    let api = Client {
        address: second.address,
    };
    let pid = second.child.id().unwrap();
    let before_second = rss_mb(pid);
    let mut peak_second = before_second;
    let done = loop {
        peak_second = peak_second.max(rss_mb(pid));
        let now = progress(&api, &key, &id).await;
        if now["status"] == "COMPLETED" {
            break now;
        }
        assert!(Instant::now() < deadline, "the send never completed: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["rowsRead"], ROWS, "{done}");
    assert_eq!(done["accepted"], ROWS, "{done}");
    assert_eq!(done["rejected"], 0, "{done}");
    assert_eq!(done["bytesRead"], bytes, "{done}");
    assert_eq!(done["run"], 1, "resumed, not started again: {done}");

    // Exactly one message per row: as many accepted messages as rows, each to its own receiver.
    let mut db = sqlx::PgConnection::connect(&deployment.url).await.unwrap();
    let (messages, receivers): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT data->>'receiver') FROM events \
         WHERE event_type = 'MessageAccepted'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!((messages, receivers), (ROWS as i64, ROWS as i64));
    // And the batches cover the file once, each starting where the last ended.
    let batches: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT (data->>'last_line')::bigint, (data->>'rows')::bigint FROM events \
         WHERE event_type = 'CrowdBatchAccepted' ORDER BY stream_position",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let mut line = 1;
    for (last_line, rows) in &batches {
        assert_eq!(*last_line, line + rows, "a batch overlaps or leaves a gap");
        line = *last_line;
    }
    assert_eq!(line, ROWS as i64 + 1);
    db.close().await.unwrap();

    let growth = (peak - before).max(peak_second - before_second);
    eprintln!(
        "crowd crash test: {ROWS} rows, {bytes} bytes; first process {before:.1} MiB before, \
         {peak:.1} MiB peak, killed at {} accepted ({first_rate:.0} rows/s); second process \
         {before_second:.1} MiB at start, {peak_second:.1} MiB peak; {} batches",
        at_kill["accepted"],
        batches.len()
    );
    assert!(
        growth < MAX_GROWTH_MB,
        "memory grew by {growth:.1} MiB while sending"
    );
    drop(second);
    deployment.remove().await;
}
