//! The GraphQL shapes. Enums mirror the domain's, with the same SCREAMING names everywhere;
//! template content travels as JSON in the domain's own format (`{"kind": "TEXT", "body": …}`).

use async_graphql::{Enum, ID, Json, SimpleObject};
use chrono::{DateTime, Utc};
use domain::{TemplateId, TemplateState};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::Channel")]
pub enum Channel {
    Sms,
    Email,
    WechatOfficial,
    MiniProgram,
    Push,
    WecomApp,
    WecomRobot,
    DingtalkRobot,
    DingtalkWork,
    FeishuRobot,
    Webhook,
    Inbox,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::MessageType")]
pub enum MessageType {
    Notice,
    Marketing,
    AuthCode,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::ReceiverIdType")]
pub enum ReceiverIdType {
    Phone,
    Email,
    UserId,
    OpenId,
    DeviceToken,
    WecomUser,
    DingtalkUser,
    FeishuUser,
    WebhookUrl,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::ShieldType")]
pub enum ShieldType {
    None,
    NightDiscard,
    NightDefer,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::template_aggregate::VersionStatus")]
pub enum VersionStatus {
    Draft,
    Submitted,
    Approved,
    Rejected,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum RecallStatus {
    /// Not yet dispatched: cancelled at once.
    Recalled,
    /// Already dispatched: dispatch recalls it through the supplier where the channel allows.
    Requested,
    /// Asked before; nothing new happened.
    AlreadyRequested,
}

/// A template: what a business may send, with every version and its review.
#[derive(SimpleObject)]
pub struct Template {
    pub id: ID,
    /// The latest version's name.
    pub name: String,
    pub channel: Channel,
    pub msg_type: MessageType,
    pub receiver_id_type: ReceiverIdType,
    pub owner_team: String,
    pub proposer: String,
    pub created_at: DateTime<Utc>,
    /// A disabled template sends nothing, whatever its versions.
    pub enabled: bool,
    /// The version that sends; a newer draft does not replace it until approved.
    pub approved_version: Option<u32>,
    pub latest_version: u32,
    pub versions: Vec<TemplateVersion>,
}

#[derive(SimpleObject)]
pub struct TemplateVersion {
    pub version: u32,
    pub name: String,
    pub status: VersionStatus,
    pub shield_type: ShieldType,
    pub account: String,
    /// The content model with `${name}` placeholders, as JSON.
    pub content: Json<serde_json::Value>,
    pub author: String,
    pub created_at: DateTime<Utc>,
    pub reviewer: Option<String>,
    pub review_note: Option<String>,
}

impl Template {
    pub fn from_state(id: TemplateId, state: &TemplateState) -> Option<Template> {
        let info = state.info.as_ref()?;
        let latest = state.latest()?;
        Some(Template {
            id: ID(id.to_string()),
            name: latest.name.clone(),
            channel: info.channel.into(),
            msg_type: info.msg_type.into(),
            receiver_id_type: info.receiver_id_type.into(),
            owner_team: info.owner_team.clone(),
            proposer: info.proposer.clone(),
            created_at: info.created_at,
            enabled: state.enabled,
            approved_version: state.approved_version,
            latest_version: latest.version,
            versions: state
                .versions
                .iter()
                .map(|v| TemplateVersion {
                    version: v.version,
                    name: v.name.clone(),
                    status: v.status.into(),
                    shield_type: v.shield_type.into(),
                    account: v.account.clone(),
                    content: Json(serde_json::to_value(&v.content).unwrap_or_default()),
                    author: v.author.clone(),
                    created_at: v.created_at,
                    reviewer: v.reviewer.clone(),
                    review_note: v.review_note.clone(),
                })
                .collect(),
        })
    }
}

#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    /// Pass as `after` for the next page.
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct TemplateConnection {
    pub nodes: Vec<Template>,
    pub page_info: PageInfo,
}

#[derive(SimpleObject)]
pub struct SentMessage {
    pub id: ID,
    /// The receiver as Herald normalised it (phone numbers in E.164, emails with a lower-case domain).
    pub receiver: String,
}

#[derive(SimpleObject)]
pub struct SendResult {
    pub request_id: String,
    /// The request id was seen before: these are the first request's messages and nothing new was sent.
    pub replayed: bool,
    pub messages: Vec<SentMessage>,
}

#[derive(SimpleObject)]
pub struct RecalledMessage {
    pub id: ID,
    pub status: RecallStatus,
}

#[derive(SimpleObject)]
pub struct RecallResult {
    pub messages: Vec<RecalledMessage>,
}

/// Who is calling.
#[derive(SimpleObject)]
pub struct Me {
    pub tenant: String,
    pub key_id: String,
    pub scopes: Vec<String>,
}

/// A calendar day, `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date(pub chrono::NaiveDate);

/// A calendar day, `YYYY-MM-DD`.
#[async_graphql::Scalar(name = "Date")]
impl async_graphql::ScalarType for Date {
    fn parse(value: async_graphql::Value) -> async_graphql::InputValueResult<Self> {
        match &value {
            async_graphql::Value::String(text) => {
                chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .map(Date)
                    .map_err(|_| {
                        async_graphql::InputValueError::custom(format!(
                            "{text:?} is not a day like 2024-05-01"
                        ))
                    })
            }
            _ => Err(async_graphql::InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> async_graphql::Value {
        async_graphql::Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}
