//! Projections: transactional subscribers that build the query views from the event log. Each
//! writes its read tables and moves its checkpoint in one transaction, so every event is
//! applied exactly once; each can be rebuilt from the log.
//!
//! - [`trace`]: the message trace (status, where it went, timeline) and the customer-service
//!   lookup by receiver, request, template, status, channel and time.
//! - [`stats`]: daily counters per tenant, day, template, channel and account.
//! - [`reconciliation`]: what each account dispatched on a day, to set beside the supplier's bill.
//! - [`inbox`]: the in-app inbox, per tenant and receiver.
//! - [`lag`]: how far a projection has caught up with the log.
//! - [`replay`]: rebuilding a projection into shadow tables and swapping them in.
//!
//! [`Projection`] lists them all, for the server that runs them and for `herald replay`, which
//! rebuilds one into shadow copies of its tables ([`Target::Shadow`]) and swaps them in.

mod by_message;
pub mod inbox;
pub mod lag;
pub mod reconciliation;
pub mod replay;
pub mod stats;
pub mod trace;

use domain::MessageEvent;
use store::{HandlerError, LogFilter, RecordedEvent, StoreTx};

/// What a shadow copy of a read table (and a replay's subscription) is called: the live name
/// with this suffix.
pub const SHADOW_SUFFIX: &str = "_shadow";

/// Where a projection's handler writes: the live read tables, or the shadow copies a replay
/// fills before it swaps them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    #[default]
    Live,
    Shadow,
}

impl Target {
    /// The name of `table` (a live table name) for this target.
    pub fn table(self, table: &str) -> String {
        match self {
            Target::Live => table.to_owned(),
            Target::Shadow => format!("{table}{SHADOW_SUFFIX}"),
        }
    }

    /// Whether a write must guard against the rows it did not read being there already
    /// (`ON CONFLICT`). The live tables' writes do, so applying an event twice changes nothing.
    /// A replay's shadows are written by the replay alone, which applies each event once: a row
    /// it did not read is not there. A plain insert costs Postgres half what an upsert does (no
    /// index probe before it, no speculative insertion), and an append-only table needs no
    /// unique index until the fill is over ([`Projection::append_only`]).
    pub(crate) fn guarded(self) -> bool {
        self == Target::Live
    }

    /// `rows` split into those written as upserts and those inserted plainly: in the live
    /// tables every row is an upsert; in a replay's shadows only the rows that `existed`.
    pub(crate) fn split<T>(self, rows: Vec<T>, existed: impl Fn(&T) -> bool) -> (Vec<T>, Vec<T>) {
        if self.guarded() {
            (rows, Vec::new())
        } else {
            rows.into_iter().partition(existed)
        }
    }
}

/// Every projection Herald keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Projection {
    Trace,
    Stats,
    Reconciliation,
    Inbox,
}

impl Projection {
    pub const ALL: &'static [Projection] = &[
        Projection::Trace,
        Projection::Stats,
        Projection::Reconciliation,
        Projection::Inbox,
    ];

    /// The name the CLI and the API use.
    pub fn name(self) -> &'static str {
        match self {
            Projection::Trace => "trace",
            Projection::Stats => "stats",
            Projection::Reconciliation => "reconciliation",
            Projection::Inbox => "inbox",
        }
    }

    /// The projection called `name`.
    pub fn parse(name: &str) -> Option<Projection> {
        Projection::ALL.iter().copied().find(|p| p.name() == name)
    }

    /// The subscription (and checkpoint) that feeds the live tables.
    pub fn subscription(self) -> &'static str {
        match self {
            Projection::Trace => trace::SUBSCRIPTION,
            Projection::Stats => stats::SUBSCRIPTION,
            Projection::Reconciliation => reconciliation::SUBSCRIPTION,
            Projection::Inbox => inbox::SUBSCRIPTION,
        }
    }

    /// The stream category it follows (for its lag).
    pub fn category(self) -> &'static str {
        match self {
            Projection::Trace
            | Projection::Stats
            | Projection::Reconciliation
            | Projection::Inbox => "message",
        }
    }

    /// The events it reads.
    pub fn filter(self) -> LogFilter {
        match self {
            Projection::Trace => trace::filter(),
            Projection::Stats => stats::filter(),
            Projection::Reconciliation => reconciliation::filter(),
            Projection::Inbox => inbox::filter(),
        }
    }

    /// Its read tables, by their live names.
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Projection::Trace => trace::TABLES,
            Projection::Stats => stats::TABLES,
            Projection::Reconciliation => reconciliation::TABLES,
            Projection::Inbox => inbox::TABLES,
        }
    }

    /// Its tables whose rows are only ever inserted, never read back while applying events: a
    /// replay gives their shadows every index, unique ones too, once the fill is over, and
    /// building an index over a filled table costs a fraction of keeping it row by row.
    pub fn append_only(self) -> &'static [&'static str] {
        match self {
            Projection::Trace => trace::APPEND_ONLY,
            Projection::Stats | Projection::Reconciliation | Projection::Inbox => &[],
        }
    }

    /// A handler writing to `target`'s tables.
    pub fn handler(self, target: Target) -> Handler {
        match self {
            Projection::Trace => Handler::Trace(trace::Trace::new(target)),
            Projection::Stats => Handler::Stats(stats::Stats::new(target)),
            Projection::Reconciliation => {
                Handler::Reconciliation(reconciliation::Reconciliation::new(target))
            }
            Projection::Inbox => Handler::Inbox(inbox::Inbox::new(target)),
        }
    }
}

