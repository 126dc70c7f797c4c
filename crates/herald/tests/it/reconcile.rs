//! `herald reconcile`, run as an operator runs it, against a store holding 1000 messages
//! dispatched through one account on one day (appended as domain events, for speed), with noise
//! around them: another account, the next day, messages never dispatched.

use std::path::Path;
use std::process::Output;

use chrono::{DateTime, Duration, Utc};
use domain::message::*;
use domain::*;
use serde_json::{Value, json};
use store::{EventStore, ExpectedVersion, NewEvent, Store, StreamAppend};

use crate::support::{self, empty_dir, herald};

fn at(seconds: i64) -> DateTime<Utc> {
    "2024-05-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::seconds(seconds)
}

/// `event` of a message of `tenant`, with the metadata Herald writes (whose message it is).
fn event(tenant: &str, event: MessageEvent) -> NewEvent {
    NewEvent::new(
        event.event_type(),
        event.schema_version(),
        &event.encode(),
        &json!(EventMetadata::new(TenantId::parse(tenant).unwrap())),
    )
}

fn accepted(tenant: &str, when: DateTime<Utc>) -> (MessageId, MessageEvent) {
    let id = MessageId::generate();
    let accepted = MessageAccepted {
        message_id: id,
        tenant: TenantId::parse(tenant).unwrap(),
        request_id: RequestId::parse("bulk").unwrap(),
        template_id: TemplateId::generate(),
        template_version: 1,
        channel: Channel::Sms,
        msg_type: MessageType::Notice,
        shield_type: ShieldType::None,
        account: String::new(),
        receiver: Receiver::parse(ReceiverIdType::Phone, "+8613800138000").unwrap(),
        content: TemplateContent::Text {
            body: "Your code is 1234".into(),
        },
        tracked_links: Vec::new(),
        send_at: None,
        at: when,
    };
    (id, MessageEvent::MessageAccepted(accepted))
}

fn dispatched(account: &str, supplier_id: &str, when: DateTime<Utc>) -> MessageEvent {
    MessageEvent::MessageDispatched(MessageDispatched {
        account: account.into(),
        supplier: "tencent_sms".into(),
        supplier_message_id: Some(supplier_id.into()),
        attempt: 1,
        latency_ms: 40,
        masked_words: 0,
        at: when,
    })
}

fn receipt(outcome: ReceiptOutcome, when: DateTime<Utc>) -> MessageEvent {
    MessageEvent::ReceiptReceived(ReceiptReceived {
        outcome,
        supplier_status: "x".into(),
        reported_at: when,
        at: when,
    })
}

/// The supplier id of our `i`th message on `sms-a` on 2024-05-01.
fn sid(i: usize) -> String {
    format!("sid-{i:04}")
}

/// 1000 messages through `sms-a` on 2024-05-01, half for each of two tenants: 990 delivered, 5
/// undelivered, 5 pending; one that was delivered before a second receipt said undelivered; and
/// noise that must not count.
async fn fill(store: &Store) {
    let mut streams = Vec::new();
    for i in 0..1000 {
        let tenant = if i % 2 == 0 { "acme" } else { "globex" };
        let when = at(3600 + i as i64 * 60);
        let (id, accept) = accepted(tenant, when);
        let mut events = vec![
            event(tenant, accept),
            event(tenant, dispatched("sms-a", &sid(i), when)),
        ];
        match i {
            0..990 => events.push(event(tenant, receipt(ReceiptOutcome::Delivered, when))),
            990..995 => {
                events.push(event(tenant, receipt(ReceiptOutcome::Delivered, when)));
                events.push(event(tenant, receipt(ReceiptOutcome::Undelivered, when)));
            }
            _ => {}
        }
        streams.push((id, events));
    }
    // Another account the same day; sms-a the next day; a message that never went out.
    for i in 0..10 {
        let tenant = "acme";
        let (id, accept) = accepted(tenant, at(7200));
        let send = dispatched("sms-b", &format!("b-{i}"), at(7200));
        streams.push((id, vec![event(tenant, accept), event(tenant, send)]));
    }
    for i in 0..5 {
        let when = at(86_400 + 60);
        let tenant = "acme";
        let (id, accept) = accepted(tenant, when);
        let send = dispatched("sms-a", &format!("next-{i}"), when);
        streams.push((id, vec![event(tenant, accept), event(tenant, send)]));
    }
    let tenant = "acme";
    let (id, accept) = accepted(tenant, at(60));
    let failed = MessageEvent::MessageFailed(MessageFailed {
        reason: "x".into(),
        attempts: 3,
        at: at(61),
    });
    streams.push((id, vec![event(tenant, accept), event(tenant, failed)]));
    for chunk in streams.chunks(100) {
        let appends: Vec<StreamAppend> = chunk
            .iter()
            .map(|(id, events)| StreamAppend {
                stream_id: id.stream_name(),
                expected: ExpectedVersion::NoStream,
                events: events.clone(),
            })
            .collect();
        store.append(&appends).await.unwrap();
    }
}

