//! Cron schedules under tokio's paused clock: a runner left to itself starts each run on its
//! firing to the millisecond, and a firing missed while no runner was up is skipped or run once
//! late as its misfire policy says.
//!
//! The clock is paused and only moves when the test moves it. A blocking task held for the
//! whole test stops tokio from moving the clock on its own while the store answers (which would
//! fire the pool's timeouts), so the test plays the runner's loop itself: one turn
//! ([`Runner::tick`]), then the wait the runner asked for, exactly as [`Runner::run`] does.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use commands::crowd::CrowdRequest;
use commands::crowd_run::{RunOptions, Runner};
use commands::links::LinkSigner;
use commands::templates::NewTemplate;
use domain::crowd::{CrowdEvent, CrowdSource, Misfire};
use domain::{
    Channel, CrowdId, MessageType, ReceiverIdType, ShieldType, TemplateCommand, TemplateContent,
    TemplateId, TenantId,
};
use store::Store;
use store::crowd::Upload;
use tokio_util::sync::CancellationToken;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// While held, tokio does not move its paused clock by itself: a blocking task is running.
#[derive(Clone)]
pub(crate) struct Hold(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

pub(crate) fn hold_clock() -> Hold {
    let (hold, held) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = held.recv();
    });
    Hold(hold)
}

/// A paused test's world: the store, a runner whose clock is tokio's, and the tenant's template
/// and upload.
struct World {
    store: Store,
    runner: Runner,
    tenant: TenantId,
    template: TemplateId,
    upload: String,
    _hold: Hold,
}

impl World {
    async fn new(hold: Hold, store: Store, start: DateTime<Utc>) -> World {
        let origin = tokio::time::Instant::now();
        let clock = Arc::new(move || {
            start + chrono::TimeDelta::from_std(origin.elapsed()).unwrap_or_default()
        });
        let tenant = TenantId::parse("acme").unwrap();
        let (template, _) = commands::templates::create(
            &store,
            &tenant,
            "author",
            NewTemplate {
                name: "weekly".into(),
                channel: Channel::Inbox,
                msg_type: MessageType::Marketing,
                receiver_id_type: Some(ReceiverIdType::Phone),
                shield_type: ShieldType::None,
                content: TemplateContent::Text {
                    body: "Hi ${name}".into(),
                },
                account: "inbox".into(),
                owner_team: "ci".into(),
            },
            start,
        )
        .await
        .unwrap();
        for command in [
            TemplateCommand::SubmitTemplate {
                version: 1,
                actor: "author".into(),
                at: start,
            },
            TemplateCommand::ApproveTemplate {
                version: 1,
                actor: "reviewer".into(),
                comment: None,
                at: start,
            },
        ] {
            commands::templates::execute(&store, &tenant, "x", template, command)
                .await
                .unwrap();
        }
        let csv = b"receiver,name\n+8613800000001,Ann\n+8613800000002,Bo\n+8613800000003,Cy\n";
        let upload = uuid::Uuid::now_v7().to_string();
        store::crowd::put_chunk(&store, &upload, 0, 0, csv)
            .await
            .unwrap();
        store::crowd::finish_upload(
            &store,
            &Upload {
                id: upload.clone(),
                tenant_id: tenant.to_string(),
                filename: "audience.csv".into(),
                bytes: csv.len() as u64,
                lines: 4,
            },
        )
        .await
        .unwrap();
        let runner = Runner {
            store: store.clone(),
            links: LinkSigner::new(b"secret".to_vec(), "http://127.0.0.1:1"),
            http: {
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::new()
            },
            options: RunOptions {
                rows_per_sec: 1_000_000,
                // Not a divisor of the cron's period, so a run on the minute is not the poll's.
                poll: Duration::from_secs(7 * 60 + 13),
                ..RunOptions::default()
            },
            worker: "cron-test".into(),
            clock,
        };
        World {
            store,
            runner,
            tenant,
            template,
            upload,
            _hold: hold,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        (self.runner.clock)()
    }

    async fn schedule(&self, expression: &str, zone: &str, misfire: Misfire) -> CrowdId {
        let request = CrowdRequest {
            template_id: self.template,
            request_id: format!("cron-{}", uuid::Uuid::now_v7().simple()),
            source: CrowdSource::Upload {
                upload_id: self.upload.clone(),
            },
            send_at: None,
            cron: Some((expression.into(), zone.into(), misfire)),
            receiver_column: "receiver".into(),
        };
        let (id, _) =
            commands::crowd::schedule(&self.store, &self.tenant, "ops", request, self.now())
                .await
                .unwrap();
        id
    }

    /// Plays the runner's loop until the clock reaches `until`: a turn, then the runner's wait.
    async fn run_until(&self, until: DateTime<Utc>) {
        let shutdown = CancellationToken::new();
        let mut turns = 0;
        while self.now() < until {
            let wait = self.runner.tick(&shutdown).await;
            let left = (until - self.now()).to_std().unwrap_or_default();
            tokio::time::advance(wait.min(left)).await;
            turns += 1;
            assert!(turns < 10_000, "the runner never waits");
        }
    }

    /// The runner is down: the clock moves with no turn taken.
    async fn down_until(&self, until: DateTime<Utc>) {
        let left = (until - self.now()).to_std().unwrap();
        tokio::time::advance(left).await;
    }

    async fn history(&self, id: CrowdId) -> Vec<CrowdEvent> {
        let (_, _, history) = commands::crowd::load(&self.store, &self.tenant, id)
            .await
            .unwrap();
        history
    }

    /// Each run's (due, started) times.
    async fn runs(&self, id: CrowdId) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        self.history(id)
            .await
            .into_iter()
            .filter_map(|e| match e {
                CrowdEvent::CrowdSendStarted(s) => Some((s.due_at, s.at)),
                _ => None,
            })
            .collect()
    }

