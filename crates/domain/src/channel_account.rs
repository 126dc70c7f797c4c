//! A channel account managed at run time: a supplier account (an SMS aggregator, an SMTP relay,
//! a robot) created, changed, disabled and enabled through the admin API while Herald runs.
//! Its stream (`channel_account-{id}`) is the audit trail: each event names its actor and what
//! it changed. Secret values never appear in an event, only their names: the values live
//! encrypted beside the stream (see `commands::secrets`), so a key rotation re-encrypts them
//! without rewriting the log, and an export of the log carries no secret.

use std::collections::{BTreeMap, BTreeSet};

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

/// A change to an account's spec; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountPatch {
    /// `Some(None)` goes back to the supplier's public address.
    pub base_url: Option<Option<String>>,
    pub weight: Option<u32>,
    /// Replaces the whole map.
    pub settings: Option<BTreeMap<String, String>>,
    pub timeout_secs: Option<u64>,
    /// `Some(None)` removes the limit.
    pub rate_limit: Option<Option<RateLimit>>,
    /// Secrets given a (new) value.
    pub secrets_set: Vec<String>,
    pub secrets_removed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelAccountCommand {
    Create {
        account_id: String,
        tenant: TenantId,
        spec: AccountSpec,
        secrets: Vec<String>,
        actor: String,
        at: DateTime<Utc>,
    },
    Update {
        patch: AccountPatch,
        actor: String,
        at: DateTime<Utc>,
    },
    Disable {
        reason: Option<String>,
        actor: String,
        at: DateTime<Utc>,
    },
    Enable {
        actor: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelAccountError {
    #[error("the channel account already exists")]
    AlreadyExists,
    #[error("the channel account does not exist")]
    NotFound,
    #[error(
        "an account id is 1 to 64 lowercase letters, digits, '-' and '_', starting with a letter or digit, not {0:?}"
    )]
    InvalidId(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl ChannelAccountError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::AlreadyExists => "ACCOUNT_EXISTS",
            Self::NotFound => "ACCOUNT_NOT_FOUND",
            Self::InvalidId(_) => "INVALID_ACCOUNT_ID",
            Self::Invalid { .. } => "INVALID_ACCOUNT",
        }
    }

    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// An account as its stream tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelAccountInfo {
    pub account_id: String,
    pub tenant: TenantId,
    pub spec: AccountSpec,
    pub secrets: BTreeSet<String>,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelAccountState {
    pub info: Option<ChannelAccountInfo>,
}

/// Whether `id` may name an account.
pub fn check_id(id: &str) -> Result<(), ChannelAccountError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_NAME_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(ChannelAccountError::InvalidId(
            id.chars().take(80).collect(),
        ))
    }
}

fn check_name(field: &'static str, name: &str) -> Result<(), ChannelAccountError> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(ChannelAccountError::invalid(
            field,
            format!(
                "a name is 1 to {MAX_NAME_LEN} letters, digits, '_', '-' and '.', not {:?}",
                name.chars().take(80).collect::<String>()
            ),
        ));
    }
    Ok(())
}

/// The rules every spec keeps; what a supplier needs is checked where suppliers are known.
pub fn check_spec(spec: &AccountSpec) -> Result<(), ChannelAccountError> {
    if spec.supplier.is_empty() || spec.supplier.len() > MAX_NAME_LEN {
        return Err(ChannelAccountError::invalid("supplier", "must be named"));
    }
    if let Some(url) = &spec.base_url
        && (url.len() > MAX_VALUE_LEN || !url.contains("://"))
    {
        return Err(ChannelAccountError::invalid(
            "base_url",
            format!("must be an absolute URL such as https://sms.example.com, not {url:?}"),
        ));
    }
    if spec.weight > MAX_WEIGHT {
        return Err(ChannelAccountError::invalid(
            "weight",
            format!("must be 0 to {MAX_WEIGHT}, not {}", spec.weight),
        ));
    }
    if spec.timeout_secs == 0 || spec.timeout_secs > MAX_TIMEOUT_SECS {
        return Err(ChannelAccountError::invalid(
            "timeout_secs",
            format!("must be 1 to {MAX_TIMEOUT_SECS}, not {}", spec.timeout_secs),
        ));
    }
    if spec.settings.len() > MAX_ENTRIES {
        return Err(ChannelAccountError::invalid(
            "settings",
            format!("at most {MAX_ENTRIES}"),
        ));
    }
    for (name, value) in &spec.settings {
        check_name("settings", name)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(ChannelAccountError::invalid(
                "settings",
                format!("{name} is longer than {MAX_VALUE_LEN} bytes"),
            ));
        }
    }
    if let Some(limit) = spec.rate_limit {
        let rate = limit.per_sec.0;
        if !rate.is_finite() || rate <= 0.0 || rate > 1_000_000.0 {
            return Err(ChannelAccountError::invalid(
                "rate_limit_per_sec",
                format!("must be above 0 and at most 1000000, not {rate}"),
            ));
        }
        if limit.burst == Some(0) {
            return Err(ChannelAccountError::invalid(
                "rate_limit_burst",
                "must be at least 1",
            ));
        }
    }
    Ok(())
}

