//! The production backend on PostgreSQL. Appends follow the protocol of design section 3:
//! read versions, then one multi-row insert, then commit. Log reads stay below the oldest
//! running transaction, ordered by `(transaction_id, global_position)`, so no reader skips an event.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

use crate::append::{self, Versions};
use crate::doorbell::Doorbell;
use crate::error::{Result, StoreError};
use crate::event_store::{EventStore, Heartbeat, StoreTx, TxInner};
use crate::types::{
    Checkpoint, CheckpointKey, LogBatch, LogFilter, RecordedEvent, StreamAppend, category_of,
    partition_key_of,
};

/// Tunables of the Postgres store.
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub max_connections: u32,
    /// Connections opened before `connect` returns and kept open (0: opened as needed).
    pub min_connections: u32,
    /// Postgres ends a session idle inside a transaction after this long. A stuck transaction
    /// holds back every log reader (they read below the oldest running one), so it must end.
    pub idle_in_transaction_timeout: Duration,
    /// The NOTIFY channel used as a doorbell between processes.
    pub notify_channel: String,
    /// At most one NOTIFY per this interval; commits in between share the next one.
    pub notify_debounce: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 16,
            min_connections: 0,
            idle_in_transaction_timeout: Duration::from_secs(30),
            notify_channel: "herald_events".to_owned(),
            notify_debounce: Duration::from_millis(20),
        }
    }
}

/// The Postgres event store. Cheap to clone; background tasks stop when the last clone drops.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    doorbell: Doorbell,
    // Cancels the notifier and listener tasks when the store is dropped.
    _background: DropGuard,
}

/// Event types with a partial index of the log order of their own (migration 0016): a log
/// read filtered to these walks that index. Only these fixed names are ever written into SQL.
const INDEXED_EVENT_TYPES: &[&str] = &["RecallRequested"];

/// A pooled connection idle this long is pinged before it is handed out (see `connect`).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(60);

const EVENT_COLUMNS: &str = "transaction_id::text::int8 AS tx, global_position, stream_id, \
     stream_position, event_id, event_type, schema_version, data::text AS data, \
     metadata::text AS metadata, recorded_at";

