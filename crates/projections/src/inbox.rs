//! The in-app inbox: the INBOX channel's messages per tenant and receiver (`inbox_messages`),
//! answering `inbox(receiver, first, after)` with the unread count.
//!
//! The inbox supplier delivers on send: the message is Herald's to keep, and `MessageDispatched`
//! is its delivery. The content comes from `MessageAccepted`, which carries it rendered, with its
//! tracked links already rewritten; a row is kept from acceptance (hidden) and shown from the
//! dispatch on. A message that dispatch gives up (deduplicated, shielded, discarded, failed) or
//! that is recalled leaves the table. A message is read once its receiver follows one of its
//! links (`MessageClicked`) or an inbox client marks it read (`MessageRead`), as in the domain.
//!
//! Each delivered row keeps the log place of its `MessageDispatched` ([`Cursor`]): the order the
//! projection made rows visible, so the real-time stream (`/inbox/stream`) sends a receiver's
//! messages in that order and resumes after the last one a client saw. The live handler can be
//! given a notifier ([`Inbox::with_notifier`]): after each batch commits, it hears of every row
//! the batch made visible ([`Notice`]), so a notification never arrives before its row.
//!
//! Sensitive words masked at dispatch are not in the log (`MessageDispatched` records only how
//! many), so the inbox shows the text as accepted, and `masked_words` says how many were masked.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use domain::{MessageEvent, TemplateContent};
use store::{HandlerError, LogFilter, RecordedEvent, Store, StoreTx, on_read, on_tx};
use tokio::sync::mpsc::UnboundedSender;

use crate::{Decoded, Target, continued};

/// The subscription (and checkpoint) name.
pub const SUBSCRIPTION: &str = "projection-inbox";

/// Every event of every message.
pub fn filter() -> LogFilter {
    LogFilter {
        categories: vec!["message".to_owned()],
        event_types: Vec::new(),
        partition: None,
    }
}

/// The read tables.
pub const TABLES: &[&str] = &["inbox_messages"];

/// Where a delivered message stands in its receiver's stream: the log place of its
/// `MessageDispatched`, in the projection's (and the log's) reading order. Written `{tx}-{pos}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor {
    pub transaction_id: i64,
    pub global_position: i64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.transaction_id, self.global_position)
    }
}

impl std::str::FromStr for Cursor {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (tx, pos) = s.trim().split_once('-').ok_or(())?;
        Ok(Cursor {
            transaction_id: tx.parse().map_err(|_| ())?,
            global_position: pos.parse().map_err(|_| ())?,
        })
    }
}

/// A row the projection made visible: a message delivered to `receiver`'s inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub tenant: String,
    pub receiver: String,
    pub message_id: String,
    pub cursor: Cursor,
}

/// The projection's handler, writing to the live table or to its shadow copy.
#[derive(Debug, Clone)]
pub struct Inbox {
    messages: String,
    notifier: Option<UnboundedSender<Notice>>,
    /// The rows the batch in hand made visible, told to the notifier once it commits.
    pending: Arc<Mutex<Vec<Notice>>>,
}

impl Default for Inbox {
    fn default() -> Self {
        Inbox::new(Target::Live)
    }
}

/// What an inbox shows of a content: its title, body and link.
fn shown(content: &TemplateContent) -> (Option<&str>, &str, Option<&str>) {
    match content {
        TemplateContent::Text { body } => (None, body, None),
        TemplateContent::Markdown { title, body } => (Some(title), body, None),
        TemplateContent::Card { title, body, url } => (Some(title), body, url.as_deref()),
        TemplateContent::Email {
            subject,
            html,
            text,
            ..
        } => (
            Some(subject),
            text.as_deref().or(html.as_deref()).unwrap_or_default(),
            None,
        ),
        // Supplier templates do not fit the INBOX channel (the domain refuses them); the code
        // stands in for a body.
        TemplateContent::SupplierTemplate { template_code, .. } => (None, template_code, None),
    }
}

impl Inbox {
    pub fn new(target: Target) -> Self {
        Inbox {
            messages: target.table("inbox_messages"),
            notifier: None,
            pending: Arc::default(),
        }
    }

