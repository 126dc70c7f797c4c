//! Live policy (`admin` scope): the tenant's overrides of the configured dispatch policy, or
//! one template's. `setPolicy` replaces the scope's whole rule set; a rule left out inherits
//! (the template's from the tenant's, the tenant's from the configuration file).

use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use commands::keys::Scope;
use commands::policies;
use domain::policy::{NightRule, PolicyRules, WordAction};

use crate::errors;
use crate::templates::{caller, state, template_id};

/// The receivers' night for the scope.
#[derive(SimpleObject, InputObject, Clone)]
#[graphql(input_name = "NightInput")]
pub struct Night {
    /// `HH:MM`.
    pub start: String,
    pub end: String,
    /// When deferred messages go out.
    pub resume: String,
    /// A UTC offset such as `+08:00`; also the zone of a frequency cap's day.
    pub zone: String,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "domain::policy::WordAction")]
pub enum SensitiveAction {
    /// Replace each character of a listed word with `*` and send.
    Mask,
    /// Discard the message (`SENSITIVE_WORDS`).
    Reject,
}

/// A scope's rules: what is absent is inherited.
#[derive(InputObject)]
pub struct SetPolicyInput {
    /// The template the rules are for; absent: the whole tenant.
    pub template_id: Option<ID>,
    /// Same receiver, template and content within it is a duplicate (0: off).
    pub dedup_window_secs: Option<u64>,
    /// Messages per receiver and channel per day (0: off).
    pub frequency_cap: Option<u32>,
    pub night: Option<Night>,
    /// The discard switch: every message of the scope is discarded (`DISCARD_SWITCH`).
    pub discard: Option<bool>,
    /// Replaces the word list for the scope.
    pub sensitive_words: Option<Vec<String>>,
    pub sensitive_action: Option<SensitiveAction>,
}

/// One change of a scope's rules.
#[derive(SimpleObject)]
pub struct PolicyChange {
    pub at: DateTime<Utc>,
    /// The API key that made it.
    pub actor: String,
    /// The rules that changed.
    pub changed: Vec<String>,
}

/// A scope's rules, as set (not merged with the scopes above it).
#[derive(SimpleObject)]
pub struct Policy {
    pub template_id: Option<ID>,
    pub dedup_window_secs: Option<u64>,
    pub frequency_cap: Option<u32>,
    pub night: Option<Night>,
    pub discard: Option<bool>,
    pub sensitive_words: Option<Vec<String>>,
    pub sensitive_action: Option<SensitiveAction>,
    /// The scope's stream version: one per change.
    pub version: u64,
    pub history: Vec<PolicyChange>,
}

fn view(
    template: Option<ID>,
    rules: PolicyRules,
    history: Vec<domain::policy::PolicySet>,
) -> Policy {
    Policy {
        template_id: template,
        dedup_window_secs: rules.dedup_window_secs,
        frequency_cap: rules.frequency_cap,
        night: rules.night.map(|n| Night {
            start: n.start,
            end: n.end,
            resume: n.resume,
            zone: n.zone,
        }),
        discard: rules.discard,
        sensitive_words: rules.sensitive_words,
        sensitive_action: rules.sensitive_action.map(Into::into),
        version: history.len() as u64,
        history: history
            .into_iter()
            .map(|e| PolicyChange {
                at: e.at,
                actor: e.actor,
                changed: e.changed,
            })
            .collect(),
    }
}

#[derive(Default)]
pub struct PolicyQuery;

#[Object]
impl PolicyQuery {
    /// The tenant's rules, or a template's, with their history.
    async fn policy(&self, ctx: &Context<'_>, template_id: Option<ID>) -> Result<Policy> {
        let caller = caller(ctx, Scope::Admin)?;
        let store = &state(ctx).store;
        let template = template_id.as_ref().map(template_id_of).transpose()?;
        let scope = policies::scope(store, &caller.tenant, template)
            .await
            .map_err(errors::command)?;
        let (rules, history) = policies::get(store, &scope)
            .await
            .map_err(errors::command)?;
        Ok(view(template_id, rules, history))
    }
}

fn template_id_of(id: &ID) -> Result<domain::TemplateId> {
    template_id(id)
}

#[derive(Default)]
pub struct PolicyMutation;

#[Object]
impl PolicyMutation {
    /// Replaces the rules of the tenant, or of one of its templates. Every process applies
    /// them from its next message on, within `runtime.poll_ms`.
    async fn set_policy(&self, ctx: &Context<'_>, input: SetPolicyInput) -> Result<Policy> {
        let caller = caller(ctx, Scope::Admin)?;
        let store = &state(ctx).store;
        let template = input.template_id.as_ref().map(template_id_of).transpose()?;
        let scope = policies::scope(store, &caller.tenant, template)
            .await
            .map_err(errors::command)?;
        let rules = PolicyRules {
            dedup_window_secs: input.dedup_window_secs,
            frequency_cap: input.frequency_cap,
            night: input.night.map(|n| NightRule {
                start: n.start,
                end: n.end,
                resume: n.resume,
                zone: n.zone,
            }),
            discard: input.discard,
            sensitive_words: input.sensitive_words,
            sensitive_action: input.sensitive_action.map(WordAction::from),
        };
        policies::set(store, scope.clone(), rules, &caller.key_id, Utc::now())
            .await
            .map_err(errors::command)?;
        let (rules, history) = policies::get(store, &scope)
            .await
            .map_err(errors::command)?;
        Ok(view(input.template_id, rules, history))
    }
}
