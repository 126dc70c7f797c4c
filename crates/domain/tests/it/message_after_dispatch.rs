//! Given/when/then tests of what follows dispatch: receipts, clicks and recall.
//! They share `check` with the tests of the earlier lifecycle.

use domain::*;

use crate::message::{check, status_after};
use crate::support::*;

#[test]
fn receipts_move_a_dispatched_message_and_the_latest_wins() {
    let state = check(
        vec![accepted(), dispatched()],
        receipt_cmd(ReceiptOutcome::Delivered),
        Ok(vec![receipt(ReceiptOutcome::Delivered)]),
    );
    assert_eq!(state.status, Some(DeliveryStatus::Delivered));
    let state = check(
        vec![accepted(), dispatched(), receipt(ReceiptOutcome::Delivered)],
        receipt_cmd(ReceiptOutcome::Undelivered),
        Ok(vec![receipt(ReceiptOutcome::Undelivered)]),
    );
    assert_eq!(state.status, Some(DeliveryStatus::Undelivered));
    assert_eq!(state.last_receipt, Some(ReceiptOutcome::Undelivered));
}

#[test]
fn a_receipt_before_the_dispatch_is_kept_and_decides_the_status() {
    let state = check(
        vec![accepted()],
        receipt_cmd(ReceiptOutcome::Delivered),
        Ok(vec![receipt(ReceiptOutcome::Delivered)]),
    );
    assert_eq!(state.status, Some(DeliveryStatus::Accepted));
    assert_eq!(state.last_receipt, Some(ReceiptOutcome::Delivered));
    let state = check(
        vec![accepted(), receipt(ReceiptOutcome::Undelivered)],
        dispatch_cmd(),
        Ok(vec![dispatched()]),
    );
    assert_eq!(state.status, Some(DeliveryStatus::Undelivered));
}

#[test]
fn receipts_never_move_a_final_message() {
    let finals = [
        (
            vec![accepted(), deduplicated()],
            DeliveryStatus::Deduplicated,
        ),
        (vec![accepted(), shielded()], DeliveryStatus::Shielded),
        (vec![accepted(), discarded()], DeliveryStatus::Discarded),
        (vec![accepted(), failed()], DeliveryStatus::Failed),
        (
            vec![accepted(), dispatched(), recall_requested(), recalled(true)],
            DeliveryStatus::Recalled,
        ),
    ];
    for (given, status) in finals {
        let state = check(
            given,
            receipt_cmd(ReceiptOutcome::Delivered),
            Ok(vec![receipt(ReceiptOutcome::Delivered)]),
        );
        assert_eq!(state.status, Some(status));
        assert_eq!(state.last_receipt, Some(ReceiptOutcome::Delivered));
    }
}

#[test]
fn clicks_count_at_any_time_after_acceptance() {
    let given = vec![
        accepted(),
        dispatched(),
        recall_requested(),
        recalled(true),
        clicked(),
    ];
    let state = check(given, click_cmd(0), Ok(vec![clicked()]));
    assert!(state.clicked && state.read);
    assert_eq!(state.clicks, 2);
    assert_eq!(state.status, Some(DeliveryStatus::Recalled));
}

#[test]
fn a_message_is_read_once_by_a_mark_or_a_click() {
    let state = check(vec![accepted(), dispatched()], read_cmd(), Ok(vec![read()]));
    assert!(state.read && !state.clicked);
    check(
        vec![accepted(), dispatched(), read()],
        read_cmd(),
        Ok(vec![]),
    );
    check(
        vec![accepted(), dispatched(), clicked()],
        read_cmd(),
        Ok(vec![]),
    );
    check(vec![], read_cmd(), Err(MessageError::NotAccepted));
}

#[test]
fn a_click_must_name_a_tracked_link() {
    check(
        vec![accepted()],
        click_cmd(7),
        Err(MessageError::UnknownLink { index: 7 }),
    );
}

