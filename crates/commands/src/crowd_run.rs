//! A crowd send's runs. A runner claims a due send from the schedule (a lease, so one runner at
//! a time and another after a crash), starts a run (or skips a missed cron firing), reads the
//! file a chunk at a time from where the last batch ended, and turns each batch of rows into
//! messages: the messages, the batch's `CrowdBatchAccepted`, their dispatch-queue rows and the
//! lease's extension commit together, appended with the crowd stream's expected version. So a
//! run killed half way resumes after its last batch with no row sent twice, and a cancel (which
//! appends to the same stream) stops the next batch from committing.
//!
//! The runner is throttled: at most `rows_per_sec` rows, and it waits while its lane's queue
//! holds more than `max_backlog` messages, so a crowd send never floods the queue ahead of
//! real-time traffic; its messages go through the same lanes and policies as any other.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use domain::crowd::{CrowdBatchAccepted, CrowdSource, RowError};
use domain::crowd_state::{self, CrowdCommand, CrowdState, CrowdStatus, Firing};
use domain::{CrowdId, EventMetadata, MessageId, Receiver, RequestId, TemplateContent, TenantId};
use std::collections::{BTreeMap, VecDeque};
use store::crowd::ClaimedCrowd;
use store::queue::QueueRow;
use store::{EventStore, ExpectedVersion, Store, StreamAppend};
use tokio_util::sync::CancellationToken;

use crate::csv::{Line, LineSplitter, fields};
use crate::error::CommandError;
use crate::events;
use crate::links::LinkSigner;
use crate::send::Accept;

/// How a runner paces itself.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Rows per batch: one commit each.
    pub batch_size: usize,
    /// The most rows a runner turns into messages per second.
    pub rows_per_sec: u32,
    /// While the lane's queue holds more messages than this, the runner waits.
    pub max_backlog: u64,
    /// How long a claim lasts; extended with every batch.
    pub lease: Duration,
    /// A cron firing later than this is a misfire.
    pub misfire_grace: TimeDelta,
    /// How often to look for due sends when there are none.
    pub poll: Duration,
    /// The longest line read; a longer one is a rejected row.
    pub max_line: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            batch_size: 500,
            rows_per_sec: 5_000,
            max_backlog: 50_000,
            lease: Duration::from_secs(30),
            misfire_grace: TimeDelta::seconds(60),
            poll: Duration::from_secs(1),
            max_line: 64 * 1024,
        }
    }
}

/// What a runner needs.
#[derive(Clone)]
pub struct Runner {
    pub store: Store,
    pub links: LinkSigner,
    pub http: reqwest::Client,
    pub options: RunOptions,
    /// The runner's name on its claims.
    pub worker: String,
    /// The time; tests give one that follows tokio's paused clock.
    pub clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
}

/// The columns of a file: which holds the receiver, and which each placeholder.
#[derive(Debug, Clone)]
pub struct Columns {
    receiver: usize,
    variables: Vec<(String, usize)>,
}

impl Columns {
    /// Reads a header line; every placeholder of `content` needs a column of its name.
    pub fn new(
        header: &str,
        receiver_column: &str,
        content: &TemplateContent,
    ) -> Result<Columns, CommandError> {
        let header = header.strip_prefix('\u{feff}').unwrap_or(header);
        let names = fields(header).map_err(|e| {
            CommandError::validation("BAD_HEADER", format!("line 1 (the header): {e}"))
        })?;
        let find = |wanted: &str| {
            names
                .iter()
                .position(|n| n.trim().eq_ignore_ascii_case(wanted.trim()))
        };
        let receiver = find(receiver_column).ok_or_else(|| {
            CommandError::validation(
                "MISSING_COLUMN",
                format!("the header has no {receiver_column:?} column for the receivers"),
            )
            .with("column", receiver_column)
        })?;
        let mut variables = Vec::new();
        let mut missing = Vec::new();
        for name in content.placeholders() {
            match find(&name) {
                Some(at) => variables.push((name, at)),
                None => missing.push(name),
            }
        }
        if !missing.is_empty() {
            return Err(CommandError::validation(
                "MISSING_COLUMN",
                format!(
                    "the header has no column for the placeholders {}",
                    missing.join(", ")
                ),
            )
            .with("columns", missing));
        }
        Ok(Columns {
            receiver,
            variables,
        })
    }
}

