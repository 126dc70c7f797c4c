//! `herald export` and `herald import`: a whole store as one NDJSON file, to move a deployment
//! from one backend to another (SQLite to Postgres, usually).
//!
//! The file, one JSON object a line, each keyed by what it is:
//!
//! ```text
//! {"header":{"format":"herald-export","version":1,"source_backend":"sqlite","herald_version":"0.1.0","exported_at":"…"}}
//! {"row":{"table":"tenants","values":{"id":"acme","created_at":"…"}}}
//! …                                   (tenants, api_keys, template_index, herald_settings,
//!                                      channel_accounts, account_secrets (sealed), policies,
//!                                      http_suppliers, uploads,
//!                                      upload_chunks, crowd_schedule, dispatch_queue's receipt lane)
//! {"event":{"stream_id":"message-…","stream_position":1,"event_id":"…","event_type":"MessageAccepted","schema_version":1,"data":{…},"metadata":{…},"recorded_at":"…"}}
//! …                                   (every event, in log order)
//! {"end":{"rows":12,"events":100000,"sha256":"…"}}
//! ```
//!
//! The end line counts the rows and events and carries the SHA-256 of every byte before it, so
//! an import tells a complete file from a truncated or damaged one before it writes anything.
//!
//! An export is streamed: events are read from the log in batches ([`EventStore::read_log`])
//! and written as they come. An export that was interrupted (no end line) is resumed by
//! running it again with the same `--out`: it keeps every complete event line, drops a torn
//! last line, finds the last event kept in the store and goes on after it.
//!
//! An import needs a store without events. It inserts the rows, then the events in batches
//! (one transaction each) with their stream positions, event ids and times, in the file's
//! order, which is the source's log order; then it rebuilds what derives from the log:
//! `supplier_messages` (with each batch), the dispatch queue for messages still waiting, the
//! recall subscription's checkpoint, and every projection (`projections::replay`).

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use domain::{DeliveryStatus, MessageEvent, MessageState};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use store::queue::QueueRow;
use store::{
    Checkpoint, CheckpointKey, EventStore, LogFilter, RecordedEvent, Store, StoreTx, on_read,
    on_tx, portable,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::replay::thousands;

/// The `format` of the header line.
pub const FORMAT: &str = "herald-export";
/// The version of the file format this build writes and reads.
pub const VERSION: u32 = 1;

/// The queue lane whose rows are carried over as they are: whether a sent message waits for a
/// receipt query depends on the account it went through, which the log does not say.
const RECEIPTS_LANE: &str = dispatch::receipts::LANE;

/// One line of the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line<'a> {
    Header(Header),
    Row(Row),
    #[serde(borrow)]
    Event(EventLine<'a>),
    End(End),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    // The rest may change with the version; a header of another version is refused by its
    // number, not by a missing field.
    #[serde(default)]
    pub source_backend: String,
    #[serde(default)]
    pub herald_version: String,
    #[serde(default)]
    pub exported_at: DateTime<Utc>,
}

/// A row of one of the tables a deployment cannot lose (they are not derived from the log).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "table", content = "values", rename_all = "snake_case")]
enum Row {
    Tenants(Tenant),
    ApiKeys(ApiKey),
    TemplateIndex(TemplateEntry),
    HeraldSettings(Setting),
    /// The run-time channel accounts' index; the accounts themselves are streams.
    ChannelAccounts(AccountEntry),
    /// Their secrets, sealed: an export never holds a plaintext secret, and the importing
    /// deployment needs the same `HERALD_SECRET_KEY`.
    AccountSecrets(SecretEntry),
    /// The live policy scopes' index; the rules themselves are streams.
    Policies(PolicyEntry),
    /// The declarative HTTP suppliers' index; the definitions themselves are streams.
    HttpSuppliers(HttpSupplierEntry),
    /// The audiences of crowd sends, as uploaded.
    Uploads(UploadEntry),
    UploadChunks(ChunkEntry),
    /// When each crowd send looks next; its stream says how far it got.
    CrowdSchedule(CrowdEntry),
    /// Rows of the receipt lane only; the dispatch lanes are rebuilt from the log.
    DispatchQueue(QueueEntry),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tenant {
    id: String,
    created_at: DateTime<Utc>,
}

/// An API key as stored: the SHA-256 of its secret, never the secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ApiKey {
    key_id: String,
    tenant_id: String,
    secret_hash: String,
    scopes: String,
    label: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TemplateEntry {
    tenant_id: String,
    template_id: String,
    name: String,
    channel: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Setting {
    name: String,
    value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AccountEntry {
    account_id: String,
    tenant_id: String,
    version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PolicyEntry {
    stream_id: String,
    tenant_id: String,
    template_id: String,
    version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HttpSupplierEntry {
    stream_id: String,
    tenant_id: String,
    name: String,
    version: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SecretEntry {
    account_id: String,
    name: String,
    sealed: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadEntry {
    id: String,
    tenant_id: String,
    filename: String,
    bytes: i64,
    lines: i64,
    created_at: DateTime<Utc>,
}

/// One piece of an uploaded file; `data` is its bytes in base64.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChunkEntry {
    upload_id: String,
    seq: i64,
    start: i64,
    data: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CrowdEntry {
    crowd_id: String,
    tenant_id: String,
    due_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct QueueEntry {
    message_id: String,
    tenant_id: String,
    lane: String,
    due_at: DateTime<Utc>,
}

/// An event with every field it was recorded with; `data` and `metadata` are the stored JSON,
/// written as they are.
#[derive(Debug, Serialize, Deserialize)]
struct EventLine<'a> {
    #[serde(borrow)]
    stream_id: Cow<'a, str>,
    stream_position: u64,
    event_id: Uuid,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    schema_version: u16,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(borrow)]
    metadata: &'a RawValue,
    recorded_at: DateTime<Utc>,
}

impl EventLine<'_> {
    fn to_recorded(&self) -> RecordedEvent {
        RecordedEvent {
            checkpoint: Checkpoint::START,
            stream_id: self.stream_id.clone().into_owned(),
            stream_position: self.stream_position,
            event_id: self.event_id,
            event_type: self.event_type.clone().into_owned(),
            schema_version: self.schema_version,
            data: self.data.get().to_owned(),
            metadata: self.metadata.get().to_owned(),
            recorded_at: self.recorded_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct End {
    rows: u64,
    events: u64,
    /// Lowercase hex SHA-256 of every byte before the end line.
    sha256: String,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub rows: u64,
    pub events: u64,
    /// Events that were already in the file when the export resumed.
    pub resumed_after: Option<u64>,
    pub elapsed: Duration,
}

/// What an import wrote and rebuilt.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    pub rows: u64,
    pub events: u64,
    pub supplier_ids: u64,
    pub queued: u64,
    pub pending_recalls: u64,
    pub elapsed: Duration,
}

// ---------------------------------------------------------------------------------------------
// Export

/// Writes the whole store to `out`, or finishes an export of it that was interrupted.
pub async fn export(
    store: &Store,
    out: &Path,
    batch_size: usize,
    shutdown: &CancellationToken,
) -> anyhow::Result<ExportSummary> {
    let started = Instant::now();
    let batch_size = batch_size.max(1);
    let resumed = match inspect(out)? {
        Found::Nothing => None,
        Found::Complete { events } => bail!(
            "{} is already a complete export ({} events); remove it or choose another --out",
            out.display(),
            thousands(events)
        ),
        Found::Partial(partial) => {
            if partial.header.source_backend != store.backend() {
                bail!(
                    "{} is an unfinished export of a {} store, and this store is {}: \
                     remove it or choose another --out",
                    out.display(),
                    partial.header.source_backend,
                    store.backend()
                );
            }
            Some(partial)
        }
    };

    let mut writer;
    let mut rows = 0;
    let mut events = 0;
    let mut after = Checkpoint::START;
    let mut hasher = Sha256::new();
    let resumed_after = match resumed {
        Some(partial) => {
            // Everything up to the last complete event line stays; a torn line goes.
            let last = portable::find_event(store, partial.last_event)
                .await
                .context("looking up the last exported event")?
                .filter(|e| {
                    e.stream_id == partial.last_stream && e.stream_position == partial.last_position
                })
                .ok_or_else(|| {
                    anyhow!(
                        "the last event in {} ({} #{}, id {}) is not in this store: \
                         the file was exported from another store; remove it or choose another --out",
                        out.display(),
                        partial.last_stream,
                        partial.last_position,
                        partial.last_event
                    )
                })?;
            after = last.checkpoint;
            let file = OpenOptions::new()
                .write(true)
                .open(out)
                .with_context(|| format!("opening {}", out.display()))?;
            file.set_len(partial.keep)
                .with_context(|| format!("truncating {}", out.display()))?;
            let mut file = file;
            file.seek(SeekFrom::End(0))?;
            writer = BufWriter::with_capacity(1 << 20, file);
            rows = partial.rows;
            events = partial.events;
            hasher = partial.hasher;
            eprintln!(
                "export: resuming {} after {} events",
                out.display(),
                thousands(events)
            );
            Some(events)
        }
        None => {
            let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
            writer = BufWriter::with_capacity(1 << 20, file);
            let header = Header {
                format: FORMAT.to_owned(),
                version: VERSION,
                source_backend: store.backend().to_owned(),
                herald_version: env!("CARGO_PKG_VERSION").to_owned(),
                exported_at: Utc::now(),
            };
            let mut buffer = Vec::new();
            put(&mut buffer, &Line::Header(header))?;
            hasher.update(&buffer);
            writer.write_all(&buffer)?;
            let mut sink = |row: Row| -> anyhow::Result<()> {
                buffer.clear();
                put(&mut buffer, &Line::Row(row))?;
                hasher.update(&buffer);
                writer.write_all(&buffer)?;
                rows += 1;
                Ok(())
            };
            export_rows(store, &mut sink).await?;
            None
        }
    };

    let mut progress = Progress::new("export");
    let filter = LogFilter::all();
    let mut buffer = Vec::with_capacity(1 << 20);
    let mut written_now = 0u64;
    loop {
        if shutdown.is_cancelled() {
            writer.flush()?;
            bail!(
                "export interrupted after {} events; run the same command again to resume",
                thousands(events)
            );
        }
        let batch = store
            .read_log(after, &filter, batch_size)
            .await
            .context("reading the log")?;
        buffer.clear();
        for event in &batch.events {
            put(&mut buffer, &Line::Event(event_line(event)?))?;
        }
        hasher.update(&buffer);
        writer.write_all(&buffer)?;
        events += batch.events.len() as u64;
        written_now += batch.events.len() as u64;
        after = batch.next;
        progress.show(events, written_now, None);
        if batch.events.is_empty() {
            if batch.blocked {
                // Committed events wait behind an open transaction: look again shortly.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            break;
        }
    }
    let end = End {
        rows,
        events,
        sha256: hex(&hasher.finalize()),
    };
    let mut buffer = Vec::new();
    put(&mut buffer, &Line::End(end))?;
    writer.write_all(&buffer)?;
    let file = writer
        .into_inner()
        .map_err(|e| anyhow!("writing {}: {}", out.display(), e.error()))?;
    file.sync_all()
        .with_context(|| format!("writing {}", out.display()))?;
    progress.finish(events, written_now);
    Ok(ExportSummary {
        rows,
        events,
        resumed_after,
        elapsed: started.elapsed(),
    })
}

fn event_line(event: &RecordedEvent) -> anyhow::Result<EventLine<'_>> {
    Ok(EventLine {
        stream_id: Cow::Borrowed(&event.stream_id),
        stream_position: event.stream_position,
        event_id: event.event_id,
        event_type: Cow::Borrowed(&event.event_type),
        schema_version: event.schema_version,
        data: raw_json(event, &event.data, "data")?,
        metadata: raw_json(event, &event.metadata, "metadata")?,
        recorded_at: event.recorded_at,
    })
}

/// Stored JSON, checked and borrowed as it is.
fn raw_json<'a>(event: &RecordedEvent, text: &'a str, what: &str) -> anyhow::Result<&'a RawValue> {
    serde_json::from_str::<&RawValue>(text).with_context(|| {
        format!(
            "the {what} of event {} ({} #{}) is not JSON",
            event.event_id, event.stream_id, event.stream_position
        )
    })
}

/// Appends one line (JSON and a newline) to `buffer`.
fn put(buffer: &mut Vec<u8>, line: &Line<'_>) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *buffer, line).context("encoding a line")?;
    buffer.push(b'\n');
    Ok(())
}

/// What is at `--out` already.
enum Found {
    Nothing,
    Complete { events: u64 },
    Partial(Box<Partial>),
}

/// An export that stopped before its end line, up to its last complete event line.
struct Partial {
    header: Header,
    /// Bytes to keep: through the last complete event line.
    keep: u64,
    rows: u64,
    events: u64,
    last_event: Uuid,
    last_stream: String,
    last_position: u64,
    /// The hash of the bytes kept.
    hasher: Sha256,
}

/// Reads an existing `--out` file: a finished export, an unfinished one to resume, or nothing
/// worth keeping (missing, empty, or cut before its first event, which starts over). Anything
/// that is not a Herald export is refused rather than overwritten.
fn inspect(path: &Path) -> anyhow::Result<Found> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(error) => return Err(error).with_context(|| format!("opening {}", path.display())),
    };
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut bytes = Vec::new();
    let mut number = 0u64;
    let mut offset = 0u64;
    let mut header: Option<Header> = None;
    let mut rows = 0;
    let mut events = 0;
    let mut hasher = Sha256::new();
    let mut last: Option<(Uuid, String, u64, u64)> = None;
    let mut hasher_at_last: Option<Sha256> = None;
    loop {
        bytes.clear();
        let read = reader
            .read_until(b'\n', &mut bytes)
            .with_context(|| format!("reading {}", path.display()))?;
        if read == 0 || bytes.last() != Some(&b'\n') {
            // The end of the file, or a line the interrupted export did not finish.
            break;
        }
        number += 1;
        let line = parse_line(&bytes, number).map_err(|error| {
            if number == 1 {
                anyhow!(
                    "{} exists and is not a Herald export ({error}); refusing to overwrite it",
                    path.display()
                )
            } else {
                anyhow!(
                    "{} is damaged at {error}; remove it to export again",
                    path.display()
                )
            }
        })?;
        offset += read as u64;
        match line {
            Line::Header(h) if number == 1 => {
                check_header(&h).map_err(|e| {
                    anyhow!("{}: line 1: {e}; refusing to overwrite it", path.display())
                })?;
                header = Some(h);
            }
            _ if number == 1 => bail!(
                "{} exists and is not a Herald export (line 1 is not a header); refusing to overwrite it",
                path.display()
            ),
            Line::Header(_) => bail!("{}: line {number}: a second header", path.display()),
            Line::Row(_) => rows += 1,
            Line::Event(event) => {
                events += 1;
                last = Some((
                    event.event_id,
                    event.stream_id.into_owned(),
                    event.stream_position,
                    offset,
                ));
            }
            Line::End(_) => return Ok(Found::Complete { events }),
        }
        hasher.update(&bytes);
        if matches!(last, Some((_, _, _, at)) if at == offset) {
            hasher_at_last = Some(hasher.clone());
        }
    }
    match (header, last, hasher_at_last) {
        (Some(header), Some((last_event, last_stream, last_position, keep)), Some(hasher)) => {
            Ok(Found::Partial(Box::new(Partial {
                header,
                keep,
                rows,
                events,
                last_event,
                last_stream,
                last_position,
                hasher,
            })))
        }
        // No complete event line: the rows may be cut short too, so start over.
        _ => Ok(Found::Nothing),
    }
}

// ---------------------------------------------------------------------------------------------
// Import

/// Imports the export at `input` into `store`, which must hold no events; then rebuilds the
/// tables that derive from the log and replays every projection.
pub async fn import(
    store: &Store,
    input: &Path,
    batch_size: usize,
    shutdown: &CancellationToken,
) -> anyhow::Result<ImportSummary> {
    let started = Instant::now();
    let batch_size = batch_size.max(1);
    if portable::holds_events(store).await? {
        bail!(
            "the target store already holds {} events; import needs a store without events \
             (a new database, or a new SQLite file)",
            thousands(portable::count_events(store).await?)
        );
    }
    eprintln!("import: checking {}", input.display());
    let checked = {
        let input = input.to_path_buf();
        tokio::task::spawn_blocking(move || verify(&input))
            .await
            .context("checking the file")??
    };
    eprintln!(
        "import: {} rows and {} events from a {} store (herald {}, exported {})",
        thousands(checked.rows),
        thousands(checked.events),
        checked.header.source_backend,
        checked.header.herald_version,
        checked.header.exported_at.to_rfc3339()
    );

    let file = File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut bytes = Vec::new();
    let mut number = 0u64;
    let mut table_rows: Vec<Row> = Vec::new();
    let mut row_bytes = 0usize;
    let mut rows = 0u64;
    let mut batch: Vec<RecordedEvent> = Vec::with_capacity(batch_size);
    let mut events = 0u64;
    let mut supplier_ids = 0u64;
    let mut last_event: Option<Uuid> = None;
    let mut progress = Progress::new("import");
    loop {
        bytes.clear();
        if reader.read_until(b'\n', &mut bytes)? == 0 {
            break;
        }
        number += 1;
        match parse_line(&bytes, number).with_context(|| input.display().to_string())? {
            Line::Header(_) => {}
            Line::Row(row) => {
                row_bytes += row.size();
                rows += 1;
                table_rows.push(row);
                // Files can be large: rows go in a few megabytes at a time.
                if table_rows.len() >= 500 || row_bytes >= 16 << 20 {
                    write_rows(store, &table_rows).await?;
                    table_rows.clear();
                    row_bytes = 0;
                }
            }
            Line::Event(event) => {
                if !table_rows.is_empty() {
                    write_rows(store, &table_rows).await?;
                    table_rows.clear();
                }
                last_event = Some(event.event_id);
                batch.push(event.to_recorded());
                if batch.len() >= batch_size {
                    if shutdown.is_cancelled() {
                        bail!(interrupted(events));
                    }
                    supplier_ids += write_events(store, &batch)
                        .await
                        .with_context(|| interrupted(events))?;
                    events += batch.len() as u64;
                    batch.clear();
                    progress.show(events, events, Some(checked.events));
                }
            }
            Line::End(_) => break,
        }
    }
    if !table_rows.is_empty() {
        write_rows(store, &table_rows).await?;
    }
    if !batch.is_empty() {
        supplier_ids += write_events(store, &batch)
            .await
            .with_context(|| interrupted(events))?;
        events += batch.len() as u64;
    }
    progress.finish(events, events);
    if let Some((stream, count, last)) = portable::first_gap(store).await? {
        bail!(
            "the imported log is not whole: stream {stream} has {count} events but reaches \
             position {last}. The file is damaged; recreate the target store and import a good export"
        );
    }

    eprintln!("import: rebuilding the dispatch queue");
    let (queued, pending_recalls) = rebuild_from_log(store, last_event).await?;
    Ok(ImportSummary {
        rows,
        events,
        supplier_ids,
        queued,
        pending_recalls,
        elapsed: started.elapsed(),
    })
}

fn interrupted(events: u64) -> String {
    format!(
        "the import stopped after {} events; the target now holds part of the file: \
         recreate it (a new database, or a new SQLite file) before importing again",
        thousands(events)
    )
}

/// What [`verify`] found.
struct Checked {
    header: Header,
    rows: u64,
    events: u64,
}

/// Reads the whole file once before anything is written: every line must parse, in the order
/// header, rows, events, end; the end line must count what came before it and carry its hash.
fn verify(path: &Path) -> anyhow::Result<Checked> {
    let name = path.display();
    let file = File::open(path).with_context(|| format!("opening {name}"))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut bytes = Vec::new();
    let mut number = 0u64;
    let mut header: Option<Header> = None;
    let mut rows = 0u64;
    let mut events = 0u64;
    let mut hasher = Sha256::new();
    let mut end: Option<End> = None;
    loop {
        bytes.clear();
        let read = reader
            .read_until(b'\n', &mut bytes)
            .with_context(|| format!("reading {name}"))?;
        if read == 0 {
            break;
        }
        number += 1;
        if end.is_some() {
            bail!("{name}: line {number}: more lines after the end line");
        }
        if bytes.last() != Some(&b'\n') {
            bail!(
                "{name}: truncated export: line {number} is cut short (the file ends in the middle of it)"
            );
        }
        let line = parse_line(&bytes, number).with_context(|| name.to_string())?;
        match line {
            Line::Header(h) if number == 1 => {
                check_header(&h).map_err(|e| anyhow!("{name}: line 1: {e}"))?;
                header = Some(h);
            }
            _ if number == 1 => bail!(
                "{name}: line 1: not a Herald export: the first line must be its header \
                 ({{\"header\":{{\"format\":\"{FORMAT}\",…}}}})"
            ),
            Line::Header(_) => bail!("{name}: line {number}: a second header"),
            Line::Row(_) if events > 0 => {
                bail!("{name}: line {number}: a table row after the events")
            }
            Line::Row(_) => rows += 1,
            Line::Event(_) => events += 1,
            Line::End(e) => {
                end = Some(e);
                continue;
            }
        }
        hasher.update(&bytes);
    }
    let Some(header) = header else {
        bail!("{name} is empty: not a Herald export");
    };
    let Some(end) = end else {
        bail!(
            "{name}: truncated export: no end line after {} events (was the export \
             interrupted? run it again with the same --out to finish it)",
            thousands(events)
        );
    };
    if end.rows != rows || end.events != events {
        bail!(
            "{name}: truncated export: the end line counts {} rows and {} events, \
             the file holds {} rows and {} events",
            thousands(end.rows),
            thousands(end.events),
            thousands(rows),
            thousands(events)
        );
    }
    if end.sha256 != hex(&hasher.finalize()) {
        bail!("{name}: damaged export: its content does not match the checksum of its end line");
    }
    Ok(Checked {
        header,
        rows,
        events,
    })
}

/// Parses line `number` (1-based) of a file; the error names the line.
fn parse_line(bytes: &[u8], number: u64) -> anyhow::Result<Line<'_>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| anyhow!("line {number}: not UTF-8 text ({e})"))?
        .trim_end_matches(['\n', '\r']);
    if text.trim().is_empty() {
        bail!("line {number}: an empty line");
    }
    serde_json::from_str::<Line<'_>>(text).map_err(|error| {
        // serde_json says where within the line; the line is ours to name.
        let message = error.to_string();
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(m, _)| m);
        anyhow!("line {number}, column {}: {message}", error.column())
    })
}

