//! Crowd sends: batches in order, cancel, cron runs and misfires.
use chrono::{DateTime, Utc};
use domain::crowd::*;
use domain::crowd_state::*;
use domain::{MessageId, RequestId, TemplateId, TenantId};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn scheduled(schedule: CrowdSchedule) -> CrowdEvent {
    CrowdEvent::CrowdSendScheduled(CrowdSendScheduled {
        crowd_id: CrowdId::generate(),
        tenant: TenantId::parse("acme").unwrap(),
        request_id: RequestId::parse("r1").unwrap(),
        template_id: TemplateId::generate(),
        source: CrowdSource::Upload {
            upload_id: "u1".into(),
        },
        receiver_column: "receiver".into(),
        schedule,
        first_run_at: t("2026-01-01T09:00:00Z"),
        at: t("2026-01-01T08:00:00Z"),
    })
}

fn batch(run: u32, batch: u32, ids: usize) -> CrowdCommand {
    CrowdCommand::AcceptBatch(Box::new(CrowdBatchAccepted {
        run,
        batch,
        last_line: u64::from(batch) * 10 + 1,
        offset: u64::from(batch) * 100,
        total_bytes: Some(1000),
        rows: 10,
        message_ids: (0..ids).map(|_| MessageId::generate()).collect(),
        rejected: (ids..10)
            .map(|i| RowError {
                line: i as u64,
                code: "INVALID_PHONE".into(),
                message: "bad".into(),
            })
            .collect(),
        at: t("2026-01-01T09:00:01Z"),
    }))
}

fn run(state: CrowdState, command: CrowdCommand) -> Result<CrowdState, CrowdError> {
    let events = decide(&state, command)?;
    Ok(events.iter().try_fold(state, apply).unwrap())
}

#[test]
fn a_one_off_send_runs_its_batches_in_order_and_completes() {
    let s = fold(&[scheduled(CrowdSchedule::Once { send_at: None })]).unwrap();
    assert_eq!(s.status, Some(CrowdStatus::Scheduled));
    let start = CrowdCommand::Start {
        due_at: t("2026-01-01T09:00:00Z"),
        at: t("2026-01-01T09:00:00Z"),
    };
    assert_eq!(
        decide(&s, batch(1, 1, 10)).unwrap_err().code(),
        "CROWD_SEND_NOT_RUNNING"
    );
    let s = run(s, start.clone()).unwrap();
    assert_eq!(s.run, 1);
    let s = run(s, batch(1, 1, 8)).unwrap();
    // A batch recorded twice (a resumed worker racing the first) is refused.
    assert_eq!(
        decide(&s, batch(1, 1, 10)).unwrap_err().code(),
        "CROWD_BATCH_OUT_OF_ORDER"
    );
    let s = run(s, batch(1, 2, 10)).unwrap();
    assert_eq!((s.rows_read, s.accepted, s.rejected), (20, 18, 2));
    assert_eq!(s.errors.len(), 2);
    let s = run(
        s,
        CrowdCommand::Complete {
            next_run_at: None,
            at: t("2026-01-01T09:01:00Z"),
        },
    )
    .unwrap();
    assert_eq!(s.status, Some(CrowdStatus::Completed));
    let cancel = CrowdCommand::Cancel {
        actor: "k".into(),
        at: t("2026-01-01T09:02:00Z"),
    };
    assert_eq!(
        decide(&s, cancel).unwrap_err().code(),
        "CROWD_SEND_FINISHED"
    );
}

#[test]
fn a_cancelled_send_takes_no_more_batches() {
    let s = fold(&[scheduled(CrowdSchedule::Once { send_at: None })]).unwrap();
    let s = run(
        s,
        CrowdCommand::Start {
            due_at: t("2026-01-01T09:00:00Z"),
            at: t("2026-01-01T09:00:00Z"),
        },
    )
    .unwrap();
    let s = run(s, batch(1, 1, 10)).unwrap();
    let s = run(
        s,
        CrowdCommand::Cancel {
            actor: "k".into(),
            at: t("2026-01-01T09:00:30Z"),
        },
    )
    .unwrap();
    assert_eq!(s.status, Some(CrowdStatus::Cancelled));
    assert_eq!(
        decide(&s, batch(1, 2, 10)).unwrap_err().code(),
        "CROWD_SEND_CANCELLED"
    );
}

#[test]
fn a_cron_send_goes_back_to_scheduled_after_each_run() {
    let cron = CrowdSchedule::Cron {
        expression: "0 9 * * *".into(),
        zone: "+00:00".into(),
        misfire: Misfire::Skip,
    };
    let s = fold(&[scheduled(cron.clone())]).unwrap();
    let s = run(
        s,
        CrowdCommand::Start {
            due_at: t("2026-01-01T09:00:00Z"),
            at: t("2026-01-01T09:00:00Z"),
        },
    )
    .unwrap();
    let next = next_run(&cron, t("2026-01-01T09:00:05Z"));
    assert_eq!(next, Some(t("2026-01-02T09:00:00Z")));
    let s = run(
        s,
        CrowdCommand::Complete {
            next_run_at: next,
            at: t("2026-01-01T09:00:05Z"),
        },
    )
    .unwrap();
    assert_eq!(s.status, Some(CrowdStatus::Scheduled));
    assert_eq!(s.next_run_at, next);
    // A firing seen two hours late is skipped under SKIP and run under RUN_ONCE_LATE.
    let grace = chrono::TimeDelta::seconds(60);
    let late = t("2026-01-02T11:00:00Z");
    assert_eq!(
        firing(&cron, t("2026-01-02T09:00:00Z"), late, grace),
        Firing::Skip {
            next: Some(t("2026-01-03T09:00:00Z"))
        }
    );
    let once_late = CrowdSchedule::Cron {
        expression: "0 9 * * *".into(),
        zone: "+00:00".into(),
        misfire: Misfire::RunOnceLate,
    };
    assert_eq!(
        firing(&once_late, t("2026-01-02T09:00:00Z"), late, grace),
        Firing::Run
    );
    assert_eq!(
        firing(
            &cron,
            t("2026-01-02T09:00:00Z"),
            t("2026-01-02T09:00:30Z"),
            grace
        ),
        Firing::Run
    );
}

#[test]
fn a_bad_cron_expression_is_refused() {
    let s = CrowdState::default();
    let CrowdEvent::CrowdSendScheduled(mut e) = scheduled(CrowdSchedule::Cron {
        expression: "61 * * * *".into(),
        zone: "+08:00".into(),
        misfire: Misfire::Skip,
    }) else {
        unreachable!()
    };
    let error = decide(&s, CrowdCommand::Schedule(Box::new(e.clone()))).unwrap_err();
    assert_eq!(error.code(), "INVALID_SCHEDULE");
    assert!(error.to_string().contains("minute: 61"), "{error}");
    e.schedule = CrowdSchedule::Cron {
        expression: "0 9 * * *".into(),
        zone: "Beijing".into(),
        misfire: Misfire::Skip,
    };
    let error = decide(&s, CrowdCommand::Schedule(Box::new(e))).unwrap_err();
    assert!(error.to_string().contains("not a UTC offset"), "{error}");
}
