//! The cache's integration tests: one contract suite run against Redis and the in-process
//! cache, plus Redis's own (prefixes, errors, agreement with the in-process cache). Redis tests
//! need a reachable server (`HERALD_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`) and fail
//! loudly without one; each test keeps its keys under a prefix of its own.
#![allow(clippy::unwrap_used)]

mod breaker;
mod contract;
mod pubsub;
mod redis_only;
mod shared;
mod support;