fn check_header(header: &Header) -> anyhow::Result<()> {
    if header.format != FORMAT {
        bail!(
            "the format is {:?}, not {FORMAT:?}: not a Herald export",
            header.format
        );
    }
    if header.version != VERSION {
        bail!(
            "export format version {} is not supported; this herald reads version {VERSION}",
            header.version
        );
    }
    Ok(())
}

/// Inserts a batch of events and the supplier ids of the dispatches among them, in one
/// transaction. Returns how many supplier ids it recorded.
async fn write_events(store: &Store, events: &[RecordedEvent]) -> anyhow::Result<u64> {
    let mut supplier_rows = Vec::new();
    for event in events {
        if event.event_type != "MessageDispatched" {
            continue;
        }
        // As dispatch writes it: the supplier's id of the message, under the account it went
        // through (`dispatch::worker`).
        let data = event.data_json().with_context(|| {
            format!(
                "event {} ({} #{}) has data that is not JSON",
                event.event_id, event.stream_id, event.stream_position
            )
        })?;
        let decoded = MessageEvent::decode(&event.event_type, event.schema_version, &data)
            .with_context(|| {
                format!(
                    "event {} ({} #{})",
                    event.event_id, event.stream_id, event.stream_position
                )
            })?;
        if let MessageEvent::MessageDispatched(dispatched) = decoded
            && let Some(supplier_id) = dispatched.supplier_message_id
        {
            let message_id = event
                .stream_id
                .strip_prefix("message-")
                .unwrap_or(&event.stream_id);
            supplier_rows.push((dispatched.account, supplier_id, message_id.to_owned()));
        }
    }
    let mut tx = store.begin().await?;
    portable::insert_recorded(&mut tx, events).await?;
    store::supplier_ids::record_all(&mut tx, &supplier_rows).await?;
    tx.commit().await?;
    Ok(supplier_rows.len() as u64)
}

