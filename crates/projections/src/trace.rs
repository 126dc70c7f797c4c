//! The message trace: one row per message (`message_trace`) with its status, where it went and
//! how often it was tried and clicked, and its timeline (`message_timeline`), one row per event
//! in stream order. It answers `message(id)` and the customer-service list `messages(filter)`.
//! A timeline row keeps the kind and the time; what the event said (an entry's `detail`) is
//! read from the log by the row's key when a message is shown, not copied beside it.
//!
//! Written by the `projection-trace` subscription through the transaction that moves its
//! checkpoint, so each event is applied exactly once. The status follows the domain's rules
//! (`domain::message_state`): a receipt moves only a message that was handed over, and a
//! dispatch recorded after an early receipt takes the receipt's outcome.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use domain::{MessageEvent, ReceiptOutcome};
use serde_json::json;
use store::copy::CopyRows;
use store::{HandlerError, LogFilter, RecordedEvent, Store, StoreTx, TxConn, on_read};

use crate::lag::Lag;
use crate::{Decoded, Target, continued};

/// The subscription (and checkpoint) name.
pub const SUBSCRIPTION: &str = "projection-trace";

/// Every event of every message.
pub fn filter() -> LogFilter {
    LogFilter {
        categories: vec!["message".to_owned()],
        event_types: Vec::new(),
        partition: None,
    }
}

/// The read tables.
pub const TABLES: &[&str] = &["message_trace", "message_timeline"];

/// The read tables a batch only adds rows to.
pub const APPEND_ONLY: &[&str] = &["message_timeline"];

/// The projection's handler, writing to the live tables or to their shadow copies.
#[derive(Debug, Clone)]
pub struct Trace {
    target: Target,
    trace: String,
    timeline: String,
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new(Target::Live)
    }
}

impl Trace {
    pub fn new(target: Target) -> Self {
        Trace {
            target,
            trace: target.table("message_trace"),
            timeline: target.table("message_timeline"),
        }
    }
}

/// The timeline kind of an event, as the API names it.
pub fn kind(event: &MessageEvent) -> &'static str {
    use MessageEvent as E;
    match event {
        E::MessageAccepted(_) => "ACCEPTED",
        E::MessageDeduplicated(_) => "DEDUPLICATED",
        E::MessageShielded(_) => "SHIELDED",
        E::MessageDeferred(_) => "DEFERRED",
        E::MessageDiscarded(_) => "DISCARDED",
        E::MessageRateLimited(_) => "RATE_LIMITED",
        E::MessageDispatched(_) => "DISPATCHED",
        E::DispatchFailed(_) => "DISPATCH_FAILED",
        E::MessageFailed(_) => "FAILED",
        E::ReceiptReceived(e) => match e.outcome {
            ReceiptOutcome::Delivered => "DELIVERED",
            ReceiptOutcome::Undelivered => "UNDELIVERED",
        },
        E::MessageClicked(_) => "CLICKED",
        E::MessageRead(_) => "READ",
        E::RecallRequested(_) => "RECALL_REQUESTED",
        E::MessageRecalled(_) => "RECALLED",
        E::RecallFailed(_) => "RECALL_FAILED",
    }
}

impl store::Handler for Trace {
    async fn handle(&self, tx: &mut StoreTx, events: &[RecordedEvent]) -> Result<(), HandlerError> {
        let decoded = crate::decode(events)?;
        self.apply(tx, &crate::views(events, &decoded)).await
    }
}

