//! The API crate's tests: the checked-in schema matches the code.
#![allow(clippy::unwrap_used)]

mod schema;
