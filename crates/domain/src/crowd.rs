//! A crowd send: one template to a whole audience read from a CSV, once or on a cron schedule.
//! Its stream (`crowd-{uuid}`) records the schedule, each run's start, every batch of rows turned
//! into messages, the end of each run, and a cancel. A batch's messages are appended in the same
//! commit as its `CrowdBatchAccepted`, with the crowd stream's expected version, so a run resumed
//! after a crash goes on after the last batch recorded and no row becomes two messages.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::ids::CrowdId;
use crate::ids::{MessageId, RequestId, TemplateId, TenantId};
use crate::wire::{DomainEvent, EventDecodeError, from_payload, to_payload, unsupported_version};

/// Where the audience comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CrowdSource {
    /// A file uploaded to `/uploads`.
    Upload { upload_id: String },
    /// An http(s) URL, fetched (streamed) at each run.
    Url { url: String },
}

/// What to do with a cron firing that was missed (Herald was down, or a run overran it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Misfire {
    /// Skip it and wait for the next firing.
    Skip,
    /// Run once, late, however many firings were missed.
    RunOnceLate,
}

impl Misfire {
    pub fn as_str(self) -> &'static str {
        match self {
            Misfire::Skip => "SKIP",
            Misfire::RunOnceLate => "RUN_ONCE_LATE",
        }
    }
}

/// When a crowd send runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CrowdSchedule {
    /// Once, at `send_at` (or at once).
    Once { send_at: Option<DateTime<Utc>> },
    /// Each time the cron expression fires in `zone` (an offset such as `+08:00`).
    Cron {
        expression: String,
        zone: String,
        misfire: Misfire,
    },
}

/// A row that did not become a message, by its line in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    pub line: u64,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrowdSendScheduled {
    pub crowd_id: CrowdId,
    pub tenant: TenantId,
    pub request_id: RequestId,
    pub template_id: TemplateId,
    pub source: CrowdSource,
    /// The header of the column that holds the receivers.
    #[serde(default = "receiver_column")]
    pub receiver_column: String,
    pub schedule: CrowdSchedule,
    /// When the first run is due.
    pub first_run_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrowdSendStarted {
    pub run: u32,
    /// The time the run was due (a cron firing, or `sendAt`).
    pub due_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrowdBatchAccepted {
    pub run: u32,
    pub batch: u32,
    /// The last line of the file this batch read (the header is line 1).
    pub last_line: u64,
    /// The byte offset just after that line: where the next batch starts reading.
    pub offset: u64,
    /// The file's size, when known, for the estimate of the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    /// Data rows read (blank lines are not rows).
    pub rows: u32,
    pub message_ids: Vec<MessageId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RowError>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrowdSendCompleted {
    pub run: u32,
    /// A cron schedule's next firing; none for a one-off send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

/// A whole run failed before reading its rows (the file is gone, the URL answers 404, the header
/// lacks the receiver column...). A cron schedule goes on with its next firing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrowdRunFailed {
    pub run: u32,
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

/// A cron firing missed and skipped under `Misfire::Skip`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrowdRunSkipped {
    pub due_at: DateTime<Utc>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrowdSendCancelled {
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrowdEvent {
    CrowdSendScheduled(CrowdSendScheduled),
    CrowdSendStarted(CrowdSendStarted),
    CrowdBatchAccepted(CrowdBatchAccepted),
    CrowdSendCompleted(CrowdSendCompleted),
    CrowdRunFailed(CrowdRunFailed),
    CrowdRunSkipped(CrowdRunSkipped),
    CrowdSendCancelled(CrowdSendCancelled),
}

impl DomainEvent for CrowdEvent {
    const SCHEMA_VERSION: u16 = 1;
    const EVENT_TYPES: &'static [&'static str] = &[
        "CrowdSendScheduled",
        "CrowdSendStarted",
        "CrowdBatchAccepted",
        "CrowdSendCompleted",
        "CrowdRunFailed",
        "CrowdRunSkipped",
        "CrowdSendCancelled",
    ];

    fn event_type(&self) -> &'static str {
        match self {
            CrowdEvent::CrowdSendScheduled(_) => "CrowdSendScheduled",
            CrowdEvent::CrowdSendStarted(_) => "CrowdSendStarted",
            CrowdEvent::CrowdBatchAccepted(_) => "CrowdBatchAccepted",
            CrowdEvent::CrowdSendCompleted(_) => "CrowdSendCompleted",
            CrowdEvent::CrowdRunFailed(_) => "CrowdRunFailed",
            CrowdEvent::CrowdRunSkipped(_) => "CrowdRunSkipped",
            CrowdEvent::CrowdSendCancelled(_) => "CrowdSendCancelled",
        }
    }

    fn encode(&self) -> Value {
        match self {
            CrowdEvent::CrowdSendScheduled(e) => to_payload(e),
            CrowdEvent::CrowdSendStarted(e) => to_payload(e),
            CrowdEvent::CrowdBatchAccepted(e) => to_payload(e),
            CrowdEvent::CrowdSendCompleted(e) => to_payload(e),
            CrowdEvent::CrowdRunFailed(e) => to_payload(e),
            CrowdEvent::CrowdRunSkipped(e) => to_payload(e),
            CrowdEvent::CrowdSendCancelled(e) => to_payload(e),
        }
    }

    fn decode(
        event_type: &str,
        schema_version: u16,
        data: &Value,
    ) -> Result<Self, EventDecodeError> {
        if schema_version != Self::SCHEMA_VERSION {
            return Err(unsupported_version(
                event_type,
                schema_version,
                Self::SCHEMA_VERSION,
            ));
        }
        Ok(match event_type {
            "CrowdSendScheduled" => CrowdEvent::CrowdSendScheduled(from_payload(event_type, data)?),
            "CrowdSendStarted" => CrowdEvent::CrowdSendStarted(from_payload(event_type, data)?),
            "CrowdBatchAccepted" => CrowdEvent::CrowdBatchAccepted(from_payload(event_type, data)?),
            "CrowdSendCompleted" => CrowdEvent::CrowdSendCompleted(from_payload(event_type, data)?),
            "CrowdRunFailed" => CrowdEvent::CrowdRunFailed(from_payload(event_type, data)?),
            "CrowdRunSkipped" => CrowdEvent::CrowdRunSkipped(from_payload(event_type, data)?),
            "CrowdSendCancelled" => CrowdEvent::CrowdSendCancelled(from_payload(event_type, data)?),
            other => {
                return Err(EventDecodeError::UnknownType {
                    event_type: other.to_owned(),
                });
            }
        })
    }
}

fn receiver_column() -> String {
    "receiver".to_owned()
}