/// Messages still waiting for dispatch go back in their lanes, and the recall subscription
/// starts at the first recall still to be carried out (or at the head of the log). Returns the
/// number of messages queued and of recalls pending.
async fn rebuild_from_log(store: &Store, last_event: Option<Uuid>) -> anyhow::Result<(u64, u64)> {
    // Candidates by event type, each confirmed by folding its stream with the domain's rules:
    // a message is pending until one of its outcomes, and a recall until its outcome.
    let candidates: Vec<String> = on_read!(store, |pool| {
        sqlx::query_scalar(
            "SELECT stream_id FROM ( \
               SELECT stream_id, \
                 sum(CASE WHEN event_type IN ('MessageDispatched', 'MessageFailed', \
                     'MessageDeduplicated', 'MessageShielded', 'MessageDiscarded', \
                     'MessageRecalled') THEN 1 ELSE 0 END) AS outcomes, \
                 sum(CASE WHEN event_type = 'RecallRequested' THEN 1 ELSE 0 END) AS asked, \
                 sum(CASE WHEN event_type IN ('MessageRecalled', 'RecallFailed') \
                     THEN 1 ELSE 0 END) AS answered \
               FROM events WHERE category = 'message' GROUP BY stream_id) s \
             WHERE outcomes = 0 OR (asked > 0 AND answered = 0) \
             ORDER BY stream_id",
        )
        .fetch_all(pool)
        .await
    })
    .context("finding messages without an outcome")?;

    let mut rows: Vec<QueueRow> = Vec::new();
    let mut first_recall: Option<RecordedEvent> = None;
    let mut pending_recalls = 0u64;
    for stream in &candidates {
        let recorded = store.read_stream(stream, 1, 100_000).await?;
        let state = fold(&recorded).with_context(|| format!("folding {stream}"))?;
        let Some(accepted) = &state.accepted else {
            continue;
        };
        if state.status.is_some_and(DeliveryStatus::is_pending) {
            let due_at = [accepted.send_at, state.deferred_until]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(accepted.at);
            rows.push(QueueRow {
                message_id: accepted.message_id.to_string(),
                tenant_id: accepted.tenant.to_string(),
                lane: domain::lane(accepted.channel, accepted.msg_type),
                due_at,
            });
        }
        // What the recall subscription would act on (`dispatch::recall`): asked for, not
        // failed, and the message already handed over.
        let handed_over = matches!(
            state.status,
            Some(
                DeliveryStatus::Dispatched
                    | DeliveryStatus::Delivered
                    | DeliveryStatus::Undelivered
            )
        );
        if state.recall_requested && !state.recall_failed && handed_over {
            pending_recalls += 1;
            if let Some(asked) = recorded
                .iter()
                .find(|e| e.event_type == "RecallRequested")
                .filter(|asked| {
                    first_recall
                        .as_ref()
                        .is_none_or(|first| asked.checkpoint < first.checkpoint)
                })
            {
                first_recall = Some(asked.clone());
            }
        }
    }
    for chunk in rows.chunks(1_000) {
        let mut tx = store.begin().await?;
        store::queue::enqueue(&mut tx, chunk).await?;
        tx.commit().await?;
    }

    // The recall subscription has side effects (it asks suppliers to take messages back), so it
    // must not start from the beginning of an imported log; it starts just before the first
    // recall still to do, or at the head.
    let start = match (first_recall, last_event) {
        (Some(first), _) => Some(portable::just_before(&first)),
        (None, Some(last)) => portable::find_event(store, last)
            .await?
            .map(|event| event.checkpoint),
        (None, None) => None,
    };
    if let Some(start) = start {
        let key = CheckpointKey::new(dispatch::recall::SUBSCRIPTION, 0);
        let current = store.load_checkpoint(&key).await?;
        let mut tx = store.begin().await?;
        store
            .save_checkpoint(&mut tx, &key, current, start, None)
            .await?;
        tx.commit().await?;
    }
    Ok((rows.len() as u64, pending_recalls))
}

