//! Tests of receiver parsing, normalisation and masking, with property tests over arbitrary input.

use domain::*;
use proptest::prelude::*;

#[track_caller]
fn check(id_type: ReceiverIdType, raw: &str, expected: Result<&str, &str>) {
    let parsed = Receiver::parse(id_type, raw);
    match expected {
        Ok(value) => assert_eq!(parsed.as_ref().map(Receiver::value), Ok(value), "{raw:?}"),
        Err(code) => assert_eq!(
            parsed.map_err(|e| e.code()).map(|r| r.value().to_owned()),
            Err(code),
            "{raw:?}"
        ),
    }
}

#[test]
fn mainland_mobiles_are_normalised_to_plus_86() {
    for raw in [
        "13812345678",
        "+8613812345678",
        "8613812345678",
        "008613812345678",
        " 13812345678\n",
        "19912345678",
    ] {
        let expected = if raw.contains("199") {
            "+8619912345678"
        } else {
            "+8613812345678"
        };
        check(ReceiverIdType::Phone, raw, Ok(expected));
    }
}

#[test]
fn other_e164_numbers_are_kept_as_given() {
    check(ReceiverIdType::Phone, "+14155552671", Ok("+14155552671"));
    check(ReceiverIdType::Phone, "+12345678", Ok("+12345678"));
    check(
        ReceiverIdType::Phone,
        "+123456789012345",
        Ok("+123456789012345"),
    );
}

#[test]
fn malformed_phones_are_refused() {
    let bad = [
        "",
        "12812345678",
        "1381234567",
        "138123456789",
        "+0123456789",
        "+1234567",
        "+1234567890123456",
        "abc",
        "138-1234-5678",
        "+86 138 1234 5678",
        "+",
        "１３８１２３４５６７８",
    ];
    for raw in bad {
        check(ReceiverIdType::Phone, raw, Err("INVALID_PHONE"));
    }
}

#[test]
fn emails_keep_the_local_part_and_lower_case_the_domain() {
    check(
        ReceiverIdType::Email,
        "Alice.B+tag@Example.COM",
        Ok("Alice.B+tag@example.com"),
    );
    check(ReceiverIdType::Email, "a@b-c.d.io", Ok("a@b-c.d.io"));
}

#[test]
fn malformed_emails_are_refused() {
    let long_local = format!("{}@example.com", "a".repeat(65));
    let long_total = format!("a@{}.com", vec!["b".repeat(63); 4].join("."));
    let bad = [
        "",
        "a@b",
        "a@@b.com",
        "a b@c.com",
        "@b.com",
        "a@-b.com",
        "a@b-.com",
        "a@b..com",
        "a@.com",
        "a@b.com.",
        "a<b@c.com",
        "a@b_c.com",
        "é@b.com",
        "a@bé.com",
        &long_local,
        &long_total,
    ];
    for raw in bad {
        check(ReceiverIdType::Email, raw, Err("INVALID_EMAIL"));
    }
}

#[test]
fn webhook_urls_need_a_scheme_and_a_host() {
    for good in [
        "https://oapi.dingtalk.com/robot/send?access_token=x",
        "http://[::1]:8080/hook",
        "http://user@host:80",
        "https://h",
    ] {
        check(ReceiverIdType::WebhookUrl, good, Ok(good));
    }
    let too_long = format!("https://a.com/{}", "x".repeat(2048));
    for bad in [
        "ftp://a.com",
        "https://",
        "https:///path",
        "https://a b.com",
        "HTTPS://a.com",
        "https://:80/x",
        "http://[::1",
        &too_long,
    ] {
        check(ReceiverIdType::WebhookUrl, bad, Err("INVALID_URL"));
    }
}

#[test]
fn other_ids_are_short_and_free_of_spaces() {
    check(ReceiverIdType::UserId, " user_42 ", Ok("user_42"));
    check(ReceiverIdType::OpenId, "oAbC-123_x", Ok("oAbC-123_x"));
    check(ReceiverIdType::FeishuUser, "ou_测试", Ok("ou_测试"));
    for bad in [
        String::new(),
        "a b".to_owned(),
        "a\u{7}b".to_owned(),
        "x".repeat(257),
    ] {
        check(
            ReceiverIdType::DeviceToken,
            &bad,
            Err("INVALID_RECEIVER_ID"),
        );
    }
    check(
        ReceiverIdType::DeviceToken,
        &"x".repeat(256),
        Ok(&"x".repeat(256)),
    );
}

