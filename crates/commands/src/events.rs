//! Between the store's JSON rows and the domain's typed events: loading and folding a stream,
//! and encoding events with their metadata for an append.

use domain::{DomainEvent, EventMetadata};
use store::{
    EventStore, ExpectedVersion, NewEvent, RecordedEvent, Store, StoreTx, StreamAppend, on_read,
};

use crate::error::CommandError;

/// Encodes a domain event for the store.
pub fn encode<E: DomainEvent>(event: &E, metadata: &EventMetadata) -> NewEvent {
    encode_with(event, &metadata_json(metadata))
}

/// The metadata as the store keeps it: written once for the many events of one request.
pub fn metadata_json(metadata: &EventMetadata) -> String {
    serde_json::to_string(metadata).unwrap_or_else(|_| "{}".to_owned())
}

/// Encodes a domain event for the store with metadata already written ([`metadata_json`]).
pub fn encode_with<E: DomainEvent>(event: &E, metadata_json: &str) -> NewEvent {
    NewEvent {
        event_id: domain::ids::uuid_v7(),
        event_type: event.event_type().to_owned(),
        schema_version: E::SCHEMA_VERSION,
        data: event.encode_json(),
        metadata: metadata_json.to_owned(),
    }
}

/// Appends `new_events` to the stream `stream_id`, which is at `version` (0: no stream yet),
/// inside `tx`, so the caller commits them with its own index rows; the stream's new version.
/// A concurrent change fails the append with a conflict.
pub async fn append_at<E: DomainEvent>(
    store: &Store,
    tx: &mut StoreTx,
    stream_id: String,
    version: u64,
    new_events: &[E],
    metadata: &EventMetadata,
) -> Result<u64, CommandError> {
    let append = StreamAppend {
        stream_id,
        expected: if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        },
        events: new_events.iter().map(|e| encode(e, metadata)).collect(),
    };
    let versions = store.append_in(tx, &[append]).await?;
    Ok(versions.first().copied().unwrap_or(version))
}

/// Decodes a stored event. A row this build cannot read is a server fault, not the caller's.
pub fn decode<E: DomainEvent>(recorded: &RecordedEvent) -> Result<E, CommandError> {
    E::decode_json(
        &recorded.event_type,
        recorded.schema_version,
        &recorded.data,
    )
    .map_err(CommandError::internal)
}

/// The tenant recorded with an event.
pub fn tenant_of(recorded: &RecordedEvent) -> Option<String> {
    let metadata: serde_json::Value = serde_json::from_str(&recorded.metadata).ok()?;
    metadata.get("tenant")?.as_str().map(str::to_owned)
}

/// Every event of a stream, decoded, and the stream's version (0 when it has no events).
pub async fn load<E: DomainEvent>(
    store: &Store,
    stream_id: &str,
) -> Result<(Vec<E>, u64), CommandError> {
    let mut events = Vec::new();
    let mut version = 0;
    loop {
        let page = store.read_stream(stream_id, version + 1, 1000).await?;
        let done = page.len() < 1000;
        for recorded in &page {
            events.push(decode(recorded)?);
            version = recorded.stream_position;
        }
        if done {
            return Ok((events, version));
        }
    }
}

/// The row count and the sum of the `version` column of an index of streams (one row per
/// stream, its version moved in the commit that appends to it): it changes with every append
/// to any of them, so a process notices a change by reading one small table.
pub async fn index_fingerprint(
    store: &Store,
    table: &'static str,
) -> Result<(i64, i64), CommandError> {
    let sql = format!("SELECT COUNT(*), CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM {table}");
    on_read!(store, |pool| sqlx::query_as::<_, (i64, i64)>(&sql)
        .fetch_one(pool)
        .await)
    .map_err(CommandError::internal)
}
