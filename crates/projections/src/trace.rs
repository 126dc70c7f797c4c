//! The message trace: one row per message (`message_trace`) with its status, where it went and
//! how often it was tried and clicked, and its timeline (`message_timeline`), one row per event
//! in stream order. It answers `message(id)` and the customer-service list `messages(filter)`.
//!
//! Written by the `projection-trace` subscription through the transaction that moves its
//! checkpoint, so each event is applied exactly once. The status follows the domain's rules
//! (`domain::message_state`): a receipt moves only a message that was handed over, and a
//! dispatch recorded after an early receipt takes the receipt's outcome.

use chrono::{DateTime, Utc};
use domain::{MessageEvent, ReceiptOutcome};
use store::{HandlerError, LogFilter, RecordedEvent, Store, StoreTx, on_read, on_tx};

use crate::Target;

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

/// The projection's handler, writing to the live tables or to their shadow copies.
#[derive(Debug, Clone)]
pub struct Trace {
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
            trace: target.table("message_trace"),
            timeline: target.table("message_timeline"),
        }
    }
}

impl store::Handler for Trace {
    async fn handle(&self, tx: &mut StoreTx, events: &[RecordedEvent]) -> Result<(), HandlerError> {
        for recorded in events {
            self.apply(tx, recorded).await?;
        }
        Ok(())
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
        E::RecallRequested(_) => "RECALL_REQUESTED",
        E::MessageRecalled(_) => "RECALLED",
        E::RecallFailed(_) => "RECALL_FAILED",
    }
}