impl PgStore {
    /// The first `limit` events of each stream in `ids`, in one round trip, in stream order
    /// per stream.
    pub async fn read_streams(&self, ids: &[&str], limit: usize) -> Result<Vec<RecordedEvent>> {
        // One index lookup per stream, whatever the planner believes: with `= ANY($1)` over a
        // log it had no statistics for (a fresh or bulk-loaded store, or autovacuum behind),
        // it chose a parallel scan of the whole table, 140 ms for 50 streams of 200,000.
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM (SELECT DISTINCT id FROM unnest($1::text[]) AS u(id)) s \
             CROSS JOIN LATERAL (SELECT * FROM events WHERE stream_id = s.id \
                                 ORDER BY stream_position LIMIT $2) e \
             ORDER BY stream_id, stream_position"
        );
        let rows = sqlx::query(&sql)
            .bind(ids)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.pool)
            .await?;
        rows.iter().map(recorded).collect()
    }

    /// [`crate::queue::create_and_enqueue`] on Postgres: one statement, so one round trip and
    /// its own transaction. The guard, the events and the queue rows are parts of it; the
    /// guard failing writes nothing (`false`), a stream that exists fails it all as a clash.
    pub(crate) async fn create_and_enqueue(
        &self,
        appends: &[StreamAppend],
        rows: &[crate::queue::QueueRow],
        unchanged: Option<crate::queue::Unchanged<'_>>,
    ) -> Result<bool> {
        let sql = format!(
            "WITH guard AS (SELECT $10::text IS NULL OR coalesce((SELECT max(stream_position) \
                                 FROM events WHERE stream_id = $10), 0) = $11 AS ok), \
                  e AS ({INSERT_EVENTS} WHERE (SELECT ok FROM guard)), \
                  q AS (INSERT INTO dispatch_queue (message_id, tenant_id, lane, due_at) \
                        SELECT * FROM unnest($12::text[], $13::text[], $14::text[], $15::int8[]) \
                        WHERE (SELECT ok FROM guard) ON CONFLICT (message_id) DO NOTHING) \
             SELECT ok FROM guard"
        );
        let starts = vec![1; appends.len()];
        let written: bool = EventArrays::new(appends, &starts)
            .bind(sqlx::query(&sql))
            .bind(unchanged.map(|u| u.stream_id))
            .bind(unchanged.map(|u| to_i64(u.version)))
            .bind(
                rows.iter()
                    .map(|r| r.message_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|r| r.tenant_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.lane.as_str()).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| r.due_at.timestamp_millis())
                    .collect::<Vec<_>>(),
            )
            .fetch_one(&self.inner.pool)
            .await
            .map_err(insert_error)?
            .try_get(0)?;
        if written {
            self.inner.doorbell.ring();
        }
        Ok(written)
    }

    /// Connects to `url` (`postgres://…`) and starts the cross-process doorbell.
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self> {
        let timeout_ms = options.idle_in_transaction_timeout.as_millis().to_string();
        let connect = PgConnectOptions::from_str(url)?
            .application_name("herald")
            // JIT compiling pays off for long analytic queries, not for Herald's short ones:
            // with it on, a query the planner misjudged as costly (a generic plan over a busy
            // table) spent more on loading LLVM and compiling than on running, and a profile
            // of dispatch found Postgres spending most of its time there.
            .options([
                ("idle_in_transaction_session_timeout", timeout_ms.as_str()),
                ("jit", "off"),
            ]);
        // One plain connection first: a pool reports any failure as a timeout, this says why.
        sqlx::PgConnection::connect_with(&connect)
            .await?
            .close()
            .await?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(options.min_connections)
            .acquire_timeout(Duration::from_secs(10))
            // The pool's default pings every connection it hands out: a round trip before
            // every statement, which a profile of dispatch found costing more than its claims.
            // Only a connection idle long enough to have been dropped on the way is pinged.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(connect)
            .await?;
        Ok(Self::with_pool(pool, options))
    }

    /// Wraps an existing pool (tests build one per database).
    pub fn with_pool(pool: PgPool, options: PgOptions) -> Self {
        let doorbell = Doorbell::default();
        let cancel = CancellationToken::new();
        // A NOTIFY carries this id, so a process ignores the echo of its own commits.
        let instance = Uuid::now_v7().to_string();
        tokio::spawn(notify_commits(
            pool.clone(),
            doorbell.clone(),
            options.clone(),
            instance.clone(),
            cancel.clone(),
        ));
        tokio::spawn(listen_for_commits(
            pool.clone(),
            doorbell.clone(),
            options.notify_channel,
            instance,
            cancel.clone(),
        ));
        PgStore {
            inner: Arc::new(Inner {
                pool,
                doorbell,
                _background: cancel.drop_guard(),
            }),
        }
    }

    pub async fn migrate(&self) -> Result<()> {
        crate::migrate::postgres().run(&self.inner.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The event with this id, with its checkpoint.
    pub(crate) async fn event_by_id(&self, event_id: Uuid) -> Result<Option<RecordedEvent>> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1");
        let row = sqlx::query(&sql)
            .bind(event_id)
            .fetch_optional(&self.inner.pool)
            .await?;
        row.as_ref().map(recorded).transpose()
    }

    /// Runs the log read `sql` with the index walk as its only plan (see `read_log`).
    async fn log_rows(
        &self,
        sql: &str,
        after: Checkpoint,
        filter: &LogFilter,
        count: i32,
        index: i32,
        limit: i64,
    ) -> Result<Vec<sqlx::postgres::PgRow>> {
        let mut tx = self.inner.pool.begin().await?;
        // Both in one round trip (`SET LOCAL` is one statement a setting).
        sqlx::query(
            "SELECT set_config('enable_bitmapscan', 'off', true), \
                    set_config('enable_seqscan', 'off', true)",
        )
        .execute(&mut *tx)
        .await?;
        let rows = sqlx::query(sql)
            .bind(after.transaction_id)
            .bind(after.global_position)
            .bind(&filter.categories)
            .bind(&filter.event_types)
            .bind(count)
            .bind(index)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// A batch that only creates streams, or only extends them at exact versions, inserts
    /// without reading versions first, so a stream that exists (or has moved on) shows as a
    /// clash on a key. Reported as the append protocol reports it: the stream and its actual
    /// version (read outside the failed transaction, where the clashing commit is visible). Any
    /// other error is returned as it is.
    async fn creation_conflict(&self, appends: &[StreamAppend], error: StoreError) -> StoreError {
        if !(creates_streams(appends) || exact_versions(appends).is_some())
            || !matches!(
                error,
                StoreError::ConcurrentAppend | StoreError::DuplicateEventId { .. }
            )
        {
            return error;
        }
        let ids: Vec<&str> = appends.iter().map(|a| a.stream_id.as_str()).collect();
        let rows: std::result::Result<Vec<(String, Option<i64>)>, sqlx::Error> = sqlx::query_as(
            "SELECT s.id, (SELECT max(e.stream_position) FROM events e WHERE e.stream_id = s.id) \
             FROM unnest($1::text[]) AS s(id)",
        )
        .bind(&ids)
        .fetch_all(&self.inner.pool)
        .await;
        let current: Versions = match rows {
            Ok(rows) => rows
                .into_iter()
                .map(|(id, v)| (id, v.map(|v| v as u64)))
                .collect(),
            Err(read) => return read.into(),
        };
        match append::check_expectations(appends, &current) {
            Err(conflict @ StoreError::WrongExpectedVersion { .. }) => conflict,
            _ => error,
        }
    }

    /// Where the events of a failed append already are, if this is a retry of it.
    async fn already_appended(&self, appends: &[StreamAppend]) -> Result<Option<Vec<u64>>> {
        let ids: Vec<Uuid> = appends
            .iter()
            .flat_map(|a| a.events.iter().map(|e| e.event_id))
            .collect();
        let rows = sqlx::query(
            "SELECT event_id, stream_id, stream_position FROM events WHERE event_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&self.inner.pool)
        .await?;
        let found = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("event_id")?,
                    (r.try_get("stream_id")?, r.try_get("stream_position")?),
                ))
            })
            .collect::<Result<HashMap<Uuid, (String, i64)>, sqlx::Error>>()?;
        append::match_retry(appends, &found)
    }
}

