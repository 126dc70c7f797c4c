//! Tests of the stored event format: payload shape, decode errors, and metadata.

use domain::message::MessageShielded;
use domain::*;
use serde_json::json;
use uuid::Uuid;

use crate::support::*;

#[test]
fn the_payload_is_the_event_alone() {
    let event: MessageEvent = MessageShielded {
        reason: "NIGHT_DISCARD".to_owned(),
        at: t(0),
    }
    .into();
    assert_eq!(event.event_type(), "MessageShielded");
    assert_eq!(event.schema_version(), 1);
    assert_eq!(
        event.encode(),
        json!({"reason": "NIGHT_DISCARD", "at": "2023-11-14T22:13:20Z"})
    );
}

#[test]
fn accepted_payload_shape() {
    let payload = accepted().encode();
    assert_eq!(
        payload["receiver"],
        json!({"id_type": "PHONE", "value": "+8613812345678"})
    );
    assert_eq!(payload["content"]["kind"], json!("TEXT"));
    assert_eq!(payload["channel"], json!("SMS"));
    assert!(
        payload.get("send_at").is_none(),
        "absent options are left out"
    );
}

#[test]
fn event_types_are_the_variant_names() {
    assert_eq!(MessageEvent::EVENT_TYPES.len(), 15);
    assert!(MessageEvent::EVENT_TYPES.contains(&"DispatchFailed"));
    assert_eq!(<MessageEvent as DomainEvent>::SCHEMA_VERSION, 1);
    assert_eq!(DomainEvent::event_type(&recalled(true)), "MessageRecalled");
}

#[test]
fn decode_errors_are_distinct() {
    let payload = shielded().encode();
    let unknown = MessageEvent::decode("MessageExploded", 1, &payload).unwrap_err();
    assert_eq!(
        unknown,
        EventDecodeError::UnknownType {
            event_type: "MessageExploded".to_owned()
        }
    );
    assert_eq!(unknown.code(), "UNKNOWN_EVENT_TYPE");
    for version in [0, 2] {
        let error = MessageEvent::decode("MessageShielded", version, &payload).unwrap_err();
        assert_eq!(error.code(), "UNSUPPORTED_SCHEMA_VERSION", "{version}");
    }
    let bad = MessageEvent::decode("MessageShielded", 1, &json!({"reason": 7})).unwrap_err();
    assert_eq!(bad.code(), "BAD_EVENT_PAYLOAD");
    // A template event type is unknown to the message stream, and the other way round.
    assert_eq!(
        MessageEvent::decode("TemplateCreated", 1, &payload)
            .unwrap_err()
            .code(),
        "UNKNOWN_EVENT_TYPE"
    );
    assert_eq!(
        TemplateEvent::decode("MessageShielded", 1, &payload)
            .unwrap_err()
            .code(),
        "UNKNOWN_EVENT_TYPE"
    );
}