    async fn skips(&self, id: CrowdId) -> Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> {
        self.history(id)
            .await
            .into_iter()
            .filter_map(|e| match e {
                CrowdEvent::CrowdRunSkipped(s) => Some((s.due_at, s.next_run_at)),
                _ => None,
            })
            .collect()
    }

    /// Messages the crowd send's runs accepted, in all.
    async fn accepted(&self, id: CrowdId) -> usize {
        self.history(id)
            .await
            .iter()
            .map(|e| match e {
                CrowdEvent::CrowdBatchAccepted(b) => b.message_ids.len(),
                _ => 0,
            })
            .sum()
    }
}

/// Weekdays at 09:00 in +08:00 (01:00 UTC), skipping misfires. Starting on a Friday a few
/// seconds after midnight UTC: runs on Friday, Monday and Tuesday at 01:00:00.000 exactly,
/// nothing on the weekend; then the runner is down over Wednesday's firing and comes back at
/// Thursday 01:05, past the minute of grace: Wednesday's firing is recorded as skipped, not run,
/// and the next run is Friday's, on time.
async fn weekdays_skip(hold: Hold, store: Store) {
    let world = World::new(hold, store, at("2026-03-06T00:00:07Z")).await;
    let id = world.schedule("0 9 * * 1-5", "+08:00", Misfire::Skip).await;

    world.run_until(at("2026-03-10T12:00:00Z")).await;
    let on_time = [
        at("2026-03-06T01:00:00Z"),
        at("2026-03-09T01:00:00Z"),
        at("2026-03-10T01:00:00Z"),
    ];
    assert_eq!(
        world.runs(id).await,
        on_time.iter().map(|t| (*t, *t)).collect::<Vec<_>>()
    );
    assert_eq!(world.accepted(id).await, 9, "three rows a run");

    world.down_until(at("2026-03-12T01:05:00Z")).await;
    world.run_until(at("2026-03-13T12:00:00Z")).await;
    assert_eq!(
        world.skips(id).await,
        vec![(at("2026-03-11T01:00:00Z"), Some(at("2026-03-13T01:00:00Z")))],
        "Wednesday's firing is skipped once, and Thursday's passed while down"
    );
    let runs = world.runs(id).await;
    assert_eq!(runs.len(), 4, "{runs:?}");
    assert_eq!(
        runs[3],
        (at("2026-03-13T01:00:00Z"), at("2026-03-13T01:00:00Z"))
    );
    assert_eq!(world.accepted(id).await, 12);
}

