//! One place maps errors to GraphQL `extensions.code` (design section 8): `code` is the stable
//! class a client branches on, `reason` the exact rule, and any details ride along.

use async_graphql::{Error, ErrorExtensions, Value};
use commands::CommandError;

pub fn coded(code: &str, reason: &str, message: impl Into<String>) -> Error {
    let (code, reason) = (code.to_owned(), reason.to_owned());
    Error::new(message).extend_with(|_, ext| {
        ext.set("code", code);
        ext.set("reason", reason);
    })
}

pub fn command(error: CommandError) -> Error {
    let mut out = coded(error.code.as_str(), error.reason, error.message.clone());
    for (key, value) in error.details {
        let value = Value::from_json(value).unwrap_or(Value::Null);
        out = out.extend_with(|_, ext| ext.set(key, value));
    }
    out
}

pub fn validation(reason: &str, message: impl Into<String>) -> Error {
    coded("VALIDATION", reason, message)
}

/// A failure on Herald's side (the store is down, a read model holds what it should not): the
/// cause is logged here, once, and the client sees only that something went wrong.
pub fn internal(cause: impl std::fmt::Display) -> Error {
    tracing::error!(%cause, "a query failed");
    coded(
        "INTERNAL",
        "INTERNAL",
        "something went wrong on Herald's side",
    )
}
