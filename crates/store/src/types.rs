//! The values the store speaks in: streams, expected versions, events going in and coming out,
//! log checkpoints and filters. They know nothing of any backend.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// How many partition keys the log is cut into. Consumer groups map these onto their own,
/// smaller number of virtual partitions (`key % partitions`), so the stored key never changes
/// when a group is resized.
pub const PARTITION_KEYS: u32 = 256;

/// The category of a stream: the part of its id before the first `-` (`message-…` is `message`).
pub fn category_of(stream_id: &str) -> &str {
    stream_id.split_once('-').map_or(stream_id, |(c, _)| c)
}

/// The partition key of a stream: FNV-1a of its id, modulo [`PARTITION_KEYS`].
/// Every event of one stream has the same key, so a partitioned reader sees a stream in order.
pub fn partition_key_of(stream_id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in stream_id.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % PARTITION_KEYS
}

/// What the writer believes about a stream's version (its last position; positions start at 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist, at any version.
    StreamExists,
    /// The stream's last position must be exactly this.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream whose last position is `actual` (`None`: no stream) meets the expectation.
    pub fn accepts(self, actual: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(n) => actual == Some(n),
        }
    }
}

/// An event to append. `data` and `metadata` are JSON documents, serialised once by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Unique across the store; re-appending the same id is an idempotent retry.
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    pub data: String,
    pub metadata: String,
}

impl NewEvent {
    /// An event with a fresh UUID v7 id, from already-serialised JSON values.
    pub fn new(
        event_type: impl Into<String>,
        schema_version: u16,
        data: &serde_json::Value,
        metadata: &serde_json::Value,
    ) -> Self {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version,
            data: data.to_string(),
            metadata: metadata.to_string(),
        }
    }
}

/// The events to append to one stream, with the writer's expectation of its version.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// A position in the log. Readers see events strictly after it, in `(transaction_id, position)`
/// order. On SQLite `transaction_id` is always 0: its single writer makes rowid order commit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Checkpoint {
    pub transaction_id: i64,
    pub global_position: i64,
}

impl Checkpoint {
    /// Before the first event.
    pub const START: Checkpoint = Checkpoint {
        transaction_id: 0,
        global_position: 0,
    };
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub checkpoint: Checkpoint,
    pub stream_id: String,
    pub stream_position: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    pub data: String,
    pub metadata: String,
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// The payload as a JSON value.
    pub fn data_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.data)
    }

    pub fn category(&self) -> &str {
        category_of(&self.stream_id)
    }
}

/// One of a consumer group's virtual partitions: events whose key `% count == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionFilter {
    pub count: u32,
    pub index: u32,
}

/// Which events a log read returns. Empty lists mean "all".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub categories: Vec<String>,
    pub event_types: Vec<String>,
    pub partition: Option<PartitionFilter>,
}

impl LogFilter {
    pub fn all() -> Self {
        LogFilter::default()
    }

    pub fn categories(categories: &[&str]) -> Self {
        LogFilter {
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
            ..LogFilter::default()
        }
    }

    pub fn with_partition(mut self, partition: PartitionFilter) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Whether an event passes the filter; the backends apply the same test in SQL.
    pub fn matches(&self, stream_id: &str, event_type: &str) -> bool {
        (self.categories.is_empty() || self.categories.iter().any(|c| c == category_of(stream_id)))
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
            && self
                .partition
                .is_none_or(|p| partition_key_of(stream_id) % p.count == p.index)
    }
}

/// The answer to a log read.
#[derive(Debug, Clone, PartialEq)]
pub struct LogBatch {
    /// Matching events after the requested checkpoint, in log order.
    pub events: Vec<RecordedEvent>,
    /// Where the next read starts. When the batch was not full this can be past the last event:
    /// everything up to the reader's visibility horizon was scanned, so filtered readers do not
    /// scan the same non-matching events again.
    pub next: Checkpoint,
    /// Committed events exist beyond the visibility horizon: an older transaction is still
    /// open and holds them back. Its commit may ring no doorbell here (it can belong to another
    /// process or database), so a reader should look again soon rather than sleep a full poll.
    pub blocked: bool,
}

/// The identity of a checkpoint: a subscription and one of its partitions (0 when unpartitioned).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckpointKey {
    pub subscription: String,
    pub partition: u32,
}

impl CheckpointKey {
    pub fn new(subscription: impl Into<String>, partition: u32) -> Self {
        CheckpointKey {
            subscription: subscription.into(),
            partition,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_is_the_prefix_before_the_first_dash() {
        assert_eq!(category_of("message-0190-abc"), "message");
        assert_eq!(category_of("template"), "template");
    }

    #[test]
    fn partition_keys_are_stable_and_in_range() {
        // The key is stored with each event, so this function must never change.
        assert_eq!(partition_key_of(""), 0x811c_9dc5 % PARTITION_KEYS);
        assert_eq!(partition_key_of("message-a"), partition_key_of("message-a"));
        assert!((0..1000).all(|i| partition_key_of(&format!("s-{i}")) < PARTITION_KEYS));
    }

    #[test]
    fn expectations() {
        use ExpectedVersion::*;
        assert!(Any.accepts(None) && Any.accepts(Some(3)));
        assert!(NoStream.accepts(None) && !NoStream.accepts(Some(1)));
        assert!(StreamExists.accepts(Some(1)) && !StreamExists.accepts(None));
        assert!(Exact(2).accepts(Some(2)) && !Exact(2).accepts(Some(3)) && !Exact(2).accepts(None));
    }
}