fn check_secret_names(names: &[String]) -> Result<(), ChannelAccountError> {
    if names.len() > MAX_ENTRIES {
        return Err(ChannelAccountError::invalid(
            "secrets",
            format!("at most {MAX_ENTRIES}"),
        ));
    }
    let mut seen = BTreeSet::new();
    for name in names {
        check_name("secrets", name)?;
        if !seen.insert(name) {
            return Err(ChannelAccountError::invalid(
                "secrets",
                format!("{name} is given twice"),
            ));
        }
    }
    Ok(())
}

/// The account's spec after `patch`, and the fields that changed.
pub fn patched(spec: &AccountSpec, patch: &AccountPatch) -> (AccountSpec, Vec<String>) {
    let mut next = spec.clone();
    let mut changed = Vec::new();
    let mut set = |field: &str, differs: bool| {
        if differs {
            changed.push(field.to_owned());
        }
    };
    if let Some(base_url) = &patch.base_url {
        set("base_url", *base_url != spec.base_url);
        next.base_url.clone_from(base_url);
    }
    if let Some(weight) = patch.weight {
        set("weight", weight != spec.weight);
        next.weight = weight;
    }
    if let Some(settings) = &patch.settings {
        set("settings", *settings != spec.settings);
        next.settings.clone_from(settings);
    }
    if let Some(timeout) = patch.timeout_secs {
        set("timeout_secs", timeout != spec.timeout_secs);
        next.timeout_secs = timeout;
    }
    if let Some(limit) = patch.rate_limit {
        set("rate_limit", limit != spec.rate_limit);
        next.rate_limit = limit;
    }
    (next, changed)
}

/// The events a command makes on the account's state.
pub fn decide(
    state: &ChannelAccountState,
    command: ChannelAccountCommand,
) -> Result<Vec<ChannelAccountEvent>, ChannelAccountError> {
    match command {
        ChannelAccountCommand::Create {
            account_id,
            tenant,
            spec,
            secrets,
            actor,
            at,
        } => {
            if state.info.is_some() {
                return Err(ChannelAccountError::AlreadyExists);
            }
            check_id(&account_id)?;
            check_spec(&spec)?;
            check_secret_names(&secrets)?;
            let mut secrets = secrets;
            secrets.sort();
            Ok(vec![
                ChannelAccountCreated {
                    account_id,
                    tenant,
                    spec,
                    secrets,
                    actor,
                    at,
                }
                .into(),
            ])
        }
        ChannelAccountCommand::Update { patch, actor, at } => {
            let info = state.info.as_ref().ok_or(ChannelAccountError::NotFound)?;
            check_secret_names(&patch.secrets_set)?;
            for name in &patch.secrets_removed {
                if !info.secrets.contains(name) {
                    return Err(ChannelAccountError::invalid(
                        "remove_secrets",
                        format!("the account has no secret {name}"),
                    ));
                }
                if patch.secrets_set.contains(name) {
                    return Err(ChannelAccountError::invalid(
                        "remove_secrets",
                        format!("{name} is both set and removed"),
                    ));
                }
            }
            let (spec, changed) = patched(&info.spec, &patch);
            check_spec(&spec)?;
            if changed.is_empty()
                && patch.secrets_set.is_empty()
                && patch.secrets_removed.is_empty()
            {
                return Ok(Vec::new());
            }
            let sorted = |names: &[String]| {
                let mut names = names.to_vec();
                names.sort();
                names.dedup();
                names
            };
            Ok(vec![
                ChannelAccountUpdated {
                    spec,
                    changed,
                    secrets_set: sorted(&patch.secrets_set),
                    secrets_removed: sorted(&patch.secrets_removed),
                    actor,
                    at,
                }
                .into(),
            ])
        }
        ChannelAccountCommand::Disable { reason, actor, at } => {
            let info = state.info.as_ref().ok_or(ChannelAccountError::NotFound)?;
            if !info.enabled {
                return Ok(Vec::new());
            }
            Ok(vec![ChannelAccountDisabled { reason, actor, at }.into()])
        }
        ChannelAccountCommand::Enable { actor, at } => {
            let info = state.info.as_ref().ok_or(ChannelAccountError::NotFound)?;
            if info.enabled {
                return Ok(Vec::new());
            }
            Ok(vec![ChannelAccountEnabled { actor, at }.into()])
        }
    }
}