/// The messages of a batch that have rows from earlier batches to read: `steps` are a batch's
/// (message, stream position) pairs in log order, and a message whose first step here is its
/// stream's first event (its acceptance) began in this batch, so nothing of it is stored yet.
/// Most of a batch is new messages, and reading each one's row only to find none was a tenth of
/// a replay's work in the database. Sorted, each message once.
pub(crate) fn continued<'a>(steps: impl IntoIterator<Item = (&'a str, u64)>) -> Vec<&'a str> {
    let mut seen = std::collections::HashSet::new();
    let mut ids: Vec<&str> = steps
        .into_iter()
        .filter(|&(id, position)| seen.insert(id) && position != 1)
        .map(|(id, _)| id)
        .collect();
    ids.sort_unstable();
    ids
}

/// A message event of a batch, decoded once for every projection that applies it (`replay
/// --all` writes each batch to four projections).
#[derive(Debug)]
pub struct Decoded<'a> {
    pub recorded: &'a RecordedEvent,
    /// The stream's id without its `message-` prefix.
    pub message_id: &'a str,
    pub event: &'a MessageEvent,
}

/// The message events of `events`, decoded, each with its index in `events`; events of other
/// streams are left out, as every projection here reads messages only. [`views`] pairs them
/// with their records.
pub fn decode(events: &[RecordedEvent]) -> Result<Vec<(usize, MessageEvent)>, HandlerError> {
    let mut decoded = Vec::with_capacity(events.len());
    for (index, recorded) in events.iter().enumerate() {
        if !recorded.stream_id.starts_with(MESSAGE_PREFIX) {
            continue;
        }
        let event = MessageEvent::decode_json(
            &recorded.event_type,
            recorded.schema_version,
            &recorded.data,
        )?;
        decoded.push((index, event));
    }
    Ok(decoded)
}

/// The events [`decode`] made of `events`, each beside its record.
pub fn views<'a>(
    events: &'a [RecordedEvent],
    decoded: &'a [(usize, MessageEvent)],
) -> Vec<Decoded<'a>> {
    decoded
        .iter()
        .filter_map(|(index, event)| {
            let recorded = events.get(*index)?;
            let message_id = recorded.stream_id.strip_prefix(MESSAGE_PREFIX)?;
            Some(Decoded {
                recorded,
                message_id,
                event,
            })
        })
        .collect()
}

const MESSAGE_PREFIX: &str = "message-";

/// A batch of the log and its message events decoded, owned together: a replay decodes the next
/// batch on another thread while the last one is written.
#[derive(Debug, Default)]
pub struct DecodedBatch {
    events: Vec<RecordedEvent>,
    decoded: Vec<(usize, MessageEvent)>,
}

impl DecodedBatch {
    pub fn new(events: Vec<RecordedEvent>) -> Result<Self, HandlerError> {
        let decoded = decode(&events)?;
        Ok(DecodedBatch { events, decoded })
    }

    /// Every event read, message events or not.
    pub fn events(&self) -> &[RecordedEvent] {
        &self.events
    }

    pub fn views(&self) -> Vec<Decoded<'_>> {
        views(&self.events, &self.decoded)
    }
}

/// The handler of any projection.
#[derive(Debug, Clone)]
pub enum Handler {
    Trace(trace::Trace),
    Stats(stats::Stats),
    Reconciliation(reconciliation::Reconciliation),
    Inbox(inbox::Inbox),
}

impl Handler {
    /// Applies a batch already decoded ([`decode`]).
    pub async fn apply(&self, tx: &mut StoreTx, batch: &[Decoded<'_>]) -> Result<(), HandlerError> {
        match self {
            Handler::Trace(h) => h.apply(tx, batch).await,
            Handler::Stats(h) => h.apply(tx, batch).await,
            Handler::Reconciliation(h) => h.apply(tx, batch).await,
            Handler::Inbox(h) => h.apply(tx, batch).await,
        }
    }
}

impl store::Handler for Handler {
    async fn handle(&self, tx: &mut StoreTx, events: &[RecordedEvent]) -> Result<(), HandlerError> {
        let decoded = decode(events)?;
        self.apply(tx, &views(events, &decoded)).await
    }

    async fn committed(&self) {
        if let Handler::Inbox(h) = self {
            store::Handler::committed(h).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Target, continued};

    #[test]
    fn only_a_replay_inserts_the_rows_it_did_not_read_without_a_guard() {
        let rows = vec![1, 2, 3, 4];
        let even = |n: &i32| n % 2 == 0;
        assert_eq!(
            Target::Live.split(rows.clone(), even),
            (vec![1, 2, 3, 4], vec![])
        );
        assert_eq!(Target::Shadow.split(rows, even), (vec![2, 4], vec![1, 3]));
        assert!(Target::Live.guarded() && !Target::Shadow.guarded());
    }

    #[test]
    fn only_messages_begun_before_the_batch_are_read() {
        // b began here; a and c went on from earlier batches, whatever came after.
        let steps = [("c", 4), ("b", 1), ("a", 2), ("b", 2), ("c", 5), ("a", 1)];
        assert_eq!(continued(steps), vec!["a", "c"]);
        assert!(continued([("x", 1), ("x", 2), ("x", 3)]).is_empty());
        assert!(continued(Vec::<(&str, u64)>::new()).is_empty());
    }
}
