//! Access tokens: what WeCom, DingTalk, WeChat and GeTui hand out for a key and a secret, valid
//! for a couple of hours, with a low daily quota of refreshes. A token is fetched once and
//! shared by every worker of every process through the cache, and fetched again shortly before
//! it expires: one refresh at a time.
//!
//! [`Tokens::get`] looks in three places. The process's own memo first; then the shared cache;
//! only then does it refresh, under the cache lock `token-refresh:{name}`, so of many processes
//! that find the token expired at once one fetches and the rest wait for its result. Within a
//! process, callers of one name queue on an async mutex, so a burst of sends makes one request.
//! A token is kept until a tenth of its life (at most five minutes) before its expiry, so it is
//! replaced before the supplier refuses it; a supplier that refuses a token anyway (revoked,
//! or refreshed by someone else with the same secret) calls [`Tokens::invalidate`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cache::{Cache, MemoryCache, PolicyCache};
use chrono::Utc;
use tokio::sync::watch;

use crate::supplier::SendError;

/// How long a refresh may hold the lock; a holder that dies frees it after this.
const REFRESH_LOCK: Duration = Duration::from_secs(30);
/// How often a process waiting for another's refresh looks for the result.
const WAIT_STEP: Duration = Duration::from_millis(50);

/// A token and when it stops being used, in epoch milliseconds.
#[derive(Clone)]
struct Held {
    token: String,
    until_ms: i64,
}

/// One token name's memo; its async mutex makes the process's callers take turns.
type Slot = Arc<tokio::sync::Mutex<Option<Held>>>;

/// The tokens of every account, shared by clones.
#[derive(Clone)]
pub struct Tokens {
    /// The cache arrives when dispatch has connected to it; until then `get` waits.
    cache: watch::Receiver<Option<Cache>>,
    connect: Arc<watch::Sender<Option<Cache>>>,
    /// Per token name: the process's memo, behind an async mutex that makes callers of one
    /// name take turns, so a burst makes one request.
    local: Arc<Mutex<HashMap<String, Slot>>>,
    /// This process, as the owner of refresh locks.
    owner: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").finish_non_exhaustive()
    }
}

impl Tokens {
    /// Tokens that wait for [`connect`](Self::connect) before the first fetch.
    pub fn pending() -> Tokens {
        let (sender, receiver) = watch::channel(None);
        Tokens {
            cache: receiver,
            connect: Arc::new(sender),
            local: Arc::default(),
            owner: uuid::Uuid::now_v7().to_string(),
        }
    }

    /// Tokens shared through `cache`.
    pub fn new(cache: Cache) -> Tokens {
        let tokens = Tokens::pending();
        tokens.connect(cache);
        tokens
    }

    /// Tokens kept in this process only: for tests and tools.
    pub fn in_process() -> Tokens {
        Tokens::new(Cache::Memory(MemoryCache::new()))
    }

    /// Hands over the cache once it is connected.
    pub fn connect(&self, cache: Cache) {
        self.connect.send_replace(Some(cache));
    }

    async fn cache(&self) -> Cache {
        let mut receiver = self.cache.clone();
        match receiver.wait_for(Option::is_some).await {
            Ok(cache) => cache.clone().unwrap_or_else(|| unreachable!()),
            // The sender lives in `self`, so it cannot be gone.
            Err(_) => unreachable!(),
        }
    }

    fn slot(&self, name: &str) -> Slot {
        let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(local.entry(name.to_owned()).or_default())
    }

    /// The token under `name` (an account's, such as `wecom:{corp id}:{agent}`), fetched with
    /// `fetch` when there is none still good. `fetch` returns the token and how long the
    /// supplier says it lives.
    pub async fn get<F, Fut>(&self, name: &str, fetch: F) -> Result<String, SendError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(String, Duration), SendError>>,
    {
        let slot = self.slot(name);
        let mut memo = slot.lock().await;
        let now = Utc::now();
        if let Some(held) = memo
            .as_ref()
            .filter(|h| h.until_ms > now.timestamp_millis())
        {
            return Ok(held.token.clone());
        }
        let cache = self.cache().await;
        let key = format!("token:{name}");
        let lock = format!("token-refresh:{name}");
        let mut fetch = Some(fetch);
        let deadline = tokio::time::Instant::now() + REFRESH_LOCK;
        loop {
            let now = Utc::now();
            if let Some((token, until_ms)) =
                cache.shared_value(&key, now).await.map_err(cache_error)?
            {
                *memo = Some(Held {
                    token: token.clone(),
                    until_ms,
                });
                return Ok(token);
            }
            let ours = cache
                .try_lock(&lock, &self.owner, REFRESH_LOCK, now)
                .await
                .map_err(cache_error)?;
            // Another process is refreshing: wait for its token, unless it takes so long that
            // it must have died (its lock then frees itself and this process takes over).
            if !ours && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(WAIT_STEP).await;
                continue;
            }
            // Someone may have stored a token between the look and the lock.
            if let Some((token, until_ms)) =
                cache.shared_value(&key, now).await.map_err(cache_error)?
            {
                let _ = cache.unlock(&lock, &self.owner).await;
                *memo = Some(Held {
                    token: token.clone(),
                    until_ms,
                });
                return Ok(token);
            }
            let Some(fetch) = fetch.take() else {
                unreachable!("the loop fetches at most once: it returns after fetching")
            };
            let fetched = fetch().await;
            telemetry::counter(
                "herald_token_refreshes_total",
                "Access tokens fetched from suppliers, by token and result.",
                &[
                    ("token", name),
                    ("result", if fetched.is_ok() { "ok" } else { "error" }),
                ],
                1,
            );
            let result = match fetched {
                Ok((token, lifetime)) => {
                    let now = Utc::now();
                    let lifetime_ms = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX / 4);
                    // Replaced a tenth of its life (at most five minutes) before it expires.
                    let early = (lifetime_ms / 10).min(300_000);
                    let until_ms = now.timestamp_millis() + (lifetime_ms - early).max(1);
                    if let Err(error) = cache.set_shared_value(&key, &token, until_ms, now).await {
                        tracing::warn!(%error, name, "sharing a fetched token failed; it is kept in this process");
                    }
                    *memo = Some(Held {
                        token: token.clone(),
                        until_ms,
                    });
                    Ok(token)
                }
                Err(error) => Err(error),
            };
            let _ = cache.unlock(&lock, &self.owner).await;
            return result;
        }
    }

    /// Forgets `token` under `name`, here and in the cache, when the supplier refused it; the
    /// next [`get`](Self::get) fetches a new one. A newer token someone stored meanwhile stays.
    pub async fn invalidate(&self, name: &str, token: &str) -> Result<(), SendError> {
        let slot = self.slot(name);
        let mut memo = slot.lock().await;
        if memo.as_ref().is_some_and(|h| h.token == token) {
            *memo = None;
        }
        let cache = self.cache().await;
        cache
            .forget_shared_value(&format!("token:{name}"), token)
            .await
            .map_err(cache_error)?;
        Ok(())
    }
}

fn cache_error(error: cache::CacheError) -> SendError {
    SendError::Retryable {
        code: "TOKEN_CACHE".to_owned(),
        message: error.to_string(),
    }
}
