//! Reconciliation: what each channel account dispatched on a day, what the receipts say of it,
//! and the supplier's ids of it, to set beside the supplier's bill (`reconciliation(account,
//! date)` and `herald reconcile`).
//!
//! One row per message (`reconciliation_messages`): made at acceptance (the only event that
//! names the tenant), filled in by `MessageDispatched` (account, supplier, the supplier's id, when)
//! and by receipts (the latest outcome wins, as in the trace), and removed when the message ends
//! without a dispatch. A day is counted over `dispatched_at` at query time, so the day may be taken
//! in the supplier's time zone: Chinese suppliers bill by Beijing time.

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use domain::MessageEvent;
use store::{HandlerError, LogFilter, RecordedEvent, Store, StoreTx, on_read, on_tx};

use crate::Target;

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
            messages: target.table("reconciliation_messages"),
        }
    }

    async fn apply(&self, tx: &mut StoreTx, recorded: &RecordedEvent) -> Result<(), HandlerError> {
        let table = &self.messages;
        let Some(message_id) = recorded.stream_id.strip_prefix("message-") else {
            return Ok(());
        };
        let data = recorded.data_json()?;
        let event = MessageEvent::decode(&recorded.event_type, recorded.schema_version, &data)?;
        use MessageEvent as E;
        match &event {
            E::MessageAccepted(e) => {
                let sql = format!(
                    "INSERT INTO {table} (message_id, tenant_id) VALUES ($1, $2) \
                     ON CONFLICT (message_id) DO NOTHING"
                );
                on_tx!(tx, |conn| sqlx::query(&sql)
                    .bind(message_id)
                    .bind(e.tenant.as_str())
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected()))?;
            }
            E::MessageDispatched(e) => {
                let sql = format!(
                    "UPDATE {table} SET account = $2, supplier = $3, supplier_message_id = $4, \
                     dispatched_at = $5 WHERE message_id = $1"
                );
                on_tx!(tx, |conn| sqlx::query(&sql)
                    .bind(message_id)
                    .bind(&e.account)
                    .bind(&e.supplier)
                    .bind(e.supplier_message_id.as_deref())
                    .bind(e.at.timestamp_millis())
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected()))?;
            }
            E::ReceiptReceived(e) => {
                let sql = format!("UPDATE {table} SET receipt = $2 WHERE message_id = $1");
                on_tx!(tx, |conn| sqlx::query(&sql)
                    .bind(message_id)
                    .bind(e.outcome.as_str())
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected()))?;
            }
            // Outcomes without a dispatch: the message never reaches a bill.
            E::MessageDeduplicated(_)
            | E::MessageShielded(_)
            | E::MessageDiscarded(_)
            | E::MessageFailed(_)
            | E::MessageRecalled(_) => {
                let sql =
                    format!("DELETE FROM {table} WHERE message_id = $1 AND dispatched_at IS NULL");
                on_tx!(tx, |conn| sqlx::query(&sql)
                    .bind(message_id)
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected()))?;
            }
            E::MessageDeferred(_)
            | E::MessageRateLimited(_)
            | E::DispatchFailed(_)
            | E::MessageClicked(_)
            | E::MessageRead(_)
            | E::RecallRequested(_)
            | E::RecallFailed(_) => {}
        }
        Ok(())
    }
}

impl store::Handler for Reconciliation {
    async fn handle(&self, tx: &mut StoreTx, events: &[RecordedEvent]) -> Result<(), HandlerError> {
        for recorded in events {
            self.apply(tx, recorded).await?;
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