/// Every 15 minutes (UTC), running a misfire once late. Four firings pass while the runner is
/// down; when it comes back it runs once, at once, for the first missed firing, then goes back
/// to the schedule.
async fn quarter_hours_run_once_late(hold: Hold, store: Store) {
    let world = World::new(hold, store, at("2026-03-02T10:07:00Z")).await;
    let id = world
        .schedule("*/15 * * * *", "+00:00", Misfire::RunOnceLate)
        .await;

    world.run_until(at("2026-03-02T10:20:00Z")).await;
    assert_eq!(
        world.runs(id).await,
        vec![(at("2026-03-02T10:15:00Z"), at("2026-03-02T10:15:00Z"))]
    );

    world.down_until(at("2026-03-02T11:20:00Z")).await;
    world.run_until(at("2026-03-02T11:40:00Z")).await;
    assert_eq!(
        world.runs(id).await,
        vec![
            (at("2026-03-02T10:15:00Z"), at("2026-03-02T10:15:00Z")),
            (at("2026-03-02T10:30:00Z"), at("2026-03-02T11:20:00Z")),
            (at("2026-03-02T11:30:00Z"), at("2026-03-02T11:30:00Z")),
        ],
        "one late run for four missed firings, then on time again"
    );
    assert!(world.skips(id).await.is_empty());
    assert_eq!(world.accepted(id).await, 9);
}

/// Time zones move firings: 09:00 every day at -05:00 is 14:00 UTC.
async fn zone_moves_the_firing(hold: Hold, store: Store) {
    let world = World::new(hold, store, at("2026-03-02T00:00:00Z")).await;
    let id = world.schedule("0 9 * * *", "-05:00", Misfire::Skip).await;
    world.run_until(at("2026-03-03T20:00:00Z")).await;
    assert_eq!(
        world.runs(id).await,
        vec![
            (at("2026-03-02T14:00:00Z"), at("2026-03-02T14:00:00Z")),
            (at("2026-03-03T14:00:00Z"), at("2026-03-03T14:00:00Z")),
        ]
    );
}

/// Ends the whole test process, loudly, when a paused test has not finished in two minutes of
/// real time: a wait on the paused clock that the test does not move would otherwise hang the
/// run with no word of which test or why.
/// Dropped at the test's end, it hangs up on the watchdog's thread, which then ends quietly.
pub(crate) struct Watchdog(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

pub(crate) fn watchdog(test: &'static str) -> Watchdog {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            finished.recv_timeout(Duration::from_secs(120))
        {
            eprintln!(
                "{test}: not finished after 120 s of real time; it is waiting on a timer of the \
                 paused clock that nothing moves. Ending the test process."
            );
            std::process::exit(101);
        }
    });
    Watchdog(done)
}

/// The paused tests run on a current-thread runtime (tokio can only pause that one).
macro_rules! paused_on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    let _watchdog = super::watchdog(concat!("cron::postgres::", stringify!($name)));
                    let hold = super::hold_clock();
                    let t = crate::support::postgres_paused().await;
                    super::$name(hold.clone(), t.store.clone()).await;
                    t.cleanup().await;
                    drop(hold);
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    let _watchdog = super::watchdog(concat!("cron::sqlite::", stringify!($name)));
                    let hold = super::hold_clock();
                    let t = crate::support::sqlite().await;
                    super::$name(hold.clone(), t.store.clone()).await;
                    t.cleanup().await;
                    drop(hold);
                }
            )*
        }
    };
}

paused_on_both_backends!(
    weekdays_skip,
    quarter_hours_run_once_late,
    zone_moves_the_firing
);
