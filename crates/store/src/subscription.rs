//! Subscriptions: catch up from a stored checkpoint, then follow the log live. Each batch is
//! handled and its checkpoint moved in one transaction, so a transactional handler applies
//! every event exactly once, even when two workers briefly believe they own the same partition.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::{Result, StoreError};
use crate::event_store::{EventStore, StoreTx};
use crate::types::{Checkpoint, CheckpointKey, LogFilter, RecordedEvent};

/// The error a handler returns; the batch is rolled back and tried again after a pause.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// What a subscription does with each batch. Writes made through `tx` commit together with
/// the checkpoint (a transactional handler); side effects elsewhere are at-least-once.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        tx: &mut StoreTx,
        events: &[RecordedEvent],
    ) -> impl Future<Output = std::result::Result<(), HandlerError>> + Send;

    /// Called after the transaction of the last `handle` committed, for work that must never
    /// run before the writes are visible (a notification that a row exists). Not called when
    /// the batch rolled back; the next `handle` starts afresh.
    fn committed(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// How a subscription reads.
#[derive(Debug, Clone)]
pub struct SubscriptionOptions {
    pub filter: LogFilter,
    pub batch_size: usize,
    /// The ground truth when no doorbell rings: how long an idle reader waits before looking again.
    pub poll_interval: Duration,
    /// Pause after a failed batch before the next try.
    pub retry_delay: Duration,
    /// After a read that found nothing, how long before the next one even when the doorbell
    /// rings. A reader of a few event types (recalls) is rung by every append of every other
    /// type: read at each ring, it read the log after every dispatch group commit to find
    /// nothing, 1,430 reads in 4.5 s of `herald bench`'s dispatch phase, two in five of the
    /// dispatch role's round trips to Postgres.
    pub quiet_gap: Duration,
    /// How often at most a cursor moved over events the filter skipped is saved when no
    /// handled batch carries it.
    pub save_skipped_every: Duration,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        SubscriptionOptions {
            filter: LogFilter::all(),
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            retry_delay: Duration::from_secs(1),
            quiet_gap: Duration::ZERO,
            save_skipped_every: Duration::from_secs(10),
        }
    }
}

/// Follows the log for one checkpoint key until `shutdown` is cancelled.
/// With an `owner`, each checkpoint move also checks that the owner still holds the lease.
pub async fn run<S: EventStore, H: Handler>(
    store: &S,
    key: &CheckpointKey,
    owner: Option<&str>,
    options: &SubscriptionOptions,
    handler: &H,
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut bell = store.doorbell().listen();
    // `saved` is what the store holds; `cursor` can run ahead of it over events the filter
    // skipped, and is persisted with the next handled batch, or on its own now and then.
    let mut saved = store.load_checkpoint(key).await?;
    let mut cursor = saved.unwrap_or(Checkpoint::START);
    // While an open transaction holds committed events back, look again after this long,
    // doubling up to the poll interval.
    let mut blocked_wait = Duration::from_millis(5);
    // When the cursor last went to the store without a batch.
    let mut skip_saved: Option<std::time::Instant> = None;
    while !shutdown.is_cancelled() {
        bell.mark_seen();
        let batch = match store
            .read_log(cursor, &options.filter, options.batch_size)
            .await
        {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, subscription = %key.subscription, "log read failed");
                pause(options.retry_delay, shutdown).await;
                continue;
            }
        };
        if batch.events.is_empty() {
            cursor = batch.next;
            // What the filter skipped is saved now and then, so that a restart does not walk
            // it again: a reader of few event types otherwise went back, at every start, to
            // the last batch it handled, the whole log for one that never handled any.
            // A save made while an open transaction held the horizon back is put right within
            // ten intervals, however few transactions went by since.
            let since = skip_saved.map(|at| at.elapsed());
            let every = options.save_skipped_every;
            if since.is_none_or(|since| since >= every)
                && (moved_on(saved, cursor)
                    || (since.is_none_or(|since| since >= every * 10)
                        && saved.is_none_or(|s| s < cursor)))
            {
                skip_saved = Some(std::time::Instant::now());
                match save_skipped(store, key, owner, saved, cursor).await {
                    Ok(()) => saved = Some(cursor),
                    Err(StoreError::CheckpointConflict { .. }) => {
                        tracing::info!(subscription = %key.subscription, partition = key.partition, "checkpoint moved elsewhere");
                        saved = store.load_checkpoint(key).await?;
                        cursor = saved.unwrap_or(Checkpoint::START);
                        if owner.is_some() {
                            return Ok(());
                        }
                        continue;
                    }
                    // Only a shortcut for the next start: the reader goes on.
                    Err(error) => {
                        tracing::warn!(%error, subscription = %key.subscription, "saving a checkpoint failed");
                    }
                }
            }
            let wait = if batch.blocked {
                blocked_wait = (blocked_wait * 2).min(options.poll_interval);
                blocked_wait
            } else {
                options.poll_interval
            };
            let quiet_until = tokio::time::Instant::now() + options.quiet_gap;
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = bell.rung() => {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep_until(quiet_until) => {}
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        blocked_wait = Duration::from_millis(5);
        match handle_batch(store, key, owner, handler, saved, &batch.events, batch.next).await {
            Ok(()) => {
                saved = Some(batch.next);
                cursor = batch.next;
            }
            Err(StoreError::CheckpointConflict { .. }) => {
                // Someone else moved the checkpoint (a new owner of the partition): start over
                // from what the store holds rather than apply a batch twice.
                tracing::info!(subscription = %key.subscription, partition = key.partition, "checkpoint moved elsewhere");
                saved = store.load_checkpoint(key).await?;
                cursor = saved.unwrap_or(Checkpoint::START);
                if owner.is_some() {
                    return Ok(());
                }
            }
            Err(error) => {
                tracing::warn!(%error, subscription = %key.subscription, "batch failed; retrying");
                pause(options.retry_delay, shutdown).await;
                cursor = saved.unwrap_or(Checkpoint::START);
            }
        }
    }
    Ok(())
}

