//! The template aggregate's state folded from events, and the review workflow's rules that `apply` enforces.
//! Only an approved, enabled version sends, and a new draft never stops the last approved version from sending.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::channel::{Channel, MessageType, ReceiverIdType, ShieldType};
use crate::ids::{TemplateId, TenantId};
use crate::template::TemplateContent;
use crate::template_event::*;
use crate::wire::wire_enum;

/// A broken template rule. `code()` gives the rule's stable name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the template already exists")]
    AlreadyCreated,
    #[error("the template has not been created")]
    NotCreated,
    #[error("no such template")]
    NotFound,
    #[error("the template has no approved version")]
    NotApproved,
    #[error("the template is disabled")]
    Disabled,
    #[error("the template has no version {version}")]
    VersionNotFound { version: u32 },
    #[error("version {version} is not the latest version ({latest})")]
    NotLatestVersion { version: u32, latest: u32 },
    #[error("version {version} is {status} and cannot be submitted")]
    NotSubmittable { version: u32, status: VersionStatus },
    #[error("version {version} is {status}, not SUBMITTED")]
    NotSubmitted { version: u32, status: VersionStatus },
    #[error("version {version} is older than the approved version {approved}")]
    Superseded { version: u32, approved: u32 },
    #[error("{actor} wrote this version and cannot approve it")]
    SelfApproval { actor: String },
    #[error("the template is already disabled")]
    AlreadyDisabled,
    #[error("the template is already enabled")]
    AlreadyEnabled,
    #[error("{kind} content cannot be sent on channel {channel}")]
    ContentDoesNotFitChannel {
        channel: Channel,
        kind: &'static str,
    },
    #[error("{field} must not be empty")]
    EmptyField { field: &'static str },
    #[error("{field} is {len} bytes, more than the {max} allowed")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("an email needs an html or a text body")]
    EmailWithoutBody,
    #[error("parameter {name} appears more than once")]
    DuplicateParam { name: String },
    #[error("an email has {count} attachments, more than the {max} allowed")]
    TooManyAttachments { count: usize, max: usize },
    #[error("attachment URL {url:?} is not http or https")]
    AttachmentUrlNotHttp { url: String },
}

impl TemplateError {
    /// A stable code for APIs and metrics: the variant name in SCREAMING_SNAKE_CASE.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AlreadyCreated => "ALREADY_CREATED",
            Self::NotCreated => "NOT_CREATED",
            Self::NotFound => "NOT_FOUND",
            Self::NotApproved => "NOT_APPROVED",
            Self::Disabled => "DISABLED",
            Self::VersionNotFound { .. } => "VERSION_NOT_FOUND",
            Self::NotLatestVersion { .. } => "NOT_LATEST_VERSION",
            Self::NotSubmittable { .. } => "NOT_SUBMITTABLE",
            Self::NotSubmitted { .. } => "NOT_SUBMITTED",
            Self::Superseded { .. } => "SUPERSEDED",
            Self::SelfApproval { .. } => "SELF_APPROVAL",
            Self::AlreadyDisabled => "ALREADY_DISABLED",
            Self::AlreadyEnabled => "ALREADY_ENABLED",
            Self::ContentDoesNotFitChannel { .. } => "CONTENT_DOES_NOT_FIT_CHANNEL",
            Self::EmptyField { .. } => "EMPTY_FIELD",
            Self::FieldTooLong { .. } => "FIELD_TOO_LONG",
            Self::EmailWithoutBody => "EMAIL_WITHOUT_BODY",
            Self::DuplicateParam { .. } => "DUPLICATE_PARAM",
            Self::TooManyAttachments { .. } => "TOO_MANY_ATTACHMENTS",
            Self::AttachmentUrlNotHttp { .. } => "ATTACHMENT_URL_NOT_HTTP",
        }
    }
}

wire_enum! {
    /// Where one version stands in review.
    pub enum VersionStatus {
        Draft = "DRAFT",
        Submitted = "SUBMITTED",
        Approved = "APPROVED",
        Rejected = "REJECTED",
    }
}