/// The first line of an upload.
pub async fn read_header(store: &Store, upload_id: &str) -> Result<String, CommandError> {
    let mut splitter = LineSplitter::new(0, 1, 64 * 1024);
    let mut offset = 0;
    while let Some((start, data)) = store::crowd::chunk_at(store, upload_id, offset).await? {
        if let Some(line) = splitter
            .push(&data[(offset - start) as usize..])
            .into_iter()
            .next()
        {
            return header_text(line);
        }
        offset = start + data.len() as u64;
    }
    match splitter.finish() {
        Some(line) => header_text(line),
        None => Err(CommandError::validation("EMPTY_FILE", "the file is empty")),
    }
}

fn header_text(line: Line) -> Result<String, CommandError> {
    line.text
        .map_err(|e| CommandError::validation("BAD_HEADER", format!("line 1 (the header): {e}")))
}

/// A file read a chunk at a time.
enum Reader {
    Upload {
        store: Store,
        id: String,
        offset: u64,
    },
    Http(reqwest::Response),
}

impl Reader {
    async fn next(&mut self) -> Result<Option<Vec<u8>>, (String, String)> {
        match self {
            Reader::Upload { store, id, offset } => {
                match store::crowd::chunk_at(store, id, *offset).await {
                    Ok(Some((start, data))) => {
                        let from = (*offset - start) as usize;
                        *offset = start + data.len() as u64;
                        Ok(Some(data[from..].to_vec()))
                    }
                    Ok(None) => Ok(None),
                    Err(e) => Err(("SOURCE_UNAVAILABLE".into(), e.to_string())),
                }
            }
            Reader::Http(response) => match response.chunk().await {
                Ok(chunk) => Ok(chunk.map(|b| b.to_vec())),
                Err(e) => Err(("SOURCE_UNAVAILABLE".into(), format!("reading the URL: {e}"))),
            },
        }
    }
}

/// What happens to the send's place on the schedule in a commit.
enum Place {
    Keep,
    /// Due at this time, released from the claim; `None` takes it off the schedule.
    Due(Option<DateTime<Utc>>),
}

/// A run's working set.
struct Run {
    id: CrowdId,
    tenant: TenantId,
    state: CrowdState,
    version: u64,
    metadata: EventMetadata,
}

impl Runner {
    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Runs due crowd sends, one at a time, until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let wait = self.tick(&shutdown).await;
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One turn of [`Runner::run`]: claims the send due longest and does what it is due for;
    /// answers how long to wait before the next turn (zero: at once).
    pub async fn tick(&self, shutdown: &CancellationToken) -> Duration {
        let lease_ms = self.options.lease.as_millis() as i64;
        match store::crowd::claim(&self.store, &self.worker, self.now(), lease_ms).await {
            Ok(Some(claimed)) => {
                if let Err(error) = self.run_one(&claimed, shutdown).await {
                    tracing::warn!(crowd = %claimed.crowd_id, %error, "crowd send run stopped; it resumes when its claim expires");
                }
                Duration::ZERO
            }
            Ok(None) => self.idle_wait().await,
            Err(error) => {
                tracing::warn!(%error, "claiming a crowd send failed");
                self.options.poll
            }
        }
    }

    /// How long to wait with nothing due: until the next send falls due, so a firing starts on
    /// its minute rather than up to a poll late, but no longer than a poll, to see sends that
    /// other processes schedule.
    async fn idle_wait(&self) -> Duration {
        match store::crowd::next_due(&self.store).await {
            Ok(Some(due)) => (due - self.now()).to_std().unwrap_or(Duration::ZERO).clamp(
                Duration::from_millis(10),
                self.options.poll.max(Duration::from_millis(10)),
            ),
            Ok(None) => self.options.poll,
            Err(error) => {
                tracing::warn!(%error, "reading the crowd schedule failed");
                self.options.poll
            }
        }
    }

