//! Herald's event store: an append-only log of events in streams, with expected-version appends,
//! log reads that never skip an event, subscriptions and consumer groups.
//!
//! - [`types`]: the values of the API (streams, events, checkpoints, filters).
//! - [`EventStore`]: the one trait; [`PgStore`] (production) and [`SqliteStore`] (embedded
//!   default) implement it, and [`Store`] picks one by URL.
//! - [`subscription`]: catch-up-then-live readers that move checkpoints with their writes.
//! - [`group`]: consumer groups sharing partitions through leases.
//! - [`queue`]: a work queue in lanes, with leased claims (dispatch's due queue).
//! - [`crowd`]: uploaded files in chunks, and the crowd sends' schedule with leased claims.
//! - [`copy`]: rows written with Postgres's `COPY`, for tables being filled from nothing.
//! - [`portable`]: events recorded elsewhere written as they were (`herald import`), and the
//!   lookups an export needs to resume.
//!
//! The store knows nothing of messages or templates: events arrive as JSON with a type name.

mod any;
mod append;
pub mod copy;
pub mod crowd;
pub mod doorbell;
mod error;
mod event_store;
pub mod group;
mod migrate;
pub mod portable;
mod postgres;
pub mod queue;
mod sqlite;
pub mod subscription;
pub mod supplier_ids;
pub mod types;

pub use any::{Store, redact};
pub use error::{Result, StoreError};
pub use event_store::{EventStore, Heartbeat, StoreTx, TxConn};
pub use group::{ConsumerGroup, GroupOptions};
pub use postgres::{PgOptions, PgStore};
pub use sqlite::SqliteStore;
pub use subscription::{Handler, HandlerError, SubscriptionOptions};
pub use types::{
    Checkpoint, CheckpointKey, ExpectedVersion, LogBatch, LogFilter, NewEvent, PartitionFilter,
    RecordedEvent, StreamAppend,
};
