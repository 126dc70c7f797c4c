//! Channel accounts: the rules of `decide` and `apply`, and the wire format of their events.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::channel_account::{
    AccountPatch, AccountSpec, ChannelAccountCommand, ChannelAccountError, ChannelAccountEvent,
    ChannelAccountState, PerSecond, RateLimit, apply, check_id, check_spec, decide, fold,
};
use domain::{Channel, TenantId};

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
}

fn spec() -> AccountSpec {
    AccountSpec {
        channel: Channel::Sms,
        supplier: "tencent_sms".to_owned(),
        base_url: None,
        weight: 1,
        settings: BTreeMap::from([("sdk_app_id".to_owned(), "1400".to_owned())]),
        timeout_secs: 10,
        rate_limit: None,
    }
}

fn created() -> ChannelAccountState {
    let events = decide(
        &ChannelAccountState::default(),
        ChannelAccountCommand::Create {
            account_id: "sms-b".to_owned(),
            tenant: TenantId::parse("acme").unwrap(),
            spec: spec(),
            secrets: vec!["secret_key".to_owned(), "secret_id".to_owned()],
            actor: "key:k1".to_owned(),
            at: at(0),
        },
    )
    .unwrap();
    fold(&events).unwrap()
}

#[test]
fn create_records_secret_names_sorted_and_never_twice() {
    let state = created();
    let info = state.info.unwrap();
    assert_eq!(
        info.secrets.iter().collect::<Vec<_>>(),
        ["secret_id", "secret_key"]
    );
    assert!(info.enabled);
    let again = decide(
        &created(),
        ChannelAccountCommand::Create {
            account_id: "sms-b".to_owned(),
            tenant: TenantId::parse("acme").unwrap(),
            spec: spec(),
            secrets: Vec::new(),
            actor: "key:k1".to_owned(),
            at: at(1),
        },
    );
    assert_eq!(again, Err(ChannelAccountError::AlreadyExists));
}

#[test]
fn bad_ids_and_specs_are_refused_with_the_field_named() {
    for id in ["", "Upper", "-lead", "a b", &"x".repeat(65)] {
        assert_eq!(
            check_id(id).unwrap_err().code(),
            "INVALID_ACCOUNT_ID",
            "{id}"
        );
    }
    check_id("sms-b_2").unwrap();
    let mut bad = spec();
    bad.timeout_secs = 0;
    let error = check_spec(&bad).unwrap_err();
    assert_eq!(error.code(), "INVALID_ACCOUNT");
    assert!(error.to_string().starts_with("timeout_secs:"), "{error}");
    let mut bad = spec();
    bad.rate_limit = Some(RateLimit {
        per_sec: PerSecond(f64::NAN),
        burst: None,
    });
    assert!(
        check_spec(&bad)
            .unwrap_err()
            .to_string()
            .starts_with("rate_limit_per_sec")
    );
    let mut bad = spec();
    bad.base_url = Some("sms.example.com".to_owned());
    assert!(
        check_spec(&bad)
            .unwrap_err()
            .to_string()
            .starts_with("base_url")
    );
}

#[test]
fn an_update_names_what_changed_and_nothing_changed_is_no_event() {
    let state = created();
    let patch = AccountPatch {
        weight: Some(3),
        timeout_secs: Some(10),
        secrets_set: vec!["secret_key".to_owned()],
        ..AccountPatch::default()
    };
    let events = decide(
        &state,
        ChannelAccountCommand::Update {
            patch,
            actor: "key:k2".to_owned(),
            at: at(5),
        },
    )
    .unwrap();
    let ChannelAccountEvent::ChannelAccountUpdated(updated) = &events[0] else {
        panic!("{events:?}");
    };
    assert_eq!(updated.changed, ["weight"]);
    assert_eq!(updated.secrets_set, ["secret_key"]);
    assert_eq!(updated.spec.weight, 3);
    let same = decide(
        &state,
        ChannelAccountCommand::Update {
            patch: AccountPatch {
                weight: Some(1),
                ..AccountPatch::default()
            },
            actor: "key:k2".to_owned(),
            at: at(6),
        },
    )
    .unwrap();
    assert!(same.is_empty());
    let missing = decide(
        &state,
        ChannelAccountCommand::Update {
            patch: AccountPatch {
                secrets_removed: vec!["nope".to_owned()],
                ..AccountPatch::default()
            },
            actor: "key:k2".to_owned(),
            at: at(6),
        },
    );
    assert_eq!(missing.unwrap_err().code(), "INVALID_ACCOUNT");
}

#[test]
fn disable_and_enable_are_idempotent_and_round_trip_the_wire() {
    let state = created();
    let disable = || ChannelAccountCommand::Disable {
        reason: Some("supplier outage".to_owned()),
        actor: "key:k1".to_owned(),
        at: at(9),
    };
    let events = decide(&state, disable()).unwrap();
    let state = events.iter().try_fold(state, apply).unwrap();
    assert!(!state.info.as_ref().unwrap().enabled);
    assert!(decide(&state, disable()).unwrap().is_empty());
    let enable = decide(
        &state,
        ChannelAccountCommand::Enable {
            actor: "key:k1".to_owned(),
            at: at(10),
        },
    )
    .unwrap();
    for event in events.iter().chain(&enable) {
        let decoded = ChannelAccountEvent::decode(event.event_type(), 1, &event.encode()).unwrap();
        assert_eq!(&decoded, event);
    }
    assert!(
        decide(
            &ChannelAccountState::default(),
            ChannelAccountCommand::Enable {
                actor: "a".to_owned(),
                at: at(0)
            }
        )
        .is_err()
    );
}