    /// Does what a claimed send is due for: skip a missed firing, or start (or resume) a run and
    /// take it to its end, unless `shutdown` comes first.
    pub async fn run_one(
        &self,
        claimed: &ClaimedCrowd,
        shutdown: &CancellationToken,
    ) -> Result<(), CommandError> {
        let tenant = TenantId::parse(&claimed.tenant_id).map_err(CommandError::internal)?;
        let id: CrowdId = claimed.crowd_id.parse().map_err(CommandError::internal)?;
        let (state, version, _) = crate::crowd::load(&self.store, &tenant, id).await?;
        let Some(scheduled) = state.scheduled.clone() else {
            return Err(CommandError::internal("a claimed crowd send is scheduled"));
        };
        let metadata = EventMetadata::new(tenant.clone())
            .with_correlation_id(scheduled.request_id.as_str())
            .with_actor("crowd");
        let mut run = Run {
            id,
            tenant,
            state,
            version,
            metadata,
        };
        match run.state.status {
            Some(CrowdStatus::Running) => {}
            Some(CrowdStatus::Scheduled) => {
                let now = self.now();
                let due = run.state.next_run_at.unwrap_or(now);
                if due > now {
                    return self.place(&run, Place::Due(Some(due))).await;
                }
                let command = match crowd_state::firing(
                    &scheduled.schedule,
                    due,
                    now,
                    self.options.misfire_grace,
                ) {
                    Firing::Skip { next } => {
                        let skip = CrowdCommand::SkipRun {
                            due_at: due,
                            next_run_at: next,
                            at: now,
                        };
                        self.commit(&mut run, skip, Vec::new(), Vec::new(), Place::Due(next))
                            .await?;
                        return Ok(());
                    }
                    Firing::Run => CrowdCommand::Start {
                        due_at: due,
                        at: now,
                    },
                };
                if !self
                    .commit(&mut run, command, Vec::new(), Vec::new(), Place::Keep)
                    .await?
                {
                    return Ok(());
                }
            }
            // Finished or cancelled: nothing is due.
            _ => return self.place(&run, Place::Due(None)).await,
        }
        self.resume(&mut run, shutdown).await
    }