impl EventStore for PgStore {
    async fn append(&self, appends: &[StreamAppend]) -> Result<Vec<u64>> {
        append::validate(appends)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut tx = self.inner.pool.begin().await?;
            let error = match append_on(&mut tx, appends).await {
                Ok(versions) => {
                    tx.commit().await?;
                    self.inner.doorbell.ring();
                    return Ok(versions);
                }
                Err(error) => error,
            };
            tx.rollback().await?;
            let error = self.creation_conflict(appends, error).await;
            match error {
                StoreError::WrongExpectedVersion { .. }
                | StoreError::DuplicateEventId { .. }
                | StoreError::ConcurrentAppend => {
                    if let Some(versions) = self.already_appended(appends).await? {
                        return Ok(versions);
                    }
                    // A concurrent writer took the positions: a retry either succeeds (`Any`)
                    // or reports the conflict with the actual version.
                    let retry = matches!(
                        error,
                        StoreError::ConcurrentAppend | StoreError::DuplicateEventId { .. }
                    );
                    if !retry || attempt >= 5 {
                        return Err(error);
                    }
                }
                other => return Err(other),
            }
        }
    }

    async fn begin(&self) -> Result<StoreTx> {
        Ok(StoreTx {
            inner: TxInner::Postgres(self.inner.pool.begin().await?),
            doorbell: self.inner.doorbell.clone(),
            appended: false,
        })
    }

    async fn append_in(&self, tx: &mut StoreTx, appends: &[StreamAppend]) -> Result<Vec<u64>> {
        append::validate(appends)?;
        let TxInner::Postgres(conn) = &mut tx.inner else {
            return Err(StoreError::InvalidAppend(
                "a SQLite transaction given to Postgres".into(),
            ));
        };
        // A batch that creates its streams and finds one there reports `ConcurrentAppend`
        // (a conflict all the same), not the actual version: reading it would take a second
        // connection while this one is held, and under load a full pool would wait on itself.
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
            .fetch_all(&self.inner.pool)
            .await?;
        rows.iter().map(recorded).collect()
    }

    async fn stream_version(&self, stream_id: &str) -> Result<Option<u64>> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT max(stream_position) FROM events WHERE stream_id = $1")
                .bind(stream_id)
                .fetch_one(&self.inner.pool)
                .await?;
        Ok(version.map(|v| v as u64))
    }

    async fn read_log(
        &self,
        after: Checkpoint,
        filter: &LogFilter,
        limit: usize,
    ) -> Result<LogBatch> {
        // One round trip: the horizon (the oldest running transaction) and the events below it.
        // Whether committed events wait beyond the horizon is the newest visible event's
        // transaction, one probe at the end of the log-order index: an `EXISTS (… WHERE
        // transaction_id >= xmin)` was planned as a scan of the whole log (the planner cannot
        // know that almost no row passes), which made every read cost O(log size).
        // A LEFT JOIN keeps the horizon row when no event matches, so an idle filtered reader
        // still moves past what it has scanned.
        // A filter on event types that all have an index of their own (a partial index of
        // the log order) names them in the SQL too: only a predicate written out lets the
        // planner prove the index covers the read, and then the walk is over those events
        // alone instead of the whole log.
        let indexed = if !filter.event_types.is_empty()
            && filter
                .event_types
                .iter()
                .all(|t| INDEXED_EVENT_TYPES.contains(&t.as_str()))
        {
            // Each is one of the fixed names above, so nothing a caller wrote reaches the SQL.
            let types: Vec<String> = filter
                .event_types
                .iter()
                .map(|t| format!("'{t}'"))
                .collect();
            format!("AND event_type IN ({}) ", types.join(", "))
        } else {
            String::new()
        };
        let sql = format!(
            "WITH x AS MATERIALIZED (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin), \
                  h AS MATERIALIZED (SELECT x.xmin, coalesce((SELECT b.transaction_id \
                                     FROM events b ORDER BY b.transaction_id DESC LIMIT 1) \
                                     >= x.xmin, false) AS blocked FROM x) \
             SELECT h.xmin::text::int8 AS horizon, h.blocked, e.* FROM h LEFT JOIN LATERAL ( \
               SELECT {EVENT_COLUMNS} FROM events \
               WHERE (transaction_id, global_position) > ($1::int8::text::xid8, $2) \
                 AND transaction_id < h.xmin \
                 AND (cardinality($3::text[]) = 0 OR category = ANY($3)) \
                 AND (cardinality($4::text[]) = 0 OR event_type = ANY($4)) {indexed}\
                 AND ($5::int4 = 0 OR partition_key % $5 = $6) \
               ORDER BY transaction_id, global_position LIMIT $7 \
             ) e ON true"
        );
        let (count, index) = filter
            .partition
            .map_or((0, 0), |p| (p.count as i32, p.index as i32));
        // The first `limit` events after a position are an ordered walk of the log-order
        // index, always. But the planner estimates the position and horizon conditions with
        // default selectivities (a generic plan, a CTE's value) and, on a log that grew faster
        // than autovacuum analyzes it, picked a bitmap scan of everything after the position
        // and a sort: every batch cost O(rest of the log), so a replay was quadratic (1.5 s a
        // batch at 300k events, against 1 ms for the walk). Those plans are off for this read.
        let rows = self
            .log_rows(&sql, after, filter, count, index, to_i64(limit as u64))
            .await?;
        let (horizon, blocked): (i64, bool) = match rows.first() {
            Some(row) => (row.try_get("horizon")?, row.try_get("blocked")?),
            None => {
                return Ok(LogBatch {
                    events: Vec::new(),
                    next: after,
                    blocked: false,
                });
            }
        };
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<Option<i64>, _>("tx")?.is_some() {
                events.push(recorded(row)?);
            }
        }
        // The rows come in log order from the inner walk, but nothing in SQL says the join
        // keeps it, and an outer `ORDER BY` made Postgres sort every batch again: 5,000 events
        // are more than `work_mem` (4 MB by default), so each read of a replay sorted on disk,
        // and a batch took 16 ms instead of 10. Sorting here costs one pass over rows in order.
        events.sort_by_key(|e| e.checkpoint);
        // Every transaction below the horizon has ended, so a reader that got less than a full
        // batch has seen all of them and may resume from just below the horizon.
        let scanned = Checkpoint {
            transaction_id: horizon - 1,
            global_position: i64::MAX,
        };
        let next = append::next_checkpoint(after, &events, limit, scanned);
        Ok(LogBatch {
            events,
            next,
            blocked,
        })
    }

    async fn load_checkpoint(&self, key: &CheckpointKey) -> Result<Option<Checkpoint>> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id, global_position FROM checkpoints \
             WHERE subscription = $1 AND partition = $2",
        )
        .bind(&key.subscription)
        .bind(key.partition as i32)
        .fetch_optional(&self.inner.pool)
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
        let TxInner::Postgres(conn) = &mut tx.inner else {
            return Err(StoreError::InvalidAppend(
                "a SQLite transaction given to Postgres".into(),
            ));
        };
        let result = match expected {
            None => {
                sqlx::query(
                    "INSERT INTO checkpoints (subscription, partition, transaction_id, global_position) \
                     SELECT $1, $2, $3, $4 WHERE ($5::text IS NULL OR EXISTS (SELECT 1 \
                       FROM subscription_leases l \
                       WHERE l.subscription = $1 AND l.partition = $2 AND l.owner = $5)) \
                     ON CONFLICT (subscription, partition) DO NOTHING",
                )
                .bind(&key.subscription)
                .bind(key.partition as i32)
                .bind(new.transaction_id)
                .bind(new.global_position)
                .bind(owner)
                .execute(&mut **conn)
                .await?
            }
            Some(old) => {
                sqlx::query(
                    "UPDATE checkpoints SET transaction_id = $3, global_position = $4, updated_at = now() \
                     WHERE subscription = $1 AND partition = $2 \
                       AND transaction_id = $6 AND global_position = $7 \
                       AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM subscription_leases l \
                         WHERE l.subscription = $1 AND l.partition = $2 AND l.owner = $5))",
                )
                .bind(&key.subscription)
                .bind(key.partition as i32)
                .bind(new.transaction_id)
                .bind(new.global_position)
                .bind(owner)
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
        let ttl_ms = to_i64(ttl.as_millis() as u64);
        let mut tx = self.inner.pool.begin().await?;
        sqlx::query(
            "INSERT INTO subscription_members (subscription, member, expires_at) \
             VALUES ($1, $2, now() + $3 * interval '1 millisecond') \
             ON CONFLICT (subscription, member) DO UPDATE SET expires_at = EXCLUDED.expires_at",
        )
        .bind(group)
        .bind(member)
        .bind(ttl_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM subscription_members WHERE subscription = $1 AND expires_at < now()",
        )
        .bind(group)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO subscription_leases (subscription, partition) \
             SELECT $1, g FROM generate_series(0, $2 - 1) AS g ON CONFLICT DO NOTHING",
        )
        .bind(group)
        .bind(partitions as i32)
        .execute(&mut *tx)
        .await?;
        let held: Vec<i32> = sqlx::query_scalar(
            "UPDATE subscription_leases SET expires_at = now() + $3 * interval '1 millisecond' \
             WHERE subscription = $1 AND owner = $2 RETURNING partition",
        )
        .bind(group)
        .bind(member)
        .bind(ttl_ms)
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
        // SKIP LOCKED: members acquiring at the same moment take different partitions
        // instead of queueing on each other's row locks.
        let taken: Vec<i32> = sqlx::query_scalar(
            "UPDATE subscription_leases l SET owner = $2, expires_at = now() + $4 * interval '1 millisecond' \
             FROM (SELECT subscription, partition FROM subscription_leases \
                   WHERE subscription = $1 AND (owner IS NULL OR expires_at < now()) \
                   ORDER BY partition LIMIT $3 FOR UPDATE SKIP LOCKED) f \
             WHERE l.subscription = f.subscription AND l.partition = f.partition \
             RETURNING l.partition",
        )
        .bind(group)
        .bind(member)
        .bind(i64::from(max))
        .bind(to_i64(ttl.as_millis() as u64))
        .fetch_all(&self.inner.pool)
        .await?;
        let mut taken: Vec<u32> = taken.into_iter().map(|p| p as u32).collect();
        taken.sort_unstable();
        Ok(taken)
    }

    async fn release_leases(&self, group: &str, member: &str, partitions: &[u32]) -> Result<()> {
        let partitions: Vec<i32> = partitions.iter().map(|p| *p as i32).collect();
        sqlx::query(
            "UPDATE subscription_leases SET owner = NULL, expires_at = NULL \
             WHERE subscription = $1 AND owner = $2 AND partition = ANY($3)",
        )
        .bind(group)
        .bind(member)
        .bind(&partitions)
        .execute(&self.inner.pool)
        .await?;
        Ok(())
    }

    async fn leave_group(&self, group: &str, member: &str) -> Result<()> {
        let mut tx = self.inner.pool.begin().await?;
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
        sqlx::query("SELECT 1").execute(&self.inner.pool).await?;
        Ok(())
    }
}

