//! The embedded default on a SQLite file. One writer connection serialises every write, so rowid
//! order is commit order and a reader that resumes after the last rowid it saw skips nothing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection, SqlitePool};
use uuid::Uuid;

use crate::append::{self, Versions};
use crate::doorbell::Doorbell;
use crate::error::{Result, StoreError};
use crate::event_store::{EventStore, Heartbeat, StoreTx, TxInner};
use crate::types::{
    Checkpoint, CheckpointKey, LogBatch, LogFilter, RecordedEvent, StreamAppend, category_of,
    partition_key_of,
};

/// The SQLite event store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    // One connection: writers queue here in process instead of fighting over the file lock.
    writer: SqlitePool,
    readers: SqlitePool,
    doorbell: Doorbell,
}

/// Every write transaction takes the write lock when it begins. A deferred transaction that read
/// first would fail at once with `SQLITE_BUSY_SNAPSHOT` (busy timeouts do not apply) when
/// another process wrote meanwhile, as `herald replay` does next to a running server; an
/// immediate one waits for the lock instead.
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

const EVENT_COLUMNS: &str = "global_position, stream_id, stream_position, event_id, event_type, \
     schema_version, data, metadata, recorded_at";

impl SqliteStore {
    /// Opens (or creates) the database file.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit survives power loss, not only a crash of Herald. An accepted
            // message is a promise.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        Self::with_options(options).await
    }

    /// Opens a `sqlite://…` URL.
    pub async fn connect(url: &str) -> Result<Self> {
        use std::str::FromStr;
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        Self::with_options(options).await
    }

    async fn with_options(options: SqliteConnectOptions) -> Result<Self> {
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            // A file's connection cannot be dropped on the way: the pool's ping before each
            // use would be a trip to the connection's thread and back for nothing.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer,
                readers,
                doorbell: Doorbell::default(),
            }),
        })
    }

    pub async fn migrate(&self) -> Result<()> {
        crate::migrate::sqlite().run(&self.inner.writer).await?;
        Ok(())
    }

    /// Closes both pools; the file can then be reopened.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.readers.close().await;
    }

    pub fn writer(&self) -> &SqlitePool {
        &self.inner.writer
    }

    pub fn readers(&self) -> &SqlitePool {
        &self.inner.readers
    }

    /// The event with this id, with its checkpoint.
    pub(crate) async fn event_by_id(&self, event_id: Uuid) -> Result<Option<RecordedEvent>> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1");
        let row = sqlx::query(&sql)
            .bind(event_id)
            .fetch_optional(&self.inner.readers)
            .await?;
        row.as_ref().map(recorded).transpose()
    }

    async fn already_appended(&self, appends: &[StreamAppend]) -> Result<Option<Vec<u64>>> {
        let mut found = HashMap::new();
        for event in appends.iter().flat_map(|a| &a.events) {
            let row: Option<(String, i64)> =
                sqlx::query_as("SELECT stream_id, stream_position FROM events WHERE event_id = $1")
                    .bind(event.event_id)
                    .fetch_optional(&self.inner.readers)
                    .await?;
            if let Some(place) = row {
                found.insert(event.event_id, place);
            }
        }
        append::match_retry(appends, &found)
    }
}

impl EventStore for SqliteStore {
    async fn append(&self, appends: &[StreamAppend]) -> Result<Vec<u64>> {
        append::validate(appends)?;
        let mut tx = self.inner.writer.begin_with(BEGIN_WRITE).await?;
        match append_on(&mut tx, appends).await {
            Ok(versions) => {
                tx.commit().await?;
                self.inner.doorbell.ring();
                Ok(versions)
            }
            Err(error) => {
                tx.rollback().await?;
                match error {
                    StoreError::WrongExpectedVersion { .. }
                    | StoreError::DuplicateEventId { .. }
                    | StoreError::ConcurrentAppend => match self.already_appended(appends).await? {
                        Some(versions) => Ok(versions),
                        None => Err(error),
                    },
                    other => Err(other),
                }
            }
        }
    }

