//! Moving a log from one store to another (`herald export` and `herald import`): events written
//! as they were recorded elsewhere, with their ids, stream positions and times, and the lookups
//! an export needs to resume.
//!
//! [`insert_recorded`] is not an append: it checks no expectation and keeps the event ids and
//! times it is given. It is meant for an empty store that nothing else writes to; the log order
//! of the inserted events is the order they are given in, batch after batch.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::append;
use crate::error::{Result, StoreError};
use crate::event_store::{StoreTx, TxInner};
use crate::types::{Checkpoint, RecordedEvent, category_of, partition_key_of};
use crate::{Store, on_read};

/// Whether the store holds any event.
pub async fn holds_events(store: &Store) -> Result<bool> {
    // count(*) is BIGINT on both backends; the LIMIT keeps it to one index probe.
    let found: i64 = on_read!(store, |pool| {
        sqlx::query_scalar("SELECT count(*) FROM (SELECT 1 FROM events LIMIT 1) e")
            .fetch_one(pool)
            .await
    })?;
    Ok(found > 0)
}

/// How many events the store holds.
pub async fn count_events(store: &Store) -> Result<u64> {
    let count: i64 = on_read!(store, |pool| {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(pool)
            .await
    })?;
    Ok(count.max(0) as u64)
}

/// The event with this id, with its place in the log (`checkpoint`), if stored.
/// An export resumes after the last event it wrote by finding it here.
pub async fn find_event(store: &Store, event_id: Uuid) -> Result<Option<RecordedEvent>> {
    match store {
        Store::Postgres(s) => s.event_by_id(event_id).await,
        Store::Sqlite(s) => s.event_by_id(event_id).await,
    }
}

/// The checkpoint just before `event` in log order: a reader resuming from it reads `event`
/// first. Both backends order the log by `(transaction_id, global_position)`.
pub fn just_before(event: &RecordedEvent) -> Checkpoint {
    Checkpoint {
        transaction_id: event.checkpoint.transaction_id,
        global_position: event.checkpoint.global_position - 1,
    }
}

/// A stream whose positions are not exactly 1 to its number of events (a gap left by a damaged
/// import), with its event count and last position; `None` when every stream is whole.
pub async fn first_gap(store: &Store) -> Result<Option<(String, i64, i64)>> {
    let sql = "SELECT stream_id, count(*), max(stream_position) FROM events \
               GROUP BY stream_id HAVING count(*) <> max(stream_position) \
               ORDER BY stream_id LIMIT 1";
    let found: Option<(String, i64, i64)> =
        on_read!(store, |pool| sqlx::query_as(sql).fetch_optional(pool).await)?;
    Ok(found)
}

/// Inserts events recorded elsewhere, keeping their stream positions, event ids, types, schema
/// versions, data, metadata and times, in the given order, inside `tx`. Their `checkpoint` is
/// ignored: the store gives each its place at the end of its own log.
///
/// A stream position or an event id already stored fails the whole batch with
/// [`StoreError::ImportClash`]; malformed JSON fails it too, as on append.
pub async fn insert_recorded(tx: &mut StoreTx, events: &[RecordedEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    for event in events {
        append::check_stream_id(&event.stream_id)?;
        if event.stream_position == 0 || event.stream_position > i64::MAX as u64 {
            return Err(StoreError::InvalidAppend(format!(
                "event {} has stream position {}; positions start at 1",
                event.event_id, event.stream_position
            )));
        }
    }
    let result = match &mut tx.inner {
        TxInner::Postgres(conn) => insert_postgres(conn, events).await,
        TxInner::Sqlite(conn) => insert_sqlite(conn, events).await,
    };
    result.map_err(|error| clash(error, events))?;
    tx.appended = true;
    Ok(())
}

async fn insert_postgres(
    conn: &mut sqlx::PgConnection,
    events: &[RecordedEvent],
) -> std::result::Result<(), sqlx::Error> {
    let n = events.len();
    let mut stream_ids = Vec::with_capacity(n);
    let mut positions = Vec::with_capacity(n);
    let mut categories = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut event_ids = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut schema_versions = Vec::with_capacity(n);
    let mut data = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    let mut recorded_at: Vec<DateTime<Utc>> = Vec::with_capacity(n);
    for event in events {
        stream_ids.push(event.stream_id.as_str());
        positions.push(event.stream_position as i64);
        categories.push(category_of(&event.stream_id));
        keys.push(partition_key_of(&event.stream_id) as i16);
        event_ids.push(event.event_id);
        types.push(event.event_type.as_str());
        schema_versions.push(event.schema_version as i16);
        data.push(event.data.as_str());
        metadata.push(event.metadata.as_str());
        recorded_at.push(event.recorded_at);
    }
    // WITH ORDINALITY and ORDER BY: the identity column numbers the rows in the order given,
    // which is the log order of the batch.
    sqlx::query(
        "INSERT INTO events (stream_id, stream_position, category, partition_key, event_id, \
                             event_type, schema_version, data, metadata, recorded_at) \
         SELECT s, p, c, k, e, t, v, d::json, m::json, r \
         FROM unnest($1::text[], $2::int8[], $3::text[], $4::int2[], $5::uuid[], $6::text[], \
                     $7::int2[], $8::text[], $9::text[], $10::timestamptz[]) \
              WITH ORDINALITY AS x(s, p, c, k, e, t, v, d, m, r, o) \
         ORDER BY o",
    )
    .bind(&stream_ids)
    .bind(&positions)
    .bind(&categories)
    .bind(&keys)
    .bind(&event_ids)
    .bind(&types)
    .bind(&schema_versions)
    .bind(&data)
    .bind(&metadata)
    .bind(&recorded_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rows per statement on SQLite: ten parameters each, well below its limit of 32,766.
const SQLITE_ROWS: usize = 500;

async fn insert_sqlite(
    conn: &mut sqlx::SqliteConnection,
    events: &[RecordedEvent],
) -> std::result::Result<(), sqlx::Error> {
    for chunk in events.chunks(SQLITE_ROWS) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = i * 10;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, json(${}), json(${}), ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8,
                    p + 9,
                    p + 10
                )
            })
            .collect();
        // Rows of one statement get rowids in the order of VALUES: the log order.
        let sql = format!(
            "INSERT INTO events (stream_id, stream_position, category, partition_key, event_id, \
                                 event_type, schema_version, data, metadata, recorded_at) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for event in chunk {
            query = query
                .bind(&event.stream_id)
                .bind(event.stream_position as i64)
                .bind(category_of(&event.stream_id))
                .bind(i64::from(partition_key_of(&event.stream_id)))
                .bind(event.event_id)
                .bind(&event.event_type)
                .bind(i64::from(event.schema_version))
                .bind(&event.data)
                .bind(&event.metadata)
                .bind(event.recorded_at.timestamp_micros());
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A unique-key violation named for what it means; anything else as the database said it.
fn clash(error: sqlx::Error, events: &[RecordedEvent]) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        let what = match (db.constraint(), db.message()) {
            (Some("events_pkey"), _) => Some("a stream position"),
            (Some("events_event_id_key"), _) => Some("an event id"),
            (_, m) if m.contains("events.stream_id") => Some("a stream position"),
            (_, m) if m.contains("events.event_id") => Some("an event id"),
            _ => None,
        };
        if let Some(what) = what {
            let first = events.first().map_or_else(String::new, |e| {
                format!(
                    " (batch starting at {} #{})",
                    e.stream_id, e.stream_position
                )
            });
            return StoreError::ImportClash(format!("{what} is already stored{first}"));
        }
    }
    StoreError::Database(error)
}