/// The append protocol inside an open transaction: read the versions (no write yet), check the
/// expectations, then insert every event in one statement.
async fn append_on(conn: &mut PgConnection, appends: &[StreamAppend]) -> Result<Vec<u64>> {
    if creates_streams(appends) {
        return create_on(conn, appends).await;
    }
    if let Some(expected) = exact_versions(appends) {
        return extend_on(conn, appends, &expected).await;
    }
    read_and_append(conn, appends).await
}

/// [`append_on`] in two steps: each stream's version (and that nothing was written before)
/// read first, then the insert.
async fn read_and_append(conn: &mut PgConnection, appends: &[StreamAppend]) -> Result<Vec<u64>> {
    let (versions, starts) = read_versions(conn, appends).await?;
    insert(conn, appends, &starts, false).await?;
    Ok(versions)
}

/// Checks the batch's expectations against its streams' versions, and that the transaction has
/// written nothing yet; each stream's new version and its first new position.
async fn read_versions(
    conn: &mut PgConnection,
    appends: &[StreamAppend],
) -> Result<(Vec<u64>, Vec<u64>)> {
    let ids: Vec<&str> = appends.iter().map(|a| a.stream_id.as_str()).collect();
    let rows: Vec<(String, Option<i64>, bool)> = sqlx::query_as(
        "SELECT s.id, (SELECT max(e.stream_position) FROM events e WHERE e.stream_id = s.id), \
                pg_current_xact_id_if_assigned() IS NULL \
         FROM unnest($1::text[]) AS s(id)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    if rows.iter().any(|(_, _, first_write)| !first_write) {
        return Err(StoreError::AppendNotFirstWrite);
    }
    let current: Versions = rows
        .into_iter()
        .map(|(id, v, _)| (id, v.map(|v| v as u64)))
        .collect();
    append::check_expectations(appends, &current)
}

