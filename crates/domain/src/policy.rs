//! Live dispatch policy: a tenant's overrides of the deployment's policy, or one template's
//! overrides of its tenant's. Each scope is a stream (`policy-{tenant}` or
//! `policy-{tenant}.{template}`) of `PolicySet` events, each naming its actor, the whole rule
//! set after the change and what changed; what a scope leaves unset comes from the scope above
//! it, and finally from the configuration file.

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{TemplateId, TenantId};
use crate::wire::{EventDecodeError, event_enum, unsupported_version};

/// The longest dedup window: a week.
pub const MAX_DEDUP_WINDOW_SECS: u64 = 7 * 24 * 3600;
/// The highest frequency cap per receiver and channel per day.
pub const MAX_FREQUENCY_CAP: u32 = 10_000;
/// The most sensitive words one scope may list, and the longest.
pub const MAX_WORDS: usize = 10_000;
pub const MAX_WORD_LEN: usize = 100;

/// The receivers' night: when night-shielded templates are discarded or deferred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NightRule {
    /// `HH:MM`, like the rest.
    pub start: String,
    pub end: String,
    /// When deferred messages go out.
    pub resume: String,
    /// A UTC offset such as `+08:00`; also the zone of a frequency cap's day.
    pub zone: String,
}

/// What a sensitive word does to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WordAction {
    Mask,
    Reject,
}

/// A scope's overrides; `None` inherits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_window_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_cap: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub night: Option<NightRule>,
    /// The discard switch: every message of the scope is discarded (`DISCARD_SWITCH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard: Option<bool>,
    /// Replaces the word list for the scope (an empty list: no words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive_words: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive_action: Option<WordAction>,
}

impl PolicyRules {
    /// The names of the rules that differ between `self` and `other`.
    pub fn differences(&self, other: &PolicyRules) -> Vec<String> {
        let mut changed = Vec::new();
        let mut check = |name: &str, differs: bool| {
            if differs {
                changed.push(name.to_owned());
            }
        };
        check(
            "dedup_window_secs",
            self.dedup_window_secs != other.dedup_window_secs,
        );
        check("frequency_cap", self.frequency_cap != other.frequency_cap);
        check("night", self.night != other.night);
        check("discard", self.discard != other.discard);
        check(
            "sensitive_words",
            self.sensitive_words != other.sensitive_words,
        );
        check(
            "sensitive_action",
            self.sensitive_action != other.sensitive_action,
        );
        changed
    }
}

/// The rules' scope: a tenant, or one template of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyScope {
    pub tenant: TenantId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<TemplateId>,
}

