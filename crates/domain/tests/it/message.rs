//! Given/when/then tests of the message lifecycle up to the dispatch outcome, one test per rule.
//! `check` folds the given events, runs `decide` and compares, then applies what was decided.

use domain::message::*;
use domain::message_decide::decide;
use domain::message_state::{apply, fold};
use domain::*;

use crate::support::*;

#[track_caller]
pub fn check(
    given: Vec<MessageEvent>,
    when: MessageCommand,
    then: Result<Vec<MessageEvent>, MessageError>,
) -> MessageState {
    let mut state = fold(&given).expect("the given events apply");
    let decided = decide(&state, when);
    assert_eq!(decided, then);
    for event in decided.unwrap_or_default() {
        state = apply(state, &event).expect("decided events apply");
    }
    state
}

/// Applies `given` and returns the status, for rules that only `apply` enforces.
#[track_caller]
pub fn status_after(given: Vec<MessageEvent>) -> Result<Option<DeliveryStatus>, MessageError> {
    fold(&given).map(|state| state.status)
}

#[track_caller]
fn error_of(command: MessageCommand) -> MessageError {
    decide(&MessageState::default(), command).unwrap_err()
}

#[test]
fn accepting_starts_the_stream() {
    let state = check(vec![], accept(), Ok(vec![accepted()]));
    assert_eq!(state.status, Some(DeliveryStatus::Accepted));
    assert_eq!(state.version, 1);
    assert_eq!(
        state.accepted.as_ref().map(|a| a.message_id),
        Some(message_id())
    );
}

#[test]
fn accepting_twice_is_refused() {
    check(
        vec![accepted()],
        accept(),
        Err(MessageError::AlreadyAccepted),
    );
    assert_eq!(
        status_after(vec![accepted(), accepted()]),
        Err(MessageError::AlreadyAccepted)
    );
}

#[test]
fn nothing_happens_before_acceptance() {
    for command in every_command_after_accept() {
        let decided = decide(&MessageState::default(), command.clone());
        // A recall request is idempotent only once requested, so it too must wait for acceptance.
        assert_eq!(decided, Err(MessageError::NotAccepted), "{command:?}");
    }
    for event in [
        dispatched(),
        receipt(ReceiptOutcome::Delivered),
        clicked(),
        recall_requested(),
    ] {
        assert_eq!(status_after(vec![event]), Err(MessageError::NotAccepted));
    }
}

#[test]
fn acceptance_validates_its_data() {
    let with = |edit: fn(&mut MessageCommand)| {
        let mut command = accept();
        edit(&mut command);
        error_of(command)
    };
    assert_eq!(
        with(
            |c| if let MessageCommand::AcceptMessage { channel, .. } = c {
                *channel = Channel::Email;
            }
        ),
        MessageError::ContentDoesNotFitChannel {
            channel: Channel::Email,
            kind: "TEXT"
        }
    );
    assert_eq!(
        with(|c| {
            if let MessageCommand::AcceptMessage {
                template_version, ..
            } = c
            {
                *template_version = 0;
            }
        }),
        MessageError::InvalidTemplateVersion
    );
    assert_eq!(
        with(
            |c| if let MessageCommand::AcceptMessage { content, .. } = c {
                *content = TemplateContent::Text {
                    body: " ".to_owned(),
                };
            }
        ),
        MessageError::InvalidContent(TemplateError::EmptyField { field: "body" })
    );
    assert_eq!(
        with(
            |c| if let MessageCommand::AcceptMessage { tracked_links, .. } = c {
                tracked_links.push(TrackedLink {
                    index: 0,
                    url: "https://example.com/b".to_owned(),
                });
            }
        ),
        MessageError::DuplicateLinkIndex { index: 0 }
    );
}

#[test]
fn pending_messages_take_any_dispatch_outcome() {
    let cases = [
        (
            deduplicate_cmd(),
            deduplicated(),
            DeliveryStatus::Deduplicated,
        ),
        (shield_cmd(), shielded(), DeliveryStatus::Shielded),
        (discard_cmd(), discarded(), DeliveryStatus::Discarded),
        (dispatch_cmd(), dispatched(), DeliveryStatus::Dispatched),
        (fail_cmd(), failed(), DeliveryStatus::Failed),
    ];
    for (command, event, status) in cases {
        for given in [vec![accepted()], vec![accepted(), deferred(100)]] {
            let state = check(given, command.clone(), Ok(vec![event.clone()]));
            assert_eq!(state.status, Some(status));
            assert_eq!(state.deferred_until, None, "an outcome clears the deferral");
        }
    }
}