/// Whether every stream of the batch is new (`NoStream`): a send's messages and its request.
fn creates_streams(appends: &[StreamAppend]) -> bool {
    appends
        .iter()
        .all(|a| a.expected == crate::ExpectedVersion::NoStream)
}

/// Each stream's expected version, when every stream of the batch is expected at an exact
/// version it has reached: a dispatch outcome, a receipt, a recall, an edit of a template.
fn exact_versions(appends: &[StreamAppend]) -> Option<Vec<u64>> {
    appends
        .iter()
        .map(|a| match a.expected {
            crate::ExpectedVersion::Exact(v) if v > 0 => Some(v),
            _ => None,
        })
        .collect()
}

/// [`append_on`] for a batch that extends streams at exact versions, in one statement: no
/// versions read first (a round trip of the five a dispatch group commit made). The insert
/// writes every event or none: only if each stream's expected last event is there and the
/// transaction has written nothing yet. A stream that has moved past its expected version
/// makes it clash on the primary key (`ConcurrentAppend`), as a concurrent append does; `append`
/// reports it with the actual version ([`PgStore::creation_conflict`]). When nothing was
/// inserted the versions are read as [`read_and_append`] reads them, to say why.
async fn extend_on(
    conn: &mut PgConnection,
    appends: &[StreamAppend],
    expected: &[u64],
) -> Result<Vec<u64>> {
    let ids: Vec<&str> = appends.iter().map(|a| a.stream_id.as_str()).collect();
    let starts: Vec<u64> = expected.iter().map(|v| v + 1).collect();
    let total: u64 = appends.iter().map(|a| a.events.len() as u64).sum();
    let sql = format!(
        "{INSERT_EVENTS} WHERE (SELECT pg_current_xact_id_if_assigned() IS NULL) \
           AND (SELECT count(*) FROM unnest($10::text[], $11::int8[]) AS s(id, version) \
                WHERE EXISTS (SELECT 1 FROM events e \
                              WHERE e.stream_id = s.id AND e.stream_position = s.version)) \
               = cardinality($10::text[])"
    );
    let done = EventArrays::new(appends, &starts)
        .bind(sqlx::query(&sql))
        .bind(&ids)
        .bind(expected.iter().map(|v| to_i64(*v)).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await
        .map_err(insert_error)?;
    if done.rows_affected() == total {
        return Ok(appends
            .iter()
            .zip(expected)
            .map(|(a, v)| v + a.events.len() as u64)
            .collect());
    }
    // Nothing was written: the reason, read as the two-step append reads it. Should the
    // versions say yes after all, the streams moved meanwhile.
    read_versions(conn, appends).await?;
    Err(StoreError::ConcurrentAppend)
}

/// [`append_on`] for a batch that only creates streams: no versions to read first, every
/// stream starts at 1. A stream that exists after all makes the insert clash on the primary key
/// (`ConcurrentAppend`); `append` reports it with the actual version
/// ([`PgStore::creation_conflict`]), `append_in` as it is. That the insert is the transaction's first write is checked
/// in the same statement, before its first row is written: nothing is inserted otherwise.
async fn create_on(conn: &mut PgConnection, appends: &[StreamAppend]) -> Result<Vec<u64>> {
    let starts = vec![1; appends.len()];
    let total: u64 = appends.iter().map(|a| a.events.len() as u64).sum();
    let inserted = insert(conn, appends, &starts, true).await?;
    if inserted != total {
        return Err(StoreError::AppendNotFirstWrite);
    }
    Ok(appends.iter().map(|a| a.events.len() as u64).collect())
}

/// Inserts every event of the batch in one statement, each stream from its start position.
/// `first_write`: insert only if the transaction has written nothing yet (an uncorrelated
/// subquery, so evaluated once, before the first row is written). The rows inserted.
async fn insert(
    conn: &mut PgConnection,
    appends: &[StreamAppend],
    starts: &[u64],
    first_write: bool,
) -> Result<u64> {
    let condition = if first_write {
        "WHERE (SELECT pg_current_xact_id_if_assigned() IS NULL)"
    } else {
        ""
    };
    let sql = format!("{INSERT_EVENTS} {condition}");
    let done = EventArrays::new(appends, starts)
        .bind(sqlx::query(&sql))
        .execute(&mut *conn)
        .await
        .map_err(insert_error)?;
    Ok(done.rows_affected())
}

/// An insert of the events bound by [`EventArrays::bind`] as `$1` to `$9`; a `WHERE` may follow.
const INSERT_EVENTS: &str = "INSERT INTO events (stream_id, stream_position, category, \
        partition_key, event_id, event_type, schema_version, data, metadata) \
     SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::int2[], $5::uuid[], \
                          $6::text[], $7::int2[], $8::text[]::json[], $9::text[]::json[])";

/// A batch's events as the column arrays of one `unnest` insert ([`INSERT_EVENTS`]).
struct EventArrays<'a> {
    stream_ids: Vec<&'a str>,
    positions: Vec<i64>,
    categories: Vec<&'a str>,
    keys: Vec<i16>,
    event_ids: Vec<Uuid>,
    types: Vec<&'a str>,
    schema_versions: Vec<i16>,
    data: Vec<&'a str>,
    metadata: Vec<&'a str>,
}