    async fn begin(&self) -> Result<StoreTx> {
        Ok(StoreTx {
            inner: TxInner::Sqlite(self.inner.writer.begin_with(BEGIN_WRITE).await?),
            doorbell: self.inner.doorbell.clone(),
            appended: false,
        })
    }

    async fn append_in(&self, tx: &mut StoreTx, appends: &[StreamAppend]) -> Result<Vec<u64>> {
        append::validate(appends)?;
        let TxInner::Sqlite(conn) = &mut tx.inner else {
            return Err(StoreError::InvalidAppend(
                "a Postgres transaction given to SQLite".into(),
            ));
        };
        let versions = append_on(conn, appends).await?;
        tx.appended = true;
        Ok(versions)
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        from_position: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND stream_position >= $2 \
             ORDER BY stream_position LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(stream_id)
            .bind(to_i64(from_position))
            .bind(to_i64(limit as u64))
            .fetch_all(&self.inner.readers)
            .await?;
        rows.iter().map(recorded).collect()
    }

    async fn stream_version(&self, stream_id: &str) -> Result<Option<u64>> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT max(stream_position) FROM events WHERE stream_id = $1")
                .bind(stream_id)
                .fetch_one(&self.inner.readers)
                .await?;
        Ok(version.map(|v| v as u64))
    }

    async fn read_log(
        &self,
        after: Checkpoint,
        filter: &LogFilter,
        limit: usize,
    ) -> Result<LogBatch> {
        // The horizon is read first: every rowid up to it is committed, and the event query
        // (a later snapshot) sees at least those, so resuming after it skips nothing.
        let horizon: i64 =
            sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
                .fetch_one(&self.inner.readers)
                .await?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE global_position > $1 \
               AND ($2 = '[]' OR category IN (SELECT value FROM json_each($2))) \
               AND ($3 = '[]' OR event_type IN (SELECT value FROM json_each($3))) \
               AND ($4 = 0 OR partition_key % $4 = $5) \
             ORDER BY global_position LIMIT $6"
        );
        let (count, index) = filter
            .partition
            .map_or((0, 0), |p| (i64::from(p.count), i64::from(p.index)));
        let rows = sqlx::query(&sql)
            .bind(after.global_position)
            .bind(serde_json::to_string(&filter.categories).unwrap_or_else(|_| "[]".into()))
            .bind(serde_json::to_string(&filter.event_types).unwrap_or_else(|_| "[]".into()))
            .bind(count)
            .bind(index)
            .bind(to_i64(limit as u64))
            .fetch_all(&self.inner.readers)
            .await?;
        let events = rows.iter().map(recorded).collect::<Result<Vec<_>>>()?;
        let scanned = Checkpoint {
            transaction_id: 0,
            global_position: horizon,
        };
        let next = append::next_checkpoint(after, &events, limit, scanned);
        // One writer: nothing committed is ever held back.
        Ok(LogBatch {
            events,
            next,
            blocked: false,
        })
    }

    async fn load_checkpoint(&self, key: &CheckpointKey) -> Result<Option<Checkpoint>> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id, global_position FROM checkpoints \
             WHERE subscription = $1 AND partition = $2",
        )
        .bind(&key.subscription)
        .bind(i64::from(key.partition))
        .fetch_optional(&self.inner.readers)
        .await?;
        Ok(row.map(|(t, p)| Checkpoint {
            transaction_id: t,
            global_position: p,
        }))
    }

    async fn save_checkpoint(
        &self,
        tx: &mut StoreTx,
        key: &CheckpointKey,
        expected: Option<Checkpoint>,
        new: Checkpoint,
        owner: Option<&str>,
    ) -> Result<()> {
        let TxInner::Sqlite(conn) = &mut tx.inner else {
            return Err(StoreError::InvalidAppend(
                "a Postgres transaction given to SQLite".into(),
            ));
        };
        let now = now_ms();
        let result = match expected {
            None => {
                sqlx::query(
                    "INSERT INTO checkpoints (subscription, partition, transaction_id, global_position, updated_at) \
                     SELECT $1, $2, $3, $4, $6 WHERE ($5 IS NULL OR EXISTS (SELECT 1 \
                       FROM subscription_leases l \
                       WHERE l.subscription = $1 AND l.partition = $2 AND l.owner = $5)) \
                     ON CONFLICT (subscription, partition) DO NOTHING",
                )
                .bind(&key.subscription)
                .bind(i64::from(key.partition))
                .bind(new.transaction_id)
                .bind(new.global_position)
                .bind(owner)
                .bind(now)
                .execute(&mut **conn)
                .await?
            }
            Some(old) => {
                sqlx::query(
                    "UPDATE checkpoints SET transaction_id = $3, global_position = $4, updated_at = $6 \
                     WHERE subscription = $1 AND partition = $2 \
                       AND transaction_id = $7 AND global_position = $8 \
                       AND ($5 IS NULL OR EXISTS (SELECT 1 FROM subscription_leases l \
                         WHERE l.subscription = $1 AND l.partition = $2 AND l.owner = $5))",
                )
                .bind(&key.subscription)
                .bind(i64::from(key.partition))
                .bind(new.transaction_id)
                .bind(new.global_position)
                .bind(owner)
                .bind(now)
                .bind(old.transaction_id)
                .bind(old.global_position)
                .execute(&mut **conn)
                .await?
            }
        };
        if result.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::CheckpointConflict {
                subscription: key.subscription.clone(),
                partition: key.partition,
            })
        }
    }

    async fn heartbeat(
        &self,
        group: &str,
        member: &str,
        partitions: u32,
        ttl: Duration,
    ) -> Result<Heartbeat> {
        let now = now_ms();
        let until = now + to_i64(ttl.as_millis() as u64);
        let mut tx = self.inner.writer.begin_with(BEGIN_WRITE).await?;
        sqlx::query(
            "INSERT INTO subscription_members (subscription, member, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (subscription, member) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(group)
        .bind(member)
        .bind(until)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM subscription_members WHERE subscription = $1 AND expires_at < $2")
            .bind(group)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "WITH RECURSIVE p(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM p WHERE n + 1 < $2) \
             INSERT INTO subscription_leases (subscription, partition) SELECT $1, n FROM p WHERE $2 > 0 \
             ON CONFLICT DO NOTHING",
        )
        .bind(group)
        .bind(i64::from(partitions))
        .execute(&mut *tx)
        .await?;
        let held: Vec<i64> = sqlx::query_scalar(
            "UPDATE subscription_leases SET expires_at = $3 WHERE subscription = $1 AND owner = $2 \
             RETURNING partition",
        )
        .bind(group)
        .bind(member)
        .bind(until)
        .fetch_all(&mut *tx)
        .await?;
        let members: i64 =
            sqlx::query_scalar("SELECT count(*) FROM subscription_members WHERE subscription = $1")
                .bind(group)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        let mut held: Vec<u32> = held.into_iter().map(|p| p as u32).collect();
        held.sort_unstable();
        Ok(Heartbeat {
            held,
            members: members.max(1) as u32,
        })
    }

    async fn acquire_leases(
        &self,
        group: &str,
        member: &str,
        max: u32,
        ttl: Duration,
    ) -> Result<Vec<u32>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let taken: Vec<i64> = sqlx::query_scalar(
            "UPDATE subscription_leases SET owner = $2, expires_at = $4 \
             WHERE subscription = $1 AND partition IN ( \
               SELECT partition FROM subscription_leases \
               WHERE subscription = $1 AND (owner IS NULL OR expires_at < $5) \
               ORDER BY partition LIMIT $3) \
             RETURNING partition",
        )
        .bind(group)
        .bind(member)
        .bind(i64::from(max))
        .bind(now + to_i64(ttl.as_millis() as u64))
        .bind(now)
        .fetch_all(&self.inner.writer)
        .await?;
        let mut taken: Vec<u32> = taken.into_iter().map(|p| p as u32).collect();
        taken.sort_unstable();
        Ok(taken)
    }

    async fn release_leases(&self, group: &str, member: &str, partitions: &[u32]) -> Result<()> {
        let partitions = serde_json::to_string(partitions).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "UPDATE subscription_leases SET owner = NULL, expires_at = NULL \
             WHERE subscription = $1 AND owner = $2 AND partition IN (SELECT value FROM json_each($3))",
        )
        .bind(group)
        .bind(member)
        .bind(partitions)
        .execute(&self.inner.writer)
        .await?;
        Ok(())
    }

    async fn leave_group(&self, group: &str, member: &str) -> Result<()> {
        let mut tx = self.inner.writer.begin_with(BEGIN_WRITE).await?;
        sqlx::query(
            "UPDATE subscription_leases SET owner = NULL, expires_at = NULL \
             WHERE subscription = $1 AND owner = $2",
        )
        .bind(group)
        .bind(member)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM subscription_members WHERE subscription = $1 AND member = $2")
            .bind(group)
            .bind(member)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    fn doorbell(&self) -> &Doorbell {
        &self.inner.doorbell
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.inner.readers).await?;
        Ok(())
    }
}