impl Trace {
    /// A batch costs three statements whatever its size: its timeline rows in one insert, the
    /// trace rows it touches read in one select, then folded here and written back in one
    /// upsert (in a replay's shadows, one upsert of the rows read and one plain insert of the
    /// new ones: [`Target::split`]). A replay applies batches of thousands of events, so round
    /// trips decide its speed.
    pub(crate) async fn apply(
        &self,
        tx: &mut StoreTx,
        batch: &[Decoded<'_>],
    ) -> Result<(), HandlerError> {
        let mut steps = Vec::with_capacity(batch.len());
        for decoded in batch {
            let recorded = decoded.recorded;
            steps.push(Step {
                message_id: decoded.message_id,
                position: recorded.stream_position,
                seq: i64::try_from(recorded.stream_position)?,
                at: decoded.event.at().timestamp_millis(),
                event: decoded.event,
            });
        }
        if steps.is_empty() {
            return Ok(());
        }
        self.insert_timeline(tx, &steps).await?;
        let continued = continued(steps.iter().map(|s| (s.message_id, s.position)));
        let mut rows = self.load(tx, &continued).await?;
        let stored: HashSet<String> = if self.target.guarded() {
            HashSet::new()
        } else {
            rows.keys().cloned().collect()
        };
        let mut changed: Vec<&str> = Vec::new();
        for step in &steps {
            if fold(&mut rows, step) {
                changed.push(step.message_id);
            }
        }
        changed.sort_unstable();
        changed.dedup();
        let changed: Vec<&TraceRow> = changed.iter().filter_map(|id| rows.get(*id)).collect();
        let (upserted, inserted) = self
            .target
            .split(changed, |row| stored.contains(&row.message_id));
        self.write(tx, &upserted, true).await?;
        self.write(tx, &inserted, false).await
    }
}

/// One event of a message, decoded.
struct Step<'a> {
    message_id: &'a str,
    /// The event's position in the message's stream.
    position: u64,
    /// The same, as the timeline keeps it.
    seq: i64,
    at: i64,
    event: &'a MessageEvent,
}

/// A row of `message_trace`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TraceRow {
    message_id: String,
    tenant_id: String,
    request_id: String,
    receiver: String,
    template_id: String,
    channel: String,
    msg_type: String,
    status: String,
    last_receipt: Option<String>,
    account: Option<String>,
    supplier: Option<String>,
    supplier_message_id: Option<String>,
    attempts: i64,
    clicks: i64,
    accepted_at: i64,
    updated_at: i64,
}

const ROW_COLUMNS: &str = "message_id, tenant_id, request_id, receiver, template_id, channel, \
     msg_type, status, last_receipt, account, supplier, supplier_message_id, attempts, clicks, \
     accepted_at, updated_at";

/// What an upsert changes in a row that exists: everything an event can move.
const ROW_UPDATE: &str = "status = excluded.status, last_receipt = excluded.last_receipt, \
     account = excluded.account, supplier = excluded.supplier, \
     supplier_message_id = excluded.supplier_message_id, attempts = excluded.attempts, \
     clicks = excluded.clicks, updated_at = excluded.updated_at";