    /// Tells `notifier` of each row made visible, after its batch commits.
    pub fn with_notifier(mut self, notifier: UnboundedSender<Notice>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<Notice>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a batch already decoded, event by event, to the messages that have (or in this
    /// batch gain) a row.
    pub(crate) async fn apply(
        &self,
        tx: &mut StoreTx,
        batch: &[Decoded<'_>],
    ) -> Result<(), HandlerError> {
        // What an earlier batch left was rolled back with it.
        self.pending().clear();
        let kept = self.kept(tx, batch).await?;
        for decoded in batch {
            if kept.contains(decoded.message_id) {
                self.apply_one(tx, decoded).await?;
            }
        }
        Ok(())
    }

    /// The messages of `batch` whose events can touch a row: those accepted here for the INBOX
    /// channel, and those begun in an earlier batch that have a row (read in one statement).
    /// Only an INBOX acceptance makes a row, and it is its stream's first event, so no other
    /// message can have one. Every dispatch of every channel was an `UPDATE` that found nothing,
    /// a round trip per event, and most of this projection's share of a replay.
    async fn kept<'a>(
        &self,
        tx: &mut StoreTx,
        batch: &[Decoded<'a>],
    ) -> Result<HashSet<&'a str>, HandlerError> {
        let mut kept: HashSet<&str> = batch
            .iter()
            .filter(|d| {
                matches!(d.event, MessageEvent::MessageAccepted(e) if e.channel == domain::Channel::Inbox)
            })
            .map(|d| d.message_id)
            .collect();
        let earlier = continued(
            batch
                .iter()
                .map(|d| (d.message_id, d.recorded.stream_position)),
        );
        let rows: Vec<(String,)> =
            crate::by_message::select(tx, "message_id", &self.messages, &earlier).await?;
        let rows: HashSet<String> = rows.into_iter().map(|(id,)| id).collect();
        kept.extend(earlier.into_iter().filter(|id| rows.contains(*id)));
        Ok(kept)
    }

    async fn apply_one(&self, tx: &mut StoreTx, decoded: &Decoded<'_>) -> Result<(), HandlerError> {
        let table = &self.messages;
        let (recorded, message_id) = (decoded.recorded, decoded.message_id);
        // Only acceptances of INBOX messages make rows; every other event touches the row of its
        // message (`apply` calls this only for messages that have one).
        use MessageEvent as E;
        let at = decoded.event.at().timestamp_millis();
        let (sql, with_at) = match decoded.event {
            E::MessageAccepted(e) => {
                if e.channel != domain::Channel::Inbox {
                    return Ok(());
                }
                let (title, body, url) = shown(&e.content);
                let kind = e.content.kind();
                let sql = format!(
                    "INSERT INTO {table} (message_id, tenant_id, receiver, template_id, kind, \
                     title, body, url, accepted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (message_id) DO NOTHING"
                );
                on_tx!(tx, |conn| sqlx::query(&sql)
                    .bind(message_id)
                    .bind(e.tenant.as_str())
                    .bind(e.receiver.value())
                    .bind(e.template_id.to_string())
                    .bind(kind)
                    .bind(title)
                    .bind(body)
                    .bind(url)
                    .bind(at)
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected()))?;
                return Ok(());
            }
            E::MessageDispatched(e) => {
                let sql = format!(
                    "UPDATE {table} SET delivered_at = $2, masked_words = $3, delivered_tx = $4, \
                     delivered_pos = $5 WHERE message_id = $1 RETURNING tenant_id, receiver"
                );
                let cursor = Cursor {
                    transaction_id: recorded.checkpoint.transaction_id,
                    global_position: recorded.checkpoint.global_position,
                };
                let row: Option<(String, String)> = on_tx!(tx, |conn| sqlx::query_as(&sql)
                    .bind(message_id)
                    .bind(at)
                    .bind(i64::from(e.masked_words))
                    .bind(cursor.transaction_id)
                    .bind(cursor.global_position)
                    .fetch_optional(conn)
                    .await)?;
                if let (Some((tenant, receiver)), Some(_)) = (row, &self.notifier) {
                    self.pending().push(Notice {
                        tenant,
                        receiver,
                        message_id: message_id.to_owned(),
                        cursor,
                    });
                }
                return Ok(());
            }
            E::MessageClicked(_) | E::MessageRead(_) => (
                format!(
                    "UPDATE {table} SET read_at = $2 WHERE message_id = $1 AND read_at IS NULL"
                ),
                true,
            ),
            E::MessageDeduplicated(_)
            | E::MessageShielded(_)
            | E::MessageDiscarded(_)
            | E::MessageFailed(_)
            | E::MessageRecalled(_) => {
                (format!("DELETE FROM {table} WHERE message_id = $1"), false)
            }
            E::MessageDeferred(_)
            | E::MessageRateLimited(_)
            | E::DispatchFailed(_)
            | E::ReceiptReceived(_)
            | E::RecallRequested(_)
            | E::RecallFailed(_) => return Ok(()),
        };
        on_tx!(tx, |conn| {
            let mut query = sqlx::query(&sql).bind(message_id);
            if with_at {
                query = query.bind(at);
            }
            query.execute(conn).await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }
}

impl store::Handler for Inbox {
    async fn handle(&self, tx: &mut StoreTx, events: &[RecordedEvent]) -> Result<(), HandlerError> {
        let decoded = crate::decode(events)?;
        self.apply(tx, &crate::views(events, &decoded)).await
    }

    async fn committed(&self) {
        let notices = std::mem::take(&mut *self.pending());
        if let Some(notifier) = &self.notifier {
            for notice in notices {
                // The receiving end stops only when the process does.
                let _ = notifier.send(notice);
            }
        }
    }
}

/// One message in a receiver's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxMessage {
    pub message_id: String,
    pub template_id: String,
    /// The content's kind (TEXT, MARKDOWN, CARD, EMAIL): how to show `body`.
    pub kind: String,
    pub title: Option<String>,
    pub body: String,
    pub url: Option<String>,
    pub masked_words: i64,
    pub accepted_at: DateTime<Utc>,
    pub delivered_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
    /// Its place in the receiver's stream.
    pub cursor: Cursor,
}

fn instant(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

const COLUMNS: &str = "message_id, template_id, kind, title, body, url, masked_words, \
     accepted_at, delivered_at, read_at, COALESCE(delivered_tx, 0), COALESCE(delivered_pos, 0)";

type Row = (
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    i64,
    i64,
    i64,
    Option<i64>,
    i64,
    i64,
);

fn message(r: Row) -> InboxMessage {
    InboxMessage {
        message_id: r.0,
        template_id: r.1,
        kind: r.2,
        title: r.3,
        body: r.4,
        url: r.5,
        masked_words: r.6,
        accepted_at: instant(r.7),
        delivered_at: instant(r.8),
        read_at: r.9.map(instant),
        cursor: Cursor {
            transaction_id: r.10,
            global_position: r.11,
        },
    }
}

const UNREAD_SQL: &str = "SELECT COUNT(*) FROM inbox_messages WHERE tenant_id = $1 \
     AND receiver = $2 AND delivered_at IS NOT NULL AND read_at IS NULL";

/// A page of `receiver`'s delivered messages in `tenant`, newest first, after the message id
/// `after`; whether more follow; and how many of all of them are unread.
pub async fn inbox(
    store: &Store,
    tenant: &str,
    receiver: &str,
    first: usize,
    after: Option<&str>,
) -> Result<(Vec<InboxMessage>, bool, i64), sqlx::Error> {
    let limit = i64::try_from(first.saturating_add(1)).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT {COLUMNS} FROM inbox_messages \
         WHERE tenant_id = $1 AND receiver = $2 AND delivered_at IS NOT NULL{} \
         ORDER BY message_id DESC LIMIT {limit}",
        if after.is_some() {
            " AND message_id < $3"
        } else {
            ""
        }
    );
    let (rows, unread): (Vec<Row>, i64) = on_read!(store, |pool| {
        let mut query = sqlx::query_as(&sql).bind(tenant).bind(receiver);
        if let Some(after) = after {
            query = query.bind(after);
        }
        let rows = query.fetch_all(pool).await?;
        let unread = sqlx::query_scalar(UNREAD_SQL)
            .bind(tenant)
            .bind(receiver)
            .fetch_one(pool)
            .await?;
        Ok::<_, sqlx::Error>((rows, unread))
    })?;
    let has_next = rows.len() > first;
    let page = rows.into_iter().take(first).map(message).collect();
    Ok((page, has_next, unread))
}

/// How many of `receiver`'s delivered messages in `tenant` are unread.
pub async fn unread(store: &Store, tenant: &str, receiver: &str) -> Result<i64, sqlx::Error> {
    on_read!(store, |pool| sqlx::query_scalar(UNREAD_SQL)
        .bind(tenant)
        .bind(receiver)
        .fetch_one(pool)
        .await)
}

/// Up to `limit` of `receiver`'s delivered messages in `tenant` after `after` (from the first
/// without it), in stream order: the order the projection delivered them.
pub async fn delivered_after(
    store: &Store,
    tenant: &str,
    receiver: &str,
    after: Option<Cursor>,
    limit: usize,
) -> Result<Vec<InboxMessage>, sqlx::Error> {
    let after = after.unwrap_or_default();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Row-value comparison is in both Postgres and SQLite (3.15 on), and walks the index.
    let sql = format!(
        "SELECT {COLUMNS} FROM inbox_messages \
         WHERE tenant_id = $1 AND receiver = $2 AND delivered_pos IS NOT NULL \
         AND (delivered_tx, delivered_pos) > ($3, $4) \
         ORDER BY delivered_tx, delivered_pos LIMIT {limit}"
    );
    let rows: Vec<Row> = on_read!(store, |pool| sqlx::query_as(&sql)
        .bind(tenant)
        .bind(receiver)
        .bind(after.transaction_id)
        .bind(after.global_position)
        .fetch_all(pool)
        .await)?;
    Ok(rows.into_iter().map(message).collect())
}