/// Whether a cursor moved over skipped events is worth saving. On Postgres the cursor follows
/// the horizon, which every transaction moves, a save included: an idle reader would save
/// every time. There it is saved once a thousand transactions have gone by (the log has
/// grown), or after ten intervals; on SQLite, where it moves only over appended events,
/// whenever it moved.
fn moved_on(saved: Option<Checkpoint>, cursor: Checkpoint) -> bool {
    match saved {
        None => cursor > Checkpoint::START,
        Some(saved) if saved.transaction_id == 0 && cursor.transaction_id == 0 => cursor > saved,
        Some(saved) => cursor.transaction_id.saturating_sub(saved.transaction_id) >= 1_000,
    }
}

/// Moves the checkpoint over events the filter skipped, with nothing handled.
async fn save_skipped<S: EventStore>(
    store: &S,
    key: &CheckpointKey,
    owner: Option<&str>,
    saved: Option<Checkpoint>,
    next: Checkpoint,
) -> Result<()> {
    let mut tx = store.begin().await?;
    store
        .save_checkpoint(&mut tx, key, saved, next, owner)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn handle_batch<S: EventStore, H: Handler>(
    store: &S,
    key: &CheckpointKey,
    owner: Option<&str>,
    handler: &H,
    saved: Option<Checkpoint>,
    events: &[RecordedEvent],
    next: Checkpoint,
) -> Result<()> {
    let mut tx = store.begin().await?;
    if let Err(error) = handler.handle(&mut tx, events).await {
        tx.rollback().await?;
        return Err(StoreError::Handler(error.to_string()));
    }
    store
        .save_checkpoint(&mut tx, key, saved, next, owner)
        .await?;
    tx.commit().await?;
    handler.committed().await;
    Ok(())
}

async fn pause(delay: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(delay) => {}
    }
}

/// A handler shared by the tasks of a consumer group.
impl<H: Handler> Handler for Arc<H> {
    fn handle(
        &self,
        tx: &mut StoreTx,
        events: &[RecordedEvent],
    ) -> impl Future<Output = std::result::Result<(), HandlerError>> + Send {
        (**self).handle(tx, events)
    }

    fn committed(&self) -> impl Future<Output = ()> + Send {
        (**self).committed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(transaction_id: i64, global_position: i64) -> Checkpoint {
        Checkpoint {
            transaction_id,
            global_position,
        }
    }

    #[test]
    fn a_skipped_cursor_is_saved_once_the_log_has_moved_on() {
        // Never saved: any move counts.
        assert!(moved_on(None, at(5_000, i64::MAX)));
        assert!(!moved_on(None, Checkpoint::START));
        // Postgres: an idle horizon creeping by the saves' own transactions is not worth a save.
        assert!(!moved_on(Some(at(5_000, i64::MAX)), at(5_002, i64::MAX)));
        assert!(moved_on(Some(at(5_000, i64::MAX)), at(6_000, i64::MAX)));
        // SQLite: the cursor moves over appended events only.
        assert!(moved_on(Some(at(0, 10)), at(0, 11)));
        assert!(!moved_on(Some(at(0, 10)), at(0, 10)));
    }
}
