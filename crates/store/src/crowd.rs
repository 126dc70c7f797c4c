//! Uploaded files, kept in chunks so they are written and read a piece at a time, and the crowd
//! schedule: which crowd sends are due, claimed for a lease by one runner at a time.

use chrono::{DateTime, Utc};

use crate::{EventStore, Store, StoreTx, on_read, on_tx};

/// A finished upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    pub tenant_id: String,
    pub filename: String,
    pub bytes: u64,
    pub lines: u64,
}

/// Stores one chunk of an upload in progress.
pub async fn put_chunk(
    store: &Store,
    upload_id: &str,
    seq: u32,
    start: u64,
    data: &[u8],
) -> crate::Result<()> {
    let sql = "INSERT INTO upload_chunks (upload_id, seq, start, data) VALUES ($1, $2, $3, $4)";
    let mut tx = store.begin().await?;
    on_tx!(tx, |conn| {
        sqlx::query(sql)
            .bind(upload_id)
            .bind(i64::from(seq))
            .bind(start as i64)
            .bind(data)
            .execute(conn)
            .await
            .map(|r| r.rows_affected())
    })?;
    tx.commit().await?;
    Ok(())
}

/// Marks an upload whole: from now on it can be named by a crowd send.
pub async fn finish_upload(store: &Store, upload: &Upload) -> crate::Result<()> {
    let mut tx = store.begin().await?;
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO uploads (id, tenant_id, filename, bytes, lines) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&upload.id)
        .bind(&upload.tenant_id)
        .bind(&upload.filename)
        .bind(upload.bytes as i64)
        .bind(upload.lines as i64)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
    })?;
    tx.commit().await?;
    Ok(())
}

/// Drops the chunks of an upload that did not finish.
pub async fn discard_upload(store: &Store, upload_id: &str) -> crate::Result<()> {
    let mut tx = store.begin().await?;
    on_tx!(tx, |conn| {
        sqlx::query("DELETE FROM upload_chunks WHERE upload_id = $1")
            .bind(upload_id)
            .execute(conn)
            .await
            .map(|r| r.rows_affected())
    })?;
    tx.commit().await?;
    Ok(())
}

