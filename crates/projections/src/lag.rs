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

type Row = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);

/// The checkpoint of subscription `$1` and the newest event of category `$2`, as one row of
/// four columns (each `NULL` when there is none yet). `e.`: a bare `transaction_id` would name
/// the text-cast output column, and sorting by that cannot use the log-order index (a scan of
/// the log).
pub(crate) const POSTGRES_LAG: &str = "SELECT c.transaction_id, c.global_position, h.tx, h.global_position \
     FROM (SELECT 1) AS one \
     LEFT JOIN checkpoints c ON c.subscription = $1 AND c.partition = 0 \
     LEFT JOIN LATERAL (SELECT e.transaction_id::text::int8 AS tx, e.global_position \
         FROM events e WHERE e.category = $2 \
         ORDER BY e.transaction_id DESC, e.global_position DESC LIMIT 1) h ON true";

/// The lag from the four columns of [`POSTGRES_LAG`].
pub(crate) fn from_columns(
    applied_tx: Option<i64>,
    applied_position: Option<i64>,
    head_tx: Option<i64>,
    head_position: Option<i64>,
) -> Lag {
    Lag {
        applied: checkpoint(applied_tx.zip(applied_position)),
        head: checkpoint(head_tx.zip(head_position)),
    }
}

fn checkpoint(row: Option<(i64, i64)>) -> Checkpoint {
    row.map_or(Checkpoint::START, |(transaction_id, global_position)| {
        Checkpoint {
            transaction_id,
            global_position,
        }
    })
}

/// Where the projection with checkpoint `subscription`, following `category`, stands.
pub async fn lag(
    store: &Store,
    subscription: &str,
    category: &str,
) -> Result<Lag, store::StoreError> {
    let (applied, head) = match store {
        // One statement, one round trip: the API asks this before every answer it dates.
        Store::Postgres(s) => {
            let (applied_tx, applied_position, head_tx, head_position): Row =
                sqlx::query_as(POSTGRES_LAG)
                    .bind(subscription)
                    .bind(category)
                    .fetch_one(s.pool())
                    .await
                    .map_err(store::StoreError::from)?;
            let lag = from_columns(applied_tx, applied_position, head_tx, head_position);
            (lag.applied, lag.head)
        }
        Store::Sqlite(s) => {
            let applied = store
                .load_checkpoint(&CheckpointKey::new(subscription, 0))
                .await?
                .unwrap_or(Checkpoint::START);
            // The newest event of the category, walking the log-order index backwards.
            let head: Option<(i64, i64)> = sqlx::query_as(
                "SELECT 0, global_position FROM events WHERE category = $1 \
                 ORDER BY global_position DESC LIMIT 1",
            )
            .bind(category)
            .fetch_optional(s.readers())
            .await
            .map_err(store::StoreError::from)?;
            (applied, checkpoint(head))
        }
    };
    Ok(Lag { applied, head })
}