async fn append_on(conn: &mut SqliteConnection, appends: &[StreamAppend]) -> Result<Vec<u64>> {
    let mut current: Versions = HashMap::with_capacity(appends.len());
    for append in appends {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT max(stream_position) FROM events WHERE stream_id = $1")
                .bind(&append.stream_id)
                .fetch_one(&mut *conn)
                .await?;
        current.insert(append.stream_id.clone(), version.map(|v| v as u64));
    }
    let (versions, starts) = append::check_expectations(appends, &current)?;
    let recorded_at = Utc::now().timestamp_micros();
    for (append, start) in appends.iter().zip(&starts) {
        let category = category_of(&append.stream_id);
        let key = i64::from(partition_key_of(&append.stream_id));
        for (i, event) in append.events.iter().enumerate() {
            sqlx::query(
                "INSERT INTO events (stream_id, stream_position, category, partition_key, event_id, \
                                     event_type, schema_version, data, metadata, recorded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, json($8), json($9), $10)",
            )
            .bind(&append.stream_id)
            .bind(to_i64(start + i as u64))
            .bind(category)
            .bind(key)
            .bind(event.event_id)
            .bind(&event.event_type)
            .bind(i64::from(event.schema_version))
            .bind(&event.data)
            .bind(&event.metadata)
            .bind(recorded_at)
            .execute(&mut *conn)
            .await
            .map_err(insert_error)?;
        }
    }
    Ok(versions)
}

fn insert_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        let message = db.message();
        if message.contains("events.event_id") {
            return StoreError::DuplicateEventId { event_id: None };
        }
        if message.contains("events.stream_id") {
            return StoreError::ConcurrentAppend;
        }
    }
    StoreError::Database(error)
}

fn recorded(row: &SqliteRow) -> Result<RecordedEvent> {
    let micros: i64 = row.try_get("recorded_at")?;
    Ok(RecordedEvent {
        checkpoint: Checkpoint {
            transaction_id: 0,
            global_position: row.try_get("global_position")?,
        },
        stream_id: row.try_get("stream_id")?,
        stream_position: row.try_get::<i64, _>("stream_position")? as u64,
        event_id: row.try_get::<Uuid, _>("event_id")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get::<i64, _>("schema_version")? as u16,
        data: row.try_get("data")?,
        metadata: row.try_get("metadata")?,
        recorded_at: DateTime::from_timestamp_micros(micros).unwrap_or_default(),
    })
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