fn bill(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A per-message bill listing `ids`.
fn per_message(ids: impl IntoIterator<Item = String>) -> String {
    let mut text = String::from("SendDate,Phone,BizId,Fee\n");
    for id in ids {
        text.push_str(&format!("2024-05-01,+8613800138000,{id},0.045\n"));
    }
    text
}

async fn reconcile(dir: &Path, url: &str, extra: &[&str]) -> Output {
    let mut command = herald(dir);
    command.args([
        "--database-url",
        url,
        "reconcile",
        "--account",
        "sms-a",
        "--date",
        "2024-05-01",
    ]);
    command.args(extra).output().await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn the_bill_is_compared_with_what_was_dispatched(url: &str) {
    let store = Store::connect(url).await.unwrap();
    store.migrate().await.unwrap();
    fill(&store).await;
    if let Store::Sqlite(s) = &store {
        s.close().await;
    }
    let dir = empty_dir();

    // Without a bill: our side alone. The projection catches up inside the command.
    let output = reconcile(&dir, url, &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    for line in [
        "account               sms-a",
        "day                   2024-05-01 (+00:00)",
        "dispatched            1000",
        "delivered             990",
        "undelivered           5",
        "pending               5",
        "without supplier id   0",
    ] {
        assert!(table.contains(&format!("{line}\n")), "{line:?} in\n{table}");
    }
    assert!(!table.contains("billed"), "{table}");

    // Billed 985 of 1000: 1.5 % off, within the default 2 %.
    let close = bill(&dir, "close.csv", &per_message((0..985).map(sid)));
    let output = reconcile(&dir, url, &["--bill", &close]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    assert!(table.contains("billed                985\n"), "{table}");
    assert!(
        table.contains("gap                   -1.50 %  within the tolerance of 2 %\n"),
        "{table}"
    );
    let ours_only: String = (985..1000).map(|i| format!("  {}\n", sid(i))).collect();
    assert!(
        table.contains(&format!(
            "ids on our side only (15):\n{ours_only}ids on the bill only (0):\n"
        )),
        "{table}"
    );

    // Billed 970, five of them ours not at all: 3 % off, flagged, exit 1.
    let foreign: Vec<String> = (1..=5).map(|i| format!("x-{i}")).collect();
    let far = bill(
        &dir,
        "far.csv",
        &per_message((0..965).map(sid).chain(foreign.iter().cloned())),
    );
    let output = reconcile(&dir, url, &["--bill", &far, "--format", "json"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (
            &report["dispatched"],
            &report["billed"],
            &report["gap_percent"],
            &report["flagged"]
        ),
        (&json!(1000), &json!(970), &json!(-3.0), &json!(true)),
        "{report}"
    );
    let ours_only: Vec<String> = (965..1000).map(sid).collect();
    assert_eq!(report["ours_only"], json!(ours_only));
    assert_eq!(report["bill_only"], json!(foreign));
    let table = text(&reconcile(&dir, url, &["--bill", &far]).await.stdout);
    assert!(
        table.contains("gap                   -3.00 %  FLAGGED: beyond the tolerance of 2 %\n"),
        "{table}"
    );
    // A wider tolerance lets it pass.
    let output = reconcile(&dir, url, &["--bill", &far, "--tolerance", "5"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));

    // An aggregate bill, as CSV.
    let aggregate = bill(
        &dir,
        "aggregate.csv",
        "account,date,billed\nsms-a,2024-05-01,985\n",
    );
    let output = reconcile(&dir, url, &["--bill", &aggregate, "--format", "csv"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "account,date,zone,dispatched,delivered,undelivered,pending,without_supplier_id,billed,\
         gap_percent,tolerance_percent,flagged,ours_only,bill_only\n\
         sms-a,2024-05-01,+00:00,1000,990,5,5,0,985,-1.50,2,false,,\n"
    );

    // The day in Beijing time ends at 16:00 UTC: the last 100 of ours, dispatched from then on,
    // belong to the next day there.
    let output = reconcile(&dir, url, &["--zone", "+08:00", "--format", "json"]).await;
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["dispatched"], 900, "{report}");

    // A bad bill: which line, exit 2, nothing on stdout.
    let bad = bill(&dir, "bad.csv", "msgid,count\na,1\nb,lots\n");
    let output = reconcile(&dir, url, &["--bill", &bad]).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("herald: the bill ")
            && stderr.contains("line 3: the count \"lots\" is not a whole number"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    let output = reconcile(
        &dir,
        url,
        &["--bill", &bill(&dir, "none.csv", "phone,fee\n1,2\n")],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("line 1: the header names no message id column"));
    let output = reconcile(&dir, url, &["--bill", "/nonexistent/bill.csv"]).await;
    assert_eq!(output.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reconcile() {
    let dir = empty_dir();
    let url = format!("sqlite://{}/herald.db", dir.display());
    the_bill_is_compared_with_what_was_dispatched(&url).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reconcile() {
    let url = support::postgres_database().await;
    the_bill_is_compared_with_what_was_dispatched(&url).await;
    support::drop_database(&url).await;
}