#[test]
fn recall_can_be_requested_until_an_outcome_rules_it_out() {
    let recallable = [
        vec![accepted()],
        vec![accepted(), deferred(100)],
        vec![accepted(), dispatched()],
        vec![accepted(), dispatched(), receipt(ReceiptOutcome::Delivered)],
        vec![
            accepted(),
            dispatched(),
            receipt(ReceiptOutcome::Undelivered),
        ],
    ];
    for given in recallable {
        let state = check(given, request_recall_cmd(), Ok(vec![recall_requested()]));
        assert!(state.recall_requested);
    }
    let not_recallable = [
        (deduplicated(), DeliveryStatus::Deduplicated),
        (shielded(), DeliveryStatus::Shielded),
        (discarded(), DeliveryStatus::Discarded),
        (failed(), DeliveryStatus::Failed),
    ];
    for (outcome, status) in not_recallable {
        check(
            vec![accepted(), outcome],
            request_recall_cmd(),
            Err(MessageError::NotRecallable { status }),
        );
    }
}

#[test]
fn requesting_a_recall_twice_decides_nothing_but_apply_refuses_a_duplicate() {
    check(
        vec![accepted(), recall_requested()],
        request_recall_cmd(),
        Ok(vec![]),
    );
    check(
        vec![accepted(), recall_requested(), recalled(false)],
        request_recall_cmd(),
        Ok(vec![]),
    );
    assert_eq!(
        status_after(vec![accepted(), recall_requested(), recall_requested()]),
        Err(MessageError::RecallAlreadyRequested)
    );
    assert_eq!(
        status_after(vec![
            accepted(),
            recall_requested(),
            recalled(false),
            recall_requested()
        ]),
        Err(MessageError::NotRecallable {
            status: DeliveryStatus::Recalled
        })
    );
}

#[test]
fn a_recall_outcome_needs_a_request() {
    check(
        vec![accepted(), dispatched()],
        confirm_recall_cmd(),
        Err(MessageError::RecallNotRequested),
    );
    check(
        vec![accepted(), dispatched()],
        fail_recall_cmd(),
        Err(MessageError::RecallNotRequested),
    );
}

#[test]
fn a_recalled_message_is_final() {
    let state = check(
        vec![accepted(), dispatched(), recall_requested()],
        confirm_recall_cmd(),
        Ok(vec![recalled(true)]),
    );
    assert_eq!(state.status, Some(DeliveryStatus::Recalled));
    assert!(DeliveryStatus::Recalled.is_final());
    let given = || vec![accepted(), dispatched(), recall_requested(), recalled(true)];
    let final_recalled = Err(MessageError::AlreadyFinal {
        status: DeliveryStatus::Recalled,
    });
    check(given(), confirm_recall_cmd(), final_recalled.clone());
    check(given(), fail_recall_cmd(), final_recalled);
}

#[test]
fn a_recall_fails_at_most_once_and_keeps_the_status() {
    let given = || vec![accepted(), dispatched(), recall_requested()];
    let state = check(given(), fail_recall_cmd(), Ok(vec![recall_failed()]));
    assert_eq!(state.status, Some(DeliveryStatus::Dispatched));
    assert!(state.recall_failed);
    let mut failed_once = given();
    failed_once.push(recall_failed());
    check(
        failed_once.clone(),
        fail_recall_cmd(),
        Err(MessageError::RecallAlreadyFailed),
    );
    check(
        failed_once,
        confirm_recall_cmd(),
        Err(MessageError::RecallAlreadyFailed),
    );
}

#[test]
fn a_recall_cannot_undo_another_outcome() {
    let given = vec![accepted(), recall_requested(), deduplicated()];
    check(
        given,
        confirm_recall_cmd(),
        Err(MessageError::AlreadyFinal {
            status: DeliveryStatus::Deduplicated,
        }),
    );
}

#[test]
fn a_dispatch_racing_a_recall_request_is_still_recorded() {
    // The supplier already has the message, so the fact must be kept for the recall to go through the supplier.
    let state = check(
        vec![accepted(), recall_requested()],
        dispatch_cmd(),
        Ok(vec![dispatched()]),
    );
    assert_eq!(state.status, Some(DeliveryStatus::Dispatched));
    assert!(state.recall_requested);
}
