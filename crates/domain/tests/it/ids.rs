//! Tests of identifiers: UUID newtypes, tenant and request ids, and stream names.

use std::str::FromStr;

use domain::*;
use uuid::Uuid;

const UUID: &str = "0190b6c4-5c8e-7b7e-8f3a-2d1e4c5b6a79";

#[test]
fn uuid_ids_display_hyphenated_and_parse_back() {
    let id = MessageId::from_str(UUID).unwrap();
    assert_eq!(id.to_string(), UUID);
    assert_eq!(id.as_uuid(), Uuid::parse_str(UUID).unwrap());
    assert_eq!(TemplateId::from_str(UUID).unwrap().as_uuid(), id.as_uuid());
    assert_eq!(serde_json::to_value(id).unwrap(), serde_json::json!(UUID));
    assert_eq!(
        serde_json::from_value::<EventId>(serde_json::json!(UUID))
            .unwrap()
            .to_string(),
        UUID
    );
}

#[test]
fn bad_uuids_get_a_clear_error() {
    let error = MessageId::from_str("not-a-uuid").unwrap_err();
    assert_eq!(error.code(), "INVALID_UUID");
    assert!(
        error.to_string().starts_with("message id must be a UUID"),
        "{error}"
    );
    assert!(TemplateId::from_str("").is_err());
}

#[test]
fn generated_ids_are_time_ordered_v7() {
    let id = MessageId::generate();
    assert_eq!(id.as_uuid().get_version_num(), 7);
    assert_ne!(
        TemplateId::generate().as_uuid(),
        EventId::generate().as_uuid()
    );
}

#[test]
fn ids_made_together_keep_their_order_and_the_clock() {
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Many ids a millisecond, from several threads at once: every id is new, and each
    // thread's ids come out in the order it made them.
    let threads: Vec<Vec<Uuid>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| (0..20_000).map(|_| ids::uuid_v7()).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut all = std::collections::HashSet::new();
    for ids in &threads {
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        for id in ids {
            assert_eq!(id.get_version_num(), 7);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
            let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
            let millis = secs * 1000 + u64::from(nanos) / 1_000_000;
            // A millisecond may run ahead when one fills up; none does here.
            assert!(
                (before..=after + 1).contains(&millis),
                "{millis} not in {before}..={after}"
            );
            assert!(all.insert(*id));
        }
    }
    // Ids of one kind made one after the other compare as they were made.
    let first = MessageId::generate();
    let second = MessageId::generate();
    assert!(first.as_uuid() < second.as_uuid());
}

#[test]
fn stream_names() {
    let uuid = Uuid::parse_str(UUID).unwrap();
    assert_eq!(
        MessageId::from_uuid(uuid).stream_name(),
        format!("message-{UUID}")
    );
    assert_eq!(
        TemplateId::from_uuid(uuid).stream_name(),
        format!("template-{UUID}")
    );
    let tenant = TenantId::parse("acme").unwrap();
    let request = RequestId::parse("order-42").unwrap();
    assert_eq!(send_stream_name(&tenant, &request), "send-acme:order-42");
}

#[test]
fn send_stream_names_never_collide_across_tenants() {
    let a = send_stream_name(
        &TenantId::parse("a").unwrap(),
        &RequestId::parse("b-c").unwrap(),
    );
    let b = send_stream_name(
        &TenantId::parse("a-b").unwrap(),
        &RequestId::parse("c").unwrap(),
    );
    assert_ne!(a, b);
}

#[test]
fn tenant_ids() {
    for good in ["a", "acme", "team_1", "0-ops", &"x".repeat(64)] {
        assert_eq!(
            TenantId::parse(good).map(|t| t.as_str().to_owned()),
            Ok(good.to_owned())
        );
    }
    for bad in [
        "",
        "-a",
        "_a",
        "Acme",
        "a b",
        "a.b",
        "a:b",
        &"x".repeat(65),
        "é",
    ] {
        let error = TenantId::parse(bad).unwrap_err();
        assert_eq!(error.code(), "INVALID_TENANT_ID", "{bad:?}");
    }
}

#[test]
fn request_ids() {
    for good in ["r", "order#42/retry:1", &"x".repeat(128)] {
        assert!(RequestId::parse(good).is_ok(), "{good:?}");
    }
    for bad in ["", "a b", "tab\t", "é", &"x".repeat(129)] {
        assert_eq!(
            RequestId::parse(bad).unwrap_err().code(),
            "INVALID_REQUEST_ID",
            "{bad:?}"
        );
    }
}

#[test]
fn string_ids_validate_when_deserialised() {
    assert_eq!(
        serde_json::from_str::<TenantId>("\"acme\"")
            .unwrap()
            .to_string(),
        "acme"
    );
    assert!(serde_json::from_str::<TenantId>("\"ACME\"").is_err());
    assert!(serde_json::from_str::<RequestId>("\"a b\"").is_err());
    assert_eq!(
        serde_json::to_string(&RequestId::parse("r-1").unwrap()).unwrap(),
        "\"r-1\""
    );
}

#[test]
fn long_bad_input_is_shortened_in_errors() {
    let error = TenantId::parse(&"X".repeat(10_000)).unwrap_err();
    assert!(error.to_string().len() < 300, "{}", error.to_string().len());
}
