//! The store's integration tests: one contract suite run against both backends, plus the
//! concurrency, lease and restart tests. Postgres tests need a reachable server
//! (`HERALD_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`) and fail
//! loudly without one; each test gets a database of its own.
#![allow(clippy::unwrap_used)]

mod contract;
mod copy;
mod doorbell;
mod leases;
mod no_skip;
mod portable;
mod queue;
mod sqlite_restart;
mod support;
