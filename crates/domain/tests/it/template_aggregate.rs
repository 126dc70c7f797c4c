//! Given/when/then tests of the template review workflow: create, update, submit, approve, reject, disable.

use domain::template_aggregate::{apply, fold};
use domain::template_decide::decide;
use domain::template_event::*;
use domain::*;

use crate::support::*;

#[track_caller]
fn check(
    given: Vec<TemplateEvent>,
    when: TemplateCommand,
    then: Result<Vec<TemplateEvent>, TemplateError>,
) -> TemplateState {
    let mut state = fold(&given).expect("the given events apply");
    let decided = decide(&state, when);
    assert_eq!(decided, then);
    for event in decided.unwrap_or_default() {
        state = apply(state, &event).expect("decided events apply");
    }
    state
}

fn content() -> TemplateContent {
    TemplateContent::Text {
        body: "Code ${code}".to_owned(),
    }
}

fn create() -> TemplateCommand {
    TemplateCommand::CreateTemplate {
        template_id: template_id(),
        tenant: tenant(),
        name: "login code".to_owned(),
        channel: Channel::Sms,
        msg_type: MessageType::AuthCode,
        receiver_id_type: ReceiverIdType::Phone,
        shield_type: ShieldType::None,
        content: content(),
        account: "sms-main".to_owned(),
        owner_team: "identity".to_owned(),
        proposer: "alice".to_owned(),
        at: t(0),
    }
}

fn created() -> TemplateEvent {
    TemplateCreated {
        template_id: template_id(),
        tenant: tenant(),
        name: "login code".to_owned(),
        channel: Channel::Sms,
        msg_type: MessageType::AuthCode,
        receiver_id_type: ReceiverIdType::Phone,
        shield_type: ShieldType::None,
        content: content(),
        account: "sms-main".to_owned(),
        owner_team: "identity".to_owned(),
        proposer: "alice".to_owned(),
        at: t(0),
    }
    .into()
}

fn update(actor: &str, content: TemplateContent) -> TemplateCommand {
    TemplateCommand::UpdateTemplate {
        name: "login code v2".to_owned(),
        shield_type: ShieldType::NightDefer,
        content,
        account: "sms-main".to_owned(),
        actor: actor.to_owned(),
        at: t(10),
    }
}

fn updated(actor: &str) -> TemplateEvent {
    TemplateUpdated {
        name: "login code v2".to_owned(),
        shield_type: ShieldType::NightDefer,
        content: content(),
        account: "sms-main".to_owned(),
        actor: actor.to_owned(),
        at: t(10),
    }
    .into()
}

fn submit(version: u32) -> TemplateCommand {
    TemplateCommand::SubmitTemplate {
        version,
        actor: "alice".to_owned(),
        at: t(20),
    }
}

fn submitted(version: u32) -> TemplateEvent {
    TemplateSubmitted {
        version,
        actor: "alice".to_owned(),
        at: t(20),
    }
    .into()
}

fn approve(version: u32, actor: &str) -> TemplateCommand {
    TemplateCommand::ApproveTemplate {
        version,
        actor: actor.to_owned(),
        comment: Some("ok".to_owned()),
        at: t(30),
    }
}

fn approved(version: u32, actor: &str) -> TemplateEvent {
    TemplateApproved {
        version,
        actor: actor.to_owned(),
        comment: Some("ok".to_owned()),
        at: t(30),
    }
    .into()
}

fn reject(version: u32, reason: &str) -> TemplateCommand {
    TemplateCommand::RejectTemplate {
        version,
        actor: "bob".to_owned(),
        reason: reason.to_owned(),
        at: t(30),
    }
}

fn rejected(version: u32) -> TemplateEvent {
    TemplateRejected {
        version,
        actor: "bob".to_owned(),
        reason: "typo".to_owned(),
        at: t(30),
    }
    .into()
}

fn disable() -> TemplateCommand {
    TemplateCommand::DisableTemplate {
        actor: "bob".to_owned(),
        reason: None,
        at: t(40),
    }
}

fn disabled() -> TemplateEvent {
    TemplateDisabled {
        actor: "bob".to_owned(),
        reason: None,
        at: t(40),
    }
    .into()
}

fn enable() -> TemplateCommand {
    TemplateCommand::EnableTemplate {
        actor: "bob".to_owned(),
        at: t(50),
    }
}

fn enabled() -> TemplateEvent {
    TemplateEnabled {
        actor: "bob".to_owned(),
        at: t(50),
    }
    .into()
}