fn fold(recorded: &[RecordedEvent]) -> anyhow::Result<MessageState> {
    let mut state = MessageState::default();
    for event in recorded {
        let data = event.data_json()?;
        let decoded = MessageEvent::decode(&event.event_type, event.schema_version, &data)?;
        state = domain::message_state::apply(state, &decoded)?;
    }
    Ok(state)
}

// ---------------------------------------------------------------------------------------------
// The tables

/// Every row of the tables an export carries, handed to `sink` in the order an import inserts
/// them (tenants before the keys that name them, uploads before their chunks). The large
/// tables are read a page at a time.
async fn export_rows(
    store: &Store,
    sink: &mut impl FnMut(Row) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match store {
        Store::Postgres(s) => {
            let pool = s.pool();
            let tenants: Vec<(String, DateTime<Utc>)> =
                sqlx::query_as("SELECT id, created_at FROM tenants ORDER BY id")
                    .fetch_all(pool)
                    .await?;
            for (id, created_at) in tenants {
                sink(Row::Tenants(Tenant { id, created_at }))?;
            }
            type KeyRow = (
                String,
                String,
                String,
                String,
                String,
                DateTime<Utc>,
                Option<DateTime<Utc>>,
            );
            let keys: Vec<KeyRow> = sqlx::query_as(
                "SELECT key_id, tenant_id, secret_hash, scopes, label, created_at, revoked_at \
                 FROM api_keys ORDER BY key_id",
            )
            .fetch_all(pool)
            .await?;
            for k in keys {
                sink(Row::ApiKeys(ApiKey {
                    key_id: k.0,
                    tenant_id: k.1,
                    secret_hash: k.2,
                    scopes: k.3,
                    label: k.4,
                    created_at: k.5,
                    revoked_at: k.6,
                }))?;
            }
        }
        Store::Sqlite(s) => {
            let pool = s.readers();
            let tenants: Vec<(String, i64)> =
                sqlx::query_as("SELECT id, created_at FROM tenants ORDER BY id")
                    .fetch_all(pool)
                    .await?;
            for (id, created_at) in tenants {
                sink(Row::Tenants(Tenant {
                    id,
                    created_at: millis(created_at),
                }))?;
            }
            type KeyRow = (String, String, String, String, String, i64, Option<i64>);
            let keys: Vec<KeyRow> = sqlx::query_as(
                "SELECT key_id, tenant_id, secret_hash, scopes, label, created_at, revoked_at \
                 FROM api_keys ORDER BY key_id",
            )
            .fetch_all(pool)
            .await?;
            for k in keys {
                sink(Row::ApiKeys(ApiKey {
                    key_id: k.0,
                    tenant_id: k.1,
                    secret_hash: k.2,
                    scopes: k.3,
                    label: k.4,
                    created_at: millis(k.5),
                    revoked_at: k.6.map(millis),
                }))?;
            }
        }
    }
    let templates: Vec<(String, String, String, String)> = on_read!(store, |pool| {
        sqlx::query_as(
            "SELECT tenant_id, template_id, name, channel FROM template_index \
             ORDER BY tenant_id, template_id",
        )
        .fetch_all(pool)
        .await
    })?;
    for (tenant_id, template_id, name, channel) in templates {
        sink(Row::TemplateIndex(TemplateEntry {
            tenant_id,
            template_id,
            name,
            channel,
        }))?;
    }
    let settings: Vec<(String, String)> = on_read!(store, |pool| {
        sqlx::query_as("SELECT name, value FROM herald_settings ORDER BY name")
            .fetch_all(pool)
            .await
    })?;
    for (name, value) in settings {
        sink(Row::HeraldSettings(Setting { name, value }))?;
    }
    let accounts: Vec<(String, String, i64)> = on_read!(store, |pool| {
        sqlx::query_as(
            "SELECT account_id, tenant_id, version FROM channel_accounts ORDER BY account_id",
        )
        .fetch_all(pool)
        .await
    })?;
    for (account_id, tenant_id, version) in accounts {
        sink(Row::ChannelAccounts(AccountEntry {
            account_id,
            tenant_id,
            version,
        }))?;
    }
    let secrets: Vec<(String, String, String)> = on_read!(store, |pool| {
        sqlx::query_as(
            "SELECT account_id, name, sealed FROM account_secrets ORDER BY account_id, name",
        )
        .fetch_all(pool)
        .await
    })?;
    for (account_id, name, sealed) in secrets {
        sink(Row::AccountSecrets(SecretEntry {
            account_id,
            name,
            sealed,
        }))?;
    }
    let policies: Vec<(String, String, String, i64)> = on_read!(store, |pool| {
        sqlx::query_as(
            "SELECT stream_id, tenant_id, template_id, version FROM policies ORDER BY stream_id",
        )
        .fetch_all(pool)
        .await
    })?;
    for (stream_id, tenant_id, template_id, version) in policies {
        sink(Row::Policies(PolicyEntry {
            stream_id,
            tenant_id,
            template_id,
            version,
        }))?;
    }
    let http_suppliers: Vec<(String, String, String, i64)> = on_read!(store, |pool| {
        sqlx::query_as(
            "SELECT stream_id, tenant_id, name, version FROM http_suppliers ORDER BY stream_id",
        )
        .fetch_all(pool)
        .await
    })?;
    for (stream_id, tenant_id, name, version) in http_suppliers {
        sink(Row::HttpSuppliers(HttpSupplierEntry {
            stream_id,
            tenant_id,
            name,
            version,
        }))?;
    }

    // Uploads: Postgres keeps the time as timestamptz, SQLite as `YYYY-MM-DD HH:MM:SS` text.
    let uploads: Vec<UploadEntry> = match store {
        Store::Postgres(s) => {
            let rows: Vec<(String, String, String, i64, i64, DateTime<Utc>)> = sqlx::query_as(
                "SELECT id, tenant_id, filename, bytes, lines, created_at FROM uploads ORDER BY id",
            )
            .fetch_all(s.pool())
            .await?;
            rows.into_iter()
                .map(|u| UploadEntry {
                    id: u.0,
                    tenant_id: u.1,
                    filename: u.2,
                    bytes: u.3,
                    lines: u.4,
                    created_at: u.5,
                })
                .collect()
        }
        Store::Sqlite(s) => {
            let rows: Vec<(String, String, String, i64, i64, String)> = sqlx::query_as(
                "SELECT id, tenant_id, filename, bytes, lines, created_at FROM uploads ORDER BY id",
            )
            .fetch_all(s.readers())
            .await?;
            rows.into_iter()
                .map(|u| UploadEntry {
                    id: u.0,
                    tenant_id: u.1,
                    filename: u.2,
                    bytes: u.3,
                    lines: u.4,
                    created_at: sqlite_text_time(&u.5),
                })
                .collect()
        }
    };
    for upload in uploads {
        sink(Row::Uploads(upload))?;
    }
    // Chunks are a megabyte each: a few at a time, by key.
    let mut after = (String::new(), -1i64);
    loop {
        let page: Vec<(String, i64, i64, Vec<u8>)> = on_read!(store, |pool| {
            sqlx::query_as(
                "SELECT upload_id, seq, start, data FROM upload_chunks \
                 WHERE upload_id > $1 OR (upload_id = $1 AND seq > $2) \
                 ORDER BY upload_id, seq LIMIT 16",
            )
            .bind(&after.0)
            .bind(after.1)
            .fetch_all(pool)
            .await
        })?;
        let Some(last) = page.last() else {
            break;
        };
        after = (last.0.clone(), last.1);
        for (upload_id, seq, start, data) in page {
            sink(Row::UploadChunks(ChunkEntry {
                upload_id,
                seq,
                start,
                data: BASE64.encode(data),
            }))?;
        }
    }
    let crowds: Vec<(String, String, i64)> = on_read!(store, |pool| {
        sqlx::query_as("SELECT crowd_id, tenant_id, due_at FROM crowd_schedule ORDER BY crowd_id")
            .fetch_all(pool)
            .await
    })?;
    for (crowd_id, tenant_id, due_at) in crowds {
        sink(Row::CrowdSchedule(CrowdEntry {
            crowd_id,
            tenant_id,
            due_at: millis(due_at),
        }))?;
    }
    let mut after = String::new();
    loop {
        let page: Vec<(String, String, String, i64)> = on_read!(store, |pool| {
            sqlx::query_as(
                "SELECT message_id, tenant_id, lane, due_at FROM dispatch_queue \
                 WHERE lane = $1 AND message_id > $2 ORDER BY message_id LIMIT 10000",
            )
            .bind(RECEIPTS_LANE)
            .bind(&after)
            .fetch_all(pool)
            .await
        })?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.0.clone();
        for (message_id, tenant_id, lane, due_at) in page {
            sink(Row::DispatchQueue(QueueEntry {
                message_id,
                tenant_id,
                lane,
                due_at: millis(due_at),
            }))?;
        }
    }
    Ok(())
}

