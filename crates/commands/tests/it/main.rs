//! The command side's integration tests, each run on both backends. Postgres tests need a
//! reachable server (`HERALD_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and fail loudly without one.
#![allow(clippy::unwrap_used)]

mod cron;
mod keys;
mod support;
