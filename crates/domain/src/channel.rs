//! Channels, message types, receiver id types and shield types: the closed vocabularies of a template.
//! Each travels as one SCREAMING_SNAKE_CASE name everywhere, from events to GraphQL enums to metric labels.

use crate::wire::wire_enum;

wire_enum! {
    /// Where a message goes.
    pub enum Channel {
        Sms = "SMS",
        Email = "EMAIL",
        /// A WeChat official account template message.
        WechatOfficial = "WECHAT_OFFICIAL",
        /// A WeChat mini-program subscribe message.
        MiniProgram = "MINI_PROGRAM",
        Push = "PUSH",
        WecomApp = "WECOM_APP",
        WecomRobot = "WECOM_ROBOT",
        DingtalkRobot = "DINGTALK_ROBOT",
        /// A DingTalk work notice.
        DingtalkWork = "DINGTALK_WORK",
        FeishuRobot = "FEISHU_ROBOT",
        Webhook = "WEBHOOK",
        /// The in-app inbox, delivered in real time over SSE.
        Inbox = "INBOX",
    }
}

impl Channel {
    /// Whether a message already handed over can still be taken back on this channel.
    pub const fn supports_recall(self) -> bool {
        matches!(self, Self::WecomApp | Self::DingtalkWork | Self::Inbox)
    }

    /// The receiver id type a new template for this channel usually takes.
    pub const fn default_receiver_id_type(self) -> ReceiverIdType {
        match self {
            Self::Sms => ReceiverIdType::Phone,
            Self::Email => ReceiverIdType::Email,
            Self::WechatOfficial | Self::MiniProgram => ReceiverIdType::OpenId,
            Self::Push => ReceiverIdType::DeviceToken,
            Self::WecomApp => ReceiverIdType::WecomUser,
            Self::DingtalkWork => ReceiverIdType::DingtalkUser,
            // Robots post to a group through the robot's webhook, so the receiver is that URL.
            Self::WecomRobot | Self::DingtalkRobot | Self::FeishuRobot | Self::Webhook => {
                ReceiverIdType::WebhookUrl
            }
            Self::Inbox => ReceiverIdType::UserId,
        }
    }
}

wire_enum! {
    /// What a message is for; dispatch keeps the types in separate queues so marketing never delays auth codes.
    pub enum MessageType {
        Notice = "NOTICE",
        Marketing = "MARKETING",
        AuthCode = "AUTH_CODE",
    }
}

wire_enum! {
    /// How a receiver is identified, which decides how a raw receiver string is validated.
    pub enum ReceiverIdType {
        Phone = "PHONE",
        Email = "EMAIL",
        UserId = "USER_ID",
        OpenId = "OPEN_ID",
        DeviceToken = "DEVICE_TOKEN",
        WecomUser = "WECOM_USER",
        DingtalkUser = "DINGTALK_USER",
        FeishuUser = "FEISHU_USER",
        WebhookUrl = "WEBHOOK_URL",
    }
}

wire_enum! {
    /// What happens to a message that would arrive during the receiver's night.
    pub enum ShieldType {
        None = "NONE",
        NightDiscard = "NIGHT_DISCARD",
        NightDefer = "NIGHT_DEFER",
    }
}

/// The dispatch lane of a channel and message type: each lane is queued and worked apart, so a
/// marketing flood never delays auth codes. One name everywhere: `SMS.AUTH_CODE`.
pub fn lane(channel: Channel, msg_type: MessageType) -> String {
    format!("{}.{}", channel.as_str(), msg_type.as_str())
}