/// SQLite's `CURRENT_TIMESTAMP` text (UTC), or RFC 3339.
fn sqlite_text_time(text: &str) -> DateTime<Utc> {
    chrono::NaiveDateTime::parse_from_str(text, SQLITE_TIME)
        .map(|t| t.and_utc())
        .or_else(|_| DateTime::parse_from_rfc3339(text).map(|t| t.to_utc()))
        .unwrap_or_default()
}

const SQLITE_TIME: &str = "%Y-%m-%d %H:%M:%S";

fn millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Inserts the table rows in one transaction. Rows already there are kept (a tenant made on the
/// target before the import), except settings: the imported link secret must win, or links
/// sent before the move would stop working.
async fn write_rows(store: &Store, rows: &[Row]) -> anyhow::Result<()> {
    let mut tx = store.begin().await?;
    for row in rows {
        write_row(&mut tx, row)
            .await
            .with_context(|| format!("importing a row of {}", row.table()))?;
    }
    tx.commit().await?;
    Ok(())
}

impl Row {
    fn table(&self) -> &'static str {
        match self {
            Row::Tenants(_) => "tenants",
            Row::ApiKeys(_) => "api_keys",
            Row::TemplateIndex(_) => "template_index",
            Row::HeraldSettings(_) => "herald_settings",
            Row::ChannelAccounts(_) => "channel_accounts",
            Row::AccountSecrets(_) => "account_secrets",
            Row::Policies(_) => "policies",
            Row::HttpSuppliers(_) => "http_suppliers",
            Row::Uploads(_) => "uploads",
            Row::UploadChunks(_) => "upload_chunks",
            Row::CrowdSchedule(_) => "crowd_schedule",
            Row::DispatchQueue(_) => "dispatch_queue",
        }
    }

    /// About how many bytes the row holds (a file chunk is the only large one).
    fn size(&self) -> usize {
        match self {
            Row::UploadChunks(c) => c.data.len(),
            _ => 100,
        }
    }
}