    /// Reads the file from where the run got to, a batch at a time, to its end.
    async fn resume(
        &self,
        run: &mut Run,
        shutdown: &CancellationToken,
    ) -> Result<(), CommandError> {
        let Some(scheduled) = run.state.scheduled.clone() else {
            return Err(CommandError::internal("a running crowd send is scheduled"));
        };
        let template = match crate::templates::load(&self.store, &run.tenant, scheduled.template_id)
            .await
            .and_then(|(t, _)| {
                t.sendable()
                    .map(|v| (t.clone(), v.clone()))
                    .map_err(Into::into)
            }) {
            Ok(found) => found,
            Err(error) => return self.fail(run, error.reason, error.message).await,
        };
        let (template, version) = template;
        let Some(info) = template.info.as_ref() else {
            return Err(CommandError::internal("a sendable template has info"));
        };
        // Open the file, read its header, and go to where the last batch ended.
        let (mut reader, total) = match &scheduled.source {
            CrowdSource::Upload { upload_id } => {
                match store::crowd::upload(&self.store, upload_id).await? {
                    Some(upload) => (
                        Reader::Upload {
                            store: self.store.clone(),
                            id: upload.id,
                            offset: 0,
                        },
                        Some(upload.bytes),
                    ),
                    None => {
                        let message = format!("upload {upload_id} is gone");
                        return self.fail(run, "SOURCE_UNAVAILABLE", message).await;
                    }
                }
            }
            CrowdSource::Url { url } => match self.http.get(url).send().await {
                Ok(response) if response.status().is_success() => {
                    let total = response.content_length();
                    (Reader::Http(response), total)
                }
                Ok(response) => {
                    let message = format!("{url} answered {}", response.status());
                    return self.fail(run, "SOURCE_UNAVAILABLE", message).await;
                }
                Err(error) => {
                    let message = format!("fetching {url}: {error}");
                    return self.fail(run, "SOURCE_UNAVAILABLE", message).await;
                }
            },
        };
        let mut splitter = LineSplitter::new(0, 1, self.options.max_line);
        let mut lines: VecDeque<Line> = VecDeque::new();
        let mut read_all = false;
        let header = loop {
            if let Some(line) = lines.pop_front() {
                break line;
            }
            if read_all {
                return self
                    .fail(run, "EMPTY_FILE", "the file is empty".into())
                    .await;
            }
            match reader.next().await {
                Ok(Some(chunk)) => lines.extend(splitter.push(&chunk)),
                Ok(None) => {
                    lines.extend(splitter.finish());
                    read_all = true;
                }
                Err((code, message)) => return self.fail(run, &code, message).await,
            }
        };
        let header = match header.text {
            Ok(text) => text,
            Err(e) => return self.fail(run, "BAD_HEADER", format!("line 1: {e}")).await,
        };
        let columns = match Columns::new(&header, &scheduled.receiver_column, &version.content) {
            Ok(columns) => columns,
            Err(error) => return self.fail(run, error.reason, error.message).await,
        };
        if run.state.offset > 0
            && let Reader::Upload { offset, .. } = &mut reader
        {
            // Straight to the next batch's first line.
            *offset = run.state.offset;
            splitter = LineSplitter::new(
                run.state.offset,
                run.state.last_line + 1,
                self.options.max_line,
            );
            lines.clear();
            read_all = false;
        }
        let request_id: RequestId = scheduled.request_id.clone();
        let lane = domain::lane(info.channel, info.msg_type);
        let paced_from = tokio::time::Instant::now();
        let mut paced_rows: u64 = 0;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            // The next batch of rows, skipping what earlier batches read.
            let mut batch: Vec<Line> = Vec::new();
            let mut rows = 0;
            while rows < self.options.batch_size {
                if let Some(line) = lines.pop_front() {
                    if line.end <= run.state.offset {
                        continue;
                    }
                    if line.text.as_ref().is_ok_and(|t| !t.trim().is_empty()) || line.text.is_err()
                    {
                        rows += 1;
                    }
                    batch.push(line);
                    continue;
                }
                if read_all {
                    break;
                }
                match reader.next().await {
                    Ok(Some(chunk)) => lines.extend(splitter.push(&chunk)),
                    Ok(None) => {
                        lines.extend(splitter.finish());
                        read_all = true;
                    }
                    Err((code, message)) => return self.fail(run, &code, message).await,
                }
            }
            let Some(last) = batch.last() else {
                // The end of the file: the run is complete.
                let now = self.now();
                let next = crowd_state::next_run(&scheduled.schedule, now);
                let complete = CrowdCommand::Complete {
                    next_run_at: next,
                    at: now,
                };
                self.commit(run, complete, Vec::new(), Vec::new(), Place::Due(next))
                    .await?;
                return Ok(());
            };
            let (last_line, offset) = (last.number, last.end);
            self.pace(&lane, &mut paced_rows, paced_from, rows as u64, shutdown)
                .await?;
            let lease_until = self.now()
                + TimeDelta::from_std(self.options.lease).unwrap_or(TimeDelta::seconds(30));
            if !store::crowd::extend(&self.store, &run.id.to_string(), &self.worker, lease_until)
                .await?
            {
                // Another runner has it now.
                return Ok(());
            }
            let now = self.now();
            let metadata = events::metadata_json(&run.metadata);
            let accept = Accept {
                links: &self.links,
                tenant: &run.tenant,
                request_id: &request_id,
                template_id: scheduled.template_id,
                info,
                version: &version,
                send_at: None,
                now,
                metadata: &metadata,
            };
            let mut appends = Vec::new();
            let mut message_ids = Vec::new();
            let mut rejected = Vec::new();
            for line in &batch {
                match row(
                    &accept,
                    &columns,
                    &version.content,
                    info.receiver_id_type,
                    line,
                ) {
                    Ok(None) => {}
                    Ok(Some((append, id))) => {
                        appends.push(append);
                        message_ids.push(id);
                    }
                    Err(error) => rejected.push(error),
                }
            }
            let queue: Vec<QueueRow> = message_ids
                .iter()
                .map(|id| QueueRow {
                    message_id: id.to_string(),
                    tenant_id: run.tenant.to_string(),
                    lane: lane.clone(),
                    due_at: now,
                })
                .collect();
            let accepted = CrowdCommand::AcceptBatch(Box::new(CrowdBatchAccepted {
                run: run.state.run,
                batch: run.state.batch + 1,
                last_line,
                offset,
                total_bytes: total,
                rows: rows as u32,
                message_ids,
                rejected,
                at: now,
            }));
            if !self
                .commit(run, accepted, appends, queue, Place::Keep)
                .await?
            {
                // Cancelled, or another runner moved on: stop here.
                return Ok(());
            }
        }
    }

    /// Waits while the lane is full or the runner is ahead of its pace.
    async fn pace(
        &self,
        lane: &str,
        paced_rows: &mut u64,
        from: tokio::time::Instant,
        rows: u64,
        shutdown: &CancellationToken,
    ) -> Result<(), CommandError> {
        *paced_rows += rows;
        let due = from
            + Duration::from_secs_f64(
                *paced_rows as f64 / f64::from(self.options.rows_per_sec.max(1)),
            );
        // Less than a millisecond ahead of the pace is on it.
        if due > tokio::time::Instant::now() + Duration::from_millis(1) {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep_until(due) => {}
            }
        }
        while store::queue::depth(&self.store, lane)
            .await
            .map_err(CommandError::internal)?
            > self.options.max_backlog
        {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        Ok(())
    }

    /// Ends the run as failed; a cron schedule goes on with its next firing.
    async fn fail(&self, run: &mut Run, code: &str, message: String) -> Result<(), CommandError> {
        tracing::warn!(crowd = %run.id, code, %message, "crowd send run failed");
        let now = self.now();
        let next = run
            .state
            .scheduled
            .as_ref()
            .and_then(|s| crowd_state::next_run(&s.schedule, now));
        let failed = CrowdCommand::FailRun {
            code: code.to_owned(),
            message,
            next_run_at: next,
            at: now,
        };
        self.commit(run, failed, Vec::new(), Vec::new(), Place::Due(next))
            .await?;
        Ok(())
    }

    async fn place(&self, run: &Run, place: Place) -> Result<(), CommandError> {
        let mut tx = self.store.begin().await?;
        apply_place(&mut tx, run, place).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Decides `command` on the run's state and commits its event with `messages`, their queue
    /// rows and the schedule change; false when the crowd stream moved meanwhile (a cancel) or
    /// the command no longer applies.
    async fn commit(
        &self,
        run: &mut Run,
        command: CrowdCommand,
        messages: Vec<StreamAppend>,
        queue: Vec<QueueRow>,
        place: Place,
    ) -> Result<bool, CommandError> {
        let new_events = match crowd_state::decide(&run.state, command) {
            Ok(events) => events,
            Err(error) => {
                tracing::info!(crowd = %run.id, %error, "crowd send moved on");
                return Ok(false);
            }
        };
        let mut appends = messages;
        appends.push(StreamAppend {
            stream_id: run.id.stream_name(),
            expected: ExpectedVersion::Exact(run.version),
            events: new_events
                .iter()
                .map(|e| events::encode(e, &run.metadata))
                .collect(),
        });
        let mut tx = self.store.begin().await?;
        match self.store.append_in(&mut tx, &appends).await {
            Ok(_) => {}
            Err(error) if error.is_conflict() => {
                tx.rollback().await?;
                return Ok(false);
            }
            Err(error) => return Err(error.into()),
        }
        store::queue::enqueue(&mut tx, &queue)
            .await
            .map_err(CommandError::internal)?;
        apply_place(&mut tx, run, place).await?;
        tx.commit().await?;
        for event in &new_events {
            run.state = crowd_state::apply(std::mem::take(&mut run.state), event)
                .map_err(CommandError::internal)?;
        }
        run.version += new_events.len() as u64;
        Ok(true)
    }
}