#[test]
fn a_second_outcome_is_refused() {
    let outcomes = [
        (deduplicated(), DeliveryStatus::Deduplicated),
        (shielded(), DeliveryStatus::Shielded),
        (discarded(), DeliveryStatus::Discarded),
        (dispatched(), DeliveryStatus::Dispatched),
        (failed(), DeliveryStatus::Failed),
    ];
    let pending_only = [
        deduplicate_cmd(),
        shield_cmd(),
        defer_cmd(100),
        discard_cmd(),
        rate_limit_cmd(),
        dispatch_cmd(),
        dispatch_failure_cmd(),
        fail_cmd(),
    ];
    for (outcome, status) in outcomes {
        for command in pending_only.clone() {
            check(
                vec![accepted(), outcome.clone()],
                command,
                Err(MessageError::AlreadyFinal { status }),
            );
        }
    }
    let recalled_given = vec![accepted(), recall_requested(), recalled(false)];
    check(
        recalled_given,
        dispatch_cmd(),
        Err(MessageError::AlreadyFinal {
            status: DeliveryStatus::Recalled,
        }),
    );
}

#[test]
fn deferring_sets_status_and_due_time() {
    let state = check(vec![accepted()], defer_cmd(100), Ok(vec![deferred(100)]));
    assert_eq!(state.status, Some(DeliveryStatus::Deferred));
    assert_eq!(state.deferred_until, Some(t(100)));
    let state = check(
        vec![accepted(), deferred(100)],
        defer_cmd(200),
        Ok(vec![deferred(200)]),
    );
    assert_eq!(state.deferred_until, Some(t(200)));
}

#[test]
fn a_deferral_must_end_after_it_starts() {
    check(
        vec![accepted()],
        defer_cmd(1),
        Err(MessageError::InvalidDeferral {
            until: t(1),
            at: t(1),
        }),
    );
    let limit = MessageCommand::RateLimitMessage {
        account: "a".to_owned(),
        until: t(0),
        at: t(1),
    };
    check(
        vec![accepted()],
        limit,
        Err(MessageError::InvalidDeferral {
            until: t(0),
            at: t(1),
        }),
    );
}

#[test]
fn a_dispatch_failure_keeps_the_status_and_counts_the_attempt() {
    let state = check(
        vec![accepted(), deferred(100)],
        dispatch_failure_cmd(),
        Ok(vec![dispatch_failed()]),
    );
    assert_eq!(state.status, Some(DeliveryStatus::Deferred));
    assert_eq!(state.attempts, 1);
    assert_eq!(state.last_failure.as_ref().map(|f| f.attempt), Some(1));
    let state = fold(&[accepted(), dispatch_failed(), deferred(60), dispatched()]).unwrap();
    assert_eq!(
        (state.status, state.attempts),
        (Some(DeliveryStatus::Dispatched), 2)
    );
}

#[test]
fn a_dispatch_failure_must_be_consistent() {
    let failure = |class: ErrorClass, retryable: bool, next: Option<i64>| {
        MessageCommand::RecordDispatchFailure {
            account: "a".to_owned(),
            supplier: "s".to_owned(),
            attempt: 1,
            error_class: class,
            error_code: "E".to_owned(),
            error_message: String::new(),
            retryable,
            next_attempt_at: next.map(t),
            at: t(10),
        }
    };
    let given = || vec![accepted()];
    check(
        given(),
        failure(ErrorClass::Final, true, None),
        Err(MessageError::InconsistentRetry),
    );
    check(
        given(),
        failure(ErrorClass::Final, false, Some(60)),
        Err(MessageError::InconsistentRetry),
    );
    check(
        given(),
        failure(ErrorClass::Retryable, true, Some(5)),
        Err(MessageError::InvalidDeferral {
            until: t(5),
            at: t(10),
        }),
    );
    assert!(
        decide(
            &fold(&given()).unwrap(),
            failure(ErrorClass::Throttled, true, Some(60))
        )
        .is_ok()
    );
    assert!(
        decide(
            &fold(&given()).unwrap(),
            failure(ErrorClass::Final, false, None)
        )
        .is_ok()
    );
}

