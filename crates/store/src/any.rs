//! `Store`: whichever backend the configuration names, behind the one trait.

use std::collections::HashMap;
use std::time::Duration;
use tracing::Instrument;

use crate::doorbell::Doorbell;
use crate::error::{Result, StoreError};
use crate::event_store::{EventStore, Heartbeat, StoreTx};
use crate::postgres::{PgOptions, PgStore};
use crate::sqlite::SqliteStore;
use crate::types::{Checkpoint, CheckpointKey, LogBatch, LogFilter, RecordedEvent, StreamAppend};

#[derive(Clone)]
pub enum Store {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl Store {
    /// Every event of each stream in `ids` (at most `limit` a stream), by stream: on Postgres
    /// in one round trip, for a worker that claimed many messages at once.
    pub async fn read_streams(
        &self,
        ids: &[&str],
        limit: usize,
    ) -> Result<HashMap<String, Vec<RecordedEvent>>> {
        let mut streams: HashMap<String, Vec<RecordedEvent>> = ids
            .iter()
            .map(|id| ((*id).to_owned(), Vec::new()))
            .collect();
        match self {
            Store::Postgres(s) => {
                for event in s.read_streams(ids, limit).await? {
                    if let Some(stream) = streams.get_mut(&event.stream_id) {
                        stream.push(event);
                    }
                }
            }
            // In-process: nothing to save by reading them together.
            Store::Sqlite(s) => {
                for (id, stream) in &mut streams {
                    *stream = s.read_stream(id, 1, limit).await?;
                }
            }
        }
        Ok(streams)
    }

    /// Connects by URL: `postgres://…`/`postgresql://…`, or `sqlite://PATH` / `sqlite:PATH`.
    pub async fn connect(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(
                PgStore::connect(url, PgOptions::default()).await?,
            ))
        } else if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::connect(url).await?))
        } else {
            Err(StoreError::UnsupportedUrl(redact(url)))
        }
    }

    pub async fn migrate(&self) -> Result<()> {
        match self {
            Store::Postgres(s) => s.migrate().await,
            Store::Sqlite(s) => s.migrate().await,
        }
    }

    /// `postgres` or `sqlite`, for health reports and logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }
}

/// A URL without its password, for error messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    format!("{}://{user}:***@{}", &url[..scheme], &url[at + 1..])
                }
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The span of one append, a step of the trace of what it records.
pub(crate) fn append_span(appends: &[StreamAppend]) -> tracing::Span {
    tracing::info_span!(
        "append",
        streams = appends.len(),
        events = appends.iter().map(|a| a.events.len()).sum::<usize>()
    )
}

/// Forwards a call to whichever backend this is.
macro_rules! both {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Postgres($s) => $call,
            Store::Sqlite($s) => $call,
        }
    };
}

impl EventStore for Store {
    async fn append(&self, appends: &[StreamAppend]) -> Result<Vec<u64>> {
        both!(self, s => s.append(appends).instrument(append_span(appends)).await)
    }
    async fn begin(&self) -> Result<StoreTx> {
        both!(self, s => s.begin().await)
    }
    async fn append_in(&self, tx: &mut StoreTx, appends: &[StreamAppend]) -> Result<Vec<u64>> {
        both!(self, s => s.append_in(tx, appends).instrument(append_span(appends)).await)
    }
    async fn read_stream(
        &self,
        stream_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        both!(self, s => s.read_stream(stream_id, from, limit).await)
    }
    async fn stream_version(&self, stream_id: &str) -> Result<Option<u64>> {
        both!(self, s => s.stream_version(stream_id).await)
    }
    async fn read_log(
        &self,
        after: Checkpoint,
        filter: &LogFilter,
        limit: usize,
    ) -> Result<LogBatch> {
        both!(self, s => s.read_log(after, filter, limit).await)
    }
    async fn load_checkpoint(&self, key: &CheckpointKey) -> Result<Option<Checkpoint>> {
        both!(self, s => s.load_checkpoint(key).await)
    }
    async fn save_checkpoint(
        &self,
        tx: &mut StoreTx,
        key: &CheckpointKey,
        expected: Option<Checkpoint>,
        new: Checkpoint,
        owner: Option<&str>,
    ) -> Result<()> {
        both!(self, s => s.save_checkpoint(tx, key, expected, new, owner).await)
    }
    async fn heartbeat(
        &self,
        group: &str,
        member: &str,
        partitions: u32,
        ttl: Duration,
    ) -> Result<Heartbeat> {
        both!(self, s => s.heartbeat(group, member, partitions, ttl).await)
    }
    async fn acquire_leases(
        &self,
        group: &str,
        member: &str,
        max: u32,
        ttl: Duration,
    ) -> Result<Vec<u32>> {
        both!(self, s => s.acquire_leases(group, member, max, ttl).await)
    }
    async fn release_leases(&self, group: &str, member: &str, partitions: &[u32]) -> Result<()> {
        both!(self, s => s.release_leases(group, member, partitions).await)
    }
    async fn leave_group(&self, group: &str, member: &str) -> Result<()> {
        both!(self, s => s.leave_group(group, member).await)
    }
    fn doorbell(&self) -> &Doorbell {
        both!(self, s => s.doorbell())
    }
    async fn ping(&self) -> Result<()> {
        both!(self, s => s.ping().await)
    }
}

/// Runs the same sqlx read on whichever backend a [`Store`] is, on its read pool:
/// `on_read!(store, |pool| sqlx::query_as("…").bind(x).fetch_all(pool).await)`.
/// `$1` placeholders work on both backends.
#[macro_export]
macro_rules! on_read {
    ($store:expr, |$pool:ident| $body:expr) => {{
        match $store {
            $crate::Store::Postgres(s) => {
                let $pool = s.pool();
                $body
            }
            $crate::Store::Sqlite(s) => {
                let $pool = s.readers();
                $body
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            super::redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(super::redact("sqlite://herald.db"), "sqlite://herald.db");
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
