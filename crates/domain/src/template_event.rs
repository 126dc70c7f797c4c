//! Events of one template stream (`template-{uuid}`) and their wire format.
//! Channel, message type and receiver id type are fixed by `TemplateCreated`; no later event carries them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

use crate::channel::{Channel, MessageType, ReceiverIdType, ShieldType};
use crate::ids::{TemplateId, TenantId};
use crate::template::TemplateContent;
use crate::wire::{EventDecodeError, event_enum, unsupported_version};

/// A template was proposed; its first version is a draft authored by `proposer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateCreated {
    pub template_id: TemplateId,
    pub tenant: TenantId,
    pub name: String,
    pub channel: Channel,
    pub msg_type: MessageType,
    pub receiver_id_type: ReceiverIdType,
    pub shield_type: ShieldType,
    pub content: TemplateContent,
    /// The channel account or supplier group that sends this template.
    pub account: String,
    pub owner_team: String,
    pub proposer: String,
    pub at: DateTime<Utc>,
}

/// A new draft version was written; the previously approved version keeps sending until this one is approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateUpdated {
    pub name: String,
    pub shield_type: ShieldType,
    pub content: TemplateContent,
    pub account: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSubmitted {
    pub version: u32,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateApproved {
    pub version: u32,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRejected {
    pub version: u32,
    pub actor: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateDisabled {
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateEnabled {
    pub actor: String,
    pub at: DateTime<Utc>,
}

event_enum! {
    /// Everything that can happen to a template.
    pub enum TemplateEvent {
        TemplateCreated,
        TemplateUpdated,
        TemplateSubmitted,
        TemplateApproved,
        TemplateRejected,
        TemplateDisabled,
        TemplateEnabled,
    }
}

impl TemplateEvent {
    /// The schema version written by this build.
    pub const SCHEMA_VERSION: u16 = 1;

    /// Rewrites an older payload into the current shape; version 1 is current, so it passes through.
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

    /// When the event happened, as stated by the command that caused it.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::TemplateCreated(e) => e.at,
            Self::TemplateUpdated(e) => e.at,
            Self::TemplateSubmitted(e) => e.at,
            Self::TemplateApproved(e) => e.at,
            Self::TemplateRejected(e) => e.at,
            Self::TemplateDisabled(e) => e.at,
            Self::TemplateEnabled(e) => e.at,
        }
    }
}