#[test]
fn masking_hides_the_middle() {
    let masked = |id_type, raw| Receiver::parse(id_type, raw).unwrap().masked();
    assert_eq!(
        masked(ReceiverIdType::Phone, "13812345678"),
        "+86138****5678"
    );
    assert_eq!(
        masked(ReceiverIdType::Phone, "+14155552671"),
        "+141****2671"
    );
    assert_eq!(masked(ReceiverIdType::Phone, "+12345678"), "+12****78");
    assert_eq!(
        masked(ReceiverIdType::Email, "alice@example.com"),
        "a***@example.com"
    );
    assert_eq!(masked(ReceiverIdType::UserId, "user-1234"), "us***34");
    assert_eq!(masked(ReceiverIdType::UserId, "u-1"), "***");
}

#[test]
fn errors_carry_the_masked_input_only() {
    let error = Receiver::parse(ReceiverIdType::Phone, "secret-phone-0123").unwrap_err();
    assert_eq!(
        error,
        ReceiverError::InvalidPhone {
            value: "se***23".to_owned()
        }
    );
    assert!(!error.to_string().contains("secret-phone-0123"));
    let error = Receiver::parse(ReceiverIdType::OpenId, "a b").unwrap_err();
    assert_eq!(
        error,
        ReceiverError::InvalidId {
            id_type: ReceiverIdType::OpenId,
            value: "***".to_owned()
        }
    );
}

#[test]
fn debug_output_is_masked() {
    let receiver = Receiver::parse(ReceiverIdType::Phone, "13812345678").unwrap();
    let debug = format!("{receiver:?}");
    assert!(
        debug.contains("+86138****5678") && !debug.contains("12345678"),
        "{debug}"
    );
}

#[test]
fn serde_validates_and_normalises() {
    let receiver = Receiver::parse(ReceiverIdType::Phone, "13812345678").unwrap();
    let json = serde_json::to_value(&receiver).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"id_type": "PHONE", "value": "+8613812345678"})
    );
    let raw: Receiver =
        serde_json::from_value(serde_json::json!({"id_type": "PHONE", "value": "13812345678"}))
            .unwrap();
    assert_eq!(raw, receiver);
    let bad = serde_json::from_value::<Receiver>(
        serde_json::json!({"id_type": "EMAIL", "value": "nope"}),
    );
    assert!(bad.is_err());
}

fn plausible_raw() -> impl Strategy<Value = String> {
    prop_oneof![
        "(\\+86|0086|86)?1[3-9][0-9]{9}",
        "\\+[1-9][0-9]{7,14}",
        "[A-Za-z0-9._%+-]{1,12}@[A-Za-z0-9-]{1,8}(\\.[A-Za-z]{2,5}){1,2}",
        "https?://[a-z0-9.-]{0,12}(:[0-9]{1,4})?(/[!-~]{0,12})?",
        "[!-~]{1,20}",
        " ?.{0,24} ?",
    ]
}

fn any_id_type() -> impl Strategy<Value = ReceiverIdType> {
    proptest::sample::select(ReceiverIdType::ALL)
}

proptest! {
    #[test]
    fn parse_never_panics(id_type in any_id_type(), raw in any::<String>()) {
        let _ = Receiver::parse(id_type, &raw);
    }

    #[test]
    fn parsing_is_idempotent(id_type in any_id_type(), raw in plausible_raw()) {
        if let Ok(receiver) = Receiver::parse(id_type, &raw) {
            prop_assert_eq!(Receiver::parse(id_type, receiver.value()), Ok(receiver.clone()));
            let json = serde_json::to_string(&receiver).unwrap();
            prop_assert_eq!(serde_json::from_str::<Receiver>(&json).unwrap(), receiver);
        }
    }

    #[test]
    fn masking_never_reveals_a_long_value(id_type in any_id_type(), raw in plausible_raw()) {
        if let Ok(receiver) = Receiver::parse(id_type, &raw)
            && receiver.value().chars().count() >= 8
        {
            prop_assert!(!receiver.masked().contains(receiver.value()), "{}", receiver.masked());
        }
    }

    #[test]
    fn errors_never_contain_a_long_raw_value(id_type in any_id_type(), raw in "[!-~]{8,40}") {
        if let Err(error) = Receiver::parse(id_type, &raw) {
            prop_assert!(!error.to_string().contains(&raw));
        }
    }
}
