//! Tenants and their API keys: a key is shown once, stored as the hash of its secret, and checked
//! on every API request, against what the server read of it by one primary-key lookup at most
//! [`KEY_FRESH`] ago.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::TenantId;
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use store::{Store, StoreError};

/// Every key starts with this, so a leaked key is easy to recognise in code or logs.
const KEY_PREFIX: &str = "hk_";
const KEY_ID_LEN: usize = 12;
const SECRET_LEN: usize = 32;
/// Key ids are lowercase so they read the same in URLs, logs and case-insensitive tools.
const KEY_ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Send,
    Recall,
    Read,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Send, Scope::Recall, Scope::Read, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Recall => "recall",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Send => 1,
            Scope::Recall => 2,
            Scope::Read => 4,
            Scope::Admin => 8,
        }
    }
}

impl FromStr for Scope {
    type Err = KeyError;

    fn from_str(raw: &str) -> Result<Self, KeyError> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == raw)
            .ok_or_else(|| {
                KeyError::InvalidScopes(format!(
                    "unknown scope {:?}; expected send, recall, read or admin",
                    excerpt(raw)
                ))
            })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scopes granted to a key; never empty, since a key that may do nothing is a mistake.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// Parses a comma-separated list such as `send,recall`; spaces around names are allowed.
    pub fn parse(raw: &str) -> Result<Self, KeyError> {
        if raw.trim().is_empty() {
            return Err(KeyError::InvalidScopes(
                "no scopes given; expected a comma-separated list of send, recall, read, admin"
                    .to_owned(),
            ));
        }
        let mut bits = 0;
        for name in raw.split(',').map(str::trim) {
            if name.is_empty() {
                return Err(KeyError::InvalidScopes(format!(
                    "empty scope in {:?}",
                    excerpt(raw)
                )));
            }
            bits |= name.parse::<Scope>()?.bit();
        }
        Ok(Scopes(bits))
    }

    /// Whether these scopes allow `scope`; `admin` allows everything.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// These scopes and one more.
    pub fn with(self, scope: Scope) -> Self {
        Scopes(self.0 | scope.bit())
    }

    /// The scopes granted explicitly, in a fixed order (not those `admin` implies).
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .into_iter()
            .filter(move |scope| self.0 & scope.bit() != 0)
    }
}

impl From<Scope> for Scopes {
    fn from(scope: Scope) -> Self {
        Scopes(scope.bit())
    }
}

impl FromStr for Scopes {
    type Err = KeyError;

    fn from_str(raw: &str) -> Result<Self, KeyError> {
        Scopes::parse(raw)
    }
}

/// The comma list `parse` reads, in a fixed order, which is also how the store keeps it.
impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

/// Who is calling: the tenant and key an API request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: TenantId,
    pub key_id: String,
    pub scopes: Scopes,
}

impl Caller {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(scope)
    }
}

/// A key just created. `key` is the only copy of the secret anywhere: show it once.
pub struct NewApiKey {
    /// The full key, `hk_{key_id}_{secret}`.
    pub key: String,
    pub key_id: String,
}

/// Redacts the key, so logging a `NewApiKey` cannot leak its secret.
impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("key", &"<redacted>")
            .field("key_id", &self.key_id)
            .finish()
    }
}

/// What can go wrong with tenants and keys. No variant carries a key's secret.
///
/// The API reports `MalformedKey`, `UnknownKey` and `RevokedKey` alike, as unauthenticated,
/// so a caller cannot probe which keys exist; they stay apart here for logs and tests.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("tenant {0} already exists")]
    TenantExists(TenantId),
    #[error("tenant {0} does not exist")]
    TenantNotFound(TenantId),
    #[error("API key {0:?} does not exist")]
    KeyNotFound(String),
    #[error("malformed API key: expected hk_<key id>_<secret>")]
    MalformedKey,
    /// No key has this id, or the secret does not match it.
    #[error("unknown API key {key_id}")]
    UnknownKey { key_id: String },
    #[error("API key {key_id} has been revoked")]
    RevokedKey { key_id: String },
    #[error("invalid scopes: {0}")]
    InvalidScopes(String),
    // The cause is the source, so `{:#}` prints it once: "store: database: …".
    #[error("store")]
    Store(#[from] StoreError),
}

impl KeyError {
    /// A stable code for APIs, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::TenantExists(_) => "TENANT_EXISTS",
            KeyError::TenantNotFound(_) => "TENANT_NOT_FOUND",
            KeyError::KeyNotFound(_) => "KEY_NOT_FOUND",
            KeyError::MalformedKey => "MALFORMED_KEY",
            KeyError::UnknownKey { .. } => "UNKNOWN_KEY",
            KeyError::RevokedKey { .. } => "REVOKED_KEY",
            KeyError::InvalidScopes(_) => "INVALID_SCOPES",
            KeyError::Store(_) => "STORE",
        }
    }
}

