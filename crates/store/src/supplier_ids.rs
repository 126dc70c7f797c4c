//! The supplier's own id of each dispatched message (`supplier_messages`), kept so a receipt
//! that names only that id finds its message. A row is written in the transaction that records
//! the dispatch, so it exists exactly when the dispatch does.

use crate::{Store, StoreTx, on_read, on_tx};

/// Remembers that `account` knows `message_id` as `supplier_message_id`. Writing the same row
/// again (a retried transaction) changes nothing.
pub async fn record(
    tx: &mut StoreTx,
    account: &str,
    supplier_message_id: &str,
    message_id: &str,
) -> Result<(), sqlx::Error> {
    on_tx!(tx, |conn| sqlx::query(
        "INSERT INTO supplier_messages (account_id, supplier_message_id, message_id) \
         VALUES ($1, $2, $3) ON CONFLICT (account_id, supplier_message_id) DO NOTHING"
    )
    .bind(account)
    .bind(supplier_message_id)
    .bind(message_id)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// [`record`] for many rows at once, many per statement (`(account, supplier id, message id)`):
/// `herald import` rebuilds the table from the imported `MessageDispatched` events.
pub async fn record_all(
    tx: &mut StoreTx,
    rows: &[(String, String, String)],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(300) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${}, ${})", i * 3 + 1, i * 3 + 2, i * 3 + 3))
            .collect();
        let sql = format!(
            "INSERT INTO supplier_messages (account_id, supplier_message_id, message_id) \
             VALUES {} ON CONFLICT (account_id, supplier_message_id) DO NOTHING",
            values.join(", ")
        );
        on_tx!(tx, |conn| {
            let mut query = sqlx::query(&sql);
            for (account, supplier_message_id, message_id) in chunk {
                query = query
                    .bind(account)
                    .bind(supplier_message_id)
                    .bind(message_id);
            }
            query.execute(conn).await.map(|r| r.rows_affected())
        })?;
    }
    Ok(())
}

/// The message `account` knows as `supplier_message_id`.
pub async fn find(
    store: &Store,
    account: &str,
    supplier_message_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    on_read!(store, |pool| {
        sqlx::query_scalar(
        "SELECT message_id FROM supplier_messages WHERE account_id = $1 AND supplier_message_id = $2"
    )
    .bind(account)
    .bind(supplier_message_id)
    .fetch_optional(pool)
    .await
    })
}
