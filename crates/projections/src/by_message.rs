//! Reading and deleting a projection's rows by message id, a batch at a time: on Postgres
//! `= ANY($1)`, on SQLite `IN (SELECT value FROM json_each($1))`, one statement each.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use store::{HandlerError, StoreTx, TxConn};

/// `columns` of the rows of `table` whose `message_id` is one of `ids`.
pub(crate) async fn select<T>(
    tx: &mut StoreTx,
    columns: &str,
    table: &str,
    ids: &[&str],
) -> Result<Vec<T>, HandlerError>
where
    T: for<'r> sqlx::FromRow<'r, PgRow> + for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin,
{
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(match tx.conn() {
        TxConn::Postgres(conn) => {
            sqlx::query_as(&format!(
                "SELECT {columns} FROM {table} WHERE message_id = ANY($1)"
            ))
            .bind(ids)
            .fetch_all(conn)
            .await?
        }
        TxConn::Sqlite(conn) => {
            sqlx::query_as(&format!(
                "SELECT {columns} FROM {table} \
                 WHERE message_id IN (SELECT value FROM json_each($1))"
            ))
            .bind(serde_json::to_string(ids)?)
            .fetch_all(conn)
            .await?
        }
    })
}

/// Deletes the rows of `table` whose `message_id` is one of `ids`.
pub(crate) async fn delete(
    tx: &mut StoreTx,
    table: &str,
    ids: &[&str],
) -> Result<(), HandlerError> {
    match tx.conn() {
        TxConn::Postgres(conn) => {
            sqlx::query(&format!("DELETE FROM {table} WHERE message_id = ANY($1)"))
                .bind(ids)
                .execute(conn)
                .await?;
        }
        TxConn::Sqlite(conn) => {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE message_id IN (SELECT value FROM json_each($1))"
            ))
            .bind(serde_json::to_string(ids)?)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}
