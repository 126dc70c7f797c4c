//! The parts of appending and reading that do not depend on the backend: validating a batch,
//! checking expectations, recognising an idempotent retry, and choosing the next checkpoint.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::types::{Checkpoint, RecordedEvent, StreamAppend};

/// The current version of each stream named in a batch (`None`: no stream).
pub(crate) type Versions = HashMap<String, Option<u64>>;

/// Longest stream id accepted; ids are `category-uuid` or similar, far below this.
const MAX_STREAM_ID: usize = 512;

pub(crate) fn validate(appends: &[StreamAppend]) -> Result<()> {
    if appends.is_empty() {
        return Err(StoreError::InvalidAppend("no streams".into()));
    }
    let mut seen = HashSet::with_capacity(appends.len());
    for append in appends {
        let id = &append.stream_id;
        check_stream_id(id)?;
        if !seen.insert(id.as_str()) {
            return Err(StoreError::InvalidAppend(format!(
                "stream {id} named twice"
            )));
        }
        if append.events.is_empty() {
            return Err(StoreError::InvalidAppend(format!(
                "no events for stream {id}"
            )));
        }
    }
    Ok(())
}

/// A stream id must be non-empty, at most [`MAX_STREAM_ID`] bytes and free of control characters.
pub(crate) fn check_stream_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_STREAM_ID || id.chars().any(char::is_control) {
        return Err(StoreError::InvalidAppend(format!("bad stream id {id:?}")));
    }
    Ok(())
}

/// Checks every expectation against the current versions. Returns the new version of each
/// stream and the position its first new event takes, in the batch's order.
pub(crate) fn check_expectations(
    appends: &[StreamAppend],
    current: &Versions,
) -> Result<(Vec<u64>, Vec<u64>)> {
    let mut versions = Vec::with_capacity(appends.len());
    let mut starts = Vec::with_capacity(appends.len());
    for append in appends {
        let actual = current.get(&append.stream_id).copied().flatten();
        if !append.expected.accepts(actual) {
            return Err(StoreError::WrongExpectedVersion {
                stream_id: append.stream_id.clone(),
                expected: append.expected,
                actual,
            });
        }
        let start = actual.unwrap_or(0) + 1;
        starts.push(start);
        versions.push(start + append.events.len() as u64 - 1);
    }
    Ok((versions, starts))
}

/// Decides whether a failed append was a retry of one already stored: every event id is found
/// in the stream the batch puts it in. Returns that first append's versions; `None` when none
/// of the ids is stored; an error when only some are, or elsewhere.
pub(crate) fn match_retry(
    appends: &[StreamAppend],
    found: &HashMap<Uuid, (String, i64)>,
) -> Result<Option<Vec<u64>>> {
    if found.is_empty() {
        return Ok(None);
    }
    let mut versions = Vec::with_capacity(appends.len());
    for append in appends {
        let mut version = 0u64;
        for event in &append.events {
            match found.get(&event.event_id) {
                Some((stream, position)) if *stream == append.stream_id => {
                    version = version.max(*position as u64);
                }
                _ => {
                    let event_id = found.keys().next().copied();
                    return Err(StoreError::DuplicateEventId { event_id });
                }
            }
        }
        versions.push(version);
    }
    Ok(Some(versions))
}

/// Where a reader resumes. A full batch resumes after its last event; a short one after
/// everything the backend scanned (`scanned`), which may be past the last matching event.
pub(crate) fn next_checkpoint(
    after: Checkpoint,
    events: &[RecordedEvent],
    limit: usize,
    scanned: Checkpoint,
) -> Checkpoint {
    let last = events.last().map_or(after, |e| e.checkpoint);
    if events.len() >= limit {
        last
    } else {
        last.max(scanned).max(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ExpectedVersion, NewEvent};

    fn append(stream: &str, expected: ExpectedVersion, n: usize) -> StreamAppend {
        StreamAppend {
            stream_id: stream.into(),
            expected,
            events: (0..n)
                .map(|_| {
                    NewEvent::new(
                        "Happened",
                        1,
                        &serde_json::json!({}),
                        &serde_json::json!({}),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn a_batch_must_name_each_stream_once_with_events() {
        assert!(validate(&[]).is_err());
        assert!(validate(&[append("a-1", ExpectedVersion::Any, 0)]).is_err());
        let twice = [
            append("a-1", ExpectedVersion::Any, 1),
            append("a-1", ExpectedVersion::Any, 1),
        ];
        assert!(validate(&twice).is_err());
        assert!(validate(&[append("", ExpectedVersion::Any, 1)]).is_err());
        assert!(validate(&[append("a-1", ExpectedVersion::Any, 1)]).is_ok());
    }

    #[test]
    fn expectations_give_positions_after_the_current_version() {
        let current: Versions = [("a-1".to_owned(), Some(3)), ("b-1".to_owned(), None)].into();
        let batch = [
            append("a-1", ExpectedVersion::Exact(3), 2),
            append("b-1", ExpectedVersion::NoStream, 1),
        ];
        let (versions, starts) = check_expectations(&batch, &current).expect("accepted");
        assert_eq!(versions, vec![5, 1]);
        assert_eq!(starts, vec![4, 1]);

        let stale = [append("a-1", ExpectedVersion::Exact(2), 1)];
        match check_expectations(&stale, &current) {
            Err(StoreError::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, Some(3)),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn a_retry_is_recognised_only_when_every_event_is_where_the_batch_puts_it() {
        let batch = [append("a-1", ExpectedVersion::NoStream, 2)];
        let ids: Vec<Uuid> = batch[0].events.iter().map(|e| e.event_id).collect();
        let none = HashMap::new();
        assert_eq!(match_retry(&batch, &none).expect("ok"), None);

        let all: HashMap<_, _> = [
            (ids[0], ("a-1".to_owned(), 1)),
            (ids[1], ("a-1".to_owned(), 2)),
        ]
        .into();
        assert_eq!(match_retry(&batch, &all).expect("ok"), Some(vec![2]));

        let partial: HashMap<_, _> = [(ids[0], ("a-1".to_owned(), 1))].into();
        assert!(match_retry(&batch, &partial).is_err());

        let elsewhere: HashMap<_, _> = [
            (ids[0], ("b-1".to_owned(), 1)),
            (ids[1], ("b-1".to_owned(), 2)),
        ]
        .into();
        assert!(match_retry(&batch, &elsewhere).is_err());
    }
}
