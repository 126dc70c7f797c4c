//! A crowd send's state folded from its stream, the commands it takes, and when its runs fire.

use chrono::{DateTime, Utc};

use crate::cron::{Cron, parse_zone};
use crate::crowd::*;

/// Where a crowd send is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrowdStatus {
    /// Waiting for its next run.
    Scheduled,
    Running,
    /// Every run done (a one-off send after its run).
    Completed,
    Cancelled,
}

impl CrowdStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CrowdStatus::Scheduled => "SCHEDULED",
            CrowdStatus::Running => "RUNNING",
            CrowdStatus::Completed => "COMPLETED",
            CrowdStatus::Cancelled => "CANCELLED",
        }
    }
}

/// The most row errors a crowd send keeps for its progress; the counts go on.
pub const MAX_KEPT_ERRORS: usize = 100;

/// A crowd send folded from its stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CrowdState {
    pub scheduled: Option<CrowdSendScheduled>,
    pub status: Option<CrowdStatus>,
    /// Runs started so far; the current (or last) run's number.
    pub run: u32,
    /// When the next run is due, while scheduled.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The current (or last) run: when it started, and how far it got.
    pub run_started_at: Option<DateTime<Utc>>,
    pub run_due_at: Option<DateTime<Utc>>,
    pub batch: u32,
    pub last_line: u64,
    pub offset: u64,
    pub total_bytes: Option<u64>,
    pub rows_read: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub errors: Vec<RowError>,
    pub last_batch_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why the last run failed, if it did.
    pub failure: Option<(String, String)>,
    pub skipped_runs: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrowdError {
    #[error("the crowd send already exists")]
    AlreadyScheduled,
    #[error("the crowd send does not exist")]
    NotScheduled,
    #[error("the crowd send was cancelled")]
    Cancelled,
    #[error("the crowd send has finished")]
    Finished,
    #[error("the crowd send is {0}, not running")]
    NotRunning(&'static str),
    #[error("the crowd send is already running")]
    AlreadyRunning,
    #[error("batch {got} of run {run} does not follow batch {expected}")]
    WrongBatch { run: u32, expected: u32, got: u32 },
    #[error("{0}")]
    InvalidSchedule(String),
}

impl CrowdError {
    pub fn code(&self) -> &'static str {
        match self {
            CrowdError::AlreadyScheduled => "CROWD_SEND_EXISTS",
            CrowdError::NotScheduled => "CROWD_SEND_NOT_FOUND",
            CrowdError::Cancelled => "CROWD_SEND_CANCELLED",
            CrowdError::Finished => "CROWD_SEND_FINISHED",
            CrowdError::NotRunning(_) => "CROWD_SEND_NOT_RUNNING",
            CrowdError::AlreadyRunning => "CROWD_SEND_RUNNING",
            CrowdError::WrongBatch { .. } => "CROWD_BATCH_OUT_OF_ORDER",
            CrowdError::InvalidSchedule(_) => "INVALID_SCHEDULE",
        }
    }
}

impl CrowdState {
    pub fn status_str(&self) -> &'static str {
        self.status.map_or("NONE", CrowdStatus::as_str)
    }

    fn open(&self) -> Result<CrowdStatus, CrowdError> {
        match self.status {
            None => Err(CrowdError::NotScheduled),
            Some(CrowdStatus::Cancelled) => Err(CrowdError::Cancelled),
            Some(CrowdStatus::Completed) => Err(CrowdError::Finished),
            Some(status) => Ok(status),
        }
    }

    fn running(&self) -> Result<(), CrowdError> {
        match self.open()? {
            CrowdStatus::Running => Ok(()),
            other => Err(CrowdError::NotRunning(other.as_str())),
        }
    }

    /// Where the schedule goes after a run: the next cron firing after `now`, or finished.
    fn after_run(&mut self, next_run_at: Option<DateTime<Utc>>, at: DateTime<Utc>) {
        self.next_run_at = next_run_at;
        if next_run_at.is_some() {
            self.status = Some(CrowdStatus::Scheduled);
        } else {
            self.status = Some(CrowdStatus::Completed);
            self.finished_at = Some(at);
        }
    }
}

