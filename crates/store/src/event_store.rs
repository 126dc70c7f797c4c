//! The one trait both backends implement, and the transaction handle that lets a subscriber
//! write its read models and move its checkpoint in one commit.

use std::future::Future;
use std::time::Duration;

use crate::doorbell::Doorbell;
use crate::error::Result;
use crate::types::{Checkpoint, CheckpointKey, LogBatch, LogFilter, RecordedEvent, StreamAppend};

/// What a member of a consumer group learns from a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The partitions this member still holds (leases renewed).
    pub held: Vec<u32>,
    /// Live members of the group, this one included.
    pub members: u32,
}

/// The event store. Both backends pass one contract suite (`tests/it/contract.rs`).
///
/// Methods return `impl Future + Send` rather than being `async fn`, so generic callers can
/// spawn the futures on a multi-threaded runtime.
pub trait EventStore: Clone + Send + Sync + 'static {
    /// Appends to one or more streams atomically, checking each expectation. Returns the new
    /// version of each stream, in the order given. Re-appending the same event ids returns
    /// the first result and writes nothing.
    fn append(&self, appends: &[StreamAppend]) -> impl Future<Output = Result<Vec<u64>>> + Send;

    /// Starts a write transaction for [`append_in`](Self::append_in) and
    /// [`save_checkpoint`](Self::save_checkpoint).
    fn begin(&self) -> impl Future<Output = Result<StoreTx>> + Send;

    /// Appends inside the caller's transaction. It must be the transaction's first write.
    /// After an error the transaction is spoiled and must be dropped.
    fn append_in(
        &self,
        tx: &mut StoreTx,
        appends: &[StreamAppend],
    ) -> impl Future<Output = Result<Vec<u64>>> + Send;

    /// Events of one stream from `from_position` (1-based, inclusive), at most `limit`.
    fn read_stream(
        &self,
        stream_id: &str,
        from_position: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>>> + Send;

    /// The stream's last position, `None` when it has no events.
    fn stream_version(&self, stream_id: &str) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// Committed events after `after` that match `filter`, in log order, at most `limit`.
    /// Never skips an event, whatever writers do concurrently.
    fn read_log(
        &self,
        after: Checkpoint,
        filter: &LogFilter,
        limit: usize,
    ) -> impl Future<Output = Result<LogBatch>> + Send;

    fn load_checkpoint(
        &self,
        key: &CheckpointKey,
    ) -> impl Future<Output = Result<Option<Checkpoint>>> + Send;

    /// Moves a checkpoint from `expected` to `new` inside `tx` (compare-and-set). With an
    /// `owner`, the owner must also hold the lease on the key's partition. Fails with
    /// [`StoreError::CheckpointConflict`](crate::StoreError::CheckpointConflict) otherwise.
    fn save_checkpoint(
        &self,
        tx: &mut StoreTx,
        key: &CheckpointKey,
        expected: Option<Checkpoint>,
        new: Checkpoint,
        owner: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Keeps `member` alive in `group`, makes sure the group's `partitions` lease rows exist,
    /// renews the member's leases and counts the live members.
    fn heartbeat(
        &self,
        group: &str,
        member: &str,
        partitions: u32,
        ttl: Duration,
    ) -> impl Future<Output = Result<Heartbeat>> + Send;

    /// Takes up to `max` partitions that are free or whose lease expired.
    fn acquire_leases(
        &self,
        group: &str,
        member: &str,
        max: u32,
        ttl: Duration,
    ) -> impl Future<Output = Result<Vec<u32>>> + Send;

    fn release_leases(
        &self,
        group: &str,
        member: &str,
        partitions: &[u32],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Releases every lease of `member` and removes it from the group.
    fn leave_group(&self, group: &str, member: &str) -> impl Future<Output = Result<()>> + Send;

    /// Rung after each commit that appended events.
    fn doorbell(&self) -> &Doorbell;

    /// Whether the database answers.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;
}

/// A write transaction on either backend.
pub struct StoreTx {
    pub(crate) inner: TxInner,
    /// Rung on commit when the transaction appended events.
    pub(crate) doorbell: Doorbell,
    pub(crate) appended: bool,
}

pub(crate) enum TxInner {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl StoreTx {
    pub async fn commit(self) -> Result<()> {
        match self.inner {
            TxInner::Postgres(tx) => tx.commit().await?,
            TxInner::Sqlite(tx) => tx.commit().await?,
        }
        if self.appended {
            self.doorbell.ring();
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self.inner {
            TxInner::Postgres(tx) => tx.rollback().await?,
            TxInner::Sqlite(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    /// The connection, for a subscriber's read-model writes in the same transaction.
    pub fn conn(&mut self) -> TxConn<'_> {
        match &mut self.inner {
            TxInner::Postgres(tx) => TxConn::Postgres(tx),
            TxInner::Sqlite(tx) => TxConn::Sqlite(tx),
        }
    }
}

/// The connection inside a [`StoreTx`].
pub enum TxConn<'a> {
    Postgres(&'a mut sqlx::PgConnection),
    Sqlite(&'a mut sqlx::SqliteConnection),
}

/// Runs the same sqlx code on whichever connection a [`StoreTx`] holds. Most read-model SQL is
/// the same on both backends (`$1` placeholders work on SQLite too), so one body serves both:
/// `on_tx!(tx, |conn| sqlx::query("…").bind(x).execute(conn).await.map(|r| r.rows_affected()))`.
/// The body must give the same type on both backends, hence the `map`.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {{
        match $tx.conn() {
            $crate::TxConn::Postgres($conn) => $body,
            $crate::TxConn::Sqlite($conn) => $body,
        }
    }};
}