/// The facts fixed when the template was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateInfo {
    pub template_id: TemplateId,
    pub tenant: TenantId,
    pub channel: Channel,
    pub msg_type: MessageType,
    pub receiver_id_type: ReceiverIdType,
    pub owner_team: String,
    pub proposer: String,
    pub created_at: DateTime<Utc>,
}

/// One version of the template's editable part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateVersion {
    /// Starts at 1 and counts up with each update.
    pub version: u32,
    pub name: String,
    pub shield_type: ShieldType,
    pub account: String,
    pub content: TemplateContent,
    pub status: VersionStatus,
    /// Who wrote this version: the proposer for version 1, the updater after that.
    pub author: String,
    pub created_at: DateTime<Utc>,
    /// The reviewer who approved or rejected it, with the comment or reason they gave.
    pub reviewer: Option<String>,
    pub review_note: Option<String>,
}

/// A template folded from its events. The default value is a template that does not exist yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateState {
    pub info: Option<TemplateInfo>,
    /// Version `n` is at index `n - 1`.
    pub versions: Vec<TemplateVersion>,
    /// The most recent approved version, which is the one that sends.
    pub approved_version: Option<u32>,
    pub enabled: bool,
    /// How many events have been applied: the stream version to expect when appending.
    pub version: u64,
}

impl TemplateState {
    pub fn is_created(&self) -> bool {
        self.info.is_some()
    }

    pub fn latest(&self) -> Option<&TemplateVersion> {
        self.versions.last()
    }

    pub fn get_version(&self, version: u32) -> Option<&TemplateVersion> {
        let index = usize::try_from(version.checked_sub(1)?).ok()?;
        self.versions.get(index)
    }

    /// The version to send with, or why there is none.
    pub fn sendable(&self) -> Result<&TemplateVersion, TemplateError> {
        if !self.is_created() {
            return Err(TemplateError::NotFound);
        }
        if !self.enabled {
            return Err(TemplateError::Disabled);
        }
        self.approved_version
            .and_then(|version| self.get_version(version))
            .ok_or(TemplateError::NotApproved)
    }

    fn existing_version(&self, version: u32) -> Result<&TemplateVersion, TemplateError> {
        self.get_version(version)
            .ok_or(TemplateError::VersionNotFound { version })
    }

    fn next_version_number(&self) -> u32 {
        u32::try_from(self.versions.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }
}

/// Applies one event, refusing a transition the rules do not allow.
pub fn apply(
    mut state: TemplateState,
    event: &TemplateEvent,
) -> Result<TemplateState, TemplateError> {
    check(&state, event)?;
    match event {
        TemplateEvent::TemplateCreated(e) => {
            state.info = Some(TemplateInfo {
                template_id: e.template_id,
                tenant: e.tenant.clone(),
                channel: e.channel,
                msg_type: e.msg_type,
                receiver_id_type: e.receiver_id_type,
                owner_team: e.owner_team.clone(),
                proposer: e.proposer.clone(),
                created_at: e.at,
            });
            state.versions = vec![draft(
                1,
                &e.name,
                e.shield_type,
                &e.account,
                &e.content,
                &e.proposer,
                e.at,
            )];
            state.enabled = true;
        }
        TemplateEvent::TemplateUpdated(e) => {
            let number = state.next_version_number();
            state.versions.push(draft(
                number,
                &e.name,
                e.shield_type,
                &e.account,
                &e.content,
                &e.actor,
                e.at,
            ));
        }
        TemplateEvent::TemplateSubmitted(e) => {
            review(&mut state, e.version, VersionStatus::Submitted, None, None);
        }
        TemplateEvent::TemplateApproved(e) => {
            review(
                &mut state,
                e.version,
                VersionStatus::Approved,
                Some(&e.actor),
                e.comment.as_deref(),
            );
            state.approved_version = Some(e.version);
        }
        TemplateEvent::TemplateRejected(e) => {
            review(
                &mut state,
                e.version,
                VersionStatus::Rejected,
                Some(&e.actor),
                Some(&e.reason),
            );
        }
        TemplateEvent::TemplateDisabled(_) => state.enabled = false,
        TemplateEvent::TemplateEnabled(_) => state.enabled = true,
    }
    state.version += 1;
    Ok(state)
}

/// Folds a whole stream, stopping at the first event the rules refuse.
pub fn fold<'a>(
    events: impl IntoIterator<Item = &'a TemplateEvent>,
) -> Result<TemplateState, TemplateError> {
    events.into_iter().try_fold(TemplateState::default(), apply)
}