/// Applies one event; refuses one the rules do not allow, so a damaged stream is noticed.
pub fn apply(mut state: CrowdState, event: &CrowdEvent) -> Result<CrowdState, CrowdError> {
    match event {
        CrowdEvent::CrowdSendScheduled(e) => {
            if state.status.is_some() {
                return Err(CrowdError::AlreadyScheduled);
            }
            state.status = Some(CrowdStatus::Scheduled);
            state.next_run_at = Some(e.first_run_at);
            state.scheduled = Some(e.clone());
        }
        CrowdEvent::CrowdSendStarted(e) => {
            if state.open()? == CrowdStatus::Running {
                return Err(CrowdError::AlreadyRunning);
            }
            state.status = Some(CrowdStatus::Running);
            state.run = e.run;
            state.run_started_at = Some(e.at);
            state.run_due_at = Some(e.due_at);
            state.next_run_at = None;
            state.batch = 0;
            state.last_line = 0;
            state.offset = 0;
            state.total_bytes = None;
            state.rows_read = 0;
            state.accepted = 0;
            state.rejected = 0;
            state.errors.clear();
            state.last_batch_at = None;
            state.failure = None;
        }
        CrowdEvent::CrowdBatchAccepted(e) => {
            state.running()?;
            if e.run != state.run || e.batch != state.batch + 1 {
                return Err(CrowdError::WrongBatch {
                    run: e.run,
                    expected: state.batch + 1,
                    got: e.batch,
                });
            }
            state.batch = e.batch;
            state.last_line = e.last_line;
            state.offset = e.offset;
            state.total_bytes = e.total_bytes.or(state.total_bytes);
            state.rows_read += u64::from(e.rows);
            state.accepted += e.message_ids.len() as u64;
            state.rejected += e.rejected.len() as u64;
            let room = MAX_KEPT_ERRORS.saturating_sub(state.errors.len());
            state.errors.extend(e.rejected.iter().take(room).cloned());
            state.last_batch_at = Some(e.at);
        }
        CrowdEvent::CrowdSendCompleted(e) => {
            state.running()?;
            state.after_run(e.next_run_at, e.at);
        }
        CrowdEvent::CrowdRunFailed(e) => {
            state.running()?;
            state.failure = Some((e.code.clone(), e.message.clone()));
            state.after_run(e.next_run_at, e.at);
        }
        CrowdEvent::CrowdRunSkipped(e) => {
            if state.open()? == CrowdStatus::Running {
                return Err(CrowdError::AlreadyRunning);
            }
            state.skipped_runs += 1;
            state.after_run(e.next_run_at, e.at);
        }
        CrowdEvent::CrowdSendCancelled(e) => {
            state.open()?;
            state.status = Some(CrowdStatus::Cancelled);
            state.next_run_at = None;
            state.finished_at = Some(e.at);
        }
    }
    Ok(state)
}

pub fn fold(events: &[CrowdEvent]) -> Result<CrowdState, CrowdError> {
    events.iter().try_fold(CrowdState::default(), apply)
}

/// What a crowd send may be asked to do. Times and ids arrive with the command.
#[derive(Debug, Clone, PartialEq)]
pub enum CrowdCommand {
    Schedule(Box<CrowdSendScheduled>),
    Start {
        due_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    AcceptBatch(Box<CrowdBatchAccepted>),
    /// The run read its whole file; `next_run_at` comes from [`next_run`].
    Complete {
        next_run_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    FailRun {
        code: String,
        message: String,
        next_run_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    SkipRun {
        due_at: DateTime<Utc>,
        next_run_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    Cancel {
        actor: String,
        at: DateTime<Utc>,
    },
}

/// The events a command makes, by the same rules `apply` checks.
pub fn decide(state: &CrowdState, command: CrowdCommand) -> Result<Vec<CrowdEvent>, CrowdError> {
    let event = match command {
        CrowdCommand::Schedule(e) => {
            if let CrowdSchedule::Cron {
                expression, zone, ..
            } = &e.schedule
            {
                Cron::parse(expression).map_err(|e| CrowdError::InvalidSchedule(e.to_string()))?;
                parse_zone(zone).ok_or_else(|| {
                    CrowdError::InvalidSchedule(format!(
                        "zone {zone:?} is not a UTC offset such as +08:00"
                    ))
                })?;
            }
            CrowdEvent::CrowdSendScheduled(*e)
        }
        CrowdCommand::Start { due_at, at } => CrowdEvent::CrowdSendStarted(CrowdSendStarted {
            run: state.run + 1,
            due_at,
            at,
        }),
        CrowdCommand::AcceptBatch(e) => CrowdEvent::CrowdBatchAccepted(*e),
        CrowdCommand::Complete { next_run_at, at } => {
            CrowdEvent::CrowdSendCompleted(CrowdSendCompleted {
                run: state.run,
                next_run_at,
                at,
            })
        }
        CrowdCommand::FailRun {
            code,
            message,
            next_run_at,
            at,
        } => CrowdEvent::CrowdRunFailed(CrowdRunFailed {
            run: state.run,
            code,
            message,
            next_run_at,
            at,
        }),
        CrowdCommand::SkipRun {
            due_at,
            next_run_at,
            at,
        } => CrowdEvent::CrowdRunSkipped(CrowdRunSkipped {
            due_at,
            next_run_at,
            at,
        }),
        CrowdCommand::Cancel { actor, at } => {
            CrowdEvent::CrowdSendCancelled(CrowdSendCancelled { actor, at })
        }
    };
    apply(state.clone(), &event)?;
    Ok(vec![event])
}

/// The firing after `after` of a cron schedule; `None` for a one-off send (or a cron that never
/// fires again).
pub fn next_run(schedule: &CrowdSchedule, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match schedule {
        CrowdSchedule::Once { .. } => None,
        CrowdSchedule::Cron {
            expression, zone, ..
        } => Cron::parse(expression)
            .ok()?
            .next_after(after, parse_zone(zone)?),
    }
}

/// What to do with a run that was due at `due_at`, seen at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firing {
    /// Start the run now.
    Run,
    /// A missed cron firing under `Misfire::Skip`: record the skip, wait for `next`.
    Skip { next: Option<DateTime<Utc>> },
}

/// A cron firing more than `grace` late is a misfire, handled by the schedule's policy; a
/// one-off send always runs, however late.
pub fn firing(
    schedule: &CrowdSchedule,
    due_at: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: chrono::TimeDelta,
) -> Firing {
    match schedule {
        CrowdSchedule::Cron {
            misfire: Misfire::Skip,
            ..
        } if now - due_at > grace => Firing::Skip {
            next: next_run(schedule, now),
        },
        _ => Firing::Run,
    }
}
