//! Property tests of the message aggregate: folding never panics, `decide` only emits what `apply` accepts,
//! and every event survives the wire format unchanged.

use domain::message_decide::decide;
use domain::message_state::{apply, fold};
use domain::*;
use proptest::prelude::*;

use crate::strategies::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_event_sequence_folds_without_panicking(
        first in proptest::option::of(any_accepted()),
        rest in proptest::collection::vec(any_event(), 0..24),
    ) {
        // Half the sequences start with an acceptance, so later events get past `NotAccepted`.
        let events: Vec<MessageEvent> = first.map(MessageEvent::from).into_iter().chain(rest).collect();
        let mut state = MessageState::default();
        let mut applied = 0u64;
        for event in &events {
            match apply(state.clone(), event) {
                Ok(next) => {
                    state = next;
                    applied += 1;
                }
                Err(_) => break,
            }
        }
        prop_assert_eq!(state.version, applied);
        prop_assert_eq!(fold(&events[..usize::try_from(applied).unwrap()]), Ok(state));
    }

    #[test]
    fn decide_only_emits_events_that_apply(
        accept in any_accept_command(),
        commands in proptest::collection::vec(any_command(), 0..16),
        last in any_command(),
    ) {
        let mut state = MessageState::default();
        for command in std::iter::once(accept).chain(commands).chain(std::iter::once(last)) {
            let Ok(events) = decide(&state, command.clone()) else { continue };
            for event in &events {
                match apply(state.clone(), event) {
                    Ok(next) => state = next,
                    Err(error) => {
                        return Err(TestCaseError::fail(format!("{command:?} decided {event:?}, which apply refused: {error}")));
                    }
                }
            }
        }
    }

    #[test]
    fn events_round_trip_through_the_wire_format(event in any_event()) {
        let payload = event.encode();
        prop_assert!(payload.get("type").is_none(), "the payload carries no type tag");
        let decoded = MessageEvent::decode(event.event_type(), MessageEvent::SCHEMA_VERSION, &payload);
        prop_assert_eq!(decoded.as_ref(), Ok(&event));
        // The store keeps the payload as text (JSONB or SQLite TEXT), so go through a string as well.
        let stored: serde_json::Value = serde_json::from_str(&payload.to_string()).unwrap();
        prop_assert_eq!(MessageEvent::decode(event.event_type(), 1, &stored), Ok(event.clone()));
        // The text the store is given is written straight from the event: the same JSON.
        let written: serde_json::Value = serde_json::from_str(&event.encode_json()).unwrap();
        prop_assert_eq!(&written, &payload);
        // Read straight from the stored text, as projections and dispatch read the log.
        let text = event.encode_json();
        prop_assert_eq!(MessageEvent::decode_json(event.event_type(), 1, &text), Ok(event.clone()));
        prop_assert_eq!(
            MessageEvent::decode_json(event.event_type(), 1, &payload.to_string()),
            Ok(event.clone())
        );
    }
}
