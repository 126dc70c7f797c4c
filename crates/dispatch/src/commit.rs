//! Group commit of dispatch outcomes. Every message a lane sends ends in one write: its outcome
//! events appended at the version it was loaded at, its queue row moved, and the supplier's id
//! remembered. Written one transaction a message, the round trips of those writes bounded the
//! dispatch rate. A lane's [`Committer`] takes the outcomes of every message in flight and writes
//! those that arrive while a commit is under way together, in one transaction: one multi-stream
//! append, one statement per kind of queue move, one insert of supplier ids, one commit.
//!
//! A batch is all or nothing. When it fails (a stream moved on since it was loaded, a receipt or
//! a recall got in first; or any database error) nothing of it is written, and each message is
//! told so: it records its outcome alone through the worker's own path, which loads the stream
//! again and decides again. The supplier is never called twice.

use std::collections::HashSet;

use store::queue::{self, Move};
use store::{EventStore, ExpectedVersion, NewEvent, Store, StreamAppend};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

/// Outcomes written in one transaction at most.
const MAX_BATCH: usize = 256;

/// One message's outcome, ready to write.
pub(crate) struct Outcome {
    pub stream: String,
    /// The stream's version the outcome was decided on.
    pub version: u64,
    pub events: Vec<NewEvent>,
    /// What becomes of the queue row (`None`: it stays as it is).
    pub next: Option<Move>,
    /// `(account, supplier's id)` to remember for receipts.
    pub supplier_id: Option<(String, String)>,
}

type Item = (Outcome, oneshot::Sender<bool>);

/// Writes a lane's outcomes in group commits. Cloned into each message's task; the writer
/// stops when the last clone is dropped, after writing what it was given.
#[derive(Clone)]
pub(crate) struct Committer {
    sender: mpsc::Sender<Item>,
}

impl Committer {
    /// Starts the writer on `store`.
    pub fn start(store: Store) -> (Committer, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(MAX_BATCH * 4);
        let writer = tokio::spawn(run(store, receiver));
        (Committer { sender }, writer)
    }

    /// Writes `outcome` with others; whether it was written. `false`: nothing of it was, and
    /// the caller records it alone.
    pub async fn commit(&self, outcome: Outcome) -> bool {
        let (reply, answer) = oneshot::channel();
        if self.sender.send((outcome, reply)).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

async fn run(store: Store, mut receiver: mpsc::Receiver<Item>) {
    let mut carried: Option<Item> = None;
    loop {
        let first = match carried.take() {
            Some(item) => item,
            None => match receiver.recv().await {
                Some(item) => item,
                None => return,
            },
        };
        // What arrived while the last batch was written goes in this one. A stream appears
        // once in an append: a second outcome of the same message waits for the next batch.
        let mut streams: HashSet<String> = HashSet::from([first.0.stream.clone()]);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Ok(item) = receiver.try_recv() else {
                break;
            };
            if !streams.insert(item.0.stream.clone()) {
                carried = Some(item);
                break;
            }
            batch.push(item);
        }
        // A batch belongs to no one message's trace: it is a small trace of its own, and each
        // message's `dispatch` span has an `append` span for its wait.
        let span = tracing::info_span!("group_commit", outcomes = batch.len());
        let written = match write(&store, &mut batch).instrument(span).await {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, outcomes = batch.len(), "a group commit failed; each outcome is recorded alone");
                false
            }
        };
        for (_, reply) in batch {
            // A task that stopped waiting has nothing to learn.
            let _ = reply.send(written);
        }
    }
}

