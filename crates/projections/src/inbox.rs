//! The in-app inbox: the INBOX channel's messages per tenant and receiver (`inbox_messages`),
//! answering `inbox(receiver, first, after)` with the unread count.
//!
//! The inbox supplier delivers on send: the message is Herald's to keep, and `MessageDispatched`
//! is its delivery. The content comes from `MessageAccepted`, which carries it rendered, with its
//! tracked links already rewritten; a row is kept from acceptance (hidden) and shown from the
//! dispatch on. A message that dispatch gives up (deduplicated, shielded, discarded, failed) or
//! that is recalled leaves the table. A message is read once its receiver follows one of its
//! links (`MessageClicked`), as in the domain.
//!
//! Sensitive words masked at dispatch are not in the log (`MessageDispatched` records only how
//! many), so the inbox shows the text as accepted, and `masked_words` says how many were masked.

use chrono::{DateTime, Utc};
use domain::{MessageEvent, TemplateContent};
use store::{HandlerError, LogFilter, RecordedEvent, Store, StoreTx, on_read, on_tx};

use crate::Target;

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

/// The projection's handler, writing to the live table or to its shadow copy.
#[derive(Debug, Clone)]
pub struct Inbox {
    messages: String,
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
        }
    }

    async fn apply(&self, tx: &mut StoreTx, recorded: &RecordedEvent) -> Result<(), HandlerError> {
        let table = &self.messages;
        let Some(message_id) = recorded.stream_id.strip_prefix("message-") else {
            return Ok(());
        };
        // Only acceptances of INBOX messages make rows; every other event touches the row of its
        // message, if there is one, so the rest of the log costs one indexed statement or none.
        let data = recorded.data_json()?;
        let event = MessageEvent::decode(&recorded.event_type, recorded.schema_version, &data)?;
        use MessageEvent as E;
        let at = event.at().timestamp_millis();
        let (sql, with_at) = match &event {
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
                    "UPDATE {table} SET delivered_at = $2, masked_words = $3 WHERE message_id = $1"
                );
                on_tx!(tx, |conn| sqlx::query(&sql)
                    .bind(message_id)
                    .bind(at)
                    .bind(i64::from(e.masked_words))
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected()))?;
                return Ok(());
            }
            E::MessageClicked(_) => (
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
        for recorded in events {
            self.apply(tx, recorded).await?;
        }
        Ok(())
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
}

fn instant(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

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
        "SELECT message_id, template_id, kind, title, body, url, masked_words, accepted_at, \
         delivered_at, read_at FROM inbox_messages \
         WHERE tenant_id = $1 AND receiver = $2 AND delivered_at IS NOT NULL{} \
         ORDER BY message_id DESC LIMIT {limit}",
        if after.is_some() {
            " AND message_id < $3"
        } else {
            ""
        }
    );
    let unread_sql = "SELECT COUNT(*) FROM inbox_messages WHERE tenant_id = $1 AND receiver = $2 \
         AND delivered_at IS NOT NULL AND read_at IS NULL";
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
    );
    let (rows, unread): (Vec<Row>, i64) = on_read!(store, |pool| {
        let mut query = sqlx::query_as(&sql).bind(tenant).bind(receiver);
        if let Some(after) = after {
            query = query.bind(after);
        }
        let rows = query.fetch_all(pool).await?;
        let unread = sqlx::query_scalar(unread_sql)
            .bind(tenant)
            .bind(receiver)
            .fetch_one(pool)
            .await?;
        Ok::<_, sqlx::Error>((rows, unread))
    })?;
    let has_next = rows.len() > first;
    let page = rows
        .into_iter()
        .take(first)
        .map(|r| InboxMessage {
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
        })
        .collect();
    Ok((page, has_next, unread))
}