/// Applies one event; refuses one the rules do not allow, so a damaged stream is noticed.
pub fn apply(
    mut state: ChannelAccountState,
    event: &ChannelAccountEvent,
) -> Result<ChannelAccountState, ChannelAccountError> {
    match event {
        ChannelAccountEvent::ChannelAccountCreated(e) => {
            if state.info.is_some() {
                return Err(ChannelAccountError::AlreadyExists);
            }
            state.info = Some(ChannelAccountInfo {
                account_id: e.account_id.clone(),
                tenant: e.tenant.clone(),
                spec: e.spec.clone(),
                secrets: e.secrets.iter().cloned().collect(),
                enabled: true,
                created_at: e.at,
                updated_at: e.at,
            });
        }
        ChannelAccountEvent::ChannelAccountUpdated(e) => {
            let info = state.info.as_mut().ok_or(ChannelAccountError::NotFound)?;
            info.spec = e.spec.clone();
            info.secrets.extend(e.secrets_set.iter().cloned());
            for name in &e.secrets_removed {
                info.secrets.remove(name);
            }
            info.updated_at = e.at;
        }
        ChannelAccountEvent::ChannelAccountDisabled(e) => {
            let info = state.info.as_mut().ok_or(ChannelAccountError::NotFound)?;
            info.enabled = false;
            info.updated_at = e.at;
        }
        ChannelAccountEvent::ChannelAccountEnabled(e) => {
            let info = state.info.as_mut().ok_or(ChannelAccountError::NotFound)?;
            info.enabled = true;
            info.updated_at = e.at;
        }
    }
    Ok(state)
}