impl<'a> EventArrays<'a> {
    /// Each stream's events numbered from its start position.
    fn new(appends: &'a [StreamAppend], starts: &[u64]) -> Self {
        let total: usize = appends.iter().map(|a| a.events.len()).sum();
        let mut arrays = EventArrays {
            stream_ids: Vec::with_capacity(total),
            positions: Vec::with_capacity(total),
            categories: Vec::with_capacity(total),
            keys: Vec::with_capacity(total),
            event_ids: Vec::with_capacity(total),
            types: Vec::with_capacity(total),
            schema_versions: Vec::with_capacity(total),
            data: Vec::with_capacity(total),
            metadata: Vec::with_capacity(total),
        };
        for (append, start) in appends.iter().zip(starts) {
            let category = category_of(&append.stream_id);
            let key = partition_key_of(&append.stream_id) as i16;
            for (i, event) in append.events.iter().enumerate() {
                arrays.stream_ids.push(append.stream_id.as_str());
                arrays.positions.push(to_i64(start + i as u64));
                arrays.categories.push(category);
                arrays.keys.push(key);
                arrays.event_ids.push(event.event_id);
                arrays.types.push(event.event_type.as_str());
                arrays.schema_versions.push(event.schema_version as i16);
                arrays.data.push(event.data.as_str());
                arrays.metadata.push(event.metadata.as_str());
            }
        }
        arrays
    }