async fn write_row(tx: &mut StoreTx, row: &Row) -> Result<u64, sqlx::Error> {
    let postgres = matches!(tx.conn(), store::TxConn::Postgres(_));
    match row {
        Row::Tenants(t) => {
            let sql = "INSERT INTO tenants (id, created_at) VALUES ($1, $2) \
                       ON CONFLICT (id) DO NOTHING";
            if postgres {
                on_tx!(tx, |conn| sqlx::query(sql)
                    .bind(&t.id)
                    .bind(t.created_at)
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected()))
            } else {
                on_tx!(tx, |conn| sqlx::query(sql)
                    .bind(&t.id)
                    .bind(t.created_at.timestamp_millis())
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected()))
            }
        }
        Row::ApiKeys(k) => {
            let sql = "INSERT INTO api_keys (key_id, tenant_id, secret_hash, scopes, label, \
                       created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                       ON CONFLICT (key_id) DO NOTHING";
            if postgres {
                on_tx!(tx, |conn| sqlx::query(sql)
                    .bind(&k.key_id)
                    .bind(&k.tenant_id)
                    .bind(&k.secret_hash)
                    .bind(&k.scopes)
                    .bind(&k.label)
                    .bind(k.created_at)
                    .bind(k.revoked_at)
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected()))
            } else {
                on_tx!(tx, |conn| sqlx::query(sql)
                    .bind(&k.key_id)
                    .bind(&k.tenant_id)
                    .bind(&k.secret_hash)
                    .bind(&k.scopes)
                    .bind(&k.label)
                    .bind(k.created_at.timestamp_millis())
                    .bind(k.revoked_at.map(|t| t.timestamp_millis()))
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected()))
            }
        }
        Row::TemplateIndex(t) => on_tx!(tx, |conn| sqlx::query(
            "INSERT INTO template_index (tenant_id, template_id, name, channel) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, template_id) DO NOTHING"
        )
        .bind(&t.tenant_id)
        .bind(&t.template_id)
        .bind(&t.name)
        .bind(&t.channel)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())),
        Row::HeraldSettings(s) => on_tx!(tx, |conn| sqlx::query(
            "INSERT INTO herald_settings (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value"
        )
        .bind(&s.name)
        .bind(&s.value)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())),
        Row::ChannelAccounts(a) => on_tx!(tx, |conn| sqlx::query(
            "INSERT INTO channel_accounts (account_id, tenant_id, version) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id) DO NOTHING"
        )
        .bind(&a.account_id)
        .bind(&a.tenant_id)
        .bind(a.version)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())),
        Row::AccountSecrets(a) => on_tx!(tx, |conn| sqlx::query(
            "INSERT INTO account_secrets (account_id, name, sealed) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id, name) DO NOTHING"
        )
        .bind(&a.account_id)
        .bind(&a.name)
        .bind(&a.sealed)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())),
        Row::Policies(p) => on_tx!(tx, |conn| sqlx::query(
            "INSERT INTO policies (stream_id, tenant_id, template_id, version) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (stream_id) DO NOTHING"
        )
        .bind(&p.stream_id)
        .bind(&p.tenant_id)
        .bind(&p.template_id)
        .bind(p.version)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())),
        Row::HttpSuppliers(h) => on_tx!(tx, |conn| sqlx::query(
            "INSERT INTO http_suppliers (stream_id, tenant_id, name, version) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (stream_id) DO NOTHING"
        )
        .bind(&h.stream_id)
        .bind(&h.tenant_id)
        .bind(&h.name)
        .bind(h.version)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())),
        Row::Uploads(u) => {
            let sql = "INSERT INTO uploads (id, tenant_id, filename, bytes, lines, created_at) \
                       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING";
            if postgres {
                on_tx!(tx, |conn| sqlx::query(sql)
                    .bind(&u.id)
                    .bind(&u.tenant_id)
                    .bind(&u.filename)
                    .bind(u.bytes)
                    .bind(u.lines)
                    .bind(u.created_at)
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected()))
            } else {
                on_tx!(tx, |conn| sqlx::query(sql)
                    .bind(&u.id)
                    .bind(&u.tenant_id)
                    .bind(&u.filename)
                    .bind(u.bytes)
                    .bind(u.lines)
                    .bind(u.created_at.format(SQLITE_TIME).to_string())
                    .execute(conn)
                    .await
                    .map(|r| r.rows_affected()))
            }
        }
        Row::UploadChunks(c) => {
            let data = BASE64.decode(&c.data).map_err(|e| {
                sqlx::Error::Decode(
                    format!("chunk {} of upload {}: bad base64: {e}", c.seq, c.upload_id).into(),
                )
            })?;
            on_tx!(tx, |conn| sqlx::query(
                "INSERT INTO upload_chunks (upload_id, seq, start, data) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (upload_id, seq) DO NOTHING"
            )
            .bind(&c.upload_id)
            .bind(c.seq)
            .bind(c.start)
            .bind(&data)
            .execute(conn)
            .await
            .map(|r| r.rows_affected()))
        }
        Row::CrowdSchedule(c) => on_tx!(tx, |conn| sqlx::query(
            "INSERT INTO crowd_schedule (crowd_id, tenant_id, due_at) VALUES ($1, $2, $3) \
             ON CONFLICT (crowd_id) DO NOTHING"
        )
        .bind(&c.crowd_id)
        .bind(&c.tenant_id)
        .bind(c.due_at.timestamp_millis())
        .execute(conn)
        .await
        .map(|r| r.rows_affected())),
        Row::DispatchQueue(q) => on_tx!(tx, |conn| sqlx::query(
            "INSERT INTO dispatch_queue (message_id, tenant_id, lane, due_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (message_id) DO NOTHING"
        )
        .bind(&q.message_id)
        .bind(&q.tenant_id)
        .bind(&q.lane)
        .bind(q.due_at.timestamp_millis())
        .execute(conn)
        .await
        .map(|r| r.rows_affected())),
    }
}