/// Applies one event to the rows of its batch; whether its row changed. The rules follow the
/// domain's (`domain::message_state`): a message is created by its acceptance (a second one
/// changes nothing), a receipt moves only a message that was handed over, and a dispatch
/// recorded after an early receipt takes the receipt's outcome.
fn fold(rows: &mut HashMap<String, TraceRow>, step: &Step<'_>) -> bool {
    use MessageEvent as E;
    if let E::MessageAccepted(e) = &step.event {
        if rows.contains_key(step.message_id) {
            return false;
        }
        rows.insert(
            step.message_id.to_owned(),
            TraceRow {
                message_id: step.message_id.to_owned(),
                tenant_id: e.tenant.as_str().to_owned(),
                request_id: e.request_id.to_string(),
                receiver: e.receiver.value().to_owned(),
                template_id: e.template_id.to_string(),
                channel: e.channel.as_str().to_owned(),
                msg_type: e.msg_type.as_str().to_owned(),
                status: "ACCEPTED".to_owned(),
                last_receipt: None,
                account: (!e.account.is_empty()).then(|| e.account.clone()),
                supplier: None,
                supplier_message_id: None,
                attempts: 0,
                clicks: 0,
                accepted_at: step.at,
                updated_at: step.at,
            },
        );
        return true;
    }
    // Events of a message never accepted have no row to move.
    let Some(row) = rows.get_mut(step.message_id) else {
        return false;
    };
    let status = |row: &mut TraceRow, status: &str| row.status = status.to_owned();
    match &step.event {
        E::MessageAccepted(_) => {}
        E::MessageDeduplicated(_) => status(row, "DEDUPLICATED"),
        E::MessageShielded(_) => status(row, "SHIELDED"),
        E::MessageDiscarded(_) => status(row, "DISCARDED"),
        E::MessageFailed(_) => status(row, "FAILED"),
        E::MessageRecalled(_) => status(row, "RECALLED"),
        E::MessageDeferred(_) => status(row, "DEFERRED"),
        E::MessageDispatched(e) => {
            row.status = row
                .last_receipt
                .clone()
                .unwrap_or_else(|| "DISPATCHED".to_owned());
            row.account = Some(e.account.clone());
            row.supplier = Some(e.supplier.clone());
            row.supplier_message_id = e.supplier_message_id.clone();
            row.attempts += 1;
        }
        E::DispatchFailed(e) => {
            row.account = Some(e.account.clone());
            row.supplier = Some(e.supplier.clone());
            row.attempts += 1;
        }
        E::ReceiptReceived(e) => {
            let outcome = e.outcome.as_str();
            row.last_receipt = Some(outcome.to_owned());
            if matches!(
                row.status.as_str(),
                "DISPATCHED" | "DELIVERED" | "UNDELIVERED"
            ) {
                status(row, outcome);
            }
        }
        E::MessageClicked(_) => row.clicks += 1,
        E::MessageRateLimited(_)
        | E::MessageRead(_)
        | E::RecallRequested(_)
        | E::RecallFailed(_) => {}
    }
    row.updated_at = step.at;
    true
}

