//! The store's errors. Conflicts are typed, so callers can retry or report them; everything
//! the database says otherwise is `Database`.

use crate::types::ExpectedVersion;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream's version was not what the writer expected. Nothing was written.
    #[error(
        "wrong expected version on stream {stream_id}: expected {expected:?}, actual {actual:?}"
    )]
    WrongExpectedVersion {
        stream_id: String,
        expected: ExpectedVersion,
        /// The stream's last position when the append was refused (`None`: no stream).
        actual: Option<u64>,
    },
    /// An event id in the batch is already stored, but not as part of this same append.
    #[error("event {event_id:?} is already stored in another place")]
    DuplicateEventId { event_id: Option<uuid::Uuid> },
    /// Another writer appended to one of the streams at the same moment. Nothing was written;
    /// [`EventStore::append`](crate::EventStore::append) retries this itself, `append_in` cannot.
    #[error("a concurrent append took the same stream positions")]
    ConcurrentAppend,
    /// The append itself is malformed (no events, a stream named twice, a bad name).
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// On Postgres an append must be the first write of its transaction: otherwise its
    /// transaction id would be older than the reads it depends on, and log order could
    /// put a stream's events out of order.
    #[error("append must be the first write of its transaction")]
    AppendNotFirstWrite,
    /// An imported event takes a stream position or an event id the store already holds.
    #[error("imported event clashes with the store: {0}")]
    ImportClash(String),
    /// A checkpoint moved under us, or our lease on its partition is gone.
    #[error("checkpoint {subscription}/{partition} was moved by someone else")]
    CheckpointConflict {
        subscription: String,
        partition: u32,
    },
    /// A subscription handler failed; its batch was rolled back.
    #[error("handler: {0}")]
    Handler(String),
    // The cause is the source, so `{:#}` prints it once: "database: connection refused".
    #[error("database")]
    Database(#[from] sqlx::Error),
    #[error("migration")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// Whether the error says the caller's view of a stream was stale.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            StoreError::WrongExpectedVersion { .. } | StoreError::ConcurrentAppend
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