// ---------------------------------------------------------------------------------------------
// Progress

/// Events done and the rate, on standard error: redrawn in place on a terminal, a line every
/// few seconds in a log.
struct Progress {
    what: &'static str,
    terminal: bool,
    started: Instant,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    fn new(what: &'static str) -> Self {
        Progress {
            what,
            terminal: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last: None,
            drawn: false,
        }
    }

    /// `total` events so far, `now` of them by this run (the rate counts those).
    fn show(&mut self, total: u64, now: u64, of: Option<u64>) {
        let every = if self.terminal {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(2)
        };
        if self.last.map_or(self.started.elapsed() < every, |last| {
            last.elapsed() < every
        }) {
            return;
        }
        self.last = Some(Instant::now());
        let of = of.map_or_else(String::new, |of| format!(" of {}", thousands(of)));
        let text = format!(
            "{}: {}{of} events  {} events/s",
            self.what,
            thousands(total),
            thousands(rate(now, self.started.elapsed()))
        );
        let mut stderr = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(stderr, "\r{text}\x1b[K")
        } else {
            writeln!(stderr, "{text}")
        };
        let _ = stderr.flush();
        self.drawn = true;
    }

    fn finish(&mut self, total: u64, now: u64) {
        if self.terminal && self.drawn {
            eprintln!();
        }
        eprintln!(
            "{}: {} events in {:.1} s ({} events/s)",
            self.what,
            thousands(total),
            self.started.elapsed().as_secs_f64(),
            thousands(rate(now, self.started.elapsed()))
        );
    }
}

