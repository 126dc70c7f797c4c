//! Settings Herald makes for itself and every process shares, kept in the store.

use rand::Rng;
use store::{Store, on_read};

use crate::error::CommandError;

/// The value of setting `name`, made by `make` and stored on first use. When two processes
/// start at once, the first insert wins and both read the same value back.
pub async fn get_or_create(
    store: &Store,
    name: &str,
    make: impl FnOnce() -> String,
) -> Result<String, CommandError> {
    let value = make();
    let insert =
        "INSERT INTO herald_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
    match store {
        Store::Postgres(s) => sqlx::query(insert)
            .bind(name)
            .bind(&value)
            .execute(s.pool())
            .await
            .map(|_| ()),
        Store::Sqlite(s) => sqlx::query(insert)
            .bind(name)
            .bind(&value)
            .execute(s.writer())
            .await
            .map(|_| ()),
    }
    .map_err(CommandError::internal)?;
    let (stored,): (String,) = on_read!(store, |pool| sqlx::query_as(
        "SELECT value FROM herald_settings WHERE name = $1"
    )
    .bind(name)
    .fetch_one(pool)
    .await)
    .map_err(CommandError::internal)?;
    Ok(stored)
}

/// 32 random bytes as hex: a key for HMAC signing.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
