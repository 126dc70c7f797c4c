//! The dispatch queue: one row per message waiting to go out, in lanes of channel and message
//! type. The `dispatch-queue` subscription enqueues accepted messages and removes recalled ones,
//! in the transaction that moves its checkpoint, so each is enqueued exactly once. Workers claim
//! due rows of their lane for a lease (`FOR UPDATE SKIP LOCKED` on Postgres, so concurrent
//! workers never take the same row); a claim whose worker died expires and is taken again.

use chrono::{DateTime, Utc};
use domain::{Channel, MessageEvent, MessageType};
use store::{HandlerError, LogFilter, RecordedEvent, Store, StoreTx, on_tx};

/// The subscription that feeds the queue.
pub const SUBSCRIPTION: &str = "dispatch-queue";

/// A lane: the messages of one channel and message type, dispatched apart from every other lane.
pub fn lane(channel: Channel, msg_type: MessageType) -> String {
    format!("{}.{}", channel.as_str(), msg_type.as_str())
}

/// What the subscription reads: message streams, and only the events that change the queue.
pub fn filter() -> LogFilter {
    LogFilter {
        categories: vec!["message".to_owned()],
        event_types: vec!["MessageAccepted".to_owned(), "MessageRecalled".to_owned()],
        partition: None,
    }
}

/// A claimed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub message_id: String,
    pub tenant_id: String,
    pub due_at: i64,
}

/// Feeds the queue from the log; a transactional handler, so exactly once.
pub struct Enqueuer;

impl store::Handler for Enqueuer {
    async fn handle(&self, tx: &mut StoreTx, events: &[RecordedEvent]) -> Result<(), HandlerError> {
        // Rows go in by the hundred: one enqueuer serves every lane, and a flood accepted in
        // one lane must not hold back the next message of another for long.
        let mut rows: Vec<(String, String, String, i64)> = Vec::new();
        for recorded in events {
            let data: serde_json::Value = serde_json::from_str(&recorded.data)?;
            match MessageEvent::decode(&recorded.event_type, recorded.schema_version, &data)? {
                MessageEvent::MessageAccepted(accepted) => {
                    // A scheduled send waits in the queue until its time.
                    let due = accepted
                        .send_at
                        .map_or(accepted.at, |send_at| send_at.max(accepted.at));
                    rows.push((
                        accepted.message_id.to_string(),
                        accepted.tenant.to_string(),
                        lane(accepted.channel, accepted.msg_type),
                        due.timestamp_millis(),
                    ));
                }
                MessageEvent::MessageRecalled(_) => {
                    // Its row may be among those not yet inserted: insert first, then remove.
                    insert(tx, &rows).await?;
                    rows.clear();
                    let id = recorded
                        .stream_id
                        .strip_prefix("message-")
                        .unwrap_or(&recorded.stream_id);
                    remove(tx, id).await?;
                }
                _ => {}
            }
        }
        insert(tx, &rows).await?;
        Ok(())
    }
}

/// Inserts queue rows, many per statement.
async fn insert(
    tx: &mut StoreTx,
    rows: &[(String, String, String, i64)],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(200) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                format!(
                    "(${}, ${}, ${}, ${})",
                    i * 4 + 1,
                    i * 4 + 2,
                    i * 4 + 3,
                    i * 4 + 4
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO dispatch_queue (message_id, tenant_id, lane, due_at) VALUES {} \
             ON CONFLICT (message_id) DO NOTHING",
            values.join(", ")
        );
        on_tx!(tx, |conn| {
            let mut query = sqlx::query(&sql);
            for (id, tenant, lane, due) in chunk {
                query = query.bind(id).bind(tenant).bind(lane).bind(due);
            }
            query.execute(conn).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

/// Claims up to `limit` due messages of `lane` for `lease_ms`.
pub async fn claim(
    store: &Store,
    lane: &str,
    worker: &str,
    now: DateTime<Utc>,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let now_ms = now.timestamp_millis();
    let rows: Vec<(String, String, i64)> = match store {
        Store::Postgres(s) => {
            sqlx::query_as(
                "UPDATE dispatch_queue q SET claimed_by = $2, claimed_until = $4 \
                 FROM (SELECT message_id FROM dispatch_queue \
                       WHERE lane = $1 AND due_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3) \
                       ORDER BY due_at LIMIT $5 FOR UPDATE SKIP LOCKED) due \
                 WHERE q.message_id = due.message_id \
                 RETURNING q.message_id, q.tenant_id, q.due_at",
            )
            .bind(lane)
            .bind(worker)
            .bind(now_ms)
            .bind(now_ms + lease_ms)
            .bind(limit as i64)
            .fetch_all(s.pool())
            .await?
        }
        // One writer at a time: the update is the claim, no row lock needed.
        Store::Sqlite(s) => {
            sqlx::query_as(
                "UPDATE dispatch_queue SET claimed_by = $2, claimed_until = $4 \
                 WHERE message_id IN (SELECT message_id FROM dispatch_queue \
                       WHERE lane = $1 AND due_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3) \
                       ORDER BY due_at LIMIT $5) \
                 RETURNING message_id, tenant_id, due_at",
            )
            .bind(lane)
            .bind(worker)
            .bind(now_ms)
            .bind(now_ms + lease_ms)
            .bind(limit as i64)
            .fetch_all(s.writer())
            .await?
        }
    };
    let mut claimed: Vec<Claimed> = rows
        .into_iter()
        .map(|(message_id, tenant_id, due_at)| Claimed {
            message_id,
            tenant_id,
            due_at,
        })
        .collect();
    claimed.sort_by_key(|c| c.due_at);
    Ok(claimed)
}

/// Takes a message off the queue, in the transaction that appends its outcome.
pub async fn remove(tx: &mut StoreTx, message_id: &str) -> Result<(), sqlx::Error> {
    on_tx!(tx, |conn| sqlx::query(
        "DELETE FROM dispatch_queue WHERE message_id = $1"
    )
    .bind(message_id)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Puts a message back for later (a retry, a night deferral), released from its claim, in the
/// transaction that appends the reason.
pub async fn reschedule(
    tx: &mut StoreTx,
    message_id: &str,
    due_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    on_tx!(tx, |conn| {
        sqlx::query(
        "UPDATE dispatch_queue SET due_at = $2, claimed_by = NULL, claimed_until = NULL WHERE message_id = $1"
    )
    .bind(message_id)
    .bind(due_at.timestamp_millis())
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
    })?;
    Ok(())
}
