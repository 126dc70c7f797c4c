//! `herald crowd status ID`: a crowd send's schedule and the progress of its current (or last)
//! run, read from its stream, as a table for a terminal or as one JSON object; `--watch` redraws
//! it every second until the send is over.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use commands::crowd;
use domain::crowd::{CrowdSchedule, CrowdSource};
use domain::{CrowdId, CrowdState, CrowdStatus};
use serde_json::{Value, json};
use store::Store;
use tokio_util::sync::CancellationToken;

use crate::cli::Exit;
use crate::replay::{clock, thousands};

/// The row errors the table shows; `--json` gives every one kept (at most 100).
const SHOWN_ERRORS: usize = 10;

/// How the status is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Show {
    /// Redraw every second until the send is over.
    pub watch: bool,
    /// One JSON object (one line per change with `watch`) instead of the table.
    pub json: bool,
}

/// Prints crowd send `id`; a malformed or unknown id is exit status 2.
pub async fn status(
    store: &Store,
    id: &str,
    show: Show,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let id: CrowdId = id.trim().parse().map_err(|_| Exit {
        code: 2,
        message: Some(format!("{id:?} is not a crowd send id (a UUID)")),
    })?;
    let terminal = std::io::stdout().is_terminal();
    let mut last = String::new();
    let mut drawn = 0;
    loop {
        let state = match crowd::load_of_any_tenant(store, id).await {
            Ok(Some((state, _))) => state,
            Ok(None) => {
                return Err(Exit {
                    code: 2,
                    message: Some(format!("crowd send {id} not found")),
                }
                .into());
            }
            Err(error) => anyhow::bail!("reading crowd send {id}: {error}"),
        };
        let now = Utc::now();
        let text = if show.json {
            format!("{}\n", to_json(&state, now))
        } else {
            render(&state, now)
        };
        let mut stdout = std::io::stdout().lock();
        if show.watch && terminal && !show.json {
            // Over the last drawing, in place.
            if drawn > 0 {
                write!(stdout, "\x1b[{drawn}A\x1b[J")?;
            }
            write!(stdout, "{text}")?;
            drawn = text.lines().count();
        } else if text != last {
            // In a log or a pipe, a drawing only when something changed.
            if !last.is_empty() && !show.json {
                writeln!(stdout)?;
            }
            write!(stdout, "{text}")?;
        }
        stdout.flush()?;
        drop(stdout);
        last = text;
        if !show.watch || over(&state) {
            return Ok(());
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Nothing more will change without a new run: finished, cancelled, or its last run failed.
fn over(state: &CrowdState) -> bool {
    crowd::finished(state)
        || (state.failure.is_some() && state.status != Some(CrowdStatus::Running))
}

fn percent(state: &CrowdState) -> Option<f64> {
    match state.total_bytes {
        Some(0) => Some(100.0),
        Some(total) => Some((state.offset as f64 * 100.0 / total as f64).min(100.0)),
        None => None,
    }
}

/// The status as one JSON object, named like the GraphQL `crowdSend` fields.
pub fn to_json(state: &CrowdState, now: DateTime<Utc>) -> Value {
    let Some(scheduled) = &state.scheduled else {
        return Value::Null;
    };
    let source = match &scheduled.source {
        CrowdSource::Upload { upload_id } => json!({ "kind": "UPLOAD", "uploadId": upload_id }),
        CrowdSource::Url { url } => json!({ "kind": "URL", "url": url }),
    };
    let schedule = match &scheduled.schedule {
        CrowdSchedule::Once { send_at } => json!({ "kind": "ONCE", "sendAt": send_at }),
        CrowdSchedule::Cron {
            expression,
            zone,
            misfire,
        } => json!({ "kind": "CRON", "expression": expression, "zone": zone,
            "misfire": misfire.as_str() }),
    };
    json!({
        "id": scheduled.crowd_id.to_string(),
        "tenant": scheduled.tenant.as_str(),
        "templateId": scheduled.template_id.to_string(),
        "requestId": scheduled.request_id.as_str(),
        "source": source,
        "receiverColumn": scheduled.receiver_column,
        "schedule": schedule,
        "status": state.status_str(),
        "run": state.run,
        "skippedRuns": state.skipped_runs,
        "startedAt": state.run_started_at,
        "rowsRead": state.rows_read,
        "accepted": state.accepted,
        "rejected": state.rejected,
        "bytesRead": state.offset,
        "totalBytes": state.total_bytes,
        "percent": percent(state),
        "estimatedEnd": crowd::estimate_end(state, now),
        "nextRunAt": state.next_run_at,
        "finishedAt": state.finished_at,
        "failure": state.failure.as_ref().map(|(code, message)| json!({ "code": code, "message": message })),
        "errors": state.errors,
    })
}

/// The status as a table for a terminal.
pub fn render(state: &CrowdState, now: DateTime<Utc>) -> String {
    let Some(scheduled) = &state.scheduled else {
        return String::new();
    };
    let source = match &scheduled.source {
        CrowdSource::Upload { upload_id } => format!("upload {upload_id}"),
        CrowdSource::Url { url } => format!("url {url}"),
    };
    let schedule = match &scheduled.schedule {
        CrowdSchedule::Once { send_at: None } => "once, at once".to_owned(),
        CrowdSchedule::Once { send_at: Some(at) } => format!("once, at {}", time(*at)),
        CrowdSchedule::Cron {
            expression,
            zone,
            misfire,
        } => format!(
            "cron \"{expression}\" in {zone}, misfire {}",
            misfire.as_str()
        ),
    };
    let run = match state.run_started_at {
        None => "none yet".to_owned(),
        Some(started) => format!("{}, started {}", state.run, time(started)),
    };
    let bytes = match (state.total_bytes, percent(state)) {
        (Some(total), Some(percent)) => format!(
            "{} of {} ({percent:.1}%)",
            thousands(state.offset),
            thousands(total)
        ),
        _ => format!("{} (size unknown)", thousands(state.offset)),
    };
    let estimated = crowd::estimate_end(state, now).map_or_else(
        || "-".to_owned(),
        |end| {
            let left = (end - now).num_seconds().max(0) as u64;
            format!("{} (in {})", time(end), clock(left))
        },
    );
    let failure = state.failure.as_ref().map_or_else(
        || "-".to_owned(),
        |(code, message)| format!("{code}: {}", shorten(message, 100)),
    );
    let mut facts = vec![
        ("crowd send", scheduled.crowd_id.to_string()),
        ("tenant", scheduled.tenant.to_string()),
        ("template", scheduled.template_id.to_string()),
        ("request", scheduled.request_id.to_string()),
        ("source", source),
        ("schedule", schedule),
        ("status", state.status_str().to_owned()),
        ("run", run),
        (
            "rows",
            format!(
                "{} read, {} accepted, {} rejected",
                thousands(state.rows_read),
                thousands(state.accepted),
                thousands(state.rejected)
            ),
        ),
        ("bytes", bytes),
        ("estimated", estimated),
        ("next run", state.next_run_at.map_or("-".to_owned(), time)),
        ("finished", state.finished_at.map_or("-".to_owned(), time)),
        ("failure", failure),
    ];
    if matches!(scheduled.schedule, CrowdSchedule::Cron { .. }) {
        facts.push(("skipped", format!("{} missed firings", state.skipped_runs)));
    }
    let mut out = String::new();
    for (name, value) in facts {
        out.push_str(&format!("{name:<12}{value}\n"));
    }
    if !state.errors.is_empty() {
        let shown = &state.errors[..state.errors.len().min(SHOWN_ERRORS)];
        out.push('\n');
        let line_width = shown
            .iter()
            .map(|e| e.line.to_string().len())
            .chain(["LINE".len()])
            .max()
            .unwrap_or(4);
        let code_width = shown
            .iter()
            .map(|e| e.code.len())
            .chain(["CODE".len()])
            .max()
            .unwrap_or(4);
        out.push_str(&format!(
            "{:<line_width$}  {:<code_width$}  MESSAGE\n",
            "LINE", "CODE"
        ));
        for error in shown {
            let row = format!(
                "{:<line_width$}  {:<code_width$}  {}",
                error.line,
                error.code,
                shorten(&error.message, 100)
            );
            out.push_str(row.trim_end());
            out.push('\n');
        }
        let more = state.rejected.saturating_sub(shown.len() as u64);
        if more > 0 {
            out.push_str(&format!("… and {} more rejected rows\n", thousands(more)));
        }
    }
    out
}

fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn shorten(text: &str, max: usize) -> String {
    let text = text.replace(['\n', '\r', '\t'], " ");
    if text.chars().count() <= max {
        text
    } else {
        let kept: String = text.chars().take(max - 1).collect();
        format!("{kept}…")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use domain::crowd::{CrowdBatchAccepted, CrowdEvent, CrowdSendScheduled, RowError};
    use domain::crowd_state;
    use domain::{RequestId, TemplateId, TenantId};

    fn running() -> CrowdState {
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let id = CrowdId::generate();
        let events = [
            CrowdEvent::CrowdSendScheduled(CrowdSendScheduled {
                crowd_id: id,
                tenant: TenantId::parse("acme").unwrap(),
                request_id: RequestId::parse("spring").unwrap(),
                template_id: TemplateId::generate(),
                source: CrowdSource::Url {
                    url: "https://files.test/a.csv".into(),
                },
                receiver_column: "receiver".into(),
                schedule: CrowdSchedule::Once { send_at: None },
                first_run_at: at,
                at,
            }),
            CrowdEvent::CrowdSendStarted(domain::crowd::CrowdSendStarted {
                run: 1,
                due_at: at,
                at,
            }),
            CrowdEvent::CrowdBatchAccepted(CrowdBatchAccepted {
                run: 1,
                batch: 1,
                last_line: 1_501,
                offset: 25_000,
                total_bytes: Some(100_000),
                rows: 1_500,
                message_ids: (0..1_488).map(|_| domain::MessageId::generate()).collect(),
                rejected: (0..12)
                    .map(|i| RowError {
                        line: 10 + i,
                        code: "INVALID_PHONE".into(),
                        message: format!("receiver {i}"),
                    })
                    .collect(),
                at: at + chrono::TimeDelta::seconds(10),
            }),
        ];
        crowd_state::fold(&events).unwrap()
    }

    #[test]
    fn the_table_shows_the_counts_the_share_read_and_the_first_errors() {
        let state = running();
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 15).unwrap();
        let text = render(&state, now);
        assert!(text.contains("status      RUNNING\n"), "{text}");
        assert!(
            text.contains("rows        1,500 read, 1,488 accepted, 12 rejected\n"),
            "{text}"
        );
        assert!(
            text.contains("bytes       25,000 of 100,000 (25.0%)\n"),
            "{text}"
        );
        // A quarter in ten seconds: thirty more.
        assert!(
            text.contains("estimated   2026-01-02 03:04:45 UTC (in 0:30)\n"),
            "{text}"
        );
        assert!(text.contains("LINE  CODE           MESSAGE\n"), "{text}");
        assert!(text.contains("10    INVALID_PHONE  receiver 0\n"), "{text}");
        assert!(!text.contains("receiver 10"), "{text}");
        assert!(text.ends_with("… and 2 more rejected rows\n"), "{text}");

        let value = to_json(&state, now);
        assert_eq!(value["accepted"], 1_488);
        assert_eq!(value["percent"], 25.0);
        assert_eq!(value["errors"].as_array().unwrap().len(), 12);
        assert_eq!(value["source"]["url"], "https://files.test/a.csv");
        assert!(!over(&state));
    }
}