impl PolicyScope {
    pub fn stream_name(&self) -> String {
        match &self.template_id {
            None => format!("policy-{}", self.tenant),
            Some(template) => format!("policy-{}.{template}", self.tenant),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySet {
    pub scope: PolicyScope,
    /// The scope's whole rule set after the change.
    pub rules: PolicyRules,
    pub changed: Vec<String>,
    pub actor: String,
    pub at: DateTime<Utc>,
}

event_enum! {
    /// Everything that happens to a policy scope.
    pub enum PolicyEvent {
        PolicySet,
    }
}

impl PolicyEvent {
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
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    pub field: &'static str,
    pub message: String,
}

impl PolicyError {
    pub fn code(&self) -> &'static str {
        "INVALID_POLICY"
    }

    fn new(field: &'static str, message: impl Into<String>) -> Self {
        PolicyError {
            field,
            message: message.into(),
        }
    }
}

/// A night rule read: start, end, resume and zone.
pub fn parse_night(
    rule: &NightRule,
) -> Result<(NaiveTime, NaiveTime, NaiveTime, FixedOffset), PolicyError> {
    let time = |field: &'static str, value: &str| {
        NaiveTime::parse_from_str(value, "%H:%M").map_err(|_| {
            PolicyError::new(field, format!("must be a time like 22:00, not {value:?}"))
        })
    };
    let zone: FixedOffset = rule.zone.parse().map_err(|_| {
        PolicyError::new(
            "night.zone",
            format!("must be an offset like +08:00, not {:?}", rule.zone),
        )
    })?;
    Ok((
        time("night.start", &rule.start)?,
        time("night.end", &rule.end)?,
        time("night.resume", &rule.resume)?,
        zone,
    ))
}

/// Refuses rules that cannot apply.
pub fn check(rules: &PolicyRules) -> Result<(), PolicyError> {
    if let Some(window) = rules.dedup_window_secs
        && window > MAX_DEDUP_WINDOW_SECS
    {
        return Err(PolicyError::new(
            "dedup_window_secs",
            format!("must be 0 to {MAX_DEDUP_WINDOW_SECS}, not {window}"),
        ));
    }
    if let Some(cap) = rules.frequency_cap
        && cap > MAX_FREQUENCY_CAP
    {
        return Err(PolicyError::new(
            "frequency_cap",
            format!("must be 0 to {MAX_FREQUENCY_CAP}, not {cap}"),
        ));
    }
    if let Some(night) = &rules.night {
        parse_night(night)?;
    }
    if let Some(words) = &rules.sensitive_words {
        if words.len() > MAX_WORDS {
            return Err(PolicyError::new(
                "sensitive_words",
                format!("at most {MAX_WORDS} words"),
            ));
        }
        if let Some(word) = words
            .iter()
            .find(|w| w.trim().is_empty() || w.chars().count() > MAX_WORD_LEN)
        {
            return Err(PolicyError::new(
                "sensitive_words",
                format!(
                    "a word is 1 to {MAX_WORD_LEN} characters, not {:?}",
                    word.chars().take(120).collect::<String>()
                ),
            ));
        }
    }
    Ok(())
}

/// The scope's rules after its events.
pub fn fold(events: &[PolicyEvent]) -> PolicyRules {
    events
        .iter()
        .fold(PolicyRules::default(), |_, PolicyEvent::PolicySet(e)| {
            e.rules.clone()
        })
}

/// Sets a scope's rules: one event naming what changed, or none when nothing did.
pub fn decide(
    current: &PolicyRules,
    scope: PolicyScope,
    rules: PolicyRules,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<Vec<PolicyEvent>, PolicyError> {
    check(&rules)?;
    let changed = current.differences(&rules);
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![
        PolicySet {
            scope,
            rules,
            changed,
            actor: actor.to_owned(),
            at,
        }
        .into(),
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn scope() -> PolicyScope {
        PolicyScope {
            tenant: TenantId::parse("acme").unwrap(),
            template_id: None,
        }
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn a_change_names_what_changed_and_the_same_rules_change_nothing() {
        let rules = PolicyRules {
            dedup_window_secs: Some(0),
            discard: Some(true),
            ..PolicyRules::default()
        };
        let events = decide(
            &PolicyRules::default(),
            scope(),
            rules.clone(),
            "key:k",
            at(),
        )
        .unwrap();
        let PolicyEvent::PolicySet(set) = &events[0];
        assert_eq!(set.changed, ["dedup_window_secs", "discard"]);
        assert_eq!(fold(&events), rules);
        assert!(
            decide(&rules, scope(), rules.clone(), "key:k", at())
                .unwrap()
                .is_empty()
        );
        let decoded = PolicyEvent::decode("PolicySet", 1, &events[0].encode()).unwrap();
        assert_eq!(decoded, events[0]);
    }

    #[test]
    fn bad_rules_name_their_field() {
        let night = PolicyRules {
            night: Some(NightRule {
                start: "22:00".to_owned(),
                end: "8am".to_owned(),
                resume: "09:00".to_owned(),
                zone: "+08:00".to_owned(),
            }),
            ..PolicyRules::default()
        };
        assert_eq!(check(&night).unwrap_err().field, "night.end");
        let words = PolicyRules {
            sensitive_words: Some(vec![" ".to_owned()]),
            ..PolicyRules::default()
        };
        assert_eq!(check(&words).unwrap_err().field, "sensitive_words");
        let window = PolicyRules {
            dedup_window_secs: Some(MAX_DEDUP_WINDOW_SECS + 1),
            ..PolicyRules::default()
        };
        assert_eq!(check(&window).unwrap_err().code(), "INVALID_POLICY");
        let scoped = PolicyScope {
            template_id: Some(TemplateId::generate()),
            ..scope()
        };
        assert!(scoped.stream_name().starts_with("policy-acme."));
    }
}