impl Trace {
    /// The batch's timeline rows, in one statement; in the live table, an event applied before
    /// changes nothing.
    async fn insert_timeline(
        &self,
        tx: &mut StoreTx,
        steps: &[Step<'_>],
    ) -> Result<(), HandlerError> {
        let timeline = &self.timeline;
        let guard = if self.target.guarded() {
            " ON CONFLICT (message_id, seq) DO NOTHING"
        } else {
            ""
        };
        match tx.conn() {
            TxConn::Postgres(conn) if !self.target.guarded() => {
                let mut copy = CopyRows::with_capacity(steps.len() * 64);
                for step in steps {
                    copy.text(step.message_id)
                        .int(step.seq)
                        .text(kind(step.event))
                        .int(step.at)
                        .end_row();
                }
                copy.copy_into(conn, timeline, "message_id, seq, kind, at")
                    .await?;
            }
            TxConn::Postgres(conn) => {
                let mut ids = Vec::with_capacity(steps.len());
                let mut seqs = Vec::with_capacity(steps.len());
                let mut kinds = Vec::with_capacity(steps.len());
                let mut ats = Vec::with_capacity(steps.len());
                for step in steps {
                    ids.push(step.message_id);
                    seqs.push(step.seq);
                    kinds.push(kind(step.event));
                    ats.push(step.at);
                }
                sqlx::query(&format!(
                    "INSERT INTO {timeline} (message_id, seq, kind, at) \
                     SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[]){guard}"
                ))
                .bind(ids)
                .bind(seqs)
                .bind(kinds)
                .bind(ats)
                .execute(conn)
                .await?;
            }
            TxConn::Sqlite(conn) => {
                let rows: Vec<serde_json::Value> = steps
                    .iter()
                    .map(|s| json!([s.message_id, s.seq, kind(s.event), s.at]))
                    .collect();
                sqlx::query(&format!(
                    "INSERT INTO {timeline} (message_id, seq, kind, at) \
                     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 \
                     FROM json_each($1) WHERE true{guard}"
                ))
                .bind(serde_json::Value::Array(rows).to_string())
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }

    /// The trace rows of `ids` that exist, in one statement.
    async fn load(
        &self,
        tx: &mut StoreTx,
        ids: &[&str],
    ) -> Result<HashMap<String, TraceRow>, HandlerError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let trace = &self.trace;
        let rows = match tx.conn() {
            TxConn::Postgres(conn) => {
                let rows = sqlx::query(&format!(
                    "SELECT {ROW_COLUMNS} FROM {trace} WHERE message_id = ANY($1)"
                ))
                .bind(ids)
                .fetch_all(conn)
                .await?;
                rows.iter().map(trace_row).collect::<Result<Vec<_>, _>>()?
            }
            TxConn::Sqlite(conn) => {
                let rows = sqlx::query(&format!(
                    "SELECT {ROW_COLUMNS} FROM {trace} \
                     WHERE message_id IN (SELECT value FROM json_each($1))"
                ))
                .bind(serde_json::to_string(ids)?)
                .fetch_all(conn)
                .await?;
                rows.iter().map(trace_row).collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(rows
            .into_iter()
            .map(|row| (row.message_id.clone(), row))
            .collect())
    }

    /// Writes `rows` back in one statement: as upserts, or (rows known not to be there) as
    /// plain inserts.
    async fn write(
        &self,
        tx: &mut StoreTx,
        rows: &[&TraceRow],
        upsert: bool,
    ) -> Result<(), HandlerError> {
        if rows.is_empty() {
            return Ok(());
        }
        let trace = &self.trace;
        let conflict = if upsert {
            format!(" ON CONFLICT (message_id) DO UPDATE SET {ROW_UPDATE}")
        } else {
            String::new()
        };
        match tx.conn() {
            TxConn::Postgres(conn) if !upsert => {
                let mut copy = CopyRows::with_capacity(rows.len() * 160);
                for r in rows {
                    copy.text(&r.message_id)
                        .text(&r.tenant_id)
                        .text(&r.request_id)
                        .text(&r.receiver)
                        .text(&r.template_id)
                        .text(&r.channel)
                        .text(&r.msg_type)
                        .text(&r.status)
                        .optional_text(r.last_receipt.as_deref())
                        .optional_text(r.account.as_deref())
                        .optional_text(r.supplier.as_deref())
                        .optional_text(r.supplier_message_id.as_deref())
                        .int(r.attempts)
                        .int(r.clicks)
                        .int(r.accepted_at)
                        .int(r.updated_at)
                        .end_row();
                }
                copy.copy_into(conn, trace, ROW_COLUMNS).await?;
            }
            TxConn::Postgres(conn) => {
                let texts =
                    |f: fn(&TraceRow) -> &str| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
                let options = |f: fn(&TraceRow) -> Option<&str>| {
                    rows.iter().map(|r| f(r)).collect::<Vec<_>>()
                };
                let numbers =
                    |f: fn(&TraceRow) -> i64| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
                sqlx::query(&format!(
                    "INSERT INTO {trace} ({ROW_COLUMNS}) SELECT * FROM unnest(\
                     $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], \
                     $13::int8[], $14::int8[], $15::int8[], $16::int8[]){conflict}"
                ))
                .bind(texts(|r| &r.message_id))
                .bind(texts(|r| &r.tenant_id))
                .bind(texts(|r| &r.request_id))
                .bind(texts(|r| &r.receiver))
                .bind(texts(|r| &r.template_id))
                .bind(texts(|r| &r.channel))
                .bind(texts(|r| &r.msg_type))
                .bind(texts(|r| &r.status))
                .bind(options(|r| r.last_receipt.as_deref()))
                .bind(options(|r| r.account.as_deref()))
                .bind(options(|r| r.supplier.as_deref()))
                .bind(options(|r| r.supplier_message_id.as_deref()))
                .bind(numbers(|r| r.attempts))
                .bind(numbers(|r| r.clicks))
                .bind(numbers(|r| r.accepted_at))
                .bind(numbers(|r| r.updated_at))
                .execute(conn)
                .await?;
            }
            TxConn::Sqlite(conn) => {
                let rows: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|r| {
                        json!([
                            r.message_id,
                            r.tenant_id,
                            r.request_id,
                            r.receiver,
                            r.template_id,
                            r.channel,
                            r.msg_type,
                            r.status,
                            r.last_receipt,
                            r.account,
                            r.supplier,
                            r.supplier_message_id,
                            r.attempts,
                            r.clicks,
                            r.accepted_at,
                            r.updated_at
                        ])
                    })
                    .collect();
                let values = (0..16)
                    .map(|i| format!("value ->> {i}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                sqlx::query(&format!(
                    "INSERT INTO {trace} ({ROW_COLUMNS}) SELECT {values} FROM json_each($1) \
                     WHERE true{conflict}"
                ))
                .bind(serde_json::Value::Array(rows).to_string())
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}

fn trace_row<R: sqlx::Row>(row: &R) -> Result<TraceRow, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(TraceRow {
        message_id: row.try_get(0)?,
        tenant_id: row.try_get(1)?,
        request_id: row.try_get(2)?,
        receiver: row.try_get(3)?,
        template_id: row.try_get(4)?,
        channel: row.try_get(5)?,
        msg_type: row.try_get(6)?,
        status: row.try_get(7)?,
        last_receipt: row.try_get(8)?,
        account: row.try_get(9)?,
        supplier: row.try_get(10)?,
        supplier_message_id: row.try_get(11)?,
        attempts: row.try_get(12)?,
        clicks: row.try_get(13)?,
        accepted_at: row.try_get(14)?,
        updated_at: row.try_get(15)?,
    })
}

/// One message as the trace shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    pub message_id: String,
    pub tenant_id: String,
    pub request_id: String,
    pub receiver: String,
    pub template_id: String,
    pub channel: String,
    pub msg_type: String,
    pub status: String,
    pub account: Option<String>,
    pub supplier: Option<String>,
    pub supplier_message_id: Option<String>,
    pub attempts: i64,
    pub clicks: i64,
    pub accepted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One step of a message's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub kind: String,
    pub at: DateTime<Utc>,
    /// The event's data, as JSON.
    pub detail: String,
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    i64,
    i64,
    i64,
);

const COLUMNS: &str = "message_id, tenant_id, request_id, receiver, template_id, channel, msg_type, \
     status, account, supplier, supplier_message_id, attempts, clicks, accepted_at, updated_at";

fn instant(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn view(row: Row) -> MessageView {
    MessageView {
        message_id: row.0,
        tenant_id: row.1,
        request_id: row.2,
        receiver: row.3,
        template_id: row.4,
        channel: row.5,
        msg_type: row.6,
        status: row.7,
        account: row.8,
        supplier: row.9,
        supplier_message_id: row.10,
        attempts: row.11,
        clicks: row.12,
        accepted_at: instant(row.13),
        updated_at: instant(row.14),
    }
}

/// A message of `tenant`, with its timeline; `None` when there is none (or it is another
/// tenant's: the caller cannot tell the two apart).
pub async fn message(
    store: &Store,
    tenant: &str,
    message_id: &str,
) -> Result<Option<(MessageView, Vec<TimelineEntry>)>, sqlx::Error> {
    find(store, Some(tenant), message_id).await
}

/// A message of any tenant, with its timeline: for an operator reading the store directly
/// (`herald trace`), never for a caller of the API.
pub async fn message_of_any_tenant(
    store: &Store,
    message_id: &str,
) -> Result<Option<(MessageView, Vec<TimelineEntry>)>, sqlx::Error> {
    find(store, None, message_id).await
}

/// The columns of `message_trace` as `t.`, then the timeline's (`l.`) with each entry's
/// detail: the event's data, read from the log by its key. `data` is the column as text (the
/// store's `json` on Postgres). A scalar subquery, so each entry is one lookup of the log's
/// primary key whatever the planner knows of the tables.
fn joined_columns(data: &str) -> String {
    let trace = COLUMNS
        .split(", ")
        .map(|c| format!("t.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{trace}, l.kind, l.at, (SELECT {data} FROM events e \
         WHERE e.stream_id = 'message-' || l.message_id AND e.stream_position = l.seq)"
    )
}

/// A timeline entry's columns, empty when the message has no timeline yet.
type TimelineColumns = (Option<String>, Option<i64>, Option<String>);

/// The trace row and timeline entry of a result row, from column `at` on.
fn decode<R>(r: &R, at: usize) -> Result<(Row, TimelineColumns), sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let row: Row = (
        r.try_get(at)?,
        r.try_get(at + 1)?,
        r.try_get(at + 2)?,
        r.try_get(at + 3)?,
        r.try_get(at + 4)?,
        r.try_get(at + 5)?,
        r.try_get(at + 6)?,
        r.try_get(at + 7)?,
        r.try_get(at + 8)?,
        r.try_get(at + 9)?,
        r.try_get(at + 10)?,
        r.try_get(at + 11)?,
        r.try_get(at + 12)?,
        r.try_get(at + 13)?,
        r.try_get(at + 14)?,
    );
    Ok((
        row,
        (
            r.try_get(at + 15)?,
            r.try_get(at + 16)?,
            r.try_get(at + 17)?,
        ),
    ))
}

/// The message of the first row with the timeline of all of them.
fn assemble(rows: Vec<(Row, TimelineColumns)>) -> Option<(MessageView, Vec<TimelineEntry>)> {
    let (first, _) = rows.first().cloned()?;
    let timeline = rows
        .into_iter()
        .filter_map(|(_, (kind, at, detail))| {
            Some(TimelineEntry {
                kind: kind?,
                at: instant(at?),
                detail: detail?,
            })
        })
        .collect();
    Some((view(first), timeline))
}

async fn find(
    store: &Store,
    tenant: Option<&str>,
    message_id: &str,
) -> Result<Option<(MessageView, Vec<TimelineEntry>)>, sqlx::Error> {
    // One statement, so the row and its timeline come from one snapshot of the projection.
    let sql = format!(
        "SELECT {} FROM message_trace t \
         LEFT JOIN message_timeline l ON l.message_id = t.message_id \
         WHERE t.message_id = $1 {} ORDER BY l.seq",
        joined_columns(match store {
            Store::Postgres(_) => "e.data::text",
            Store::Sqlite(_) => "e.data",
        }),
        if tenant.is_some() {
            "AND t.tenant_id = $2"
        } else {
            ""
        }
    );
    let rows: Vec<(Row, TimelineColumns)> = on_read!(store, |pool| {
        let mut query = sqlx::query(&sql).bind(message_id);
        if let Some(tenant) = tenant {
            query = query.bind(tenant);
        }
        let rows = query.fetch_all(pool).await?;
        rows.into_iter()
            .map(|r| decode(&r, 0))
            .collect::<Result<Vec<_>, sqlx::Error>>()
    })?;
    Ok(assemble(rows))
}

/// [`message`], with where the trace projection stood in the log when it was read.
///
/// On Postgres both come from one statement, so from one snapshot: the projection moves its
/// checkpoint in the transaction that writes its rows, so the message is exactly as of the
/// position returned. On SQLite the position is read first, so the message is at least as
/// fresh as it says.
pub async fn message_as_of(
    store: &Store,
    tenant: &str,
    message_id: &str,
) -> Result<(Lag, Option<(MessageView, Vec<TimelineEntry>)>), store::StoreError> {
    let Store::Postgres(s) = store else {
        let lag = crate::lag::lag(store, SUBSCRIPTION, crate::Projection::Trace.category()).await?;
        let found = message(store, tenant, message_id)
            .await
            .map_err(store::StoreError::from)?;
        return Ok((lag, found));
    };
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH lag AS ({}) SELECT lag.*, m.* FROM lag LEFT JOIN LATERAL (SELECT {}, l.seq \
             FROM message_trace t LEFT JOIN message_timeline l ON l.message_id = t.message_id \
             WHERE t.message_id = $3 AND t.tenant_id = $4) m ON true ORDER BY m.seq",
            crate::lag::POSTGRES_LAG,
            joined_columns("e.data::text")
        )
    });
    use sqlx::Row as _;
    let rows = sqlx::query(&SQL)
        .bind(SUBSCRIPTION)
        .bind(crate::Projection::Trace.category())
        .bind(message_id)
        .bind(tenant)
        .fetch_all(s.pool())
        .await
        .map_err(store::StoreError::from)?;
    let first = rows
        .first()
        .ok_or_else(|| store::StoreError::from(sqlx::Error::RowNotFound))?;
    let lag = crate::lag::from_columns(
        first.try_get(0).map_err(store::StoreError::from)?,
        first.try_get(1).map_err(store::StoreError::from)?,
        first.try_get(2).map_err(store::StoreError::from)?,
        first.try_get(3).map_err(store::StoreError::from)?,
    );
    // Without the message, the one row has only the position.
    let found: Option<String> = first.try_get(4).map_err(store::StoreError::from)?;
    if found.is_none() {
        return Ok((lag, None));
    }
    let rows = rows
        .iter()
        .map(|r| decode(r, 4))
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(store::StoreError::from)?;
    Ok((lag, assemble(rows)))
}

/// What customer service looks messages up by; every field narrows the list.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub receiver: Option<String>,
    pub template_id: Option<String>,
    pub request_id: Option<String>,
    pub status: Option<String>,
    pub channel: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// A page of `tenant`'s messages, newest first, after the message id `after`; and whether more
/// follow. Message ids are UUID v7, so their order is the order messages were accepted in.
pub async fn messages(
    store: &Store,
    tenant: &str,
    filter: &MessageFilter,
    first: usize,
    after: Option<&str>,
) -> Result<(Vec<MessageView>, bool), sqlx::Error> {
    let mut conditions = vec!["tenant_id = $1".to_owned()];
    let mut texts: Vec<&str> = Vec::new();
    let mut instants: Vec<i64> = Vec::new();
    // Text binds take $2, $3...; instant binds follow them.
    for (column, value) in [
        ("receiver", &filter.receiver),
        ("template_id", &filter.template_id),
        ("request_id", &filter.request_id),
        ("status", &filter.status),
        ("channel", &filter.channel),
    ] {
        if let Some(value) = value {
            texts.push(value);
            conditions.push(format!("{column} = ${}", texts.len() + 1));
        }
    }
    if let Some(after) = after {
        texts.push(after);
        conditions.push(format!("message_id < ${}", texts.len() + 1));
    }
    for (op, value) in [(">=", filter.from), ("<", filter.to)] {
        if let Some(value) = value {
            instants.push(value.timestamp_millis());
            conditions.push(format!(
                "accepted_at {op} ${}",
                texts.len() + instants.len() + 1
            ));
        }
    }
    let limit = i64::try_from(first.saturating_add(1)).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT {COLUMNS} FROM message_trace WHERE {} ORDER BY message_id DESC LIMIT {limit}",
        conditions.join(" AND ")
    );
    let rows: Vec<Row> = on_read!(store, |pool| {
        let mut query = sqlx::query_as(&sql).bind(tenant);
        for text in &texts {
            query = query.bind(*text);
        }
        for instant in &instants {
            query = query.bind(*instant);
        }
        query.fetch_all(pool).await
    })?;
    let has_next = rows.len() > first;
    Ok((rows.into_iter().take(first).map(view).collect(), has_next))
}
