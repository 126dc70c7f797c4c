//! A channel account managed at run time: a supplier account (an SMS aggregator, an SMTP relay,
//! a robot) created, changed, disabled and enabled through the admin API while Herald runs.
//! Its stream (`channel_account-{id}`) is the audit trail: each event names its actor and what
//! it changed. Secret values never appear in an event, only their names: the values live
//! encrypted beside the stream (see `commands::secrets`), so a key rotation re-encrypts them
//! without rewriting the log, and an export of the log carries no secret.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

use crate::channel::Channel;
use crate::ids::TenantId;
use crate::wire::{EventDecodeError, event_enum, unsupported_version};

/// The longest account id, setting or secret name.
pub const MAX_NAME_LEN: usize = 64;
/// The longest setting value or base URL.
pub const MAX_VALUE_LEN: usize = 4096;
/// The most settings or secrets one account may have.
pub const MAX_ENTRIES: usize = 32;
/// The highest weight; 0 takes the account out of rotation without disabling it.
pub const MAX_WEIGHT: u32 = 10_000;
/// The longest supplier call allowed, in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 300;

/// Sends per second. A float (half a message a second is a real supplier limit), compared by
/// its bits so events stay `Eq`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PerSecond(pub f64);

impl PartialEq for PerSecond {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for PerSecond {}

/// A token bucket shared by every worker and process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub per_sec: PerSecond,
    /// Sends at once before the rate applies (absent: one second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// Everything about an account but its id, owner and secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSpec {
    pub channel: Channel,
    /// The supplier kind (`tencent_sms`, `smtp`, `webhook`...), fixed at creation.
    pub supplier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    pub weight: u32,
    /// Supplier settings that are not secret (a sign name, a sender address, a region).
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    pub timeout_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAccountCreated {
    pub account_id: String,
    pub tenant: TenantId,
    pub spec: AccountSpec,
    /// The names of the secrets given (their values are stored encrypted, never here).
    #[serde(default)]
    pub secrets: Vec<String>,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// The account's spec as it is after the change, and what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAccountUpdated {
    pub spec: AccountSpec,
    /// The fields that changed: `base_url`, `weight`, `settings`, `timeout_secs`, `rate_limit`.
    #[serde(default)]
    pub changed: Vec<String>,
    /// Secrets given a new value (names only).
    #[serde(default)]
    pub secrets_set: Vec<String>,
    #[serde(default)]
    pub secrets_removed: Vec<String>,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAccountDisabled {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAccountEnabled {
    pub actor: String,
    pub at: DateTime<Utc>,
}

event_enum! {
    /// Everything that can happen to a channel account.
    pub enum ChannelAccountEvent {
        ChannelAccountCreated,
        ChannelAccountUpdated,
        ChannelAccountDisabled,
        ChannelAccountEnabled,
    }
}

impl ChannelAccountEvent {
    pub const SCHEMA_VERSION: u16 = 1;

    fn upcast<'a>(
        event_type: &str,
        schema_version: u16,
        data: &'a Value,
    ) -> Result<Cow<'a, Value>, EventDecodeError> {
        match schema_version {
            1 => Ok(Cow::Borrowed(data)),
            _ => Err(unsupported_version(
                event_type,
                schema_version,
                Self::SCHEMA_VERSION,
            )),
        }
    }

    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::ChannelAccountCreated(e) => e.at,
            Self::ChannelAccountUpdated(e) => e.at,
            Self::ChannelAccountDisabled(e) => e.at,
            Self::ChannelAccountEnabled(e) => e.at,
        }
    }

    pub fn actor(&self) -> &str {
        match self {
            Self::ChannelAccountCreated(e) => &e.actor,
            Self::ChannelAccountUpdated(e) => &e.actor,
            Self::ChannelAccountDisabled(e) => &e.actor,
            Self::ChannelAccountEnabled(e) => &e.actor,
        }
    }
}

/// The stream of an account.
pub fn stream_name(account_id: &str) -> String {
    format!("channel_account-{account_id}")
}

pub use crate::channel_account_decide::{
    AccountPatch, ChannelAccountCommand, ChannelAccountError, ChannelAccountInfo,
    ChannelAccountState, apply, check_id, check_spec, decide, fold, patched,
};