impl From<sqlx::Error> for KeyError {
    fn from(error: sqlx::Error) -> Self {
        KeyError::Store(StoreError::Database(error))
    }
}

pub async fn create_tenant(store: &Store, tenant: &TenantId) -> Result<(), KeyError> {
    let sql = "INSERT INTO tenants (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING";
    let now = Utc::now();
    let affected = match store {
        Store::Postgres(s) => sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(now)
            .execute(s.pool())
            .await?
            .rows_affected(),
        Store::Sqlite(s) => sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(now.timestamp_millis())
            .execute(s.writer())
            .await?
            .rows_affected(),
    };
    if affected == 0 {
        return Err(KeyError::TenantExists(tenant.clone()));
    }
    Ok(())
}

pub async fn tenant_exists(store: &Store, tenant: &TenantId) -> Result<bool, KeyError> {
    let sql = "SELECT 1 FROM tenants WHERE id = $1";
    let found = match store {
        Store::Postgres(s) => sqlx::query(sql)
            .bind(tenant.as_str())
            .fetch_optional(s.pool())
            .await?
            .is_some(),
        Store::Sqlite(s) => sqlx::query(sql)
            .bind(tenant.as_str())
            .fetch_optional(s.readers())
            .await?
            .is_some(),
    };
    Ok(found)
}

/// Creates a key for `tenant`. The returned key is the only copy of its secret.
pub async fn create_api_key(
    store: &Store,
    tenant: &TenantId,
    scopes: &Scopes,
    label: &str,
) -> Result<NewApiKey, KeyError> {
    let (key_id, secret) = generate();
    let secret_hash = hash_secret(&secret);
    let scopes = scopes.to_string();
    // The tenant check and the insert are one statement, so there is no window between them.
    let sql = "INSERT INTO api_keys (key_id, tenant_id, secret_hash, scopes, label, created_at) \
               SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $2)";
    let now = Utc::now();
    let affected = match store {
        Store::Postgres(s) => sqlx::query(sql)
            .bind(&key_id)
            .bind(tenant.as_str())
            .bind(&secret_hash)
            .bind(&scopes)
            .bind(label)
            .bind(now)
            .execute(s.pool())
            .await?
            .rows_affected(),
        Store::Sqlite(s) => sqlx::query(sql)
            .bind(&key_id)
            .bind(tenant.as_str())
            .bind(&secret_hash)
            .bind(&scopes)
            .bind(label)
            .bind(now.timestamp_millis())
            .execute(s.writer())
            .await?
            .rows_affected(),
    };
    if affected == 0 {
        return Err(KeyError::TenantNotFound(tenant.clone()));
    }
    let key = format!("{KEY_PREFIX}{key_id}_{secret}");
    Ok(NewApiKey { key, key_id })
}

/// Revokes a key, effective from the next request. Revoking twice keeps the first time.
pub async fn revoke_api_key(store: &Store, key_id: &str) -> Result<(), KeyError> {
    let sql = "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE key_id = $1";
    let now = Utc::now();
    let affected = match store {
        Store::Postgres(s) => sqlx::query(sql)
            .bind(key_id)
            .bind(now)
            .execute(s.pool())
            .await?
            .rows_affected(),
        Store::Sqlite(s) => sqlx::query(sql)
            .bind(key_id)
            .bind(now.timestamp_millis())
            .execute(s.writer())
            .await?
            .rows_affected(),
    };
    if affected == 0 {
        return Err(KeyError::KeyNotFound(excerpt(key_id)));
    }
    Ok(())
}

/// The caller a presented key stands for, read from the store now: a revocation takes effect
/// on the very next call. The API server asks through a [`KeyCache`] instead.
pub async fn authenticate(store: &Store, presented: &str) -> Result<Caller, KeyError> {
    let (key_id, secret) = split_key(presented).ok_or(KeyError::MalformedKey)?;
    let row = lookup(store, key_id).await?;
    judge(row.as_ref(), key_id, secret)
}

/// A key as the store holds it.
#[derive(Debug, Clone)]
struct KeyRow {
    tenant: TenantId,
    secret_hash: String,
    scopes: Scopes,
    revoked: bool,
}

/// One lookup by primary key.
async fn lookup(store: &Store, key_id: &str) -> Result<Option<KeyRow>, KeyError> {
    let row: Option<(String, String, String, bool)> = match store {
        Store::Postgres(s) => {
            sqlx::query_as(
                "SELECT tenant_id, secret_hash, scopes, revoked_at IS NOT NULL \
                 FROM api_keys WHERE key_id = $1",
            )
            .bind(key_id)
            .fetch_optional(s.pool())
            .await?
        }
        Store::Sqlite(s) => {
            let row: Option<(String, String, String, Option<i64>)> = sqlx::query_as(
                "SELECT tenant_id, secret_hash, scopes, revoked_at FROM api_keys WHERE key_id = $1",
            )
            .bind(key_id)
            .fetch_optional(s.readers())
            .await?;
            row.map(|(tenant, hash, scopes, revoked_at)| {
                (tenant, hash, scopes, revoked_at.is_some())
            })
        }
    };
    row.map(|(tenant, secret_hash, scopes, revoked)| {
        Ok(KeyRow {
            tenant: TenantId::parse(&tenant).map_err(|e| corrupt("tenant_id", e))?,
            secret_hash,
            scopes: Scopes::parse(&scopes).map_err(|e| corrupt("scopes", e))?,
            revoked,
        })
    })
    .transpose()
}

