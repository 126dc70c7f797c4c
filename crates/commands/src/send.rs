//! The send chain of design section 4: validate → load the approved template → render → track
//! links → validate receivers → append one `MessageAccepted` per receiver and the request's
//! `SendAccepted`, all in one commit. A request id makes the whole request idempotent.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use domain::{
    EventMetadata, MessageCommand, MessageId, MessageState, Receiver, RequestId, SendAccepted,
    SendEvent, SentMessage, TemplateContent, TemplateId, TemplateInfo, TemplateState,
    TemplateVersion, TenantId, send_stream_name,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use store::queue::{QueueRow, Unchanged};
use store::{EventStore, ExpectedVersion, Store, StoreError, StreamAppend};

use crate::error::{Code, CommandError};
use crate::events;
use crate::links::LinkSigner;

/// How much one request may ask for.
#[derive(Debug, Clone)]
pub struct SendLimits {
    pub max_receivers_per_item: usize,
    pub max_items: usize,
    /// The furthest ahead `sendAt` may be.
    pub max_schedule_days: i64,
}

impl Default for SendLimits {
    fn default() -> Self {
        SendLimits {
            max_receivers_per_item: 100,
            max_items: 100,
            max_schedule_days: 366,
        }
    }
}

/// Receivers that share one set of variables.
#[derive(Debug, Clone, Serialize)]
pub struct SendItem {
    pub receivers: Vec<String>,
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SendRequest {
    pub template_id: TemplateId,
    /// Makes the request idempotent. Without one, Herald makes a fresh id and the request is not
    /// deduplicated: deriving one from the content would silently drop a second, intended send.
    #[serde(skip)]
    pub request_id: Option<String>,
    pub items: Vec<SendItem>,
    pub send_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SendOutcome {
    pub request_id: RequestId,
    pub messages: Vec<SentMessage>,
    /// The request id was seen before: these are the first request's messages, nothing new was sent.
    pub replayed: bool,
}

/// Everything the chain needs besides the request.
pub struct SendContext<'a> {
    pub store: &'a Store,
    pub links: &'a LinkSigner,
    pub limits: &'a SendLimits,
    /// The trace the request belongs to, recorded in the events' metadata.
    pub trace_id: Option<&'a str>,
    /// The request's span in that trace, which dispatch continues under.
    pub span_id: Option<&'a str>,
    /// Templates this process sent with lately.
    pub templates: &'a TemplateCache,
}

pub async fn send(
    cx: &SendContext<'_>,
    tenant: &TenantId,
    actor: &str,
    request: SendRequest,
    now: DateTime<Utc>,
) -> Result<SendOutcome, CommandError> {
    let request_id = match &request.request_id {
        Some(id) => RequestId::parse(id).map_err(|e| {
            CommandError::validation("INVALID_REQUEST_ID", e.to_string())
                .with("requestId", id.as_str())
        })?,
        None => {
            RequestId::parse(&uuid::Uuid::now_v7().to_string()).map_err(CommandError::internal)?
        }
    };
    check_sizes(cx.limits, &request, now)?;
    let fingerprint = fingerprint(&request);
    let send_stream = send_stream_name(tenant, &request_id);
    let mut metadata = EventMetadata::new(tenant.clone())
        .with_correlation_id(request_id.as_str())
        .with_actor(actor);
    if let Some(trace_id) = cx.trace_id {
        metadata = metadata.with_trace_id(trace_id);
    }
    if let Some(span_id) = cx.span_id {
        metadata = metadata.with_span_id(span_id);
    }
    let template_stream = request.template_id.stream_name();
    // A template this process sent with is not read again: the write checks that its stream
    // has not moved since, and when it has, the template is read afresh and the send decided
    // again. So a request costs one round trip for its write, and never uses a stale template.
    let mut cached = cx.templates.get(tenant, request.template_id);
    for _ in 0..TEMPLATE_ATTEMPTS {
        let (template, fresh) = match cached.take() {
            Some(template) => (template, false),
            None => {
                // A request id seen before is found when its send stream clashes at the write,
                // so a new request costs no read of it. Only a template that cannot send now
                // makes the check first: a retry of a request accepted before the template
                // was switched off gets its answer.
                let loaded = crate::templates::load(cx.store, tenant, request.template_id)
                    .await
                    .and_then(|(template, version)| match template.sendable() {
                        Ok(_) => Ok((template, version)),
                        Err(error) => Err(CommandError::from(error)),
                    });
                match loaded {
                    Ok(loaded) => (cx.templates.put(request.template_id, loaded), true),
                    Err(error) => {
                        return match replay(cx.store, &send_stream, &fingerprint).await? {
                            Some(outcome) => Ok(outcome),
                            None => Err(error),
                        };
                    }
                }
            }
        };
        let (state, template_version) = template.as_ref();
        let prepared = match prepare(
            cx,
            tenant,
            &request,
            &request_id,
            state,
            &metadata,
            &send_stream,
            &fingerprint,
            now,
        ) {
            Ok(prepared) => prepared,
            // A request refused by the kept copy (its variables, its receivers) may suit the
            // template as it is now: only a template read for this request refuses it.
            Err(_) if !fresh => continue,
            Err(error) => return Err(error),
        };
        let unchanged = Unchanged {
            stream_id: &template_stream,
            version: *template_version,
        };
        match store::queue::create_and_enqueue(
            cx.store,
            &prepared.appends,
            &prepared.rows,
            Some(unchanged),
        )
        .await
        {
            Ok(true) => {
                return Ok(SendOutcome {
                    request_id,
                    messages: prepared.sent,
                    replayed: false,
                });
            }
            // The template changed since it was read: read it again and decide again.
            Ok(false) => cx.templates.forget(request.template_id),
            // Another call with the same request id won the race: answer what it answered.
            // Its commit may show as a stale version or as a clash on the request's stream.
            Err(StoreError::WrongExpectedVersion { .. } | StoreError::ConcurrentAppend) => {
                return replay(cx.store, &send_stream, &fingerprint)
                    .await?
                    .ok_or_else(|| {
                        CommandError::internal("a send stream that exists could not be read")
                    });
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(CommandError::new(
        Code::Conflict,
        "TEMPLATE_CHANGING",
        "the template changed during every attempt to send with it; try again",
    ))
}

/// Reads of a template a send makes, at most, when it keeps changing under the send.
const TEMPLATE_ATTEMPTS: usize = 3;

/// A request's events and queue rows, ready to write.
struct Prepared {
    appends: Vec<StreamAppend>,
    sent: Vec<SentMessage>,
    rows: Vec<QueueRow>,
}

/// Renders every item of `request` with `template`'s approved version and makes each
/// receiver's message, the request's `SendAccepted`, and the messages' queue rows.
#[allow(clippy::too_many_arguments)]
fn prepare(
    cx: &SendContext<'_>,
    tenant: &TenantId,
    request: &SendRequest,
    request_id: &RequestId,
    template: &TemplateState,
    metadata: &EventMetadata,
    send_stream: &str,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<Prepared, CommandError> {
    let version = template.sendable()?;
    let info = template
        .info
        .as_ref()
        .ok_or_else(|| CommandError::internal("a sendable template has info"))?;
    let mut appends = Vec::new();
    let mut sent = Vec::new();
    let metadata_json = events::metadata_json(metadata);
    let message = Accept {
        links: cx.links,
        tenant,
        request_id,
        template_id: request.template_id,
        info,
        version,
        send_at: request.send_at,
        now,
        metadata: &metadata_json,
    };
    for (item_index, item) in request.items.iter().enumerate() {
        let rendered = version.content.render(&item.variables).map_err(|e| {
            CommandError::validation(e.code(), e.to_string()).with("item", item_index)
        })?;
        rendered
            .validate()
            .map_err(|e| CommandError::from(e).with("item", item_index))?;
        for (receiver_index, raw) in item.receivers.iter().enumerate() {
            let receiver = Receiver::parse(info.receiver_id_type, raw).map_err(|e| {
                CommandError::validation(e.code(), format!("receiver {raw:?}: {e}"))
                    .with("item", item_index)
                    .with("receiverIndex", receiver_index)
                    .with("receiver", raw.as_str())
            })?;
            let (append, sent_message) = message.one(receiver, &rendered)?;
            appends.push(append);
            sent.push(sent_message);
        }
    }
    let accepted = SendEvent::SendAccepted(SendAccepted {
        request_id: request_id.clone(),
        template_id: request.template_id,
        template_version: version.version,
        fingerprint: fingerprint.to_owned(),
        messages: sent.clone(),
        send_at: request.send_at,
        at: now,
    });
    appends.push(StreamAppend {
        stream_id: send_stream.to_owned(),
        expected: ExpectedVersion::NoStream,
        events: vec![events::encode_with(&accepted, &metadata_json)],
    });
    // The messages join their lanes' dispatch queue in the same commit, so dispatch sees them
    // at once and no shared feed stands before the lanes.
    let rows = sent
        .iter()
        .map(|m| QueueRow {
            message_id: m.message_id.to_string(),
            tenant_id: tenant.to_string(),
            lane: domain::lane(info.channel, info.msg_type),
            due_at: request.send_at.map_or(now, |at| at.max(now)),
        })
        .collect();
    Ok(Prepared {
        appends,
        sent,
        rows,
    })
}

/// Approved templates this process sent with, each with the version of its stream it was read
/// at. A send takes one from here without a read; its write is made only while the template's
/// stream is still at that version ([`store::queue::Unchanged`]), so an entry another process
/// made stale is found out at the write, and read again.
#[derive(Default)]
pub struct TemplateCache {
    entries: std::sync::Mutex<HashMap<TemplateId, Arc<(TemplateState, u64)>>>,
}

impl TemplateCache {
    /// Templates kept at most; past it the cache starts over.
    const CAPACITY: usize = 10_000;

    /// `tenant`'s template `id`, if this process read it; another tenant's is not there.
    fn get(&self, tenant: &TenantId, id: TemplateId) -> Option<Arc<(TemplateState, u64)>> {
        let entries = self.lock();
        let entry = entries.get(&id)?;
        let (state, _) = entry.as_ref();
        (state.info.as_ref()?.tenant == *tenant).then(|| Arc::clone(entry))
    }

    fn put(&self, id: TemplateId, loaded: (TemplateState, u64)) -> Arc<(TemplateState, u64)> {
        let loaded = Arc::new(loaded);
        let mut entries = self.lock();
        if entries.len() >= Self::CAPACITY {
            entries.clear();
        }
        entries.insert(id, Arc::clone(&loaded));
        loaded
    }

    fn forget(&self, id: TemplateId) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TemplateId, Arc<(TemplateState, u64)>>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn check_sizes(
    limits: &SendLimits,
    request: &SendRequest,
    now: DateTime<Utc>,
) -> Result<(), CommandError> {
    if request.items.is_empty() || request.items.len() > limits.max_items {
        return Err(CommandError::validation(
            "ITEM_COUNT",
            format!(
                "a request takes 1 to {} items, not {}",
                limits.max_items,
                request.items.len()
            ),
        ));
    }
    for (index, item) in request.items.iter().enumerate() {
        let n = item.receivers.len();
        if n == 0 || n > limits.max_receivers_per_item {
            return Err(CommandError::validation(
                "RECEIVER_COUNT",
                format!(
                    "an item takes 1 to {} receivers, not {n}",
                    limits.max_receivers_per_item
                ),
            )
            .with("item", index));
        }
    }
    if request
        .send_at
        .is_some_and(|at| at > now + Duration::days(limits.max_schedule_days))
    {
        return Err(CommandError::validation(
            "SEND_AT_TOO_FAR",
            format!(
                "sendAt may be at most {} days ahead",
                limits.max_schedule_days
            ),
        ));
    }
    Ok(())
}

/// A digest of everything that decides what a request sends.
fn fingerprint(request: &SendRequest) -> String {
    let canonical = serde_json::to_vec(request).unwrap_or_default();
    Sha256::digest(&canonical)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first answer to this request id, if it was seen before.
async fn replay(
    store: &Store,
    send_stream: &str,
    fingerprint: &str,
) -> Result<Option<SendOutcome>, CommandError> {
    let Some(first) = store
        .read_stream(send_stream, 1, 1)
        .await?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let SendEvent::SendAccepted(accepted) = events::decode::<SendEvent>(&first)?;
    if accepted.fingerprint != fingerprint {
        return Err(CommandError::new(
            Code::Conflict,
            "REQUEST_ID_REUSED",
            "this request id was already used for a different request",
        )
        .with("requestId", accepted.request_id.as_str()));
    }
    Ok(Some(SendOutcome {
        request_id: accepted.request_id,
        messages: accepted.messages,
        replayed: true,
    }))
}

/// What every message of one request shares; [`Accept::one`] makes one receiver's message.
pub(crate) struct Accept<'a> {
    pub links: &'a LinkSigner,
    pub tenant: &'a TenantId,
    pub request_id: &'a RequestId,
    pub template_id: TemplateId,
    pub info: &'a TemplateInfo,
    pub version: &'a TemplateVersion,
    pub send_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
    /// The request's metadata as the store keeps it ([`events::metadata_json`]).
    pub metadata: &'a str,
}

impl Accept<'_> {
    /// The `MessageAccepted` of a fresh message to `receiver` with `rendered` content, its links
    /// tracked, ready to append to a new stream.
    pub fn one(
        &self,
        receiver: Receiver,
        rendered: &TemplateContent,
    ) -> Result<(StreamAppend, SentMessage), CommandError> {
        let message_id = MessageId::generate();
        let (content, tracked_links) = self.links.track(message_id, rendered);
        let accept = MessageCommand::AcceptMessage {
            message_id,
            tenant: self.tenant.clone(),
            request_id: self.request_id.clone(),
            template_id: self.template_id,
            template_version: self.version.version,
            channel: self.info.channel,
            msg_type: self.info.msg_type,
            shield_type: self.version.shield_type,
            account: self.version.account.clone(),
            receiver: receiver.clone(),
            content,
            tracked_links,
            send_at: self.send_at,
            at: self.now,
        };
        let accepted = domain::message_decide::decide(&MessageState::default(), accept)?;
        let append = StreamAppend {
            stream_id: message_id.stream_name(),
            expected: ExpectedVersion::NoStream,
            events: accepted
                .iter()
                .map(|e| events::encode_with(e, self.metadata))
                .collect(),
        };
        Ok((
            append,
            SentMessage {
                message_id,
                receiver,
            },
        ))
    }
}
