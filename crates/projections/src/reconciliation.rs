//! Reconciliation: what each channel account dispatched on a day, what the receipts say of it,
//! and the supplier's ids of it, to set beside the supplier's bill (`reconciliation(account,
//! date)` and `herald reconcile`).
//!
//! One row per message that reached a supplier (`reconciliation_messages`): made by its
//! `MessageDispatched` (account, supplier, the supplier's id, when) or by a receipt that came
//! first (the latest outcome wins, as in the trace), under the tenant its event's metadata names,
//! and removed when the message ends without a dispatch. A day is counted over `dispatched_at` at
//! query time, so the day may be taken in the supplier's time zone: Chinese suppliers bill by
//! Beijing time.
//!
//! Messages accepted and not dispatched (yet) have no row: no query counts them, and a row made
//! at acceptance for each was a fifth of what a replay wrote. Rows an earlier version made at
//! acceptance are harmless (no query counts a row without `dispatched_at`) and go at the next
//! replay.

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use std::borrow::Cow;
use std::collections::HashMap;

use domain::MessageEvent;
use serde_json::json;
use store::copy::CopyRows;
use store::{HandlerError, LogFilter, RecordedEvent, Store, StoreTx, TxConn, on_read};

use crate::{Decoded, Target};

/// The subscription (and checkpoint) name.
pub const SUBSCRIPTION: &str = "projection-reconciliation";

/// Every event of every message.
pub fn filter() -> LogFilter {
    LogFilter {
        categories: vec!["message".to_owned()],
        event_types: Vec::new(),
        partition: None,
    }
}

/// The read tables.
pub const TABLES: &[&str] = &["reconciliation_messages"];

/// The projection's handler, writing to the live table or to its shadow copy.
#[derive(Debug, Clone)]
pub struct Reconciliation {
    target: Target,
    messages: String,
}

impl Default for Reconciliation {
    fn default() -> Self {
        Reconciliation::new(Target::Live)
    }
}

impl Reconciliation {
    pub fn new(target: Target) -> Self {
        Reconciliation {
            target,
            messages: target.table("reconciliation_messages"),
        }
    }
}

/// A row of `reconciliation_messages`, but its message id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    tenant_id: String,
    account: Option<String>,
    supplier: Option<String>,
    supplier_message_id: Option<String>,
    dispatched_at: Option<i64>,
    receipt: Option<String>,
}

const COLUMNS: &str =
    "message_id, tenant_id, account, supplier, supplier_message_id, dispatched_at, receipt";

/// What an upsert sets in a row that exists: all of it (a row removed and made again in one
/// batch is written as it ends).
const UPDATE: &str = "tenant_id = excluded.tenant_id, account = excluded.account, \
     supplier = excluded.supplier, supplier_message_id = excluded.supplier_message_id, \
     dispatched_at = excluded.dispatched_at, receipt = excluded.receipt";

/// What an event does to its message's row.
#[derive(Debug)]
enum Change<'a> {
    /// Fills in where the message went, making the row if there is none.
    Dispatch {
        tenant: Cow<'a, str>,
        account: &'a str,
        supplier: &'a str,
        supplier_message_id: Option<&'a str>,
        at: i64,
    },
    /// The latest outcome wins; makes the row (not yet dispatched) if there is none.
    Receipt {
        tenant: Cow<'a, str>,
        outcome: &'static str,
    },
    /// The message ended without a dispatch: it never reaches a bill, and its row goes (a row
    /// already dispatched stays).
    End,
}

/// The part of an event's metadata this projection reads: whose message it is.
#[derive(serde::Deserialize)]
struct Owner<'a> {
    #[serde(borrow)]
    tenant: Cow<'a, str>,
}