impl Trace {
    /// Applies one event of a message stream to the read tables.
    async fn apply(&self, tx: &mut StoreTx, recorded: &RecordedEvent) -> Result<(), HandlerError> {
        let (trace, timeline) = (&self.trace, &self.timeline);
        let Some(message_id) = recorded.stream_id.strip_prefix("message-") else {
            return Ok(());
        };
        let data = recorded.data_json()?;
        let event = MessageEvent::decode(&recorded.event_type, recorded.schema_version, &data)?;
        let at = event.at().timestamp_millis();
        let seq = i64::try_from(recorded.stream_position)?;
        let kind = kind(&event);
        on_tx!(tx, |conn| {
            sqlx::query(&format!(
        "INSERT INTO {timeline} (message_id, seq, kind, at, detail) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (message_id, seq) DO NOTHING"
    ))
    .bind(message_id)
    .bind(seq)
    .bind(kind)
    .bind(at)
    .bind(&recorded.data)
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
        })?;

        use MessageEvent as E;
        let status = |status: &'static str| (Some(status), None::<&str>);
        // (the status it moves to, and the SQL of any other column it sets)
        let (set_status, other): (Option<&str>, Option<&str>) = match &event {
            E::MessageAccepted(e) => {
                on_tx!(tx, |conn| {
                    sqlx::query(&format!(
                "INSERT INTO {trace} (message_id, tenant_id, request_id, receiver, template_id, \
                 channel, msg_type, status, account, accepted_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'ACCEPTED', $8, $9, $9) \
                 ON CONFLICT (message_id) DO NOTHING"
            ))
            .bind(message_id)
            .bind(e.tenant.as_str())
            .bind(e.request_id.to_string())
            .bind(e.receiver.value())
            .bind(e.template_id.to_string())
            .bind(e.channel.as_str())
            .bind(e.msg_type.as_str())
            .bind((!e.account.is_empty()).then_some(e.account.as_str()))
            .bind(at)
            .execute(conn)
            .await
            .map(|r| r.rows_affected())
                })?;
                return Ok(());
            }
            E::MessageDeduplicated(_) => status("DEDUPLICATED"),
            E::MessageShielded(_) => status("SHIELDED"),
            E::MessageDiscarded(_) => status("DISCARDED"),
            E::MessageFailed(_) => status("FAILED"),
            E::MessageRecalled(_) => status("RECALLED"),
            E::MessageDeferred(_) => status("DEFERRED"),
            E::MessageDispatched(e) => {
                on_tx!(tx, |conn| sqlx::query(&format!(
                    "UPDATE {trace} SET status = COALESCE(last_receipt, 'DISPATCHED'), \
                 account = $2, supplier = $3, supplier_message_id = $4, attempts = attempts + 1, \
                 updated_at = $5 WHERE message_id = $1"
                ))
                .bind(message_id)
                .bind(&e.account)
                .bind(&e.supplier)
                .bind(e.supplier_message_id.as_deref())
                .bind(at)
                .execute(conn)
                .await
                .map(|r| r.rows_affected()))?;
                return Ok(());
            }
            E::DispatchFailed(e) => {
                on_tx!(tx, |conn| sqlx::query(&format!(
                    "UPDATE {trace} SET account = $2, supplier = $3, attempts = attempts + 1, \
                 updated_at = $4 WHERE message_id = $1"
                ))
                .bind(message_id)
                .bind(&e.account)
                .bind(&e.supplier)
                .bind(at)
                .execute(conn)
                .await
                .map(|r| r.rows_affected()))?;
                return Ok(());
            }
            E::ReceiptReceived(e) => {
                let outcome = e.outcome.as_str();
                on_tx!(tx, |conn| {
                    sqlx::query(&format!(
                "UPDATE {trace} SET last_receipt = $2, \
                 status = CASE WHEN status IN ('DISPATCHED', 'DELIVERED', 'UNDELIVERED') THEN $2 ELSE status END, \
                 updated_at = $3 WHERE message_id = $1"
            ))
            .bind(message_id)
            .bind(outcome)
            .bind(at)
            .execute(conn)
            .await
            .map(|r| r.rows_affected())
                })?;
                return Ok(());
            }
            E::MessageClicked(_) => (None, Some("clicks = clicks + 1,")),
            E::MessageRateLimited(_) | E::RecallRequested(_) | E::RecallFailed(_) => (None, None),
        };
        let sql = format!(
            "UPDATE {trace} SET {} {} updated_at = $2 WHERE message_id = $1",
            if set_status.is_some() {
                "status = $3,"
            } else {
                ""
            },
            other.unwrap_or(""),
        );
        on_tx!(tx, |conn| {
            let mut query = sqlx::query(&sql).bind(message_id).bind(at);
            if let Some(status) = set_status {
                query = query.bind(status);
            }
            query.execute(conn).await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }
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
    // One statement, so the row and its timeline come from one snapshot of the projection.
    let sql = format!(
        "SELECT {}, l.kind, l.at, l.detail FROM message_trace t \
         LEFT JOIN message_timeline l ON l.message_id = t.message_id \
         WHERE t.message_id = $1 AND t.tenant_id = $2 ORDER BY l.seq",
        COLUMNS
            .split(", ")
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    type Step = (Option<String>, Option<i64>, Option<String>);
    let rows: Vec<(Row, Step)> = on_read!(store, |pool| {
        use sqlx::Row as _;
        let rows = sqlx::query(&sql)
            .bind(message_id)
            .bind(tenant)
            .fetch_all(pool)
            .await?;
        rows.iter()
            .map(|r| {
                let row: Row = (
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                    r.try_get(5)?,
                    r.try_get(6)?,
                    r.try_get(7)?,
                    r.try_get(8)?,
                    r.try_get(9)?,
                    r.try_get(10)?,
                    r.try_get(11)?,
                    r.try_get(12)?,
                    r.try_get(13)?,
                    r.try_get(14)?,
                );
                Ok((row, (r.try_get(15)?, r.try_get(16)?, r.try_get(17)?)))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
    })?;
    let Some((first, _)) = rows.first().cloned() else {
        return Ok(None);
    };
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
    Ok(Some((view(first), timeline)))
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