#[test]
fn decoding_from_text_fails_as_decoding_from_a_value_does() {
    let text = shielded().encode_json();
    let codes = |event_type: &str, version: u16, text: &str| {
        let from_text = MessageEvent::decode_json(event_type, version, text).map_err(|e| e.code());
        let value = serde_json::from_str(text);
        let from_value = value
            .map_err(|_| "BAD_EVENT_PAYLOAD")
            .and_then(|v| MessageEvent::decode(event_type, version, &v).map_err(|e| e.code()));
        assert_eq!(from_text, from_value, "{event_type} v{version} {text}");
        from_text.err()
    };
    assert_eq!(codes("MessageShielded", 1, &text), None);
    assert_eq!(
        codes("MessageExploded", 1, &text),
        Some("UNKNOWN_EVENT_TYPE")
    );
    assert_eq!(
        codes("TemplateCreated", 1, &text),
        Some("UNKNOWN_EVENT_TYPE")
    );
    for version in [0, 2] {
        assert_eq!(
            codes("MessageShielded", version, &text),
            Some("UNSUPPORTED_SCHEMA_VERSION")
        );
    }
    assert_eq!(
        codes("MessageShielded", 1, r#"{"reason": 7}"#),
        Some("BAD_EVENT_PAYLOAD")
    );
    assert_eq!(
        codes("MessageShielded", 1, "{not json"),
        Some("BAD_EVENT_PAYLOAD")
    );
    // An unknown type is unknown from text too, whatever its version.
    assert_eq!(
        MessageEvent::decode_json("MessageExploded", 2, &text)
            .unwrap_err()
            .code(),
        "UNKNOWN_EVENT_TYPE"
    );
    // The text's own receiver check runs as it does from a value.
    let mut payload = accepted().encode();
    payload["receiver"]["value"] = json!("not a phone");
    let error = MessageEvent::decode_json("MessageAccepted", 1, &payload.to_string()).unwrap_err();
    assert_eq!(error.code(), "BAD_EVENT_PAYLOAD");
    assert!(!error.to_string().contains("not a phone"), "{error}");
}

#[test]
fn a_stored_receiver_that_fails_validation_is_a_bad_payload() {
    let mut payload = accepted().encode();
    payload["receiver"]["value"] = json!("not a phone");
    let error = MessageEvent::decode("MessageAccepted", 1, &payload).unwrap_err();
    assert_eq!(error.code(), "BAD_EVENT_PAYLOAD");
    assert!(
        !error.to_string().contains("not a phone"),
        "receivers stay masked: {error}"
    );
}

#[test]
fn an_email_accepted_before_attachments_existed_still_decodes() {
    let mut payload = accepted().encode();
    payload["channel"] = json!("EMAIL");
    payload["receiver"] = json!({"id_type": "EMAIL", "value": "ann@example.com"});
    payload["content"] = json!({"kind": "EMAIL", "subject": "Hi", "text": "Hello"});
    let MessageEvent::MessageAccepted(event) =
        MessageEvent::decode("MessageAccepted", 1, &payload).unwrap()
    else {
        panic!("a MessageAccepted")
    };
    assert_eq!(
        event.content,
        TemplateContent::Email {
            subject: "Hi".to_owned(),
            html: None,
            text: Some("Hello".to_owned()),
            attachments: vec![],
        }
    );
    // Encoding it again writes the same payload: no attachments, no key.
    assert_eq!(MessageEvent::from(event).encode(), payload);
}

#[test]
fn metadata_leaves_out_absent_fields() {
    let metadata = EventMetadata::new(tenant());
    assert_eq!(
        serde_json::to_value(&metadata).unwrap(),
        json!({"tenant": "acme"})
    );
    let causation = Uuid::from_u128(1);
    let full = metadata
        .with_correlation_id("req-1")
        .with_causation_id(causation)
        .with_actor("api-key:7")
        .with_trace_id("trace-9");
    let json = serde_json::to_value(&full).unwrap();
    assert_eq!(json["causation_id"], json!(causation.to_string()));
    assert_eq!(serde_json::from_value::<EventMetadata>(json).unwrap(), full);
    assert!(serde_json::from_value::<EventMetadata>(json!({"tenant": "NO"})).is_err());
}

#[test]
fn a_send_request_is_written_as_the_same_json_it_encodes_to() {
    let event = SendEvent::SendAccepted(SendAccepted {
        request_id: RequestId::parse("order-42").unwrap(),
        template_id: TemplateId::generate(),
        template_version: 3,
        fingerprint: "f".repeat(64),
        messages: (0..3)
            .map(|i| SentMessage {
                message_id: MessageId::generate(),
                receiver: Receiver::parse(ReceiverIdType::Phone, &format!("+86138123456{i:02}"))
                    .unwrap(),
            })
            .collect(),
        send_at: Some(t(60)),
        at: t(0),
    });
    let written: serde_json::Value = serde_json::from_str(&event.encode_json()).unwrap();
    assert_eq!(written, event.encode());
    assert_eq!(
        SendEvent::decode("SendAccepted", 1, &written).unwrap(),
        event
    );
}
