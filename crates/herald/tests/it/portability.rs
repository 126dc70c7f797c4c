//! `herald export` and `herald import`: a SQLite deployment moves to Postgres with its log (same
//! events, same order, same ids and times), its keys, its link secret and its read models; what
//! was sent is not sent again, and what was waiting is sent once. An interrupted export resumes
//! to the same file; a truncated file, a damaged one and a store that holds events are refused.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use domain::{TemplateId, TenantId};
use projections::Projection;
use serde_json::{Value, json};
use store::{EventStore, ExpectedVersion, LogFilter, RecordedEvent, Store, StreamAppend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::{TestApp, spawn, spawn_on, webhook_account};
use crate::replay::{Made, append, caught_up, counting_supplier, encode, message, thousands};
use crate::support::{drop_database, empty_dir, herald, postgres_database};

const QUERY: &str = "query($id: ID!) { message(id: $id) { message { id status attempts clicks timeline { kind } } } }";

/// Runs `herald --database-url URL ARGS` in `dir`.
async fn run(dir: &Path, url: &str, args: &[&str]) -> Output {
    herald(dir)
        .args(["--database-url", url])
        .args(args)
        .output()
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed; returns its standard output.
async fn ok(dir: &Path, url: &str, args: &[&str]) -> String {
    let output = run(dir, url, args).await;
    assert!(
        output.status.success(),
        "herald {args:?} failed: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Runs a command that must fail with exit status 1; returns its standard error.
async fn refused(dir: &Path, url: &str, args: &[&str]) -> String {
    let output = run(dir, url, args).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "herald {args:?}: {stderr}");
    stderr
}

/// Every event of the store in log order.
async fn log(store: &Store) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    let mut after = store::Checkpoint::START;
    loop {
        let batch = store
            .read_log(after, &LogFilter::all(), 5_000)
            .await
            .unwrap();
        after = batch.next;
        if batch.events.is_empty() {
            if batch.blocked {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            return events;
        }
        events.extend(batch.events);
    }
}

/// The two logs hold the same events in the same order: stream, position, id, type, version,
/// data and metadata (as JSON: Postgres keeps `jsonb`, which spaces and orders keys its own
/// way) and the time recorded.
fn same_log(source: &[RecordedEvent], target: &[RecordedEvent]) {
    assert_eq!(source.len(), target.len());
    for (i, (a, b)) in source.iter().zip(target).enumerate() {
        let fields = |e: &RecordedEvent| {
            (
                e.stream_id.clone(),
                e.stream_position,
                e.event_id,
                e.event_type.clone(),
                e.schema_version,
                e.data_json().unwrap(),
                serde_json::from_str::<Value>(&e.metadata).unwrap(),
                e.recorded_at,
            )
        };
        assert_eq!(fields(a), fields(b), "event {i} of the log");
    }
}

/// A JSON value with every object's keys in order, as text.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// The rows of a read table as backend-independent text, sorted: each row a JSON object of its
/// columns, with booleans as 0 or 1 (SQLite has no booleans), JSON kept in a text column parsed,
/// since each backend writes JSON its own way, and without the inbox's `delivered_tx`: a log
/// place's transaction id is the store's own (SQLite has none and writes 0).
async fn rows(store: &Store, table: &str) -> Vec<String> {
    let raw: Vec<String> = match store {
        Store::Postgres(s) => {
            sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM \"{table}\" t"))
                .fetch_all(s.pool())
                .await
                .unwrap()
        }
        Store::Sqlite(s) => {
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                    .bind(table)
                    .fetch_all(s.readers())
                    .await
                    .unwrap();
            let pairs: Vec<String> = columns.iter().map(|c| format!("'{c}', \"{c}\"")).collect();
            sqlx::query_scalar(&format!(
                "SELECT json_object({}) FROM \"{table}\"",
                pairs.join(", ")
            ))
            .fetch_all(s.readers())
            .await
            .unwrap()
        }
    };
    let mut rows: Vec<String> = raw
        .into_iter()
        .map(|row| {
            let Value::Object(columns) = serde_json::from_str::<Value>(&row).unwrap() else {
                panic!("a row as an object: {row}");
            };
            let columns = columns
                .into_iter()
                .filter(|(name, _)| name != "delivered_tx")
                .map(|(name, value)| {
                    let value = match value {
                        Value::Bool(b) => json!(i64::from(b)),
                        Value::String(s) if s.starts_with('{') || s.starts_with('[') => {
                            serde_json::from_str(&s).unwrap_or(Value::String(s))
                        }
                        other => other,
                    };
                    (name, value)
                })
                .collect();
            canonical(Value::Object(columns)).to_string()
        })
        .collect();
    rows.sort_unstable();
    rows
}

/// Every projection table holds the same rows on both stores.
async fn same_projections(source: &Store, target: &Store) -> usize {
    let mut compared = 0;
    for projection in Projection::ALL {
        for table in projection.tables() {
            let (a, b) = (rows(source, table).await, rows(target, table).await);
            assert_eq!(a.len(), b.len(), "rows of {table}");
            if let Some((x, y)) = a.iter().zip(&b).find(|(x, y)| x != y) {
                panic!("{table} differs:\n  source {x}\n  target {y}");
            }
            compared += a.len();
        }
    }
    compared
}

async fn count(store: &Store, sql: &str) -> i64 {
    store::on_read!(store, |pool| sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap())
}

/// A message stream that stops before its outcome: still waiting for dispatch.
fn waiting(i: usize, tenant: &TenantId, template: TemplateId, hook: &str, keep: usize) -> Made {
    let mut made = message(
        i,
        tenant,
        template,
        hook,
        Utc::now() - TimeDelta::minutes(10),
    );
    made.events.truncate(keep);
    let state = domain::message_state::fold(&made.events).unwrap();
    made.status = state.status.unwrap().as_str();
    made
}

/// A GET of a tracked link: status and `Location`.
async fn follow(app: &TestApp, path: &str) -> (u16, Option<String>) {
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0 (iPhone)\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let location = response
        .lines()
        .find_map(|l| l.strip_prefix("location: ").map(str::to_owned));
    (status, location)
}

async fn status_of(app: &TestApp, key: &str, id: &str) -> Value {
    let (code, answer) = app.gql(Some(key), QUERY, json!({ "id": id })).await;
    assert_eq!(code, 200, "{answer}");
    assert!(answer["errors"].is_null(), "{answer}");
    answer["data"]["message"]["message"].clone()
}

/// The test: a SQLite store of 100,000 events, exported and imported into a new
/// Postgres database, holds the same log and the same read tables there; its tenant's key
/// works, a link sent before the move still redirects, nothing sent before is sent again, and
/// the messages that were waiting are sent once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_of_100_000_events_moves_to_postgres() {
    let (hook, calls) = counting_supplier().await;
    let tune = |c: &mut herald::config::Config| {
        c.accounts = vec![webhook_account("s3cret", "")];
        c.api.public_url = "https://h.test".into();
        c.api.rate_limit_per_second = 1_000_000;
        c.api.rate_limit_burst = 1_000_000;
    };
    let source = spawn("sqlite", tune).await;

    // A message sent the ordinary way, with a tracked link, and dispatched.
    let content =
        json!({ "kind": "TEXT", "body": "Order ${n} shipped: https://shop.test/orders/42" });
    let (template_id, key) = crate::trace::template(&source, "WEBHOOK", content, "NONE").await;
    let sent = crate::trace::send(&source, &key, &template_id, &hook, json!({})).await;
    crate::trace::until_timeline(&source, &key, &sent, &["ACCEPTED", "DISPATCHED"]).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let accepted = source
        .store
        .read_stream(&format!("message-{sent}"), 1, 1)
        .await
        .unwrap()[0]
        .data_json()
        .unwrap();
    let body = accepted["content"]["body"].as_str().unwrap().to_owned();
    let token = body
        .split("https://h.test/c/")
        .nth(1)
        .unwrap_or_else(|| panic!("a tracked link in {body}"))
        .to_owned();

    // The rest of the log: messages that reached every kind of outcome (written as dispatch
    // would, to the counting supplier's address), and two still waiting: one just accepted,
    // one deferred after a failed attempt.
    let tenant = TenantId::parse("acme").unwrap();
    let template = TemplateId::generate();
    let t0 = Utc::now() - TimeDelta::days(1);
    let started = Instant::now();
    let pending = [
        waiting(1, &tenant, template, &hook, 1),
        waiting(2, &tenant, template, &hook, 3),
    ];
    assert_eq!(
        pending.iter().map(|m| m.status).collect::<Vec<_>>(),
        ["ACCEPTED", "DEFERRED"]
    );
    let so_far = store::portable::count_events(&source.store).await.unwrap() as usize;
    let mut made = Vec::new();
    let mut events = so_far + 1 + 3;
    while events < 100_000 {
        let m = message(made.len(), &tenant, template, &hook, t0);
        events += m.events.len();
        made.push(m);
    }
    append(&source.store, &made, &tenant).await;
    for m in &pending {
        let appends: Vec<StreamAppend> = vec![StreamAppend {
            stream_id: m.id.stream_name(),
            expected: ExpectedVersion::NoStream,
            events: m.events.iter().map(|e| encode(e, &tenant)).collect(),
        }];
        source.store.append(&appends).await.unwrap();
    }
    let source_log = log(&source.store).await;
    assert_eq!(source_log.len(), events);
    assert!(events >= 100_000);
    eprintln!(
        "sqlite: {} messages, {events} events written in {:.1} s",
        made.len() + 3,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    caught_up(&source.store).await;
    eprintln!(
        "sqlite: projections caught up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let source_store = source.store.clone();
    let source_url = source.database_url.clone();
    // A deployment is stopped before it moves.
    source.finish().await;

    let dir = empty_dir();
    let file = dir.join("herald.ndjson");
    let file_arg = file.to_str().unwrap();
    let started = Instant::now();
    let exported = ok(&dir, &source_url, &["export", "--out", file_arg]).await;
    eprintln!(
        "export: {:.1} s, {} MB: {exported}",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&file).unwrap().len() / 1_000_000
    );
    assert!(
        exported.contains(&format!("{} events", thousands(events))),
        "{exported}"
    );

    let target_url = postgres_database().await;
    let started = Instant::now();
    let imported = ok(&dir, &target_url, &["import", "--in", file_arg]).await;
    eprintln!(
        "import: {:.1} s: {imported}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        imported.contains("2 messages queued for dispatch, 0 recalls pending"),
        "{imported}"
    );
    let target = Store::connect(&target_url).await.unwrap();

    // The same log, event by event, in the same order.
    let target_log = log(&target).await;
    same_log(&source_log, &target_log);

    // The same read tables, rebuilt by the import (no server has run on Postgres yet).
    let compared = same_projections(&source_store, &target).await;
    eprintln!("projections: {compared} rows compared");
    assert!(compared > 100_000, "{compared}");

    // Derived from the log: the supplier ids of every dispatch that had one, and the queue
    // holds exactly the two messages still waiting.
    let with_supplier_id = source_log
        .iter()
        .filter(|e| {
            e.event_type == "MessageDispatched"
                && e.data_json().unwrap()["supplier_message_id"].is_string()
        })
        .count() as i64;
    assert!(with_supplier_id > 0);
    assert_eq!(
        count(&target, "SELECT count(*) FROM supplier_messages").await,
        with_supplier_id
    );
    let mut queued: Vec<String> = store::on_read!(&target, |pool| sqlx::query_scalar(
        "SELECT message_id FROM dispatch_queue ORDER BY message_id"
    )
    .fetch_all(pool)
    .await
    .unwrap());
    queued.sort();
    let mut expected: Vec<String> = pending.iter().map(|m| m.id.to_string()).collect();
    expected.sort();
    assert_eq!(queued, expected);
    // The recall subscription starts at the head: the recalls in the log are all answered.
    let head = target_log.last().unwrap().checkpoint;
    assert_eq!(
        target
            .load_checkpoint(&store::CheckpointKey::new(
                dispatch::recall::SUBSCRIPTION,
                0
            ))
            .await
            .unwrap(),
        Some(head)
    );

    // A server on the imported store: the tenant's key from SQLite works, the link sent
    // before the move redirects, nothing sent before is sent again, and the two messages that
    // were waiting are sent once each.
    drop(target);
    let app = spawn_on(target_url.clone(), Some(target_url), tune).await;
    let message = status_of(&app, &key, &sent).await;
    assert_eq!(message["status"], "DISPATCHED", "{message}");
    let (status, location) = follow(&app, &format!("/c/{token}")).await;
    assert_eq!(
        (status, location.as_deref()),
        (302, Some("https://shop.test/orders/42"))
    );
    crate::trace::until_timeline(&app, &key, &sent, &["ACCEPTED", "DISPATCHED", "CLICKED"]).await;
    for m in &pending {
        let id = m.id.to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let message = status_of(&app, &key, &id).await;
            if message["status"] == "DISPATCHED" {
                break;
            }
            assert!(Instant::now() < deadline, "{id} was never sent: {message}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Some time for anything else to go out, which must not.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1 + pending.len());
    assert_eq!(
        count(&app.store, "SELECT count(*) FROM dispatch_queue").await,
        0
    );
    // A sample of messages reads the same through the API as it did before.
    for m in made.iter().step_by(997) {
        let message = status_of(&app, &key, &m.id.to_string()).await;
        assert_eq!(message["status"], m.status, "{message}");
    }
    app.finish().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A fresh store of the other backend, and its URL; the Postgres database to drop, if any.
async fn fresh(backend: &str) -> (String, Option<String>) {
    if backend == "sqlite" {
        let url = format!("sqlite://{}/herald.db", empty_dir().display());
        (url, None)
    } else {
        let url = postgres_database().await;
        (url.clone(), Some(url))
    }
}

fn other(backend: &str) -> &'static str {
    if backend == "sqlite" {
        "postgres"
    } else {
        "sqlite"
    }
}

/// Writes the first `len` bytes of `from` to `to`.
fn cut(from: &Path, to: &Path, len: usize) -> PathBuf {
    let bytes = std::fs::read(from).unwrap();
    std::fs::write(to, &bytes[..len]).unwrap();
    to.to_path_buf()
}

/// The byte offsets where each line of `file` starts.
fn line_starts(file: &Path) -> Vec<usize> {
    let bytes = std::fs::read(file).unwrap();
    let mut starts = vec![0];
    starts.extend(
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1),
    );
    starts.pop();
    starts
}

async fn an_interrupted_export_resumes_and_bad_files_are_refused(backend: &str) {
    let (hook, calls) = counting_supplier().await;
    let app = spawn(backend, |c| {
        c.accounts = vec![webhook_account("s3cret", "")]
    })
    .await;
    app.key("acme", "read").await;
    let tenant = TenantId::parse("acme").unwrap();
    let template = TemplateId::generate();
    let made: Vec<Made> = (0..300)
        .map(|i| {
            message(
                i,
                &tenant,
                template,
                &hook,
                Utc::now() - TimeDelta::hours(2),
            )
        })
        .collect();
    append(&app.store, &made, &tenant).await;
    let events = log(&app.store).await.len();
    // An uploaded audience in two chunks (bytes that are not text among them) and a crowd
    // send on the schedule: rows an export carries as they are.
    let upload = store::crowd::Upload {
        id: "up-1".to_owned(),
        tenant_id: "acme".to_owned(),
        filename: "audience.csv".to_owned(),
        bytes: 8,
        lines: 2,
    };
    store::crowd::put_chunk(&app.store, &upload.id, 0, 0, b"a,1\n")
        .await
        .unwrap();
    store::crowd::put_chunk(&app.store, &upload.id, 1, 4, &[0xff, 0x00, b'\n', 0x80])
        .await
        .unwrap();
    store::crowd::finish_upload(&app.store, &upload)
        .await
        .unwrap();
    let due = chrono::DateTime::from_timestamp_millis(1_900_000_000_123).unwrap();
    let mut tx = app.store.begin().await.unwrap();
    store::crowd::schedule(&mut tx, "crowd-1", "acme", due)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let url = app.database_url.clone();
    let dir = empty_dir();
    let whole = dir.join("whole.ndjson");
    let exported = ok(&dir, &url, &["export", "--out", whole.to_str().unwrap()]).await;
    assert!(
        exported.contains(&format!(
            "exported 7 table rows and {} events",
            thousands(events)
        )),
        "{exported}"
    );
    let starts = line_starts(&whole);
    // The header, the rows (a tenant, its key, the link secret, the upload and its two
    // chunks, the crowd send), the events, the end line.
    let first = 8;
    assert_eq!(starts.len(), first + events + 1);

    // Cut in the middle of an event line, and right after one: both resume to the same bytes.
    let middle = starts[first + events / 2];
    for (name, len) in [("torn", middle + 17), ("clean", middle)] {
        let partial = cut(&whole, &dir.join(format!("{name}.ndjson")), len);
        let resumed = ok(&dir, &url, &["export", "--out", partial.to_str().unwrap()]).await;
        assert!(
            resumed.contains(&format!("resumed after {}", thousands(events / 2))),
            "{name}: {resumed}"
        );
        assert!(
            std::fs::read(&partial).unwrap() == std::fs::read(&whole).unwrap(),
            "{name}: the resumed export differs from the whole one"
        );
    }
    // A finished export is not written over.
    let stderr = refused(&dir, &url, &["export", "--out", whole.to_str().unwrap()]).await;
    assert!(stderr.contains("already a complete export"), "{stderr}");
    // Nor is a file that is not an export.
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "my notes\n").unwrap();
    let stderr = refused(&dir, &url, &["export", "--out", notes.to_str().unwrap()]).await;
    assert!(stderr.contains("is not a Herald export"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes\n");

    // Into the other backend: refused when truncated, damaged or not an export at all.
    let (target, drop_after) = fresh(other(backend)).await;
    let mut refusals: Vec<(PathBuf, &str)> = Vec::new();
    refusals.push((
        cut(&whole, &dir.join("no-end.ndjson"), starts[first + events]),
        "truncated export: no end line",
    ));
    refusals.push((
        cut(&whole, &dir.join("mid-line.ndjson"), middle + 17),
        "truncated export: line",
    ));
    let content = std::fs::read_to_string(&whole).unwrap();
    let lines: Vec<&str> = content.lines().collect();
    let end = lines.last().unwrap();
    let miscounted = dir.join("miscounted.ndjson");
    let mut fewer = lines[..lines.len() - 2].join("\n");
    fewer.push('\n');
    fewer.push_str(end);
    fewer.push('\n');
    std::fs::write(&miscounted, fewer).unwrap();
    refusals.push((miscounted, "truncated export: the end line counts"));
    let damaged = dir.join("damaged.ndjson");
    std::fs::write(
        &damaged,
        content.replacen("\"stream_position\":2", "\"stream_position\":9", 1),
    )
    .unwrap();
    refusals.push((damaged, "damaged export"));
    let broken = dir.join("broken.ndjson");
    let mut broken_lines = lines.clone();
    broken_lines[5] = "{\"event\":{\"stream_id\": oops";
    std::fs::write(&broken, broken_lines.join("\n") + "\n").unwrap();
    refusals.push((broken, "line 6, column"));
    let newer = dir.join("newer.ndjson");
    std::fs::write(
        &newer,
        content.replacen("\"version\":1", "\"version\":2", 1),
    )
    .unwrap();
    refusals.push((newer, "line 1: export format version 2 is not supported"));
    let plain = dir.join("plain.txt");
    std::fs::write(&plain, "hello\nworld\n").unwrap();
    refusals.push((plain, "line 1, column"));
    for (file, expected) in &refusals {
        let stderr = refused(&dir, &target, &["import", "--in", file.to_str().unwrap()]).await;
        assert!(
            stderr.contains(expected),
            "{}: expected {expected:?} in {stderr}",
            file.display()
        );
    }
    // Nothing of them reached the store.
    let target_store = Store::connect(&target).await.unwrap();
    assert!(!store::portable::holds_events(&target_store).await.unwrap());

    // The whole file goes in; then the store holds events and a second import is refused.
    let imported = ok(&dir, &target, &["import", "--in", whole.to_str().unwrap()]).await;
    assert!(
        imported.contains(&format!(
            "imported 7 table rows and {} events",
            thousands(events)
        )),
        "{imported}"
    );
    same_log(&log(&app.store).await, &log(&target_store).await);
    assert_eq!(
        store::crowd::upload(&target_store, "up-1").await.unwrap(),
        Some(upload)
    );
    assert_eq!(
        store::crowd::chunk_at(&target_store, "up-1", 5)
            .await
            .unwrap(),
        Some((4, vec![0xff, 0x00, b'\n', 0x80]))
    );
    assert_eq!(
        store::crowd::chunk_at(&target_store, "up-1", 0)
            .await
            .unwrap(),
        Some((0, b"a,1\n".to_vec()))
    );
    assert_eq!(
        count(
            &target_store,
            "SELECT count(*) FROM crowd_schedule WHERE crowd_id = 'crowd-1' \
             AND due_at = 1900000000123 AND claimed_by IS NULL"
        )
        .await,
        1
    );
    let stderr = refused(&dir, &target, &["import", "--in", whole.to_str().unwrap()]).await;
    assert!(stderr.contains("already holds"), "{stderr}");
    assert!(stderr.contains("events"), "{stderr}");
    drop(target_store);
    if let Some(url) = drop_after {
        drop_database(&url).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    app.finish().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_interrupted_export_resumes_and_bad_files_are_refused() {
    an_interrupted_export_resumes_and_bad_files_are_refused("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_interrupted_export_resumes_and_bad_files_are_refused() {
    an_interrupted_export_resumes_and_bad_files_are_refused("postgres").await;
}
