//! Test fixtures: a fresh store per test on either backend, and a recording handler.

use std::path::PathBuf;

use sqlx::Connection;
use store::{
    EventStore, HandlerError, NewEvent, PgOptions, PgStore, RecordedEvent, SqliteStore, Store,
    StoreTx, on_tx,
};

pub struct TestStore {
    pub store: Store,
    pg_database: Option<String>,
    sqlite_dir: Option<PathBuf>,
}

impl TestStore {
    /// Drops the test database or file. Tests call it at the end; one that fails leaves its
    /// database for inspection (scripts/test removes stale ones).
    pub async fn cleanup(self) {
        match &self.store {
            Store::Postgres(s) => s.pool().close().await,
            Store::Sqlite(s) => s.close().await,
        }
        drop(self.store);
        if let Some(name) = self.pg_database {
            let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
        }
        if let Some(dir) = self.sqlite_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub fn admin_url() -> String {
    std::env::var("HERALD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A migrated Postgres store on a database of its own. Panics, loudly, when Postgres is down:
/// a test that needs it must never pass without it.
pub async fn postgres() -> TestStore {
    let admin = admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!(
            "Postgres is not reachable at {} ({e}). Start it, or run scripts/test, which installs \
             and starts it. Set HERALD_TEST_DATABASE_URL to use another server.",
            store::redact(&admin)
        )
    });
    let name = format!("herald_test_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .unwrap();
    let url = match admin.rfind('/') {
        Some(slash) => format!("{}/{name}", &admin[..slash]),
        None => panic!("HERALD_TEST_DATABASE_URL has no database part: {admin}"),
    };
    let options = PgOptions {
        max_connections: 24,
        ..PgOptions::default()
    };
    let store = PgStore::connect(&url, options).await.unwrap();
    store.migrate().await.unwrap();
    sqlx::query(
        "CREATE TABLE test_seen (id BIGSERIAL PRIMARY KEY, subscriber TEXT NOT NULL, \
         event_id TEXT NOT NULL, stream_id TEXT NOT NULL, stream_position BIGINT NOT NULL)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    TestStore {
        store: Store::Postgres(store),
        pg_database: Some(name),
        sqlite_dir: None,
    }
}

/// A migrated SQLite store in a fresh temporary folder.
pub async fn sqlite() -> TestStore {
    let dir = std::env::temp_dir().join(format!("herald-test-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = open_sqlite(&dir).await;
    sqlx::query(
        "CREATE TABLE test_seen (id INTEGER PRIMARY KEY, subscriber TEXT NOT NULL, \
         event_id TEXT NOT NULL, stream_id TEXT NOT NULL, stream_position INTEGER NOT NULL)",
    )
    .execute(store.writer())
    .await
    .unwrap();
    TestStore {
        store: Store::Sqlite(store),
        pg_database: None,
        sqlite_dir: Some(dir),
    }
}

pub async fn open_sqlite(dir: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open(dir.join("herald.db")).await.unwrap();
    store.migrate().await.unwrap();
    store
}

pub fn event(n: u64) -> NewEvent {
    NewEvent::new(
        "Happened",
        1,
        &serde_json::json!({ "n": n }),
        &serde_json::json!({ "actor": "test" }),
    )
}

pub fn events(n: u64) -> Vec<NewEvent> {
    (1..=n).map(event).collect()
}

/// A transactional handler: records each event it sees in `test_seen`, in the batch's
/// transaction, so a batch rolled back leaves no trace and a duplicate shows as a second row.
pub struct Recorder {
    pub name: String,
}

impl Recorder {
    pub fn new(name: &str) -> Self {
        Recorder {
            name: name.to_owned(),
        }
    }
}

impl store::Handler for Recorder {
    async fn handle(&self, tx: &mut StoreTx, events: &[RecordedEvent]) -> Result<(), HandlerError> {
        for chunk in events.chunks(500) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    format!(
                        "(${}, ${}, ${}, ${})",
                        i * 4 + 1,
                        i * 4 + 2,
                        i * 4 + 3,
                        i * 4 + 4
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO test_seen (subscriber, event_id, stream_id, stream_position) VALUES {}",
                rows.join(", ")
            );
            on_tx!(tx, |conn| {
                let mut query = sqlx::query(sql.as_str());
                for e in chunk {
                    query = query
                        .bind(&self.name)
                        .bind(e.event_id.to_string())
                        .bind(&e.stream_id)
                        .bind(e.stream_position as i64);
                }
                query.execute(conn).await.map(|r| r.rows_affected())
            })?;
        }
        Ok(())
    }
}

/// Runs one scalar `i64` query on either backend.
pub async fn scalar(store: &Store, sql: &str, bind: &str) -> i64 {
    match store {
        Store::Postgres(s) => sqlx::query_scalar(sql)
            .bind(bind)
            .fetch_one(s.pool())
            .await
            .unwrap(),
        Store::Sqlite(s) => sqlx::query_scalar(sql)
            .bind(bind)
            .fetch_one(s.readers())
            .await
            .unwrap(),
    }
}

/// `(event_id, stream_id, stream_position)` of what a subscriber recorded, in the order seen.
pub async fn seen(store: &Store, subscriber: &str) -> Vec<(String, String, i64)> {
    let sql = "SELECT event_id, stream_id, stream_position FROM test_seen WHERE subscriber = $1 ORDER BY id";
    match store {
        Store::Postgres(s) => sqlx::query_as(sql)
            .bind(subscriber)
            .fetch_all(s.pool())
            .await
            .unwrap(),
        Store::Sqlite(s) => sqlx::query_as(sql)
            .bind(subscriber)
            .fetch_all(s.readers())
            .await
            .unwrap(),
    }
}

/// Waits until `subscriber` has recorded at least `count` events, or panics after `secs`.
pub async fn wait_seen(store: &Store, subscriber: &str, count: i64, secs: u64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let n = scalar(
            store,
            "SELECT count(*) FROM test_seen WHERE subscriber = $1",
            subscriber,
        )
        .await;
        if n >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{subscriber} saw {n} of {count} events in {secs}s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Runs a contract test against both backends.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let t = crate::support::postgres().await;
                    super::$name(t.store.clone()).await;
                    t.cleanup().await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let t = crate::support::sqlite().await;
                    super::$name(t.store.clone()).await;
                    t.cleanup().await;
                }
            )*
        }
    };
}
pub(crate) use both_backends;

/// Used by tests that need only the trait.
#[allow(dead_code)]
pub async fn version(store: &impl EventStore, stream: &str) -> Option<u64> {
    store.stream_version(stream).await.unwrap()
}

/// A log read that waits out other transactions holding committed events back. Tests share one
/// Postgres cluster, and its visibility horizon is cluster-wide: another test's open
/// transaction briefly hides events that are already committed here.
pub async fn read_settled(
    store: &Store,
    after: store::Checkpoint,
    filter: &store::LogFilter,
    limit: usize,
) -> store::LogBatch {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let batch = store.read_log(after, filter, limit).await.unwrap();
        if !batch.blocked || batch.events.len() == limit {
            return batch;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the log stayed blocked for 30s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