/// Whether `secret` opens the key `row` (`None`: no such key) and, if so, who it is.
fn judge(row: Option<&KeyRow>, key_id: &str, secret: &str) -> Result<Caller, KeyError> {
    let unknown = || KeyError::UnknownKey {
        key_id: key_id.to_owned(),
    };
    let row = row.ok_or_else(unknown)?;
    if !constant_time_eq(hash_secret(secret).as_bytes(), row.secret_hash.as_bytes()) {
        return Err(unknown());
    }
    // Checked only after the secret, so revocation is no hint to someone who lacks the key.
    if row.revoked {
        return Err(KeyError::RevokedKey {
            key_id: key_id.to_owned(),
        });
    }
    Ok(Caller {
        tenant: row.tenant.clone(),
        key_id: key_id.to_owned(),
        scopes: row.scopes,
    })
}

/// How long a process trusts what it read of a key: a revocation reaches every running API
/// server within this time. Reading the key on every request cost a round trip to the store,
/// a third of the work of a `message(id)` and half of a `send`'s.
pub const KEY_FRESH: Duration = Duration::from_secs(1);

/// Keys a process holds at most; past that it forgets them all and reads them again.
const KEYS_KEPT: usize = 10_000;

/// The keys an API server read lately, each trusted for a while ([`KEY_FRESH`] in the
/// server). Only keys that exist are kept, so made-up key ids cannot fill it; the secret is
/// checked against the kept hash on every request, exactly as against the store's.
#[derive(Debug)]
pub struct KeyCache {
    fresh: Duration,
    keys: Mutex<HashMap<String, (Arc<KeyRow>, Instant)>>,
}

impl KeyCache {
    pub fn new(fresh: Duration) -> Self {
        Self {
            fresh,
            keys: Mutex::default(),
        }
    }

    /// As [`authenticate`], with what was read of the key at most `fresh` ago.
    pub async fn authenticate(&self, store: &Store, presented: &str) -> Result<Caller, KeyError> {
        let (key_id, secret) = split_key(presented).ok_or(KeyError::MalformedKey)?;
        let kept = self
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key_id)
            .filter(|(_, read_at)| read_at.elapsed() < self.fresh)
            .map(|(row, _)| Arc::clone(row));
        if let Some(row) = kept {
            return judge(Some(&row), key_id, secret);
        }
        let read_at = Instant::now();
        let row = lookup(store, key_id).await?;
        let answer = judge(row.as_ref(), key_id, secret);
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        match row {
            Some(row) => {
                if keys.len() >= KEYS_KEPT && !keys.contains_key(key_id) {
                    keys.clear();
                }
                keys.insert(key_id.to_owned(), (Arc::new(row), read_at));
            }
            None => {
                keys.remove(key_id);
            }
        }
        answer
    }
}

/// A fresh key id and secret. Both come from the thread's CSPRNG.
fn generate() -> (String, String) {
    let mut rng = rand::rng();
    let key_id = (0..KEY_ID_LEN)
        .map(|_| char::from(KEY_ID_ALPHABET[rng.random_range(0..KEY_ID_ALPHABET.len())]))
        .collect();
    let secret = (&mut rng)
        .sample_iter(Alphanumeric)
        .take(SECRET_LEN)
        .map(char::from)
        .collect();
    (key_id, secret)
}

/// `hk_{key_id}_{secret}` split into its parts, if it has exactly that shape.
fn split_key(presented: &str) -> Option<(&str, &str)> {
    let (key_id, secret) = presented.strip_prefix(KEY_PREFIX)?.split_once('_')?;
    let well_formed = key_id.len() == KEY_ID_LEN
        && key_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && secret.len() == SECRET_LEN
        && secret.bytes().all(|b| b.is_ascii_alphanumeric());
    well_formed.then_some((key_id, secret))
}

/// Lowercase hex SHA-256. A secret of 190 random bits cannot be guessed from its hash, so a
/// slow password hash would only slow down every request.
fn hash_secret(secret: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    hex
}

/// Compares without stopping at the first difference, so timing does not reveal how much of a
/// hash matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A stored row that no longer parses: a store fault, not the caller's.
fn corrupt(column: &str, error: impl std::error::Error + Send + Sync + 'static) -> KeyError {
    KeyError::from(sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(error),
    })
}

/// The start of an input, enough to recognise it in an error without echoing all of it.
fn excerpt(raw: &str) -> String {
    const MAX: usize = 40;
    match raw.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &raw[..end]),
        None => raw.to_owned(),
    }
}