/// The rules shared by `decide` and `apply`, so a decided event is always one that applies.
pub(crate) fn check(state: &TemplateState, event: &TemplateEvent) -> Result<(), TemplateError> {
    if let TemplateEvent::TemplateCreated(_) = event {
        return if state.is_created() {
            Err(TemplateError::AlreadyCreated)
        } else {
            Ok(())
        };
    }
    if !state.is_created() {
        return Err(TemplateError::NotCreated);
    }
    match event {
        TemplateEvent::TemplateCreated(_) | TemplateEvent::TemplateUpdated(_) => Ok(()),
        TemplateEvent::TemplateSubmitted(e) => {
            let target = state.existing_version(e.version)?;
            let latest = state.next_version_number() - 1;
            if e.version != latest {
                return Err(TemplateError::NotLatestVersion {
                    version: e.version,
                    latest,
                });
            }
            match target.status {
                VersionStatus::Draft | VersionStatus::Rejected => Ok(()),
                status => Err(TemplateError::NotSubmittable {
                    version: e.version,
                    status,
                }),
            }
        }
        TemplateEvent::TemplateApproved(e) => {
            let target = submitted(state, e.version)?;
            if let Some(approved) = state.approved_version
                && approved > e.version
            {
                return Err(TemplateError::Superseded {
                    version: e.version,
                    approved,
                });
            }
            if target.author == e.actor {
                return Err(TemplateError::SelfApproval {
                    actor: e.actor.clone(),
                });
            }
            Ok(())
        }
        TemplateEvent::TemplateRejected(e) => submitted(state, e.version).map(|_| ()),
        TemplateEvent::TemplateDisabled(_) if !state.enabled => Err(TemplateError::AlreadyDisabled),
        TemplateEvent::TemplateEnabled(_) if state.enabled => Err(TemplateError::AlreadyEnabled),
        TemplateEvent::TemplateDisabled(_) | TemplateEvent::TemplateEnabled(_) => Ok(()),
    }
}

fn submitted(state: &TemplateState, version: u32) -> Result<&TemplateVersion, TemplateError> {
    let target = state.existing_version(version)?;
    match target.status {
        VersionStatus::Submitted => Ok(target),
        status => Err(TemplateError::NotSubmitted { version, status }),
    }
}

fn draft(
    version: u32,
    name: &str,
    shield_type: ShieldType,
    account: &str,
    content: &TemplateContent,
    author: &str,
    at: DateTime<Utc>,
) -> TemplateVersion {
    TemplateVersion {
        version,
        name: name.to_owned(),
        shield_type,
        account: account.to_owned(),
        content: content.clone(),
        status: VersionStatus::Draft,
        author: author.to_owned(),
        created_at: at,
        reviewer: None,
        review_note: None,
    }
}

fn review(
    state: &mut TemplateState,
    version: u32,
    status: VersionStatus,
    reviewer: Option<&str>,
    note: Option<&str>,
) {
    let index = usize::try_from(version.saturating_sub(1)).unwrap_or(usize::MAX);
    if let Some(target) = state.versions.get_mut(index) {
        // A resubmission clears the previous review, so the note always belongs to the current status.
        target.status = status;
        target.reviewer = reviewer.map(str::to_owned);
        target.review_note = note.map(str::to_owned);
    }
}
