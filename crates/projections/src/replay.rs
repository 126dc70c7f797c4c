//! Rebuilding a projection from the log while the live one keeps serving (`herald replay`).
//!
//! 1. **Shadow tables.** Each read table gets a copy named with [`SHADOW_SUFFIX`], made from the
//!    live table's own definition (Postgres: `LIKE … INCLUDING ALL` and the catalog's index
//!    definitions; SQLite: the `CREATE TABLE` text in `sqlite_master`), so a new column or index
//!    in a migration needs nothing here. Shadows left by an interrupted replay are dropped first.
//! 2. **Fill.** The projection's handler, writing to the shadows ([`Target::Shadow`]), runs over
//!    the log from the start in large batches under a checkpoint of its own (the subscription's
//!    name with the suffix). It only runs projection handlers: nothing reaches a supplier.
//! 3. **Swap.** One transaction locks the live tables, reads the live checkpoint and, when the
//!    shadow has applied at least as much of the log, drops the live tables, renames the shadows
//!    (and their indexes) to the live names and gives the live subscription the shadow's
//!    checkpoint. When the live projection is ahead, it rolls back, the shadow catches up, and the
//!    swap is tried again. A live subscriber that was mid-batch finds its checkpoint moved: its
//!    compare-and-set fails, its batch rolls back, and it reloads and goes on from the shadow's
//!    checkpoint over the new tables.
//!
//! Queries go on reading the old tables until the swap commits, then read the new ones; both
//! tables of the trace change in the same commit, so no query sees one old and one new.

use std::sync::Arc;
use std::time::{Duration, Instant};

use store::{
    Checkpoint, CheckpointKey, EventStore, HandlerError, LogFilter, Store, StoreError, StoreTx,
    TxConn,
};

use crate::{Decoded, DecodedBatch, Handler, Projection, SHADOW_SUFFIX, Target};

/// Postgres truncates longer identifiers, which would break the renames at the swap.
const POSTGRES_MAX_NAME: usize = 63;

/// How often a swap may find the live projection ahead before the replay gives up.
const MAX_SWAPS: u32 = 100;

/// How often a swap may find the live tables busy (each wait is a lock timeout and a pause,
/// about a fifth of a second) before the replay gives up.
const MAX_WAITS: u32 = 600;

/// How long the swap waits for each lock on Postgres. Shorter than Postgres's deadlock timeout
/// (1 s by default): a swap waiting for a table a live batch holds, while that batch waits for
/// a table the swap took, gives up before the deadlock is detected, so the live batch is never
/// the one aborted. The swap lets go of everything and tries again.
const LOCK_TIMEOUT: &str = "100ms";

/// How a replay reads.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Events per transaction while filling the shadows.
    pub batch_size: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions { batch_size: 5_000 }
    }
}

/// How far a replay has come, reported after each batch.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub projection: Projection,
    /// Events applied to the shadow tables so far.
    pub events: u64,
    /// The log position of the last event applied.
    pub position: i64,
    /// The log position the replay started from.
    pub start: i64,
    /// The log position of the newest event of the projection's category when the pass began.
    pub head: i64,
    pub elapsed: Duration,
}

impl Progress {
    /// Events applied per second.
    pub fn rate(&self) -> f64 {
        per_second(self.events, self.elapsed)
    }