async fn write(store: &Store, batch: &mut [Item]) -> Result<(), store::StoreError> {
    let appends: Vec<StreamAppend> = batch
        .iter_mut()
        .filter(|(o, _)| !o.events.is_empty())
        .map(|(o, _)| StreamAppend {
            stream_id: o.stream.clone(),
            expected: ExpectedVersion::Exact(o.version),
            events: std::mem::take(&mut o.events),
        })
        .collect();
    let moves: Vec<(String, Move)> = batch
        .iter()
        .filter_map(|(o, _)| {
            let id = o.stream.strip_prefix("message-").unwrap_or(&o.stream);
            o.next.clone().map(|m| (id.to_owned(), m))
        })
        .collect();
    let ids: Vec<(String, String, String)> = batch
        .iter()
        .filter_map(|(o, _)| {
            let (account, supplier_id) = o.supplier_id.clone()?;
            let id = o.stream.strip_prefix("message-").unwrap_or(&o.stream);
            Some((account, supplier_id, id.to_owned()))
        })
        .collect();
    let mut tx = store.begin().await?;
    if !appends.is_empty() {
        store.append_in(&mut tx, &appends).await?;
    }
    queue::move_all(&mut tx, &moves).await?;
    if !ids.is_empty() {
        store::supplier_ids::record_all(&mut tx, &ids).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use store::queue::QueueRow;

    fn event() -> NewEvent {
        NewEvent {
            event_id: domain::ids::uuid_v7(),
            event_type: "Test".to_owned(),
            schema_version: 1,
            data: "{}".to_owned(),
            metadata: "{}".to_owned(),
        }
    }

    fn outcome(stream: &str, version: u64) -> Outcome {
        Outcome {
            stream: stream.to_owned(),
            version,
            events: vec![event()],
            next: Some(Move::Remove),
            supplier_id: Some(("acct".to_owned(), format!("sid-{stream}"))),
        }
    }

    /// A store with streams `message-a` and `message-b`, one event each, both queued.
    async fn store() -> Store {
        let dir = std::env::temp_dir().join(format!("herald-commit-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.join("t.db").display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let appends: Vec<StreamAppend> = ["message-a", "message-b"]
            .map(|s| StreamAppend {
                stream_id: s.to_owned(),
                expected: ExpectedVersion::NoStream,
                events: vec![event()],
            })
            .into();
        store.append_in(&mut tx, &appends).await.unwrap();
        let rows: Vec<QueueRow> = ["a", "b"]
            .map(|id| QueueRow {
                message_id: id.to_owned(),
                tenant_id: "acme".to_owned(),
                lane: "WEBHOOK.NOTICE".to_owned(),
                due_at: chrono::Utc::now(),
            })
            .into();
        queue::enqueue(&mut tx, &rows).await.unwrap();
        tx.commit().await.unwrap();
        store
    }

    // One thread: both outcomes are queued before the writer runs, so they share a batch.
    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_is_written_whole_or_not_at_all() {
        let store = store().await;
        let (committer, writer) = Committer::start(store.clone());
        // `b` was decided on a version its stream has left: the batch fails, and `a` with it.
        let (a, b) = tokio::join!(
            committer.commit(outcome("message-a", 1)),
            committer.commit(outcome("message-b", 0))
        );
        assert!(!a && !b);
        assert_eq!(store.stream_version("message-a").await.unwrap(), Some(1));
        assert_eq!(queue::depth(&store, "WEBHOOK.NOTICE").await.unwrap(), 2);

        // Alone, `a` is written: its event, its queue row gone, its supplier id remembered.
        assert!(committer.commit(outcome("message-a", 1)).await);
        assert_eq!(store.stream_version("message-a").await.unwrap(), Some(2));
        assert_eq!(queue::depth(&store, "WEBHOOK.NOTICE").await.unwrap(), 1);
        let found = store::supplier_ids::find(&store, "acct", "sid-message-a")
            .await
            .unwrap();
        assert_eq!(found.as_deref(), Some("a"));

        // Two outcomes of one message in flight: the second waits for the next batch.
        let (first, second) = tokio::join!(
            committer.commit(outcome("message-b", 1)),
            committer.commit(outcome("message-b", 2))
        );
        assert!(first && second);
        assert_eq!(store.stream_version("message-b").await.unwrap(), Some(3));
        drop(committer);
        writer.await.unwrap();
    }
}
