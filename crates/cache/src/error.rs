//! The cache's one error type. Connection trouble is kept apart from everything else, so
//! dispatch can tell "Redis is down, retry later" from a bug or a bad argument.

use redis::RedisError;

pub type Result<T, E = CacheError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The first connection failed. The URL is redacted: its password never reaches a log.
    #[error("cannot connect to Redis at {url}")]
    Connect {
        url: String,
        #[source]
        source: RedisError,
    },
    /// Redis was reachable once but is not now (refused, reset, timed out). The connection
    /// manager reconnects by itself, so the same call may succeed later.
    #[error("Redis is unavailable")]
    Unavailable(#[source] RedisError),
    /// Redis answered with an error (a script error, out of memory, a wrong key type).
    #[error("Redis command failed")]
    Redis(#[source] RedisError),
    /// Redis answered with something the scripts never return: a key written by someone else.
    #[error("unexpected data in the cache: {0}")]
    Corrupt(String),
    /// The cache URL is neither empty nor a Redis URL this build can use.
    #[error("invalid cache url {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The process's Redis subscriber is not connected, so a new subscription would hear
    /// nothing; it reconnects by itself.
    #[error("not listening to Redis notifications")]
    NotListening,
    /// A caller passed a value no policy can use (a zero window, a rate that is not positive).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl From<RedisError> for CacheError {
    fn from(e: RedisError) -> Self {
        if e.is_io_error() || e.is_timeout() || e.is_unrecoverable_error() {
            CacheError::Unavailable(e)
        } else {
            CacheError::Redis(e)
        }
    }
}

impl CacheError {
    /// Whether the error is the cache's state of health rather than the call itself, so the
    /// same call may succeed later.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            CacheError::Connect { .. } | CacheError::Unavailable(_)
        )
    }
}
