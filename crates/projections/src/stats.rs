//! Daily statistics: counters per tenant, UTC day, template, channel and channel account
//! (`stats_daily`), answering `stats(filter)`.
//!
//! **Each event counts on the day it happened**, not on the day its message was accepted: a
//! message scheduled a week ahead is dispatched, and counted as dispatched, a week later; a day's
//! counters stop changing once the day is over (but for receipts that move, below); and
//! `dispatched` on a day is what a supplier bills for that day. The price: a receipt recorded
//! just after midnight counts on the next day, so a ratio of delivered to dispatched on one day is
//! exact only over periods longer than the receipt delay.
//!
//! **The account** is the channel account the event concerns: the one of the message's latest
//! supplier attempt (`DispatchFailed`, `MessageDispatched`). Before the first attempt there is
//! none ('' in the table, `null` in the API): the template names only a preference, and failover
//! may pick another account. So `accepted`, `deduplicated`, `shielded` and `discarded` always
//! count without an account, and `dispatched`, `delivered` and the like under the account that
//! sent.
//!
//! The events after acceptance do not say whose message they are, so the projection remembers
//! each message's tenant, template, channel and account in `stats_messages`.
//! Most counters count events (`deferred`, `dispatch_failed` and `clicked` may count several per
//! message). `delivered` and `undelivered` count each dispatched message once, by its latest
//! receipt: a repeated receipt counts nothing, one that changes the outcome moves the message from
//! one counter (on the day it was counted) to the other (on the day of the new receipt), and a
//! receipt that arrives before the dispatch is recorded counts with the dispatch.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use domain::{MessageEvent, ReceiptOutcome};
use serde_json::json;
use store::copy::CopyRows;
use store::{HandlerError, LogFilter, RecordedEvent, Store, StoreTx, TxConn, on_read};

use crate::{Decoded, Target};

/// The subscription (and checkpoint) name.
pub const SUBSCRIPTION: &str = "projection-stats";

/// Every event of every message.
pub fn filter() -> LogFilter {
    LogFilter {
        categories: vec!["message".to_owned()],
        event_types: Vec::new(),
        partition: None,
    }
}

/// The read tables.
pub const TABLES: &[&str] = &["stats_daily", "stats_messages"];

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Accepted,
    Deduplicated,
    Shielded,
    Discarded,
    Deferred,
    Dispatched,
    DispatchFailed,
    Failed,
    Delivered,
    Undelivered,
    Clicked,
    Recalled,
}

impl Counter {
    pub const ALL: [Counter; 12] = [
        Counter::Accepted,
        Counter::Deduplicated,
        Counter::Shielded,
        Counter::Discarded,
        Counter::Deferred,
        Counter::Dispatched,
        Counter::DispatchFailed,
        Counter::Failed,
        Counter::Delivered,
        Counter::Undelivered,
        Counter::Clicked,
        Counter::Recalled,
    ];

    /// Its column in `stats_daily`.
    pub fn column(self) -> &'static str {
        match self {
            Counter::Accepted => "accepted",
            Counter::Deduplicated => "deduplicated",
            Counter::Shielded => "shielded",
            Counter::Discarded => "discarded",
            Counter::Deferred => "deferred",
            Counter::Dispatched => "dispatched",
            Counter::DispatchFailed => "dispatch_failed",
            Counter::Failed => "failed",
            Counter::Delivered => "delivered",
            Counter::Undelivered => "undelivered",
            Counter::Clicked => "clicked",
            Counter::Recalled => "recalled",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn of_receipt(outcome: &str) -> Counter {
        if outcome == ReceiptOutcome::Delivered.as_str() {
            Counter::Delivered
        } else {
            Counter::Undelivered
        }
    }
}

/// One value per [`Counter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts(pub [i64; 12]);

impl Counts {
    pub fn get(&self, counter: Counter) -> i64 {
        self.0[counter.index()]
    }

    fn add(&mut self, counter: Counter, delta: i64) {
        self.0[counter.index()] += delta;
    }
}

/// What the projection remembers of a message (a row of `stats_messages`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub tenant: String,
    pub template: String,
    pub channel: String,
    /// The account of the latest supplier attempt; empty before the first.
    pub account: String,
    pub dispatched: bool,
    /// The latest receipt's outcome.
    pub receipt: Option<String>,
    /// The day the receipt was counted on; `None` while it waits for the dispatch.
    pub receipt_day: Option<String>,
}

