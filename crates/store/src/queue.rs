//! A work queue in lanes: one row per item waiting, due at a time. Dispatch keeps its messages
//! here, one lane per channel and message type, so a flood in one lane never queues ahead of
//! another. Rows are written in the transaction that accepts a message (so no shared feed stands
//! before the lanes), claimed for a lease (`FOR UPDATE SKIP LOCKED` on Postgres, so concurrent
//! workers never take the same row; a claim whose worker died expires and is taken again), and
//! removed or rescheduled in the transaction that records the outcome.

use chrono::{DateTime, Utc};
use tracing::Instrument as _;

use crate::{EventStore, ExpectedVersion, Store, StoreError, StoreTx, StreamAppend, on_tx};

/// An item to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRow {
    pub message_id: String,
    pub tenant_id: String,
    pub lane: String,
    pub due_at: DateTime<Utc>,
}

/// A claimed item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub message_id: String,
    pub tenant_id: String,
    pub due_at: i64,
}

/// Enqueues rows inside a write transaction, many per statement; a row already there is kept.
pub async fn enqueue(tx: &mut StoreTx, rows: &[QueueRow]) -> Result<(), sqlx::Error> {
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
            for row in chunk {
                query = query
                    .bind(&row.message_id)
                    .bind(&row.tenant_id)
                    .bind(&row.lane)
                    .bind(row.due_at.timestamp_millis());
            }
            query.execute(conn).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

/// A stream a write depends on: the write is made only while the stream is at `version`.
#[derive(Debug, Clone, Copy)]
pub struct Unchanged<'a> {
    pub stream_id: &'a str,
    pub version: u64,
}

/// Creates the streams of `appends` (each expecting no stream) and enqueues `rows`, in one
/// commit, if `unchanged` holds; `Ok(false)` when it does not, and nothing is written. A stream
/// that exists fails it as [`EventStore::append_in`] does. On Postgres it is one statement: one
/// round trip where begin, append, enqueue and commit took four, which a send pays each time.
pub async fn create_and_enqueue(
    store: &Store,
    appends: &[StreamAppend],
    rows: &[QueueRow],
    unchanged: Option<Unchanged<'_>>,
) -> crate::Result<bool> {
    crate::append::validate(appends)?;
    if appends
        .iter()
        .any(|a| a.expected != ExpectedVersion::NoStream)
    {
        return Err(StoreError::InvalidAppend(
            "create_and_enqueue only creates streams".into(),
        ));
    }
    let write = async {
        match store {
            Store::Postgres(s) => s.create_and_enqueue(appends, rows, unchanged).await,
            Store::Sqlite(_) => sqlite_create_and_enqueue(store, appends, rows, unchanged).await,
        }
    };
    write.instrument(crate::any::append_span(appends)).await
}

/// [`create_and_enqueue`] on SQLite: a transaction, which costs no round trips in-process.
async fn sqlite_create_and_enqueue(
    store: &Store,
    appends: &[StreamAppend],
    rows: &[QueueRow],
    unchanged: Option<Unchanged<'_>>,
) -> crate::Result<bool> {
    let mut tx = store.begin().await?;
    store.append_in(&mut tx, appends).await?;
    if let Some(unchanged) = unchanged {
        let version: Option<i64> = on_tx!(tx, |conn| {
            sqlx::query_scalar("SELECT max(stream_position) FROM events WHERE stream_id = $1")
                .bind(unchanged.stream_id)
                .fetch_one(conn)
                .await
        })?;
        if version.unwrap_or(0) != i64::try_from(unchanged.version).unwrap_or(i64::MAX) {
            tx.rollback().await?;
            return Ok(false);
        }
    }
    enqueue(&mut tx, rows).await?;
    tx.commit().await?;
    Ok(true)
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

/// Moves a message to another lane, due at `due_at` and released from its claim, in the
/// transaction that appends why (a sent message waiting for its receipt).
pub async fn move_to(
    tx: &mut StoreTx,
    message_id: &str,
    lane: &str,
    due_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    on_tx!(tx, |conn| {
        sqlx::query(
        "UPDATE dispatch_queue SET lane = $2, due_at = $3, claimed_by = NULL, claimed_until = NULL WHERE message_id = $1"
    )
    .bind(message_id)
    .bind(lane)
    .bind(due_at.timestamp_millis())
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
    })?;
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

/// What becomes of a claimed row with its message's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// Off the queue.
    Remove,
    /// Due again at the time, released from its claim.
    Reschedule(DateTime<Utc>),
    /// Into another lane, due at the time, released from its claim.
    MoveTo(String, DateTime<Utc>),
}

/// Moves many rows at once, in the transaction that appends their outcomes: on Postgres one
/// statement for the removals and one for the rest, whatever the number of rows.
pub async fn move_all(tx: &mut StoreTx, moves: &[(String, Move)]) -> Result<(), sqlx::Error> {
    match tx.conn() {
        crate::TxConn::Postgres(conn) => {
            let removed: Vec<&str> = moves
                .iter()
                .filter(|(_, m)| *m == Move::Remove)
                .map(|(id, _)| id.as_str())
                .collect();
            if !removed.is_empty() {
                sqlx::query("DELETE FROM dispatch_queue WHERE message_id = ANY($1::text[])")
                    .bind(&removed)
                    .execute(&mut *conn)
                    .await?;
            }
            let mut ids = Vec::new();
            let mut lanes: Vec<Option<&str>> = Vec::new();
            let mut due = Vec::new();
            for (id, m) in moves {
                let (lane, at) = match m {
                    Move::Remove => continue,
                    Move::Reschedule(at) => (None, at),
                    Move::MoveTo(lane, at) => (Some(lane.as_str()), at),
                };
                ids.push(id.as_str());
                lanes.push(lane);
                due.push(at.timestamp_millis());
            }
            if !ids.is_empty() {
                sqlx::query(
                    "UPDATE dispatch_queue q SET lane = coalesce(u.lane, q.lane), due_at = u.due, \
                            claimed_by = NULL, claimed_until = NULL \
                     FROM unnest($1::text[], $2::text[], $3::int8[]) AS u(id, lane, due) \
                     WHERE q.message_id = u.id",
                )
                .bind(&ids)
                .bind(&lanes)
                .bind(&due)
                .execute(&mut *conn)
                .await?;
            }
        }
        // One writer, no round trips: row by row.
        crate::TxConn::Sqlite(_) => {
            for (id, m) in moves {
                match m {
                    Move::Remove => remove(tx, id).await?,
                    Move::Reschedule(at) => reschedule(tx, id, *at).await?,
                    Move::MoveTo(lane, at) => move_to(tx, id, lane, *at).await?,
                }
            }
        }
    }
    Ok(())
}

/// Every lane's queue: (lane, messages waiting, of which due by `now_ms`).
pub async fn depths(store: &Store, now_ms: i64) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    crate::on_read!(store, |pool| {
        sqlx::query_as(
            "SELECT lane, count(*), COALESCE(SUM(CASE WHEN due_at <= $1 THEN 1 ELSE 0 END), 0) \
             FROM dispatch_queue GROUP BY lane ORDER BY lane",
        )
        .bind(now_ms)
        .fetch_all(pool)
        .await
    })
}

/// How many messages wait in `lane`, claimed or not.
pub async fn depth(store: &Store, lane: &str) -> Result<u64, sqlx::Error> {
    let n: i64 = crate::on_read!(store, |pool| {
        sqlx::query_scalar("SELECT count(*) FROM dispatch_queue WHERE lane = $1")
            .bind(lane)
            .fetch_one(pool)
            .await
    })?;
    Ok(n.max(0) as u64)
}