/// The state after every event of a stream.
pub fn fold(events: &[ChannelAccountEvent]) -> Result<ChannelAccountState, ChannelAccountError> {
    events
        .iter()
        .try_fold(ChannelAccountState::default(), apply)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn spec() -> AccountSpec {
        AccountSpec {
            channel: Channel::Sms,
            supplier: "tencent_sms".to_owned(),
            base_url: None,
            weight: 1,
            settings: BTreeMap::from([("sdk_app_id".to_owned(), "1400".to_owned())]),
            timeout_secs: 10,
            rate_limit: None,
        }
    }

    fn created() -> ChannelAccountState {
        let events = decide(
            &ChannelAccountState::default(),
            ChannelAccountCommand::Create {
                account_id: "sms-b".to_owned(),
                tenant: TenantId::parse("acme").unwrap(),
                spec: spec(),
                secrets: vec!["secret_key".to_owned(), "secret_id".to_owned()],
                actor: "key:k1".to_owned(),
                at: at(0),
            },
        )
        .unwrap();
        fold(&events).unwrap()
    }

    #[test]
    fn create_records_secret_names_sorted_and_never_twice() {
        let state = created();
        let info = state.info.unwrap();
        assert_eq!(
            info.secrets.iter().collect::<Vec<_>>(),
            ["secret_id", "secret_key"]
        );
        assert!(info.enabled);
        let again = decide(
            &created(),
            ChannelAccountCommand::Create {
                account_id: "sms-b".to_owned(),
                tenant: TenantId::parse("acme").unwrap(),
                spec: spec(),
                secrets: Vec::new(),
                actor: "key:k1".to_owned(),
                at: at(1),
            },
        );
        assert_eq!(again, Err(ChannelAccountError::AlreadyExists));
    }

    #[test]
    fn bad_ids_and_specs_are_refused_with_the_field_named() {
        for id in ["", "Upper", "-lead", "a b", &"x".repeat(65)] {
            assert_eq!(
                check_id(id).unwrap_err().code(),
                "INVALID_ACCOUNT_ID",
                "{id}"
            );
        }
        check_id("sms-b_2").unwrap();
        let mut bad = spec();
        bad.timeout_secs = 0;
        let error = check_spec(&bad).unwrap_err();
        assert_eq!(error.code(), "INVALID_ACCOUNT");
        assert!(error.to_string().starts_with("timeout_secs:"), "{error}");
        let mut bad = spec();
        bad.rate_limit = Some(RateLimit {
            per_sec: PerSecond(f64::NAN),
            burst: None,
        });
        assert!(
            check_spec(&bad)
                .unwrap_err()
                .to_string()
                .starts_with("rate_limit_per_sec")
        );
        let mut bad = spec();
        bad.base_url = Some("sms.example.com".to_owned());
        assert!(
            check_spec(&bad)
                .unwrap_err()
                .to_string()
                .starts_with("base_url")
        );
    }

    #[test]
    fn an_update_names_what_changed_and_nothing_changed_is_no_event() {
        let state = created();
        let patch = AccountPatch {
            weight: Some(3),
            timeout_secs: Some(10),
            secrets_set: vec!["secret_key".to_owned()],
            ..AccountPatch::default()
        };
        let events = decide(
            &state,
            ChannelAccountCommand::Update {
                patch,
                actor: "key:k2".to_owned(),
                at: at(5),
            },
        )
        .unwrap();
        let ChannelAccountEvent::ChannelAccountUpdated(updated) = &events[0] else {
            panic!("{events:?}");
        };
        assert_eq!(updated.changed, ["weight"]);
        assert_eq!(updated.secrets_set, ["secret_key"]);
        assert_eq!(updated.spec.weight, 3);
        let same = decide(
            &state,
            ChannelAccountCommand::Update {
                patch: AccountPatch {
                    weight: Some(1),
                    ..AccountPatch::default()
                },
                actor: "key:k2".to_owned(),
                at: at(6),
            },
        )
        .unwrap();
        assert!(same.is_empty());
        let missing = decide(
            &state,
            ChannelAccountCommand::Update {
                patch: AccountPatch {
                    secrets_removed: vec!["nope".to_owned()],
                    ..AccountPatch::default()
                },
                actor: "key:k2".to_owned(),
                at: at(6),
            },
        );
        assert_eq!(missing.unwrap_err().code(), "INVALID_ACCOUNT");
    }

    #[test]
    fn disable_and_enable_are_idempotent_and_round_trip_the_wire() {
        let state = created();
        let disable = || ChannelAccountCommand::Disable {
            reason: Some("supplier outage".to_owned()),
            actor: "key:k1".to_owned(),
            at: at(9),
        };
        let events = decide(&state, disable()).unwrap();
        let state = events.iter().try_fold(state, apply).unwrap();
        assert!(!state.info.as_ref().unwrap().enabled);
        assert!(decide(&state, disable()).unwrap().is_empty());
        let enable = decide(
            &state,
            ChannelAccountCommand::Enable {
                actor: "key:k1".to_owned(),
                at: at(10),
            },
        )
        .unwrap();
        for event in events.iter().chain(&enable) {
            let decoded =
                ChannelAccountEvent::decode(event.event_type(), 1, &event.encode()).unwrap();
            assert_eq!(&decoded, event);
        }
        assert!(
            decide(
                &ChannelAccountState::default(),
                ChannelAccountCommand::Enable {
                    actor: "a".to_owned(),
                    at: at(0)
                }
            )
            .is_err()
        );
    }
}