async fn apply_place(tx: &mut store::StoreTx, run: &Run, place: Place) -> Result<(), CommandError> {
    let id = run.id.to_string();
    match place {
        Place::Keep => {}
        Place::Due(Some(at)) => store::crowd::schedule(tx, &id, run.tenant.as_str(), at).await?,
        Place::Due(None) => store::crowd::unschedule(tx, &id).await?,
    }
    Ok(())
}

/// One line as a message: `None` for a blank line, a coded error for a row that cannot be one.
fn row(
    accept: &Accept<'_>,
    columns: &Columns,
    content: &TemplateContent,
    id_type: domain::ReceiverIdType,
    line: &Line,
) -> Result<Option<(StreamAppend, MessageId)>, RowError> {
    let error = |code: &str, message: String| RowError {
        line: line.number,
        code: code.to_owned(),
        message,
    };
    let text = line
        .text
        .as_ref()
        .map_err(|e| error("BAD_LINE", e.clone()))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let fields = fields(text).map_err(|e| error("BAD_CSV", e))?;
    let raw = fields
        .get(columns.receiver)
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| error("MISSING_RECEIVER", "the row has no receiver".into()))?;
    let mut variables = BTreeMap::new();
    for (name, at) in &columns.variables {
        match fields.get(*at).filter(|v| !v.is_empty()) {
            Some(value) => {
                variables.insert(name.clone(), value.clone());
            }
            None => {
                return Err(error(
                    "MISSING_VARIABLE",
                    format!("the row has no value for {name:?}"),
                ));
            }
        }
    }
    let rendered = content
        .render(&variables)
        .map_err(|e| error(e.code(), e.to_string()))?;
    rendered
        .validate()
        .map_err(|e| error(e.code(), e.to_string()))?;
    let receiver = Receiver::parse(id_type, raw)
        .map_err(|e| error(e.code(), format!("receiver {raw:?}: {e}")))?;
    let (append, sent) = accept
        .one(receiver, &rendered)
        .map_err(|e| error(e.reason, e.message))?;
    Ok(Some((append, sent.message_id)))
}
