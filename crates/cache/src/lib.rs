//! The shared state of dispatch policies: dedup windows, frequency caps, token buckets,
//! account pauses and circuit breakers, each decided atomically for every worker of every process.
//!
//! - [`PolicyCache`]: the one trait; callers pass `now`, so tests (and replays) control time.
//! - [`RedisCache`] (production): one Lua script per decision, one round trip each, keys under a
//!   prefix so tenants and tests never collide. The scripts live in `src/lua/`.
//! - [`MemoryCache`] (the embedded default): the same rules in process, behind a std `Mutex`.
//! - [`Cache`]: picks one by URL, the way `store::Store` picks a database.
//!
//! - [`pubsub`]: notifications between processes (Redis PUBLISH and PSUBSCRIBE), or within
//!   one (the in-process cache), through [`Cache::publish`] and [`Cache::subscribe`].
//!
//! The cache knows nothing of messages: keys and channels are strings the caller builds.

mod any;
mod error;
mod memory;
mod policy_cache;
pub mod pubsub;
mod redis_cache;
mod types;

pub use any::{Cache, redact};
pub use error::{CacheError, Result};
pub use memory::MemoryCache;
pub use policy_cache::PolicyCache;
pub use pubsub::{Notice, Subscription};
pub use redis_cache::RedisCache;
pub use types::{
    Admission, BreakerPolicy, BreakerState, DedupMark, DedupOutcome, FrequencyOutcome,
    FrequencyUse, Screen, TokenBucket, TokenOutcome,
};
