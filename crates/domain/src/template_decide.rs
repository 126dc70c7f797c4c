//! Template commands and `decide`: checks a command's data, then the review rules, and returns the events.
//! The rules themselves live with the state in `template_aggregate`, so `decide` and `apply` cannot disagree.

use chrono::{DateTime, Utc};

use crate::channel::{Channel, MessageType, ReceiverIdType, ShieldType};
use crate::ids::{TemplateId, TenantId};
use crate::template::TemplateContent;
use crate::template_aggregate::{TemplateError, TemplateState, check};
use crate::template_event::*;

/// What someone asks of a template. Times come from the caller, never from a clock read here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateCommand {
    CreateTemplate {
        template_id: TemplateId,
        tenant: TenantId,
        name: String,
        channel: Channel,
        msg_type: MessageType,
        receiver_id_type: ReceiverIdType,
        shield_type: ShieldType,
        content: TemplateContent,
        account: String,
        owner_team: String,
        proposer: String,
        at: DateTime<Utc>,
    },
    UpdateTemplate {
        name: String,
        shield_type: ShieldType,
        content: TemplateContent,
        account: String,
        actor: String,
        at: DateTime<Utc>,
    },
    SubmitTemplate {
        version: u32,
        actor: String,
        at: DateTime<Utc>,
    },
    ApproveTemplate {
        version: u32,
        actor: String,
        comment: Option<String>,
        at: DateTime<Utc>,
    },
    RejectTemplate {
        version: u32,
        actor: String,
        reason: String,
        at: DateTime<Utc>,
    },
    DisableTemplate {
        actor: String,
        reason: Option<String>,
        at: DateTime<Utc>,
    },
    EnableTemplate {
        actor: String,
        at: DateTime<Utc>,
    },
}

/// The longest template name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// Decides what a command means for the template: the events to append, or the rule it breaks.
pub fn decide(
    state: &TemplateState,
    command: TemplateCommand,
) -> Result<Vec<TemplateEvent>, TemplateError> {
    use TemplateCommand as C;
    let event: TemplateEvent = match command {
        C::CreateTemplate {
            template_id,
            tenant,
            name,
            channel,
            msg_type,
            receiver_id_type,
            shield_type,
            content,
            account,
            owner_team,
            proposer,
            at,
        } => {
            if state.is_created() {
                return Err(TemplateError::AlreadyCreated);
            }
            check_version_fields(&name, &account, &content, channel)?;
            non_empty("owner_team", &owner_team)?;
            non_empty("proposer", &proposer)?;
            TemplateCreated {
                template_id,
                tenant,
                name,
                channel,
                msg_type,
                receiver_id_type,
                shield_type,
                content,
                account,
                owner_team,
                proposer,
                at,
            }
            .into()
        }
        C::UpdateTemplate {
            name,
            shield_type,
            content,
            account,
            actor,
            at,
        } => {
            let info = state.info.as_ref().ok_or(TemplateError::NotCreated)?;
            check_version_fields(&name, &account, &content, info.channel)?;
            non_empty("actor", &actor)?;
            TemplateUpdated {
                name,
                shield_type,
                content,
                account,
                actor,
                at,
            }
            .into()
        }
        C::SubmitTemplate { version, actor, at } => {
            non_empty("actor", &actor)?;
            TemplateSubmitted { version, actor, at }.into()
        }
        C::ApproveTemplate {
            version,
            actor,
            comment,
            at,
        } => {
            non_empty("actor", &actor)?;
            TemplateApproved {
                version,
                actor,
                comment,
                at,
            }
            .into()
        }
        C::RejectTemplate {
            version,
            actor,
            reason,
            at,
        } => {
            non_empty("actor", &actor)?;
            non_empty("reason", &reason)?;
            TemplateRejected {
                version,
                actor,
                reason,
                at,
            }
            .into()
        }
        C::DisableTemplate { actor, reason, at } => {
            non_empty("actor", &actor)?;
            TemplateDisabled { actor, reason, at }.into()
        }
        C::EnableTemplate { actor, at } => {
            non_empty("actor", &actor)?;
            TemplateEnabled { actor, at }.into()
        }
    };
    check(state, &event)?;
    Ok(vec![event])
}

fn check_version_fields(
    name: &str,
    account: &str,
    content: &TemplateContent,
    channel: Channel,
) -> Result<(), TemplateError> {
    non_empty("name", name)?;
    let name_chars = name.chars().count();
    if name_chars > MAX_NAME_CHARS {
        return Err(TemplateError::FieldTooLong {
            field: "name",
            len: name_chars,
            max: MAX_NAME_CHARS,
        });
    }
    non_empty("account", account)?;
    if !content.fits(channel) {
        return Err(TemplateError::ContentDoesNotFitChannel {
            channel,
            kind: content.kind(),
        });
    }
    content.validate()
}

fn non_empty(field: &'static str, value: &str) -> Result<(), TemplateError> {
    if value.trim().is_empty() {
        Err(TemplateError::EmptyField { field })
    } else {
        Ok(())
    }
}