/// What `event` changes (`metadata` is its record's, read only by the events that may make a
/// row); `Ok(None)` for what leaves the table alone.
fn change<'a>(
    event: &'a MessageEvent,
    metadata: &'a str,
) -> Result<Option<Change<'a>>, HandlerError> {
    use MessageEvent as E;
    let tenant = || serde_json::from_str::<Owner<'a>>(metadata).map(|owner| owner.tenant);
    Ok(match event {
        E::MessageDispatched(e) => Some(Change::Dispatch {
            tenant: tenant()?,
            account: &e.account,
            supplier: &e.supplier,
            supplier_message_id: e.supplier_message_id.as_deref(),
            at: e.at.timestamp_millis(),
        }),
        E::ReceiptReceived(e) => Some(Change::Receipt {
            tenant: tenant()?,
            outcome: e.outcome.as_str(),
        }),
        E::MessageDeduplicated(_)
        | E::MessageShielded(_)
        | E::MessageDiscarded(_)
        | E::MessageFailed(_)
        | E::MessageRecalled(_) => Some(Change::End),
        E::MessageAccepted(_)
        | E::MessageDeferred(_)
        | E::MessageRateLimited(_)
        | E::DispatchFailed(_)
        | E::MessageClicked(_)
        | E::MessageRead(_)
        | E::RecallRequested(_)
        | E::RecallFailed(_) => None,
    })
}

/// A row of a message just reaching the table: the tenant's, nothing else known yet.
fn new_row(tenant: &str) -> Row {
    Row {
        tenant_id: tenant.to_owned(),
        account: None,
        supplier: None,
        supplier_message_id: None,
        dispatched_at: None,
        receipt: None,
    }
}

/// Applies one change to a message's row (`None`: there is none), as the one statement per
/// event that this replaces would have: a dispatch or a receipt makes the row it finds missing,
/// a removal of a row that is not there changes nothing.
fn fold(row: &mut Option<Row>, change: &Change<'_>) {
    match change {
        Change::Dispatch {
            tenant,
            account,
            supplier,
            supplier_message_id,
            at,
        } => {
            let row = row.get_or_insert_with(|| new_row(tenant));
            row.account = Some((*account).to_owned());
            row.supplier = Some((*supplier).to_owned());
            row.supplier_message_id = supplier_message_id.map(str::to_owned);
            row.dispatched_at = Some(*at);
        }
        Change::Receipt { tenant, outcome } => {
            row.get_or_insert_with(|| new_row(tenant)).receipt = Some((*outcome).to_owned());
        }
        Change::End => {
            if row.as_ref().is_some_and(|r| r.dispatched_at.is_none()) {
                *row = None;
            }
        }
    }
}

impl store::Handler for Reconciliation {
    async fn handle(&self, tx: &mut StoreTx, events: &[RecordedEvent]) -> Result<(), HandlerError> {
        let decoded = crate::decode(events)?;
        self.apply(tx, &crate::views(events, &decoded)).await
    }
}