/// The UTC day of an instant, as stored.
fn day_of(at: chrono::DateTime<chrono::Utc>) -> String {
    at.date_naive().format("%Y-%m-%d").to_string()
}

/// Applies one event to what is known of its message; returns the counter moves it makes, each
/// on a day. `message` is `None` for a message not seen yet. Pure, so the counting rules are
/// tested without a database.
pub fn step(message: &mut Option<Seen>, event: &MessageEvent) -> Vec<(String, Counter, i64)> {
    use MessageEvent as E;
    let day = day_of(event.at());
    let Some(seen) = message else {
        if let E::MessageAccepted(e) = event {
            *message = Some(Seen {
                tenant: e.tenant.as_str().to_owned(),
                template: e.template_id.to_string(),
                channel: e.channel.as_str().to_owned(),
                account: String::new(),
                dispatched: false,
                receipt: None,
                receipt_day: None,
            });
            return vec![(day, Counter::Accepted, 1)];
        }
        // Every message stream starts with its acceptance: nothing else can come first.
        return Vec::new();
    };
    let one = |counter| vec![(day.clone(), counter, 1)];
    match event {
        // Applied once already (a stream has one acceptance).
        E::MessageAccepted(_) => Vec::new(),
        // Read without a click: the inbox counts it, the daily counters do not.
        E::MessageRead(_) => Vec::new(),
        E::MessageDeduplicated(_) => one(Counter::Deduplicated),
        E::MessageShielded(_) => one(Counter::Shielded),
        E::MessageDiscarded(_) => one(Counter::Discarded),
        E::MessageDeferred(_) => one(Counter::Deferred),
        E::MessageFailed(_) => one(Counter::Failed),
        E::MessageClicked(_) => one(Counter::Clicked),
        E::MessageRecalled(_) => one(Counter::Recalled),
        E::DispatchFailed(e) => {
            seen.account.clone_from(&e.account);
            one(Counter::DispatchFailed)
        }
        E::MessageDispatched(e) => {
            seen.account.clone_from(&e.account);
            seen.dispatched = true;
            let mut moves = one(Counter::Dispatched);
            // A receipt that came first counts now.
            if let Some(outcome) = &seen.receipt {
                moves.push((day.clone(), Counter::of_receipt(outcome), 1));
                seen.receipt_day = Some(day.clone());
            }
            moves
        }
        E::ReceiptReceived(e) => {
            let outcome = e.outcome.as_str();
            if !seen.dispatched {
                seen.receipt = Some(outcome.to_owned());
                return Vec::new();
            }
            if seen.receipt.as_deref() == Some(outcome) && seen.receipt_day.is_some() {
                return Vec::new();
            }
            let mut moves = Vec::new();
            if let (Some(old), Some(old_day)) = (&seen.receipt, &seen.receipt_day) {
                moves.push((old_day.clone(), Counter::of_receipt(old), -1));
            }
            moves.push((day.clone(), Counter::of_receipt(outcome), 1));
            seen.receipt = Some(outcome.to_owned());
            seen.receipt_day = Some(day);
            moves
        }
        E::MessageRateLimited(_) | E::RecallRequested(_) | E::RecallFailed(_) => Vec::new(),
    }
}

/// The projection's handler, writing to the live tables or to their shadow copies.
#[derive(Debug, Clone)]
pub struct Stats {
    target: Target,
    daily: String,
    messages: String,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new(Target::Live)
    }
}

/// (tenant, day, template, channel, account)
type Key = (String, String, String, String, String);

/// The columns of `stats_messages`, in the order the statements below read and write them.
const MESSAGE_COLUMNS: &str =
    "message_id, tenant_id, template_id, channel, account, dispatched, receipt, receipt_day";

/// What an upsert changes in a remembered message: what an event can move (its tenant, template
/// and channel are its acceptance's for good).
const MESSAGE_UPDATE: &str = "account = excluded.account, dispatched = excluded.dispatched, \
     receipt = excluded.receipt, receipt_day = excluded.receipt_day";

/// The key columns of `stats_daily`, in the order of [`Key`].
const KEY_COLUMNS: &str = "tenant_id, day, template_id, channel, account";

impl Stats {
    pub fn new(target: Target) -> Self {
        Stats {
            target,
            daily: target.table("stats_daily"),
            messages: target.table("stats_messages"),
        }
    }

