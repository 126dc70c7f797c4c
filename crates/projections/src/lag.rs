//! How far a projection has caught up with the log: its checkpoint beside the newest event it
//! would apply. Both are read from indexes, so asking costs a few index probes at any log size.

use store::{Checkpoint, CheckpointKey, EventStore, Store};

/// A projection's place in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// The last event the projection applied ([`Checkpoint::START`]: none yet).
    pub applied: Checkpoint,
    /// The newest event of the categories the projection follows.
    pub head: Checkpoint,
}

impl Lag {
    /// Whether every event the projection follows was applied when this was read.
    pub fn caught_up(&self) -> bool {
        self.applied >= self.head
    }

    /// About how many events the projection has still to apply: log positions are handed out
    /// before commit (and some to transactions that roll back), so this is an estimate; it is
    /// 0 exactly when [`caught_up`](Self::caught_up).
    pub fn behind(&self) -> i64 {
        if self.caught_up() {
            0
        } else {
            (self.head.global_position - self.applied.global_position).max(1)
        }
    }
}

/// Where the projection with checkpoint `subscription`, following `category`, stands.
pub async fn lag(
    store: &Store,
    subscription: &str,
    category: &str,
) -> Result<Lag, store::StoreError> {
    let applied = store
        .load_checkpoint(&CheckpointKey::new(subscription, 0))
        .await?
        .unwrap_or(Checkpoint::START);
    // The newest event of the category, walking the log-order index backwards.
    let head: Option<(i64, i64)> = match store {
        Store::Postgres(s) => sqlx::query_as(
            // `e.`: a bare `transaction_id` would name the text-cast output column, and
            // sorting by that cannot use the log-order index (a scan of the whole log).
            "SELECT e.transaction_id::text::int8, e.global_position FROM events e \
                 WHERE e.category = $1 ORDER BY e.transaction_id DESC, e.global_position DESC LIMIT 1",
        )
        .bind(category)
        .fetch_optional(s.pool())
        .await,
        Store::Sqlite(s) => {
            sqlx::query_as(
                "SELECT 0, global_position FROM events WHERE category = $1 \
                 ORDER BY global_position DESC LIMIT 1",
            )
            .bind(category)
            .fetch_optional(s.readers())
            .await
        }
    }
    .map_err(store::StoreError::from)?;
    let head = head.map_or(Checkpoint::START, |(transaction_id, global_position)| {
        Checkpoint {
            transaction_id,
            global_position,
        }
    });
    Ok(Lag { applied, head })
}
