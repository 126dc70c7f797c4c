//! Live policy: the tenants' and templates' overrides of the configured dispatch policy,
//! compiled once per change (word lists into matchers), and resolved per message: the
//! configuration file's options, then the tenant's rules, then the template's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use domain::policy::{PolicyRules, PolicyScope, WordAction, parse_night};
use domain::{TemplateId, TenantId};
use tokio::sync::watch;

use crate::policy::NightWindow;
use crate::sensitive::{SensitiveAction, SensitiveWords};
use crate::worker::WorkerOptions;

/// One scope's rules, ready to apply.
#[derive(Clone, Default)]
struct Compiled {
    dedup_window: Option<Duration>,
    frequency_cap: Option<u32>,
    night: Option<NightWindow>,
    discard: Option<bool>,
    words: Option<SensitiveWords>,
    action: Option<SensitiveAction>,
}

impl Compiled {
    fn new(rules: &PolicyRules) -> Result<Compiled, String> {
        let night = rules
            .night
            .as_ref()
            .map(|rule| {
                parse_night(rule).map(|(start, end, resume, zone)| NightWindow {
                    start,
                    end,
                    resume,
                    zone,
                })
            })
            .transpose()
            .map_err(|e| e.to_string())?;
        let words = rules
            .sensitive_words
            .as_ref()
            .map(|words| SensitiveWords::new(words.iter().map(String::as_str)))
            .transpose()
            .map_err(|e| e.to_string())?;
        Ok(Compiled {
            dedup_window: rules.dedup_window_secs.map(Duration::from_secs),
            frequency_cap: rules.frequency_cap,
            night,
            discard: rules.discard,
            words,
            action: rules.sensitive_action.map(|a| match a {
                WordAction::Mask => SensitiveAction::Mask,
                WordAction::Reject => SensitiveAction::Reject,
            }),
        })
    }

    fn apply(&self, options: &mut WorkerOptions) {
        if let Some(window) = self.dedup_window {
            options.limits.dedup_window = window;
        }
        if let Some(cap) = self.frequency_cap {
            options.limits.frequency_cap = cap;
        }
        if let Some(night) = self.night {
            options.night = night;
        }
        if let Some(discard) = self.discard {
            options.discard = discard;
        }
        if let Some(words) = &self.words {
            options.sensitive_words = words.clone();
        }
        if let Some(action) = self.action {
            options.sensitive_action = action;
        }
    }
}

/// Every scope's rules.
#[derive(Clone, Default)]
pub struct PolicyTable(Arc<HashMap<PolicyScope, Compiled>>);

impl PolicyTable {
    /// Compiles the scopes' rules; a scope whose rules cannot be compiled is left out and
    /// returned with why.
    pub fn new(
        scopes: Vec<(PolicyScope, PolicyRules)>,
    ) -> (PolicyTable, Vec<(PolicyScope, String)>) {
        let mut table = HashMap::new();
        let mut errors = Vec::new();
        for (scope, rules) in scopes {
            match Compiled::new(&rules) {
                Ok(compiled) => {
                    table.insert(scope, compiled);
                }
                Err(error) => errors.push((scope, error)),
            }
        }
        (PolicyTable(Arc::new(table)), errors)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The options for a message of `tenant` and `template`: `base` with the tenant's rules and
    /// then the template's over it; `None` when neither scope has rules (use `base`).
    pub fn resolve(
        &self,
        tenant: &TenantId,
        template: TemplateId,
        base: &WorkerOptions,
    ) -> Option<WorkerOptions> {
        if self.0.is_empty() {
            return None;
        }
        let mut scope = PolicyScope {
            tenant: tenant.clone(),
            template_id: None,
        };
        let of_tenant = self.0.get(&scope);
        scope.template_id = Some(template);
        let of_template = self.0.get(&scope);
        if of_tenant.is_none() && of_template.is_none() {
            return None;
        }
        let mut options = base.clone();
        for rules in [of_tenant, of_template].into_iter().flatten() {
            rules.apply(&mut options);
        }
        Some(options)
    }
}

/// The policy table as it is now, replaced as a whole on a change (see `herald`'s runtime).
#[derive(Clone)]
pub struct LivePolicies(watch::Receiver<PolicyTable>);

impl LivePolicies {
    pub fn fixed(table: PolicyTable) -> LivePolicies {
        LivePolicies(watch::channel(table).1)
    }

    pub fn follow(receiver: watch::Receiver<PolicyTable>) -> LivePolicies {
        LivePolicies(receiver)
    }

    pub fn current(&self) -> PolicyTable {
        self.0.borrow().clone()
    }
}

impl Default for LivePolicies {
    fn default() -> Self {
        LivePolicies::fixed(PolicyTable::default())
    }
}

impl std::fmt::Debug for LivePolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivePolicies")
            .field("scopes", &self.0.borrow().len())
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_template_overrides_the_tenant_which_overrides_the_file() {
        let tenant = TenantId::parse("acme").unwrap();
        let template = TemplateId::generate();
        let scope = |template_id| PolicyScope {
            tenant: tenant.clone(),
            template_id,
        };
        let (table, errors) = PolicyTable::new(vec![
            (
                scope(None),
                PolicyRules {
                    dedup_window_secs: Some(0),
                    frequency_cap: Some(9),
                    ..PolicyRules::default()
                },
            ),
            (
                scope(Some(template)),
                PolicyRules {
                    frequency_cap: Some(1),
                    discard: Some(true),
                    sensitive_words: Some(vec!["spam".to_owned()]),
                    ..PolicyRules::default()
                },
            ),
        ]);
        assert!(errors.is_empty());
        let base = WorkerOptions::default();
        let options = table.resolve(&tenant, template, &base).unwrap();
        assert_eq!(options.limits.dedup_window, Duration::ZERO);
        assert_eq!(options.limits.frequency_cap, 1);
        assert!(options.discard);
        assert_eq!(options.sensitive_words.len(), 1);
        // Another template of the tenant gets the tenant's rules only.
        let other = table
            .resolve(&tenant, TemplateId::generate(), &base)
            .unwrap();
        assert_eq!(other.limits.frequency_cap, 9);
        assert!(!other.discard);
        // Another tenant gets the file's.
        let beta = TenantId::parse("beta").unwrap();
        assert!(table.resolve(&beta, template, &base).is_none());
    }
}