#[test]
fn creating_makes_an_enabled_draft_that_cannot_send_yet() {
    let state = check(vec![], create(), Ok(vec![created()]));
    assert!(state.enabled);
    assert_eq!(state.versions.len(), 1);
    let v1 = &state.versions[0];
    assert_eq!(
        (v1.version, v1.status, v1.author.as_str()),
        (1, VersionStatus::Draft, "alice")
    );
    assert_eq!(state.sendable(), Err(TemplateError::NotApproved));
    assert_eq!(state.info.as_ref().map(|i| i.channel), Some(Channel::Sms));
}

#[test]
fn a_template_is_created_once() {
    check(
        vec![created()],
        create(),
        Err(TemplateError::AlreadyCreated),
    );
    assert_eq!(
        fold(&[created(), created()]),
        Err(TemplateError::AlreadyCreated)
    );
}

#[test]
fn creation_checks_the_content_against_the_channel() {
    let mut command = create();
    if let TemplateCommand::CreateTemplate { channel, .. } = &mut command {
        *channel = Channel::WechatOfficial;
    }
    check(
        vec![],
        command,
        Err(TemplateError::ContentDoesNotFitChannel {
            channel: Channel::WechatOfficial,
            kind: "TEXT",
        }),
    );
    let mut command = create();
    if let TemplateCommand::CreateTemplate { content, .. } = &mut command {
        *content = TemplateContent::Text {
            body: String::new(),
        };
    }
    check(
        vec![],
        command,
        Err(TemplateError::EmptyField { field: "body" }),
    );
    let mut command = create();
    if let TemplateCommand::CreateTemplate { name, .. } = &mut command {
        *name = "n".repeat(129);
    }
    check(
        vec![],
        command,
        Err(TemplateError::FieldTooLong {
            field: "name",
            len: 129,
            max: 128,
        }),
    );
}

#[test]
fn nothing_happens_before_creation() {
    for command in [
        update("bob", content()),
        submit(1),
        approve(1, "bob"),
        reject(1, "typo"),
        disable(),
        enable(),
    ] {
        check(vec![], command, Err(TemplateError::NotCreated));
    }
    assert_eq!(
        TemplateState::default().sendable().unwrap_err(),
        TemplateError::NotFound
    );
}

#[test]
fn an_update_adds_a_draft_version_and_keeps_the_channel() {
    let state = check(
        vec![created()],
        update("bob", content()),
        Ok(vec![updated("bob")]),
    );
    let v2 = state.latest().unwrap();
    assert_eq!(
        (v2.version, v2.status, v2.author.as_str()),
        (2, VersionStatus::Draft, "bob")
    );
    assert_eq!(v2.shield_type, ShieldType::NightDefer);
    let email = TemplateContent::Email {
        subject: "s".to_owned(),
        html: None,
        text: Some("t".to_owned()),
        attachments: vec![],
    };
    check(
        vec![created()],
        update("bob", email),
        Err(TemplateError::ContentDoesNotFitChannel {
            channel: Channel::Sms,
            kind: "EMAIL",
        }),
    );
}

#[test]
fn only_the_latest_draft_or_rejected_version_is_submitted() {
    let state = check(vec![created()], submit(1), Ok(vec![submitted(1)]));
    assert_eq!(state.versions[0].status, VersionStatus::Submitted);
    check(
        vec![created(), updated("bob")],
        submit(1),
        Err(TemplateError::NotLatestVersion {
            version: 1,
            latest: 2,
        }),
    );
    check(
        vec![created()],
        submit(3),
        Err(TemplateError::VersionNotFound { version: 3 }),
    );
    check(
        vec![created()],
        submit(0),
        Err(TemplateError::VersionNotFound { version: 0 }),
    );
    check(
        vec![created(), submitted(1)],
        submit(1),
        Err(TemplateError::NotSubmittable {
            version: 1,
            status: VersionStatus::Submitted,
        }),
    );
    check(
        vec![created(), submitted(1), approved(1, "bob")],
        submit(1),
        Err(TemplateError::NotSubmittable {
            version: 1,
            status: VersionStatus::Approved,
        }),
    );
    let state = check(
        vec![created(), submitted(1), rejected(1)],
        submit(1),
        Ok(vec![submitted(1)]),
    );
    assert_eq!(
        state.versions[0].review_note, None,
        "a resubmission clears the old review"
    );
}

#[test]
fn approval_makes_the_version_sendable() {
    let state = check(
        vec![created(), submitted(1)],
        approve(1, "bob"),
        Ok(vec![approved(1, "bob")]),
    );
    assert_eq!(state.approved_version, Some(1));
    let sendable = state.sendable().unwrap();
    assert_eq!(
        (sendable.version, sendable.reviewer.as_deref()),
        (1, Some("bob"))
    );
}