/// A finished upload, by id.
pub async fn upload(store: &Store, id: &str) -> crate::Result<Option<Upload>> {
    let row: Option<(String, String, String, i64, i64)> = on_read!(store, |pool| {
        sqlx::query_as("SELECT id, tenant_id, filename, bytes, lines FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await
    })?;
    Ok(row.map(|(id, tenant_id, filename, bytes, lines)| Upload {
        id,
        tenant_id,
        filename,
        bytes: bytes as u64,
        lines: lines as u64,
    }))
}

/// The chunk that holds byte `offset` of an upload: its first byte's offset and its bytes.
pub async fn chunk_at(
    store: &Store,
    upload_id: &str,
    offset: u64,
) -> crate::Result<Option<(u64, Vec<u8>)>> {
    let row: Option<(i64, Vec<u8>)> = on_read!(store, |pool| {
        sqlx::query_as(
            "SELECT start, data FROM upload_chunks WHERE upload_id = $1 AND start <= $2 \
             ORDER BY start DESC LIMIT 1",
        )
        .bind(upload_id)
        .bind(offset as i64)
        .fetch_optional(pool)
        .await
    })?;
    Ok(row
        .map(|(start, data)| (start as u64, data))
        .filter(|(start, data)| offset < start + data.len() as u64))
}

/// Puts a crowd send on the schedule (or moves it), released from any claim.
pub async fn schedule(
    tx: &mut StoreTx,
    crowd_id: &str,
    tenant_id: &str,
    due_at: DateTime<Utc>,
) -> crate::Result<()> {
    on_tx!(tx, |conn| {
        sqlx::query(
            "INSERT INTO crowd_schedule (crowd_id, tenant_id, due_at) VALUES ($1, $2, $3) \
             ON CONFLICT (crowd_id) DO UPDATE SET due_at = excluded.due_at, \
             claimed_by = NULL, claimed_until = NULL",
        )
        .bind(crowd_id)
        .bind(tenant_id)
        .bind(due_at.timestamp_millis())
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Takes a crowd send off the schedule: it finished, or was cancelled.
pub async fn unschedule(tx: &mut StoreTx, crowd_id: &str) -> crate::Result<()> {
    on_tx!(tx, |conn| {
        sqlx::query("DELETE FROM crowd_schedule WHERE crowd_id = $1")
            .bind(crowd_id)
            .execute(conn)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// When the next crowd send can be claimed: the earliest due time, or the end of a claim that
/// holds one past its due time. `None` when the schedule is empty.
pub async fn next_due(store: &Store) -> crate::Result<Option<DateTime<Utc>>> {
    let row: Option<(Option<i64>,)> = on_read!(store, |pool| {
        sqlx::query_as(
            "SELECT MIN(CASE WHEN claimed_until IS NOT NULL AND claimed_until >= due_at \
             THEN claimed_until + 1 ELSE due_at END) FROM crowd_schedule",
        )
        .fetch_optional(pool)
        .await
    })?;
    Ok(row
        .and_then(|(ms,)| ms)
        .and_then(DateTime::<Utc>::from_timestamp_millis))
}

/// A claimed crowd send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedCrowd {
    pub crowd_id: String,
    pub tenant_id: String,
    pub due_at: i64,
}

/// Claims one due crowd send for `lease_ms`, the one due longest.
pub async fn claim(
    store: &Store,
    worker: &str,
    now: DateTime<Utc>,
    lease_ms: i64,
) -> crate::Result<Option<ClaimedCrowd>> {
    let now_ms = now.timestamp_millis();
    let row: Option<(String, String, i64)> = match store {
        Store::Postgres(s) => {
            sqlx::query_as(
                "UPDATE crowd_schedule c SET claimed_by = $1, claimed_until = $3 \
                 FROM (SELECT crowd_id FROM crowd_schedule \
                       WHERE due_at <= $2 AND (claimed_until IS NULL OR claimed_until < $2) \
                       ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED) due \
                 WHERE c.crowd_id = due.crowd_id RETURNING c.crowd_id, c.tenant_id, c.due_at",
            )
            .bind(worker)
            .bind(now_ms)
            .bind(now_ms + lease_ms)
            .fetch_optional(s.pool())
            .await?
        }
        Store::Sqlite(s) => {
            sqlx::query_as(
                "UPDATE crowd_schedule SET claimed_by = $1, claimed_until = $3 \
                 WHERE crowd_id IN (SELECT crowd_id FROM crowd_schedule \
                       WHERE due_at <= $2 AND (claimed_until IS NULL OR claimed_until < $2) \
                       ORDER BY due_at LIMIT 1) \
                 RETURNING crowd_id, tenant_id, due_at",
            )
            .bind(worker)
            .bind(now_ms)
            .bind(now_ms + lease_ms)
            .fetch_optional(s.writer())
            .await?
        }
    };
    Ok(row.map(|(crowd_id, tenant_id, due_at)| ClaimedCrowd {
        crowd_id,
        tenant_id,
        due_at,
    }))
}

/// Extends `worker`'s claim on a crowd send to `until`; false when the claim was lost (it
/// expired and another runner took it, or the send left the schedule).
pub async fn extend(
    store: &Store,
    crowd_id: &str,
    worker: &str,
    until: DateTime<Utc>,
) -> crate::Result<bool> {
    let sql =
        "UPDATE crowd_schedule SET claimed_until = $3 WHERE crowd_id = $1 AND claimed_by = $2";
    let rows = match store {
        Store::Postgres(s) => sqlx::query(sql)
            .bind(crowd_id)
            .bind(worker)
            .bind(until.timestamp_millis())
            .execute(s.pool())
            .await?
            .rows_affected(),
        Store::Sqlite(s) => sqlx::query(sql)
            .bind(crowd_id)
            .bind(worker)
            .bind(until.timestamp_millis())
            .execute(s.writer())
            .await?
            .rows_affected(),
    };
    Ok(rows == 1)
}
