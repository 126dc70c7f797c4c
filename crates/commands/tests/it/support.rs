//! Test fixtures: a fresh migrated store per test on either backend.

use std::path::PathBuf;

use sqlx::Connection;
use store::{PgOptions, PgStore, SqliteStore, Store};

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
    postgres_with(PgOptions {
        max_connections: 8,
        ..PgOptions::default()
    })
    .await
}

/// A Postgres store for a test on tokio's paused clock: all its connections are opened before
/// the test begins and kept. A connection opened later, on a server that says it has too many
/// clients, waits to retry on a timer of the paused clock, which only the test moves: that wait
/// never ends. So does a wait for a free connection (the pool's acquire timeout is a timer of
/// that clock too): the commit doorbell's listener holds one of the pool's connections for
/// good and its notifier borrows another now and then, so with four in all a runner's turn
/// sometimes found none free and hung (one run in four of the cron tests); with eight, none
/// in 24.
pub async fn postgres_paused() -> TestStore {
    postgres_with(PgOptions {
        max_connections: 8,
        min_connections: 8,
        ..PgOptions::default()
    })
    .await
}

async fn postgres_with(options: PgOptions) -> TestStore {
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
    let store = PgStore::connect(&url, options).await.unwrap();
    store.migrate().await.unwrap();
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
    let store = SqliteStore::open(dir.join("herald.db")).await.unwrap();
    store.migrate().await.unwrap();
    TestStore {
        store: Store::Sqlite(store),
        pg_database: None,
        sqlite_dir: Some(dir),
    }
}

/// Every value of one text column, as strings, on either backend.
pub async fn texts(store: &Store, sql: &str) -> Vec<String> {
    match store {
        Store::Postgres(s) => sqlx::query_scalar(sql).fetch_all(s.pool()).await.unwrap(),
        Store::Sqlite(s) => sqlx::query_scalar(sql)
            .fetch_all(s.readers())
            .await
            .unwrap(),
    }
}

/// Runs a test against both backends, each on a fresh store.
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
