//! Channel account commands and rules: what a command may do to an account's state, as pure
//! functions (`decide`, `apply`, `fold`), and the checks every definition passes.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::channel_account::{
    AccountSpec, ChannelAccountCreated, ChannelAccountDisabled, ChannelAccountEnabled,
    ChannelAccountEvent, ChannelAccountUpdated, MAX_ENTRIES, MAX_NAME_LEN, MAX_TIMEOUT_SECS,
    MAX_VALUE_LEN, MAX_WEIGHT, RateLimit,
};
use crate::ids::TenantId;

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