impl Reconciliation {
    /// A batch costs at most three statements whatever its size: the rows of the messages it
    /// touches read in one select; then, once the batch is folded here, the rows it removes
    /// deleted in one statement and the rows it makes or changes written in one upsert (in a
    /// replay's shadows, an upsert of the rows read and a plain insert of the new ones:
    /// [`Target::split`]). A replay
    /// applies batches of thousands of events, so round trips decide its speed.
    pub(crate) async fn apply(
        &self,
        tx: &mut StoreTx,
        batch: &[Decoded<'_>],
    ) -> Result<(), HandlerError> {
        let mut changes: Vec<(&str, Change<'_>)> = Vec::new();
        for d in batch {
            if let Some(change) = change(d.event, &d.recorded.metadata)? {
                changes.push((d.message_id, change));
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<&str> = changes.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        // Messages accepted in this batch have no row from an earlier one: their acceptance
        // (which changes nothing here) says so.
        let positions = batch
            .iter()
            .map(|d| (d.message_id, d.recorded.stream_position));
        let mut continued = crate::continued(positions);
        continued.retain(|id| ids.binary_search(id).is_ok());
        let loaded = self.load(tx, &continued).await?;
        let mut rows: HashMap<&str, Option<Row>> = ids
            .iter()
            .map(|id| (*id, loaded.get(*id).cloned()))
            .collect();
        for (id, change) in &changes {
            if let Some(row) = rows.get_mut(id) {
                fold(row, change);
            }
        }
        // Only what changed is written, in key order (`ids` is sorted), so two transactions
        // never wait on each other in turn.
        let mut removed = Vec::new();
        let mut written = Vec::new();
        for id in &ids {
            let (Some(after), before) = (rows.get(id), loaded.get(*id)) else {
                continue;
            };
            match after {
                None if before.is_some() => removed.push(*id),
                Some(row) if Some(row) != before => written.push((*id, row)),
                _ => {}
            }
        }
        self.remove(tx, &removed).await?;
        let (upserted, inserted) = self
            .target
            .split(written, |(id, _)| loaded.contains_key(*id));
        self.write(tx, &upserted, true).await?;
        self.write(tx, &inserted, false).await
    }
}

impl Reconciliation {
    /// The rows of `ids` that exist, in one statement.
    async fn load(
        &self,
        tx: &mut StoreTx,
        ids: &[&str],
    ) -> Result<HashMap<String, Row>, HandlerError> {
        let table = &self.messages;
        type Tuple = (
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Tuple> = crate::by_message::select(tx, COLUMNS, table, ids).await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    tenant_id,
                    account,
                    supplier,
                    supplier_message_id,
                    dispatched_at,
                    receipt,
                )| {
                    let row = Row {
                        tenant_id,
                        account,
                        supplier,
                        supplier_message_id,
                        dispatched_at,
                        receipt,
                    };
                    (id, row)
                },
            )
            .collect())
    }

    /// Deletes the rows of `ids`, in one statement.
    async fn remove(&self, tx: &mut StoreTx, ids: &[&str]) -> Result<(), HandlerError> {
        if ids.is_empty() {
            return Ok(());
        }
        crate::by_message::delete(tx, &self.messages, ids).await?;
        Ok(())
    }

    /// Writes `rows` back in one statement: as upserts, or (rows known not to be there) as
    /// plain inserts.
    async fn write(
        &self,
        tx: &mut StoreTx,
        rows: &[(&str, &Row)],
        upsert: bool,
    ) -> Result<(), HandlerError> {
        if rows.is_empty() {
            return Ok(());
        }
        let table = &self.messages;
        let conflict = if upsert {
            format!(" ON CONFLICT (message_id) DO UPDATE SET {UPDATE}")
        } else {
            String::new()
        };
        match tx.conn() {
            TxConn::Postgres(conn) if !upsert => {
                let mut copy = CopyRows::with_capacity(rows.len() * 64);
                for (id, r) in rows {
                    copy.text(id)
                        .text(&r.tenant_id)
                        .optional_text(r.account.as_deref())
                        .optional_text(r.supplier.as_deref())
                        .optional_text(r.supplier_message_id.as_deref())
                        .optional_int(r.dispatched_at)
                        .optional_text(r.receipt.as_deref())
                        .end_row();
                }
                copy.copy_into(conn, table, COLUMNS).await?;
            }
            TxConn::Postgres(conn) => {
                let options = |f: fn(&Row) -> Option<&str>| {
                    rows.iter().map(|(_, r)| f(r)).collect::<Vec<_>>()
                };
                sqlx::query(&format!(
                    "INSERT INTO {table} ({COLUMNS}) SELECT * FROM unnest(\
                     $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], \
                     $7::text[]){conflict}"
                ))
                .bind(rows.iter().map(|(id, _)| *id).collect::<Vec<_>>())
                .bind(
                    rows.iter()
                        .map(|(_, r)| r.tenant_id.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(options(|r| r.account.as_deref()))
                .bind(options(|r| r.supplier.as_deref()))
                .bind(options(|r| r.supplier_message_id.as_deref()))
                .bind(
                    rows.iter()
                        .map(|(_, r)| r.dispatched_at)
                        .collect::<Vec<_>>(),
                )
                .bind(options(|r| r.receipt.as_deref()))
                .execute(conn)
                .await?;
            }
            TxConn::Sqlite(conn) => {
                let rows: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(id, r)| {
                        json!([
                            id,
                            r.tenant_id,
                            r.account,
                            r.supplier,
                            r.supplier_message_id,
                            r.dispatched_at,
                            r.receipt
                        ])
                    })
                    .collect();
                sqlx::query(&format!(
                    "INSERT INTO {table} ({COLUMNS}) SELECT value ->> 0, value ->> 1, \
                     value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6 \
                     FROM json_each($1) WHERE true{conflict}"
                ))
                .bind(serde_json::Value::Array(rows).to_string())
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}

/// One account's day, in a time zone: the instants it starts at (included) and ends at (not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub account_day: NaiveDate,
    pub zone: FixedOffset,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Window {
    /// `date` from midnight to midnight in `zone`.
    pub fn day(date: NaiveDate, zone: FixedOffset) -> Window {
        let start = date.and_time(chrono::NaiveTime::MIN);
        let from = start - zone_offset(zone);
        let to = from + chrono::Duration::days(1);
        Window {
            account_day: date,
            zone,
            from: from.and_utc(),
            to: to.and_utc(),
        }
    }
}

fn zone_offset(zone: FixedOffset) -> chrono::Duration {
    chrono::Duration::seconds(i64::from(zone.local_minus_utc()))
}

/// What was dispatched through an account in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub dispatched: i64,
    pub delivered: i64,
    pub undelivered: i64,
    /// Dispatched with no receipt yet.
    pub pending: i64,
    /// Dispatched without a supplier id to compare (the supplier gave none).
    pub without_supplier_id: i64,
}

/// The conditions shared by the queries: account ($1), window ($2, $3), and the tenant ($4) if
/// any.
fn scope(tenant: Option<&str>) -> String {
    let mut conditions = "account = $1 AND dispatched_at >= $2 AND dispatched_at < $3".to_owned();
    if tenant.is_some() {
        conditions.push_str(" AND tenant_id = $4");
    }
    conditions
}

/// The counts of `account` in `window`: every tenant's, or only `tenant`'s.
pub async fn summary(
    store: &Store,
    account: &str,
    window: &Window,
    tenant: Option<&str>,
) -> Result<Summary, sqlx::Error> {
    let conditions = scope(tenant);
    let sql = format!(
        "SELECT COUNT(*), \
         COUNT(CASE WHEN receipt = 'DELIVERED' THEN 1 END), \
         COUNT(CASE WHEN receipt = 'UNDELIVERED' THEN 1 END), \
         COUNT(CASE WHEN receipt IS NULL THEN 1 END), \
         COUNT(CASE WHEN supplier_message_id IS NULL THEN 1 END) \
         FROM reconciliation_messages WHERE {conditions}"
    );
    let row: (i64, i64, i64, i64, i64) = on_read!(store, |pool| {
        let mut query = sqlx::query_as(&sql)
            .bind(account)
            .bind(window.from.timestamp_millis())
            .bind(window.to.timestamp_millis());
        if let Some(tenant) = tenant {
            query = query.bind(tenant);
        }
        query.fetch_one(pool).await
    })?;
    Ok(Summary {
        dispatched: row.0,
        delivered: row.1,
        undelivered: row.2,
        pending: row.3,
        without_supplier_id: row.4,
    })
}

/// The supplier's ids of what `account` dispatched in `window`, in order, after `after`, at
/// most `limit` (all with `None`).
pub async fn supplier_ids(
    store: &Store,
    account: &str,
    window: &Window,
    tenant: Option<&str>,
    after: Option<&str>,
    limit: Option<usize>,
) -> Result<Vec<String>, sqlx::Error> {
    let mut conditions = scope(tenant);
    conditions.push_str(" AND supplier_message_id IS NOT NULL");
    if after.is_some() {
        let n = if tenant.is_some() { 5 } else { 4 };
        conditions.push_str(&format!(" AND supplier_message_id > ${n}"));
    }
    let limit = limit.map_or(String::new(), |n| format!(" LIMIT {n}"));
    let sql = format!(
        "SELECT supplier_message_id FROM reconciliation_messages WHERE {conditions} \
         ORDER BY supplier_message_id{limit}"
    );
    on_read!(store, |pool| {
        let mut query = sqlx::query_scalar(&sql)
            .bind(account)
            .bind(window.from.timestamp_millis())
            .bind(window.to.timestamp_millis());
        if let Some(tenant) = tenant {
            query = query.bind(tenant);
        }
        if let Some(after) = after {
            query = query.bind(after);
        }
        query.fetch_all(pool).await
    })
}

/// How far the supplier's billed count is from what was dispatched, in percent of what was
/// dispatched (negative: billed fewer). `None` when nothing was dispatched but something billed.
pub fn gap_percent(dispatched: i64, billed: i64) -> Option<f64> {
    if dispatched == 0 {
        return (billed == 0).then_some(0.0);
    }
    Some((billed - dispatched) as f64 * 100.0 / dispatched as f64)
}

/// Whether a gap is beyond the tolerance (in percent); a gap with nothing dispatched always is.
pub fn flagged(gap: Option<f64>, tolerance: f64) -> bool {
    gap.is_none_or(|gap| gap.abs() > tolerance + 1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(row: Option<Row>, changes: &[Change<'_>]) -> Option<Row> {
        let mut row = row;
        for change in changes {
            fold(&mut row, change);
        }
        row
    }

    fn dispatch(tenant: &str) -> Change<'_> {
        Change::Dispatch {
            tenant: Cow::Borrowed(tenant),
            account: "sms-a",
            supplier: "tencent_sms",
            supplier_message_id: Some("s-1"),
            at: 5,
        }
    }

    fn receipt<'a>(tenant: &'a str, outcome: &'static str) -> Change<'a> {
        Change::Receipt {
            tenant: Cow::Borrowed(tenant),
            outcome,
        }
    }

    #[test]
    fn a_batch_folds_as_one_statement_per_event_would() {
        let dispatched = Row {
            account: Some("sms-a".to_owned()),
            supplier: Some("tencent_sms".to_owned()),
            supplier_message_id: Some("s-1".to_owned()),
            dispatched_at: Some(5),
            receipt: Some("UNDELIVERED".to_owned()),
            ..new_row("acme")
        };
        // A dispatch makes the row; the latest receipt wins; a dispatched message stays.
        assert_eq!(
            run(
                None,
                &[
                    dispatch("acme"),
                    receipt("acme", "DELIVERED"),
                    receipt("acme", "UNDELIVERED"),
                    Change::End
                ]
            ),
            Some(dispatched.clone())
        );
        // A receipt before the dispatch makes the row and is kept; the tenant is the first's.
        assert_eq!(
            run(
                None,
                &[
                    receipt("acme", "UNDELIVERED"),
                    dispatch("globex"),
                    Change::End
                ]
            ),
            Some(dispatched)
        );
        // Ended without a dispatch: removed; a removal of no row changes nothing.
        let early = run(None, &[receipt("acme", "DELIVERED")]);
        assert!(early.is_some());
        assert_eq!(run(early, &[Change::End]), None);
        assert_eq!(run(None, &[Change::End]), None);
    }

    #[test]
    fn only_dispatches_and_receipts_read_whose_message_it_is() {
        use domain::MessageEvent;
        use domain::message::{MessageDispatched, MessageFailed};
        let at = "2024-05-01T00:00:00Z".parse().unwrap_or_default();
        let event = MessageEvent::MessageDispatched(MessageDispatched {
            account: "sms-a".to_owned(),
            supplier: "tencent_sms".to_owned(),
            supplier_message_id: None,
            attempt: 1,
            latency_ms: 3,
            masked_words: 0,
            at,
        });
        let metadata = r#"{"tenant":"ac\\me","correlation_id":"r-1"}"#;
        match change(&event, metadata) {
            Ok(Some(Change::Dispatch { tenant, .. })) => assert_eq!(tenant, "ac\\me"),
            other => panic!("{other:?}"),
        }
        assert!(change(&event, "{}").is_err());
        let ended = MessageEvent::MessageFailed(MessageFailed {
            reason: "gave up".to_owned(),
            attempts: 3,
            at,
        });
        assert!(matches!(change(&ended, "{}"), Ok(Some(Change::End))));
    }

    #[test]
    fn the_gap_is_in_percent_of_what_was_dispatched() {
        assert_eq!(gap_percent(1000, 985), Some(-1.5));
        assert_eq!(gap_percent(1000, 1030), Some(3.0));
        assert_eq!(gap_percent(0, 0), Some(0.0));
        assert_eq!(gap_percent(0, 3), None);
        assert!(!flagged(Some(-1.5), 2.0));
        assert!(!flagged(Some(2.0), 2.0));
        assert!(flagged(Some(-3.0), 2.0));
        assert!(flagged(None, 2.0));
    }

    #[test]
    fn a_day_is_taken_in_its_zone() {
        let date = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap_or_default();
        let beijing = FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| unreachable!());
        let window = Window::day(date, beijing);
        assert_eq!(window.from.to_rfc3339(), "2024-04-30T16:00:00+00:00");
        assert_eq!(window.to.to_rfc3339(), "2024-05-01T16:00:00+00:00");
        let utc = FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!());
        assert_eq!(
            Window::day(date, utc).from.to_rfc3339(),
            "2024-05-01T00:00:00+00:00"
        );
    }
}