    /// About how long until the shadow reaches the head, from the pace so far through the log's
    /// positions (which also count events of other categories, skipped quickly).
    pub fn eta(&self) -> Option<Duration> {
        let done = self.position.saturating_sub(self.start);
        let left = self.head.saturating_sub(self.position).max(0);
        if done <= 0 {
            return None;
        }
        let seconds = self.elapsed.as_secs_f64() * left as f64 / done as f64;
        Some(Duration::from_secs_f64(seconds.min(1e9)))
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub projection: Projection,
    /// Events applied to the shadow tables, catch-ups included.
    pub events: u64,
    /// From the first shadow table made to the swap committed.
    pub elapsed: Duration,
    /// Swaps tried: more than one when the live projection was ahead or its tables busy.
    pub swaps: u32,
}

impl Summary {
    pub fn rate(&self) -> f64 {
        per_second(self.events, self.elapsed)
    }
}

fn per_second(events: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        events as f64 / seconds
    } else {
        0.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("applying events to the shadow tables")]
    Handler(#[source] HandlerError),
    #[error("read table {0} does not exist: is the store migrated?")]
    MissingTable(String),
    #[error("{0} is too long to name a shadow: Postgres keeps 63 bytes of a name")]
    NameTooLong(String),
    #[error("the live projection kept moving ahead of the rebuilt one ({0} swaps tried)")]
    KeptMoving(u32),
}

/// The checkpoint the replay of `projection` fills its shadows under.
pub fn shadow_key(projection: Projection) -> CheckpointKey {
    CheckpointKey::new(format!("{}{SHADOW_SUFFIX}", projection.subscription()), 0)
}

fn live_key(projection: Projection) -> CheckpointKey {
    CheckpointKey::new(projection.subscription(), 0)
}

/// Rebuilds `projection` from the log and swaps it in; `progress` hears of every batch.
pub async fn replay(
    store: &Store,
    projection: Projection,
    options: &ReplayOptions,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<Summary, ReplayError> {
    Replay::start(store, projection, options)
        .await?
        .finish(progress)
        .await
}

/// Rebuilds `projections` reading the log once: each batch read is written to every
/// projection's shadows (on Postgres side by side, each in its own transaction) while the next
/// batch is read; then each catches up and swaps in as [`replay`] does. Reading the log was
/// most of a replay (a projection that applies almost nothing replayed at about 50,000
/// events/s), and `replay --all` read it once per projection.
pub async fn replay_all(
    store: &Store,
    projections: &[Projection],
    options: &ReplayOptions,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<Vec<Summary>, ReplayError> {
    let mut replays = Vec::with_capacity(projections.len());
    for &projection in projections {
        replays.push(Replay::start(store, projection, options).await?);
    }
    if let Some(first) = replays.first() {
        let filter = first.projection.filter();
        // Projections that read other events fill on their own in `finish`.
        let together: Vec<&mut Replay> = replays
            .iter_mut()
            .filter(|r| r.projection.filter() == filter)
            .collect();
        fill_together(store, together, progress).await?;
        // Postgres: every filled projection's indexes are built at once, rather than each
        // projection's in its `finish`, one projection after the other.
        if matches!(store, Store::Postgres(_)) {
            let mut builds = tokio::task::JoinSet::new();
            for replay in replays.iter().filter(|r| r.projection.filter() == filter) {
                let (store, projection) = (store.clone(), replay.projection);
                builds.spawn(async move { index_shadows(&store, projection).await });
            }
            while let Some(built) = builds.join_next().await {
                joined(built)??;
            }
            for replay in replays
                .iter_mut()
                .filter(|r| r.projection.filter() == filter)
            {
                replay.indexed = true;
            }
        }
    }
    let mut summaries = Vec::with_capacity(replays.len());
    for replay in replays {
        summaries.push(replay.finish(progress).await?);
    }
    Ok(summaries)
}

/// Catches the shadows of `replays` up with the log from one read of it. They read the same
/// events and stand at the same checkpoint: one replay, or replays just started.
async fn fill_together(
    store: &Store,
    mut replays: Vec<&mut Replay>,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<(), ReplayError> {
    let Some(first) = replays.first() else {
        return Ok(());
    };
    let (filter, batch_size) = (first.projection.filter(), first.batch_size);
    let keys: Vec<CheckpointKey> = replays.iter().map(|r| shadow_key(r.projection)).collect();
    let mut saved = store.load_checkpoint(&keys[0]).await?;
    let lag = crate::lag::lag(store, &keys[0].subscription, first.projection.category()).await?;
    let start = saved.unwrap_or(Checkpoint::START).global_position;
    let mut reports: Vec<Progress> = replays
        .iter()
        .map(|r| Progress {
            projection: r.projection,
            events: r.events,
            position: start,
            start,
            head: lag.head.global_position,
            elapsed: r.started.elapsed(),
        })
        .collect();
    let mut batch = Arc::new(
        read(
            store.clone(),
            saved.unwrap_or(Checkpoint::START),
            filter.clone(),
            batch_size,
        )
        .await?,
    );
    loop {
        if batch.decoded.events().is_empty() {
            if batch.blocked {
                // An open transaction holds committed events back: wait for it.
                tokio::time::sleep(Duration::from_millis(10)).await;
                batch =
                    Arc::new(read(store.clone(), batch.next, filter.clone(), batch_size).await?);
                continue;
            }
            // Caught up. Keep the scan's end, so the swap compares like with like.
            if saved.is_none_or(|s| s < batch.next) {
                let mut tx = store.begin().await?;
                for key in &keys {
                    store
                        .save_checkpoint(&mut tx, key, saved, batch.next, None)
                        .await?;
                }
                tx.commit().await?;
            }
            return Ok(());
        }
        // Read and decode the next batch on another task while this one is written to every
        // projection: decoding on the task that drives the writes left the database idle
        // meanwhile, a quarter of a replay.
        let reading = tokio::spawn(read(store.clone(), batch.next, filter.clone(), batch_size));
        let written = write_all(store, &replays, &keys, saved, &batch).await;
        if let Err(error) = written {
            reading.abort();
            return Err(error);
        }
        saved = Some(batch.next);
        let events = batch.decoded.events();
        for (replay, report) in replays.iter_mut().zip(&mut reports) {
            replay.events += events.len() as u64;
            report.events = replay.events;
            report.position = events
                .last()
                .map_or(report.position, |e| e.checkpoint.global_position);
            report.elapsed = replay.started.elapsed();
            progress(report);
        }
        batch = Arc::new(joined(reading.await)??);
    }
}

/// A batch of the log, decoded.
struct Read {
    decoded: DecodedBatch,
    next: Checkpoint,
    blocked: bool,
}

async fn read(
    store: Store,
    after: Checkpoint,
    filter: LogFilter,
    limit: usize,
) -> Result<Read, ReplayError> {
    let batch = store.read_log(after, &filter, limit).await?;
    Ok(Read {
        decoded: DecodedBatch::new(batch.events).map_err(ReplayError::Handler)?,
        next: batch.next,
        blocked: batch.blocked,
    })
}

/// One batch written to each replay's shadows: on Postgres side by side, each on a task of its
/// own (folding a batch and encoding its rows is work for a core too), on SQLite (one writer)
/// one after the other.
async fn write_all(
    store: &Store,
    replays: &[&mut Replay],
    keys: &[CheckpointKey],
    saved: Option<Checkpoint>,
    batch: &Arc<Read>,
) -> Result<(), ReplayError> {
    let next = batch.next;
    if matches!(store, Store::Postgres(_)) {
        let mut tasks = tokio::task::JoinSet::new();
        for (replay, key) in replays.iter().zip(keys) {
            let (store, handler, key) = (store.clone(), replay.handler.clone(), key.clone());
            let batch = Arc::clone(batch);
            tasks.spawn(async move {
                write(&store, &handler, &key, saved, &batch.decoded.views(), next).await
            });
        }
        // Dropping the set on an error stops the other writes.
        while let Some(written) = tasks.join_next().await {
            joined(written)??;
        }
    } else {
        let events = batch.decoded.views();
        for (replay, key) in replays.iter().zip(keys) {
            write(store, &replay.handler, key, saved, &events, next).await?;
        }
    }
    Ok(())
}

/// What a task returned; its panic goes on up.
fn joined<T>(result: Result<T, tokio::task::JoinError>) -> Result<T, ReplayError> {
    match result {
        Ok(value) => Ok(value),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(ReplayError::Handler(Box::new(error))),
    }
}

/// What a swap did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// The shadows are the live tables now.
    Done,
    /// The live projection had applied more of the log than the shadows: nothing changed.
    Behind,
}

/// A replay, step by step: [`replay`] runs the steps, and tests run them one at a time.
pub struct Replay {
    store: Store,
    projection: Projection,
    handler: Handler,
    batch_size: usize,
    /// Events applied to the shadows so far.
    events: u64,
    started: Instant,
    /// Whether the shadows have all their indexes.
    indexed: bool,
}

impl Replay {
    /// Drops what an interrupted replay left, and makes empty shadows of the live tables.
    pub async fn start(
        store: &Store,
        projection: Projection,
        options: &ReplayOptions,
    ) -> Result<Replay, ReplayError> {
        let started = Instant::now();
        prepare(store, projection).await?;
        Ok(Replay {
            store: store.clone(),
            projection,
            handler: projection.handler(Target::Shadow),
            batch_size: options.batch_size.max(1),
            events: 0,
            started,
            // SQLite builds the other indexes in the swap.
            indexed: matches!(store, Store::Sqlite(_)),
        })
    }

    /// Events applied to the shadows so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Catches the shadows up with the log and swaps them in, catching up again while the live
    /// projection is ahead or its tables are busy.
    pub async fn finish(
        mut self,
        progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<Summary, ReplayError> {
        self.fill(progress).await?;
        let (mut swaps, mut behind, mut waits) = (0, 0, 0);
        loop {
            swaps += 1;
            match self.swap().await {
                Ok(Swap::Done) => break,
                // The live projection is ahead: catch up and try again.
                Ok(Swap::Behind) => {
                    behind += 1;
                    if behind >= MAX_SWAPS {
                        return Err(ReplayError::KeptMoving(behind));
                    }
                }
                // The live tables were busy: let go of everything and try again shortly.
                Err(ReplayError::Database(error)) if busy(&error) => {
                    waits += 1;
                    if waits >= MAX_WAITS {
                        return Err(ReplayError::Database(error));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => return Err(error),
            }
            self.fill(progress).await?;
        }
        Ok(Summary {
            projection: self.projection,
            events: self.events,
            elapsed: self.started.elapsed(),
            swaps,
        })
    }

    /// Tries to swap the shadows in, once they have every index.
    pub async fn swap(&mut self) -> Result<Swap, ReplayError> {
        if !self.indexed {
            index_shadows(&self.store, self.projection).await?;
            self.indexed = true;
        }
        swap(&self.store, self.projection).await
    }
}

/// A lock that was not granted in time, or a deadlock: the swap may be tried again.
fn busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // lock_not_available, deadlock_detected, serialization_failure, and a unique
            // violation from a live subscriber's first checkpoint written meanwhile; SQLITE_BUSY.
            Some("55P03" | "40P01" | "40001" | "23505" | "5")
        ),
        _ => false,
    }
}

/// Drops what an interrupted replay left and makes empty shadows of the live tables.
async fn prepare(store: &Store, projection: Projection) -> Result<(), ReplayError> {
    let mut tx = store.begin().await?;
    let shadow = shadow_key(projection);
    store::on_tx!(tx, |conn| {
        sqlx::query("DELETE FROM checkpoints WHERE subscription = $1")
            .bind(&shadow.subscription)
            .execute(conn)
            .await
            .map(|r| r.rows_affected())
    })?;
    for table in projection.tables() {
        let shadow = Target::Shadow.table(table);
        match tx.conn() {
            TxConn::Postgres(conn) => {
                if shadow.len() > POSTGRES_MAX_NAME {
                    return Err(ReplayError::NameTooLong(shadow));
                }
                sqlx::query(&format!("DROP TABLE IF EXISTS \"{shadow}\""))
                    .execute(&mut *conn)
                    .await?;
                let indexes = postgres_indexes(conn, table).await?;
                sqlx::query(&format!(
                    "CREATE TABLE \"{shadow}\" (LIKE \"{table}\" INCLUDING ALL EXCLUDING INDEXES)"
                ))
                .execute(&mut *conn)
                .await?;
                // Unique indexes at once where the fill reads rows back: upserts need them to
                // find conflicts, and reads to find rows. The others are built after the fill,
                // over the whole table at once.
                for index in indexes.iter().filter(|i| at_once(projection, table, i)) {
                    index.create_on(conn, &shadow).await?;
                }
            }
            TxConn::Sqlite(conn) => {
                sqlx::query(&format!("DROP TABLE IF EXISTS \"{shadow}\""))
                    .execute(&mut *conn)
                    .await?;
                let sql: Option<String> = sqlx::query_scalar(
                    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = $1",
                )
                .bind(table)
                .fetch_optional(&mut *conn)
                .await?;
                let sql = sql.ok_or_else(|| ReplayError::MissingTable((*table).to_owned()))?;
                // `CREATE TABLE name (columns…)`: the same columns and keys under the new name.
                // Keys declared in the table (its primary key, UNIQUE) come with it; the
                // other indexes are made at the swap, under their own names.
                let columns = sql
                    .find('(')
                    .map(|at| &sql[at..])
                    .ok_or_else(|| ReplayError::MissingTable((*table).to_owned()))?;
                sqlx::query(&format!("CREATE TABLE \"{shadow}\" {columns}"))
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// An index of a live Postgres table.
struct PgIndex {
    name: String,
    /// `pg_get_indexdef`: `CREATE [UNIQUE] INDEX name ON table USING method (…) …`.
    definition: String,
    unique: bool,
    /// The constraint it backs (a primary key, UNIQUE, EXCLUDE), as `pg_get_constraintdef`.
    constraint: Option<String>,
}

async fn postgres_indexes(
    conn: &mut sqlx::PgConnection,
    table: &str,
) -> Result<Vec<PgIndex>, ReplayError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("\"{table}\""))
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Err(ReplayError::MissingTable(table.to_owned()));
    }
    let rows: Vec<(String, String, bool, Option<String>)> = sqlx::query_as(
        "SELECT i.relname::text, pg_get_indexdef(i.oid), x.indisunique, \
                pg_get_constraintdef(c.oid) \
         FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid \
                                  AND c.contype IN ('p', 'u', 'x') \
         WHERE x.indrelid = to_regclass($1) ORDER BY i.relname",
    )
    .bind(format!("\"{table}\""))
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(name, definition, unique, constraint)| {
            if name.len() + SHADOW_SUFFIX.len() > POSTGRES_MAX_NAME {
                return Err(ReplayError::NameTooLong(name));
            }
            Ok(PgIndex {
                name,
                definition,
                unique,
                constraint,
            })
        })
        .collect()
}

impl PgIndex {
    /// Builds the same index on `shadow`, named with the shadow suffix until the swap.
    async fn create_on(
        &self,
        conn: &mut sqlx::PgConnection,
        shadow: &str,
    ) -> Result<(), ReplayError> {
        let name = format!("{}{SHADOW_SUFFIX}", self.name);
        let sql = match &self.constraint {
            Some(constraint) => {
                format!("ALTER TABLE \"{shadow}\" ADD CONSTRAINT \"{name}\" {constraint}")
            }
            None => {
                let (_, method) = self.definition.split_once(" USING ").ok_or_else(|| {
                    ReplayError::MissingTable(format!("the definition of index {}", self.name))
                })?;
                let unique = if self.unique { "UNIQUE " } else { "" };
                format!("CREATE {unique}INDEX \"{name}\" ON \"{shadow}\" USING {method}")
            }
        };
        sqlx::query(&sql).execute(&mut *conn).await?;
        Ok(())
    }
}

/// Whether the shadow of `table` gets `index` before the fill: the unique indexes of a table
/// whose rows the fill reads back.
fn at_once(projection: Projection, table: &str, index: &PgIndex) -> bool {
    index.unique && !projection.append_only().contains(&table)
}

/// Index builds of one projection at once, at most: two cores are busy with three (each may
/// have parallel workers of its own).
const MAX_BUILDS: usize = 3;

/// Postgres: builds the shadows' other indexes once they are filled, and gathers statistics so
/// queries plan well from the first moment after the swap. Each build and each `ANALYZE` runs
/// on a connection of its own, side by side: one after the other, a replay's end waited for
/// every build in turn (trace's five builds and two `ANALYZE`s took 1.9 s of a 9 s
/// `replay --all`), while the other core had little to do.
async fn index_shadows(store: &Store, projection: Projection) -> Result<(), ReplayError> {
    let Store::Postgres(pg) = store else {
        return Ok(());
    };
    let mut builds = Vec::new();
    {
        let mut conn = pg.pool().acquire().await?;
        for table in projection.tables() {
            for index in postgres_indexes(&mut conn, table).await? {
                if !at_once(projection, table, &index) {
                    builds.push((Target::Shadow.table(table), index));
                }
            }
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (shadow, index) in builds {
        // A few at a time, so that projections with many indexes cannot take the whole pool
        // (a build that waits for a connection longer than the pool's timeout fails).
        if tasks.len() >= MAX_BUILDS
            && let Some(built) = tasks.join_next().await
        {
            joined(built)??;
        }
        let pool = pg.pool().clone();
        tasks.spawn(async move { index.create_on(&mut *pool.acquire().await?, &shadow).await });
    }
    while let Some(built) = tasks.join_next().await {
        joined(built)??;
    }
    for table in projection.tables() {
        let (pool, shadow) = (pg.pool().clone(), Target::Shadow.table(table));
        tasks.spawn(async move {
            sqlx::query(&format!("ANALYZE \"{shadow}\""))
                .execute(&mut *pool.acquire().await?)
                .await?;
            Ok(())
        });
    }
    while let Some(analyzed) = tasks.join_next().await {
        joined(analyzed)??;
    }
    Ok(())
}

impl Replay {
    /// Applies the log to the shadows until they have caught up with it.
    pub async fn fill(
        &mut self,
        progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<(), ReplayError> {
        let store = self.store.clone();
        fill_together(&store, vec![self], progress).await
    }
}

/// One batch applied to one projection's shadows, with its checkpoint, in one transaction.
async fn write(
    store: &Store,
    handler: &Handler,
    key: &CheckpointKey,
    saved: Option<Checkpoint>,
    events: &[Decoded<'_>],
    next: Checkpoint,
) -> Result<(), ReplayError> {
    let mut tx: StoreTx = store.begin().await?;
    if let TxConn::Postgres(conn) = tx.conn() {
        // A batch lost in a crash is one the next replay makes again (it starts over), and
        // its checkpoint goes with it: no need to wait for the WAL to reach the disk.
        // The shadows have no statistics until the fill is over, and the planner, guessing,
        // read a whole shadow (in parallel) for every batch's rows by message id rather
        // than use its primary key: five times the work of the index.
        sqlx::query(
            "SELECT set_config('synchronous_commit', 'off', true), \
                    set_config('enable_seqscan', 'off', true), \
                    set_config('max_parallel_workers_per_gather', '0', true)",
        )
        .execute(conn)
        .await?;
    }
    handler
        .apply(&mut tx, events)
        .await
        .map_err(ReplayError::Handler)?;
    store
        .save_checkpoint(&mut tx, key, saved, next, None)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The swap, in one transaction.
async fn swap(store: &Store, projection: Projection) -> Result<Swap, ReplayError> {
    let live = live_key(projection);
    let shadow = shadow_key(projection);
    let mut tx = store.begin().await?;
    if let TxConn::Postgres(conn) = tx.conn() {
        // The tables first, then the checkpoint, in the order a live subscriber takes them.
        // A live batch in flight finishes first; one that starts waits for the swap.
        let tables = projection
            .tables()
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ");
        sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!("LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE"))
            .execute(&mut *conn)
            .await?;
    }
    // SQLite: the transaction began holding the write lock, so no live batch can commit now.
    let lock = if matches!(store, Store::Postgres(_)) {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!(
        "SELECT transaction_id, global_position FROM checkpoints \
         WHERE subscription = $1 AND partition = $2{lock}"
    );
    let live_at = read_checkpoint(&mut tx, &sql, &live).await?;
    let shadow_at = read_checkpoint(&mut tx, &sql, &shadow)
        .await?
        .unwrap_or(Checkpoint::START);
    if live_at.is_some_and(|live| live > shadow_at) {
        tx.rollback().await?;
        return Ok(Swap::Behind);
    }
    for table in projection.tables() {
        let from = Target::Shadow.table(table);
        match tx.conn() {
            TxConn::Postgres(conn) => {
                sqlx::query(&format!("DROP TABLE \"{table}\""))
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(&format!("ALTER TABLE \"{from}\" RENAME TO \"{table}\""))
                    .execute(&mut *conn)
                    .await?;
                for index in postgres_indexes(conn, table).await? {
                    let Some(name) = index.name.strip_suffix(SHADOW_SUFFIX) else {
                        continue;
                    };
                    let sql = match index.constraint {
                        Some(_) => format!(
                            "ALTER TABLE \"{table}\" RENAME CONSTRAINT \"{}\" TO \"{name}\"",
                            index.name
                        ),
                        None => format!("ALTER INDEX \"{}\" RENAME TO \"{name}\"", index.name),
                    };
                    sqlx::query(&sql).execute(&mut *conn).await?;
                }
            }
            TxConn::Sqlite(conn) => {
                // The live table's indexes, as written in its migrations; they go with it and
                // come back, under the same names, on the table that takes its place.
                let indexes: Vec<String> = sqlx::query_scalar(
                    "SELECT sql FROM sqlite_master \
                     WHERE type = 'index' AND tbl_name = $1 AND sql IS NOT NULL ORDER BY name",
                )
                .bind(table)
                .fetch_all(&mut *conn)
                .await?;
                sqlx::query(&format!("DROP TABLE \"{table}\""))
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(&format!("ALTER TABLE \"{from}\" RENAME TO \"{table}\""))
                    .execute(&mut *conn)
                    .await?;
                for sql in indexes {
                    sqlx::query(&sql).execute(&mut *conn).await?;
                }
            }
        }
    }
    // The live subscription goes on from where the shadow got to: the shadow's checkpoint
    // takes the live one's place. A live batch in flight fails its compare-and-set, rolls
    // back and reloads.
    store::on_tx!(tx, |conn| {
        sqlx::query("DELETE FROM checkpoints WHERE subscription = $1 AND partition = $2")
            .bind(&live.subscription)
            .bind(i64::from(live.partition))
            .execute(conn)
            .await
            .map(|r| r.rows_affected())
    })?;
    store::on_tx!(tx, |conn| {
        sqlx::query(
            "UPDATE checkpoints SET subscription = $1 WHERE subscription = $2 AND partition = $3",
        )
        .bind(&live.subscription)
        .bind(&shadow.subscription)
        .bind(i64::from(shadow.partition))
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
    })?;
    tx.commit().await?;
    Ok(Swap::Done)
}

async fn read_checkpoint(
    tx: &mut StoreTx,
    sql: &str,
    key: &CheckpointKey,
) -> Result<Option<Checkpoint>, ReplayError> {
    let row: Option<(i64, i64)> = store::on_tx!(tx, |conn| {
        sqlx::query_as(sql)
            .bind(&key.subscription)
            .bind(i64::from(key.partition))
            .fetch_optional(conn)
            .await
    })?;
    Ok(row.map(|(transaction_id, global_position)| Checkpoint {
        transaction_id,
        global_position,
    }))
}