    /// What is remembered of the messages `ids`, those there are, in one statement.
    async fn load(
        &self,
        tx: &mut StoreTx,
        ids: &[&str],
    ) -> Result<HashMap<String, Seen>, HandlerError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let messages = &self.messages;
        type Row = (
            String,
            String,
            String,
            String,
            String,
            bool,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = crate::by_message::select(tx, MESSAGE_COLUMNS, messages, ids).await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, tenant, template, channel, account, dispatched, receipt, receipt_day)| {
                    let seen = Seen {
                        tenant,
                        template,
                        channel,
                        account,
                        dispatched,
                        receipt,
                        receipt_day,
                    };
                    (id, seen)
                },
            )
            .collect())
    }

    /// Writes what is remembered of `messages` in one statement: as upserts, or (messages known
    /// not to be there) as plain inserts.
    async fn save(
        &self,
        tx: &mut StoreTx,
        messages: &[(&str, &Seen)],
        upsert: bool,
    ) -> Result<(), HandlerError> {
        if messages.is_empty() {
            return Ok(());
        }
        let table = &self.messages;
        let conflict = if upsert {
            format!(" ON CONFLICT (message_id) DO UPDATE SET {MESSAGE_UPDATE}")
        } else {
            String::new()
        };
        match tx.conn() {
            TxConn::Postgres(conn) if !upsert => {
                let mut copy = CopyRows::with_capacity(messages.len() * 96);
                for (id, m) in messages {
                    copy.text(id)
                        .text(&m.tenant)
                        .text(&m.template)
                        .text(&m.channel)
                        .text(&m.account)
                        .bool(m.dispatched)
                        .optional_text(m.receipt.as_deref())
                        .optional_text(m.receipt_day.as_deref())
                        .end_row();
                }
                copy.copy_into(conn, table, MESSAGE_COLUMNS).await?;
            }
            TxConn::Postgres(conn) => {
                let texts =
                    |f: fn(&Seen) -> &str| messages.iter().map(|(_, m)| f(m)).collect::<Vec<_>>();
                let options = |f: fn(&Seen) -> Option<&str>| {
                    messages.iter().map(|(_, m)| f(m)).collect::<Vec<_>>()
                };
                sqlx::query(&format!(
                    "INSERT INTO {table} ({MESSAGE_COLUMNS}) SELECT * FROM unnest(\
                     $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[], \
                     $7::text[], $8::text[]){conflict}"
                ))
                .bind(messages.iter().map(|(id, _)| *id).collect::<Vec<_>>())
                .bind(texts(|m| &m.tenant))
                .bind(texts(|m| &m.template))
                .bind(texts(|m| &m.channel))
                .bind(texts(|m| &m.account))
                .bind(
                    messages
                        .iter()
                        .map(|(_, m)| m.dispatched)
                        .collect::<Vec<_>>(),
                )
                .bind(options(|m| m.receipt.as_deref()))
                .bind(options(|m| m.receipt_day.as_deref()))
                .execute(conn)
                .await?;
            }
            TxConn::Sqlite(conn) => {
                // `->>` reads a JSON boolean as 1 or 0, as the column stores it.
                let rows: Vec<serde_json::Value> = messages
                    .iter()
                    .map(|(id, m)| {
                        json!([
                            id,
                            m.tenant,
                            m.template,
                            m.channel,
                            m.account,
                            m.dispatched,
                            m.receipt,
                            m.receipt_day
                        ])
                    })
                    .collect();
                sqlx::query(&format!(
                    "INSERT INTO {table} ({MESSAGE_COLUMNS}) SELECT {} FROM json_each($1) \
                     WHERE true{conflict}",
                    json_values(8)
                ))
                .bind(serde_json::Value::Array(rows).to_string())
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }

    /// Adds `counts` to their rows of `stats_daily`, made if missing, in one statement.
    async fn add(&self, tx: &mut StoreTx, counts: &[(&Key, &Counts)]) -> Result<(), HandlerError> {
        if counts.is_empty() {
            return Ok(());
        }
        let daily = &self.daily;
        let columns: Vec<&str> = Counter::ALL.iter().map(|c| c.column()).collect();
        let updates: Vec<String> = columns
            .iter()
            .map(|c| format!("{c} = {daily}.{c} + excluded.{c}"))
            .collect();
        let (columns, updates) = (columns.join(", "), updates.join(", "));
        match tx.conn() {
            TxConn::Postgres(conn) => {
                let arrays: Vec<String> = (1..=5)
                    .map(|i| format!("${i}::text[]"))
                    .chain((6..6 + Counter::ALL.len()).map(|i| format!("${i}::int8[]")))
                    .collect();
                let sql = format!(
                    "INSERT INTO {daily} ({KEY_COLUMNS}, {columns}) SELECT * FROM unnest({}) \
                     ON CONFLICT ({KEY_COLUMNS}) DO UPDATE SET {updates}",
                    arrays.join(", ")
                );
                let texts =
                    |f: fn(&Key) -> &str| counts.iter().map(|(k, _)| f(k)).collect::<Vec<_>>();
                let mut query = sqlx::query(&sql)
                    .bind(texts(|k| &k.0))
                    .bind(texts(|k| &k.1))
                    .bind(texts(|k| &k.2))
                    .bind(texts(|k| &k.3))
                    .bind(texts(|k| &k.4));
                for counter in Counter::ALL {
                    query = query.bind(
                        counts
                            .iter()
                            .map(|(_, c)| c.get(counter))
                            .collect::<Vec<_>>(),
                    );
                }
                query.execute(conn).await?;
            }
            TxConn::Sqlite(conn) => {
                let rows: Vec<serde_json::Value> = counts
                    .iter()
                    .map(|(k, c)| {
                        let mut row =
                            vec![json!(k.0), json!(k.1), json!(k.2), json!(k.3), json!(k.4)];
                        row.extend(c.0.iter().map(|n| json!(n)));
                        serde_json::Value::Array(row)
                    })
                    .collect();
                sqlx::query(&format!(
                    "INSERT INTO {daily} ({KEY_COLUMNS}, {columns}) SELECT {} FROM json_each($1) \
                     WHERE true ON CONFLICT ({KEY_COLUMNS}) DO UPDATE SET {updates}",
                    json_values(5 + Counter::ALL.len())
                ))
                .bind(serde_json::Value::Array(rows).to_string())
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}

/// The select list that spreads each JSON array of `json_each` over `n` columns (SQLite).
fn json_values(n: usize) -> String {
    (0..n)
        .map(|i| format!("value ->> {i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl store::Handler for Stats {
    async fn handle(&self, tx: &mut StoreTx, events: &[RecordedEvent]) -> Result<(), HandlerError> {
        let decoded = crate::decode(events)?;
        self.apply(tx, &crate::views(events, &decoded)).await
    }
}

impl Stats {
    /// A batch costs at most three statements whatever its size: what is remembered of the
    /// messages it goes on with, read in one select; then, once the batch is folded here, the
    /// messages that changed written in one upsert (in a replay's shadows, an upsert of those
    /// remembered and a plain insert of the new: [`Target::split`]) and the counter moves added
    /// in another. A message can have many events in a batch and a counter row many moves: each
    /// is written once, with the sum. A replay applies batches of thousands of events, so round trips decide
    /// its speed.
    pub(crate) async fn apply(
        &self,
        tx: &mut StoreTx,
        batch: &[Decoded<'_>],
    ) -> Result<(), HandlerError> {
        let mut steps = Vec::with_capacity(batch.len());
        // Each message of the batch: what is remembered of it, and whether that changed.
        let mut messages: HashMap<&str, (Option<Seen>, bool)> = HashMap::new();
        // The messages of the batch remembered before it.
        let mut stored: HashSet<String> = HashSet::new();
        let mut remembered: Vec<&str> = Vec::new();
        for decoded in batch {
            let message_id = decoded.message_id;
            if !messages.contains_key(message_id) {
                messages.insert(message_id, (None, false));
                // A stream's first event is its acceptance: nothing is remembered of it yet.
                if decoded.recorded.stream_position != 1 {
                    remembered.push(message_id);
                }
            }
            steps.push((message_id, decoded.event));
        }
        remembered.sort_unstable();
        for (message_id, seen) in self.load(tx, &remembered).await? {
            if let Some((slot, _)) = messages.get_mut(message_id.as_str()) {
                *slot = Some(seen);
            }
            if !self.target.guarded() {
                stored.insert(message_id);
            }
        }
        let mut counts: BTreeMap<Key, Counts> = BTreeMap::new();
        for (message_id, event) in &steps {
            let Some((seen, changed)) = messages.get_mut(message_id) else {
                continue;
            };
            let before = seen.clone();
            let moves = step(seen, event);
            *changed |= *seen != before;
            let Some(message) = seen.as_ref() else {
                continue;
            };
            for (day, counter, delta) in moves {
                let key = (
                    message.tenant.clone(),
                    day,
                    message.template.clone(),
                    message.channel.clone(),
                    message.account.clone(),
                );
                counts.entry(key).or_default().add(counter, delta);
            }
        }
        // Rows are written in key order, so two transactions never wait on each other in turn.
        let mut changed: Vec<(&str, &Seen)> = messages
            .iter()
            .filter_map(|(id, (seen, changed))| Some((*id, seen.as_ref().filter(|_| *changed)?)))
            .collect();
        changed.sort_unstable_by_key(|(id, _)| *id);
        let (upserted, inserted) = self.target.split(changed, |(id, _)| stored.contains(*id));
        self.save(tx, &upserted, true).await?;
        self.save(tx, &inserted, false).await?;
        // Moves that cancel out (a receipt counted and moved away in the batch) write nothing.
        let counts: Vec<(&Key, &Counts)> = counts
            .iter()
            .filter(|(_, counts)| **counts != Counts::default())
            .collect();
        self.add(tx, &counts).await
    }
}

/// What `stats` narrows to; days are UTC and both ends are included.
#[derive(Debug, Clone)]
pub struct StatsFilter {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub template_id: Option<String>,
    pub channel: Option<String>,
    pub account: Option<String>,
}

/// One day of one template on one channel through one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsRow {
    pub day: NaiveDate,
    pub template_id: String,
    pub channel: String,
    /// `None` for what happened before any supplier attempt.
    pub account: Option<String>,
    pub counts: Counts,
}

/// `tenant`'s rows, by day, template, channel and account; at most `limit`.
pub async fn stats(
    store: &Store,
    tenant: &str,
    filter: &StatsFilter,
    limit: usize,
) -> Result<Vec<StatsRow>, sqlx::Error> {
    let mut conditions = vec![
        "tenant_id = $1".to_owned(),
        "day >= $2".to_owned(),
        "day <= $3".to_owned(),
    ];
    let mut binds = vec![
        tenant.to_owned(),
        filter.from.format("%Y-%m-%d").to_string(),
        filter.to.format("%Y-%m-%d").to_string(),
    ];
    for (column, value) in [
        ("template_id", &filter.template_id),
        ("channel", &filter.channel),
        ("account", &filter.account),
    ] {
        if let Some(value) = value {
            binds.push(value.clone());
            conditions.push(format!("{column} = ${}", binds.len()));
        }
    }
    let columns: Vec<&str> = Counter::ALL.iter().map(|c| c.column()).collect();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT day, template_id, channel, account, {} FROM stats_daily WHERE {} \
         ORDER BY day, template_id, channel, account LIMIT {limit}",
        columns.join(", "),
        conditions.join(" AND ")
    );
    let rows = on_read!(store, |pool| {
        use sqlx::Row as _;
        let mut query = sqlx::query(&sql);
        for bind in &binds {
            query = query.bind(bind);
        }
        let rows = query.fetch_all(pool).await?;
        rows.iter()
            .map(|r| {
                let mut counts = Counts::default();
                for (i, value) in counts.0.iter_mut().enumerate() {
                    *value = r.try_get(4 + i)?;
                }
                Ok((
                    r.try_get::<String, _>(0)?,
                    r.try_get::<String, _>(1)?,
                    r.try_get::<String, _>(2)?,
                    r.try_get::<String, _>(3)?,
                    counts,
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
    })?;
    rows.into_iter()
        .map(|(day, template_id, channel, account, counts)| {
            let day = NaiveDate::parse_from_str(&day, "%Y-%m-%d")
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            Ok(StatsRow {
                day,
                template_id,
                channel,
                account: (!account.is_empty()).then_some(account),
                counts,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use domain::message::*;
    use domain::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_default()
    }

    fn accepted(when: &str) -> MessageEvent {
        MessageEvent::MessageAccepted(MessageAccepted {
            message_id: MessageId::generate(),
            tenant: TenantId::parse("acme").unwrap_or_else(|_| unreachable!()),
            request_id: RequestId::parse("r-1").unwrap_or_else(|_| unreachable!()),
            template_id: TemplateId::generate(),
            template_version: 1,
            channel: Channel::Sms,
            msg_type: MessageType::Notice,
            shield_type: ShieldType::None,
            account: "preferred".to_owned(),
            receiver: Receiver::parse(ReceiverIdType::Phone, "+8613800138000")
                .unwrap_or_else(|_| unreachable!()),
            content: TemplateContent::Text {
                body: "hi".to_owned(),
            },
            tracked_links: Vec::new(),
            send_at: None,
            at: at(when),
        })
    }

    fn dispatched(account: &str, when: &str) -> MessageEvent {
        MessageEvent::MessageDispatched(MessageDispatched {
            account: account.to_owned(),
            supplier: "tencent_sms".to_owned(),
            supplier_message_id: None,
            attempt: 1,
            latency_ms: 5,
            masked_words: 0,
            at: at(when),
        })
    }

    fn receipt(outcome: ReceiptOutcome, when: &str) -> MessageEvent {
        MessageEvent::ReceiptReceived(ReceiptReceived {
            outcome,
            supplier_status: "x".to_owned(),
            reported_at: at(when),
            at: at(when),
        })
    }

    fn run(events: &[MessageEvent]) -> (Option<Seen>, Vec<(String, Counter, i64)>) {
        let mut seen = None;
        let mut moves = Vec::new();
        for event in events {
            moves.extend(step(&mut seen, event));
        }
        (seen, moves)
    }

    fn m(day: &str, counter: Counter, delta: i64) -> (String, Counter, i64) {
        (day.to_owned(), counter, delta)
    }

    #[test]
    fn each_event_counts_on_its_own_day_under_the_account_that_sent() {
        let (seen, moves) = run(&[
            accepted("2024-05-01T23:59:00Z"),
            dispatched("sms-a", "2024-05-02T00:00:01Z"),
            receipt(ReceiptOutcome::Delivered, "2024-05-02T00:00:09Z"),
        ]);
        assert_eq!(
            moves,
            [
                m("2024-05-01", Counter::Accepted, 1),
                m("2024-05-02", Counter::Dispatched, 1),
                m("2024-05-02", Counter::Delivered, 1),
            ]
        );
        let seen = seen.unwrap_or_else(|| unreachable!());
        assert_eq!(seen.account, "sms-a");
        assert_eq!(seen.tenant, "acme");
    }

    #[test]
    fn a_receipt_counts_once_and_a_change_moves_it() {
        let (_, moves) = run(&[
            accepted("2024-05-01T10:00:00Z"),
            dispatched("sms-a", "2024-05-01T10:00:01Z"),
            receipt(ReceiptOutcome::Delivered, "2024-05-01T10:00:02Z"),
            receipt(ReceiptOutcome::Delivered, "2024-05-01T10:00:03Z"),
            receipt(ReceiptOutcome::Undelivered, "2024-05-03T10:00:00Z"),
        ]);
        assert_eq!(
            moves,
            [
                m("2024-05-01", Counter::Accepted, 1),
                m("2024-05-01", Counter::Dispatched, 1),
                m("2024-05-01", Counter::Delivered, 1),
                m("2024-05-01", Counter::Delivered, -1),
                m("2024-05-03", Counter::Undelivered, 1),
            ]
        );
    }

    #[test]
    fn an_early_receipt_counts_with_the_dispatch() {
        let (_, moves) = run(&[
            accepted("2024-05-01T10:00:00Z"),
            receipt(ReceiptOutcome::Delivered, "2024-05-01T10:00:01Z"),
            dispatched("sms-a", "2024-05-01T10:00:02Z"),
        ]);
        assert_eq!(
            moves,
            [
                m("2024-05-01", Counter::Accepted, 1),
                m("2024-05-01", Counter::Dispatched, 1),
                m("2024-05-01", Counter::Delivered, 1),
            ]
        );
    }

    #[test]
    fn a_receipt_for_a_message_never_dispatched_counts_nothing() {
        let failed = MessageEvent::MessageFailed(MessageFailed {
            reason: "x".to_owned(),
            attempts: 1,
            at: at("2024-05-01T10:00:01Z"),
        });
        let (_, moves) = run(&[
            accepted("2024-05-01T10:00:00Z"),
            failed,
            receipt(ReceiptOutcome::Delivered, "2024-05-01T10:00:02Z"),
        ]);
        assert_eq!(
            moves,
            [
                m("2024-05-01", Counter::Accepted, 1),
                m("2024-05-01", Counter::Failed, 1),
            ]
        );
    }

    #[test]
    fn events_of_a_message_never_accepted_count_nothing() {
        let (seen, moves) = run(&[dispatched("sms-a", "2024-05-01T10:00:00Z")]);
        assert_eq!((seen, moves), (None, Vec::new()));
    }
}