#[test]
fn attempts_are_numbered_from_one() {
    let mut command = dispatch_cmd();
    if let MessageCommand::RecordDispatch { attempt, .. } = &mut command {
        *attempt = 0;
    }
    check(
        vec![accepted()],
        command,
        Err(MessageError::InvalidAttempt { attempt: 0 }),
    );
}

#[test]
fn long_supplier_error_messages_are_cut() {
    let mut command = dispatch_failure_cmd();
    if let MessageCommand::RecordDispatchFailure { error_message, .. } = &mut command {
        *error_message = "é".repeat(5000);
    }
    let events = decide(&fold(&[accepted()]).unwrap(), command).unwrap();
    let MessageEvent::DispatchFailed(failure) = &events[0] else {
        panic!("expected DispatchFailed")
    };
    assert_eq!(
        failure.error_message.chars().count(),
        domain::message_decide::MAX_ERROR_MESSAGE_CHARS
    );
}

#[test]
fn rate_limiting_keeps_the_status() {
    let state = check(vec![accepted()], rate_limit_cmd(), Ok(vec![rate_limited()]));
    assert_eq!(state.status, Some(DeliveryStatus::Accepted));
    assert_eq!(state.rate_limited_until, Some(t(5)));
}

#[test]
fn failing_records_the_attempts_made() {
    let expected = MessageFailed {
        reason: "attempts exhausted".to_owned(),
        attempts: 2,
        at: t(3),
    };
    check(
        vec![
            accepted(),
            dispatch_failed(),
            deferred(60),
            dispatch_failed(),
        ],
        fail_cmd(),
        Ok(vec![expected.into()]),
    );
}

#[test]
fn commands_with_empty_required_text_are_refused() {
    let given = || vec![accepted(), dispatched(), recall_requested()];
    let empty = |field| Err(MessageError::EmptyField { field });
    check(
        vec![accepted()],
        MessageCommand::ShieldMessage {
            reason: " ".to_owned(),
            at: t(1),
        },
        empty("reason"),
    );
    check(
        given(),
        MessageCommand::FailRecall {
            reason: String::new(),
            at: t(1),
        },
        empty("reason"),
    );
    check(
        vec![accepted()],
        MessageCommand::RequestRecall {
            actor: String::new(),
            request_id: None,
            at: t(1),
        },
        empty("actor"),
    );
}

#[test]
fn fold_counts_events_and_stops_at_the_first_refusal() {
    let state = fold(&[
        accepted(),
        dispatched(),
        receipt(ReceiptOutcome::Delivered),
        clicked(),
    ])
    .unwrap();
    assert_eq!(state.version, 4);
    assert_eq!(
        fold(&[accepted(), dispatched(), dispatched(), clicked()]),
        Err(MessageError::AlreadyFinal {
            status: DeliveryStatus::Dispatched
        })
    );
}

#[test]
fn status_classification() {
    use DeliveryStatus as S;
    let finals: Vec<_> = S::ALL.iter().copied().filter(|s| s.is_final()).collect();
    assert_eq!(
        finals,
        [
            S::Failed,
            S::Deduplicated,
            S::Shielded,
            S::Discarded,
            S::Recalled
        ]
    );
    let pending: Vec<_> = S::ALL.iter().copied().filter(|s| s.is_pending()).collect();
    assert_eq!(pending, [S::Accepted, S::Deferred]);
    assert_eq!(S::Undelivered.as_str(), "UNDELIVERED");
}

#[test]
fn error_codes_are_stable() {
    assert_eq!(
        MessageError::AlreadyFinal {
            status: DeliveryStatus::Failed
        }
        .code(),
        "ALREADY_FINAL"
    );
    assert_eq!(MessageError::NotAccepted.code(), "NOT_ACCEPTED");
    assert_eq!(
        MessageError::RecallAlreadyRequested.code(),
        "RECALL_ALREADY_REQUESTED"
    );
    assert_eq!(
        MessageError::InvalidDeferral {
            until: t(0),
            at: t(0)
        }
        .code(),
        "INVALID_DEFERRAL"
    );
}