    /// Binds the arrays as `$1` to `$9`.
    fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>
    where
        'a: 'q,
    {
        query
            .bind(self.stream_ids)
            .bind(self.positions)
            .bind(self.categories)
            .bind(self.keys)
            .bind(self.event_ids)
            .bind(self.types)
            .bind(self.schema_versions)
            .bind(self.data)
            .bind(self.metadata)
    }
}

fn insert_error(error: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        match db.constraint() {
            Some("events_pkey") => return StoreError::ConcurrentAppend,
            Some("events_event_id_key") => return StoreError::DuplicateEventId { event_id: None },
            _ => {}
        }
    }
    StoreError::Database(error)
}

fn recorded(row: &PgRow) -> Result<RecordedEvent> {
    Ok(RecordedEvent {
        checkpoint: Checkpoint {
            transaction_id: row.try_get("tx")?,
            global_position: row.try_get("global_position")?,
        },
        stream_id: row.try_get("stream_id")?,
        stream_position: row.try_get::<i64, _>("stream_position")? as u64,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get::<i16, _>("schema_version")? as u16,
        data: row.try_get("data")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Forwards this process's commits to other processes as a debounced NOTIFY, sent outside
/// any append transaction (a NOTIFY inside one would serialise every commit).
async fn notify_commits(
    pool: PgPool,
    doorbell: Doorbell,
    options: PgOptions,
    instance: String,
    cancel: CancellationToken,
) {
    let mut listener = doorbell.listen();
    let mut forwarded = listener.mark_seen().local;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = listener.rung() => {}
        }
        let rings = listener.mark_seen();
        if rings.local == forwarded {
            continue;
        }
        forwarded = rings.local;
        if let Err(error) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&options.notify_channel)
            .bind(&instance)
            .execute(&pool)
            .await
        {
            tracing::warn!(%error, "could not send the commit doorbell; readers fall back to polling");
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(options.notify_debounce) => {}
        }
    }
}

/// Rings the local doorbell when another process says it committed.
async fn listen_for_commits(
    pool: PgPool,
    doorbell: Doorbell,
    channel: String,
    instance: String,
    cancel: CancellationToken,
) {
    loop {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            () = cancel.cancelled() => return,
            listener = listener => listener,
        };
        match &mut listener {
            Ok(listener) => loop {
                let notification = tokio::select! {
                    () = cancel.cancelled() => return,
                    n = listener.recv() => n,
                };
                match notification {
                    Ok(n) if n.payload() != instance => doorbell.ring_remote(),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "commit doorbell listener lost its connection");
                        break;
                    }
                }
            },
            Err(error) => {
                tracing::warn!(%error, "cannot listen for commits; readers fall back to polling")
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
