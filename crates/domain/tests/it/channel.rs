//! Tests of the closed vocabularies: every name round-trips, and channel facts hold.

use std::str::FromStr;

use domain::*;

#[track_caller]
fn check_names<T>(all: &[T], expected: &[&str])
where
    T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + FromStr + serde::Serialize,
    <T as FromStr>::Err: std::fmt::Debug,
{
    let names: Vec<String> = all.iter().map(ToString::to_string).collect();
    assert_eq!(names, expected);
    for (value, name) in all.iter().zip(expected) {
        assert_eq!(T::from_str(name).unwrap(), *value);
        assert_eq!(
            serde_json::to_value(value).unwrap(),
            serde_json::json!(name)
        );
    }
}

#[test]
fn names_are_screaming_snake_case() {
    check_names(
        Channel::ALL,
        &[
            "SMS",
            "EMAIL",
            "WECHAT_OFFICIAL",
            "MINI_PROGRAM",
            "PUSH",
            "WECOM_APP",
            "WECOM_ROBOT",
            "DINGTALK_ROBOT",
            "DINGTALK_WORK",
            "FEISHU_ROBOT",
            "WEBHOOK",
            "INBOX",
        ],
    );
    check_names(MessageType::ALL, &["NOTICE", "MARKETING", "AUTH_CODE"]);
    check_names(
        ReceiverIdType::ALL,
        &[
            "PHONE",
            "EMAIL",
            "USER_ID",
            "OPEN_ID",
            "DEVICE_TOKEN",
            "WECOM_USER",
            "DINGTALK_USER",
            "FEISHU_USER",
            "WEBHOOK_URL",
        ],
    );
    check_names(ShieldType::ALL, &["NONE", "NIGHT_DISCARD", "NIGHT_DEFER"]);
    check_names(
        DeliveryStatus::ALL,
        &[
            "ACCEPTED",
            "DEFERRED",
            "DISPATCHED",
            "DELIVERED",
            "UNDELIVERED",
            "FAILED",
            "DEDUPLICATED",
            "SHIELDED",
            "DISCARDED",
            "RECALLED",
        ],
    );
    check_names(
        DeferReason::ALL,
        &[
            "NIGHT_SHIELD",
            "RETRY_BACKOFF",
            "SCHEDULED",
            "RATE_LIMITED",
            "CIRCUIT_OPEN",
        ],
    );
    check_names(
        DiscardRule::ALL,
        &[
            "TEMPLATE_DISABLED",
            "NOT_WHITELISTED",
            "SENSITIVE_WORDS",
            "RECEIVER_BLOCKED",
            "DISCARD_SWITCH",
        ],
    );
    check_names(ErrorClass::ALL, &["RETRYABLE", "FINAL", "THROTTLED"]);
    check_names(DedupRule::ALL, &["CONTENT", "FREQUENCY"]);
    check_names(ReceiptOutcome::ALL, &["DELIVERED", "UNDELIVERED"]);
    check_names(
        VersionStatus::ALL,
        &["DRAFT", "SUBMITTED", "APPROVED", "REJECTED"],
    );
    assert_eq!(Channel::WecomApp.as_str(), "WECOM_APP");
}

#[test]
fn unknown_names_list_the_expected_ones() {
    let error = Channel::from_str("sms").unwrap_err();
    assert_eq!(error.code(), "UNKNOWN_ENUM_VALUE");
    assert!(
        error
            .to_string()
            .starts_with("unknown Channel \"sms\", expected one of: SMS, EMAIL"),
        "{error}"
    );
    assert!(serde_json::from_str::<ShieldType>("\"NIGHT\"").is_err());
}

#[test]
fn only_some_channels_can_recall() {
    let recallable: Vec<_> = Channel::ALL
        .iter()
        .copied()
        .filter(|c| c.supports_recall())
        .collect();
    assert_eq!(
        recallable,
        [Channel::WecomApp, Channel::DingtalkWork, Channel::Inbox]
    );
}

#[test]
fn default_receiver_id_types() {
    use ReceiverIdType as R;
    let expected = [
        (Channel::Sms, R::Phone),
        (Channel::Email, R::Email),
        (Channel::WechatOfficial, R::OpenId),
        (Channel::MiniProgram, R::OpenId),
        (Channel::Push, R::DeviceToken),
        (Channel::WecomApp, R::WecomUser),
        (Channel::WecomRobot, R::WebhookUrl),
        (Channel::DingtalkRobot, R::WebhookUrl),
        (Channel::DingtalkWork, R::DingtalkUser),
        (Channel::FeishuRobot, R::WebhookUrl),
        (Channel::Webhook, R::WebhookUrl),
        (Channel::Inbox, R::UserId),
    ];
    for (channel, id_type) in expected {
        assert_eq!(channel.default_receiver_id_type(), id_type, "{channel}");
    }
}