#[test]
fn only_a_submitted_version_is_reviewed() {
    let draft = Err(TemplateError::NotSubmitted {
        version: 1,
        status: VersionStatus::Draft,
    });
    check(vec![created()], approve(1, "bob"), draft.clone());
    check(vec![created()], reject(1, "typo"), draft);
    check(
        vec![created()],
        approve(2, "bob"),
        Err(TemplateError::VersionNotFound { version: 2 }),
    );
}

#[test]
fn authors_cannot_approve_their_own_version() {
    check(
        vec![created(), submitted(1)],
        approve(1, "alice"),
        Err(TemplateError::SelfApproval {
            actor: "alice".to_owned(),
        }),
    );
    let given = vec![created(), updated("bob"), submitted(2)];
    check(
        given.clone(),
        approve(2, "bob"),
        Err(TemplateError::SelfApproval {
            actor: "bob".to_owned(),
        }),
    );
    check(given, approve(2, "alice"), Ok(vec![approved(2, "alice")]));
}

#[test]
fn rejection_needs_a_reason() {
    let state = check(
        vec![created(), submitted(1)],
        reject(1, "typo"),
        Ok(vec![rejected(1)]),
    );
    assert_eq!(state.versions[0].status, VersionStatus::Rejected);
    assert_eq!(state.versions[0].review_note.as_deref(), Some("typo"));
    check(
        vec![created(), submitted(1)],
        reject(1, "  "),
        Err(TemplateError::EmptyField { field: "reason" }),
    );
}

#[test]
fn a_new_draft_does_not_stop_the_approved_version() {
    let state = check(
        vec![created(), submitted(1), approved(1, "bob")],
        update("bob", content()),
        Ok(vec![updated("bob")]),
    );
    assert_eq!(state.sendable().map(|v| v.version), Ok(1));
    let state = fold(&[
        created(),
        submitted(1),
        approved(1, "bob"),
        updated("bob"),
        submitted(2),
        approved(2, "alice"),
    ])
    .unwrap();
    assert_eq!(state.sendable().map(|v| v.version), Ok(2));
}

#[test]
fn an_older_version_cannot_replace_a_newer_approval() {
    let given = vec![
        created(),
        submitted(1),
        updated("bob"),
        submitted(2),
        approved(2, "alice"),
    ];
    check(
        given,
        approve(1, "bob"),
        Err(TemplateError::Superseded {
            version: 1,
            approved: 2,
        }),
    );
}

#[test]
fn disabling_and_enabling_toggle_sending() {
    let approved_template = || vec![created(), submitted(1), approved(1, "bob")];
    let state = check(approved_template(), disable(), Ok(vec![disabled()]));
    assert_eq!(state.sendable().unwrap_err(), TemplateError::Disabled);
    let mut off = approved_template();
    off.push(disabled());
    check(off.clone(), disable(), Err(TemplateError::AlreadyDisabled));
    let state = check(off, enable(), Ok(vec![enabled()]));
    assert_eq!(state.sendable().map(|v| v.version), Ok(1));
    check(
        approved_template(),
        enable(),
        Err(TemplateError::AlreadyEnabled),
    );
}

#[test]
fn state_version_counts_events() {
    let state = fold(&[created(), updated("bob"), submitted(2)]).unwrap();
    assert_eq!(state.version, 3);
    assert_eq!(
        state.get_version(2).map(|v| v.status),
        Some(VersionStatus::Submitted)
    );
}

#[test]
fn template_events_round_trip_through_the_wire_format() {
    let events = [
        created(),
        updated("bob"),
        submitted(2),
        approved(2, "alice"),
        rejected(1),
        disabled(),
        enabled(),
    ];
    for event in events {
        let payload = event.encode();
        assert!(payload.get("type").is_none());
        assert_eq!(
            TemplateEvent::decode(event.event_type(), TemplateEvent::SCHEMA_VERSION, &payload),
            Ok(event.clone())
        );
    }
    assert_eq!(TemplateEvent::EVENT_TYPES.len(), 7);
    assert_eq!(
        disabled().encode(),
        serde_json::json!({"actor": "bob", "at": "2023-11-14T22:14:00Z"})
    );
}

#[test]
fn error_codes_are_stable() {
    assert_eq!(
        TemplateError::SelfApproval {
            actor: "a".to_owned()
        }
        .code(),
        "SELF_APPROVAL"
    );
    assert_eq!(
        TemplateError::ContentDoesNotFitChannel {
            channel: Channel::Sms,
            kind: "EMAIL"
        }
        .code(),
        "CONTENT_DOES_NOT_FIT_CHANNEL"
    );
    assert_eq!(TemplateError::NotApproved.code(), "NOT_APPROVED");
    assert_eq!(
        TemplateError::NotLatestVersion {
            version: 1,
            latest: 2
        }
        .code(),
        "NOT_LATEST_VERSION"
    );
}