fn rate(events: u64, elapsed: Duration) -> u64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        (events as f64 / seconds).round() as u64
    } else {
        0
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_does_not_parse_is_named_by_its_number() {
        let error = parse_line(b"{\"event\": nope}\n", 7)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("line 7, column "), "{error}");
        assert!(!error.contains("at line 1"), "{error}");
        let error = parse_line(b"\n", 3).unwrap_err().to_string();
        assert_eq!(error, "line 3: an empty line");
        let error = parse_line(b"{\"unknown\":{}}\n", 2)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown variant"), "{error}");
    }

    #[test]
    fn events_keep_their_json_as_it_was_stored() {
        let line = b"{\"event\":{\"stream_id\":\"message-1\",\"stream_position\":2,\"event_id\":\"0190a4c8-0000-7000-8000-000000000001\",\"event_type\":\"MessageDispatched\",\"schema_version\":1,\"data\":{\"b\": 1, \"a\":[2]},\"metadata\":{},\"recorded_at\":\"2024-05-01T08:00:00.123456Z\"}}\n";
        let Line::Event(event) = parse_line(line, 1).unwrap() else {
            panic!("an event line");
        };
        let recorded = event.to_recorded();
        assert_eq!(recorded.data, "{\"b\": 1, \"a\":[2]}");
        assert_eq!(recorded.stream_position, 2);
        assert_eq!(recorded.recorded_at.timestamp_subsec_micros(), 123_456);
        let mut out = Vec::new();
        put(&mut out, &Line::Event(event_line(&recorded).unwrap())).unwrap();
        let again = String::from_utf8(out).unwrap();
        assert!(again.contains("\"data\":{\"b\": 1, \"a\":[2]}"), "{again}");
    }

    #[test]
    fn headers_of_other_formats_and_versions_are_refused() {
        let header = |format: &str, version: u32| Header {
            format: format.to_owned(),
            version,
            source_backend: "sqlite".to_owned(),
            herald_version: "0.1.0".to_owned(),
            exported_at: Utc::now(),
        };
        assert!(check_header(&header(FORMAT, VERSION)).is_ok());
        let error = check_header(&header(FORMAT, 2)).unwrap_err().to_string();
        assert!(error.contains("version 2 is not supported"), "{error}");
        assert!(check_header(&header("other", VERSION)).is_err());
    }
}
