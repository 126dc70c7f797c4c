//! A lane worker: claims due messages of one lane, hands each to its account's supplier, and
//! appends the outcome with the expected version of the message stream, in the transaction that
//! removes or reschedules its queue row. So a message has one outcome however often it is
//! claimed: a second worker (after a lease expired) finds it no longer pending and only tidies.
//!
//! Today: discard when the template is switched off, the night shield, account choice, send,
//! retry with backoff, throttling and final failure. Dedup, caps, rate limits and failover come next.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cache::{
    Admission, BreakerPolicy, Cache, DedupMark, FrequencyUse, PolicyCache, Screen, TokenBucket,
};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use domain::message::MessageAccepted;
use domain::{
    DedupRule, DeferReason, DeliveryStatus, DiscardRule, ErrorClass, EventMetadata, MessageCommand,
    MessageEvent, MessageState, ReceiptOutcome, TemplateEvent, TemplateId, TemplateState,
};
use store::{EventStore, ExpectedVersion, NewEvent, Store, StreamAppend};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::accounts::{Account, Accounts, LiveAccounts};
use crate::commit::{Committer, Outcome};
use crate::policy::{self, Limits, NightAction, NightWindow};
use crate::sensitive::{SensitiveAction, SensitiveWords};
use crate::successes::Successes;
use crate::supplier::{Outbound, SendError};
use store::queue::{self, Claimed};

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Messages of one lane in flight at once.
    pub concurrency: usize,
    /// How long a claim holds before another worker may take the message.
    pub lease: Duration,
    /// How long an idle worker waits before looking again.
    pub poll_interval: Duration,
    pub retry: RetryPolicy,
    pub night: NightWindow,
    pub limits: Limits,
    /// When an account's circuit breaker opens and how it recovers.
    pub breaker: BreakerPolicy,
    /// Messages in flight at once for particular lanes (`SMS.MARKETING`), over `concurrency`.
    pub lane_concurrency: BTreeMap<String, usize>,
    pub sensitive_words: SensitiveWords,
    pub sensitive_action: SensitiveAction,
    /// How long after a send its receipt is first asked for, where the supplier is asked.
    pub receipt_query_delay: Duration,
    /// Tenants that send only to whitelisted receivers.
    pub sandbox: policy::Sandbox,
    /// The discard switch: every message is discarded (`DISCARD_SWITCH`). Set by live policy
    /// for a tenant or template.
    pub discard: bool,
    /// Tenants' and templates' overrides of these options, resolved per message.
    pub policies: crate::live_policy::LivePolicies,
}

impl WorkerOptions {
    /// Messages of `lane` in flight at once.
    pub fn concurrency_for(&self, lane: &str) -> usize {
        self.lane_concurrency
            .get(lane)
            .copied()
            .unwrap_or(self.concurrency)
            .max(1)
    }
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 8,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(200),
            retry: RetryPolicy::default(),
            night: NightWindow::default(),
            limits: Limits::default(),
            breaker: BreakerPolicy::default(),
            lane_concurrency: BTreeMap::new(),
            sensitive_words: SensitiveWords::default(),
            sensitive_action: SensitiveAction::Mask,
            receipt_query_delay: crate::receipts::FIRST_QUERY_AFTER,
            sandbox: policy::Sandbox::default(),
            discard: false,
            policies: crate::live_policy::LivePolicies::default(),
        }
    }
}

/// Design section 5: 3 attempts, 60 s apart at first, doubling.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base: Duration,
    pub factor: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base: Duration::from_secs(60),
            factor: 2,
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        self.base
            .saturating_mul(self.factor.saturating_pow(exponent))
    }
}

/// Runs one lane until `shutdown`. `options` may change while it runs (a reloaded
/// configuration): each claim reads the current ones, so a new concurrency or word list applies
/// from the next message on.
pub async fn run_lane(
    store: Store,
    accounts: LiveAccounts,
    cache: Cache,
    lane: String,
    worker: String,
    options: watch::Receiver<WorkerOptions>,
    shutdown: CancellationToken,
) {
    let (committer, writer) = Committer::start(store.clone());
    let successes = Arc::new(Successes::default());
    let stop_reporting = CancellationToken::new();
    let reporter = tokio::spawn(crate::successes::report_until(
        Arc::clone(&successes),
        cache.clone(),
        stop_reporting.clone(),
    ));
    let context = Arc::new(Shared {
        store,
        accounts,
        cache,
        committer,
        successes,
    });
    // A rolling window: as soon as one message has its outcome, the next is claimed, so one
    // slow supplier call does not hold back the rest of a batch.
    let mut in_flight = JoinSet::new();
    while !shutdown.is_cancelled() {
        // Finished tasks still count in `len` until joined: reap them first.
        while in_flight.try_join_next().is_some() {}
        let current = options.borrow().clone();
        let concurrency = current.concurrency_for(&lane);
        let free = concurrency.saturating_sub(in_flight.len());
        // A claim costs a round trip whatever its size: while messages are in flight, wait
        // until a quarter of the slots are free and claim them together.
        let worth_claiming = free > 0 && (free >= (concurrency / 4).max(1) || in_flight.is_empty());
        let mut claimed_all = false;
        if worth_claiming {
            let lease_ms = i64::try_from(current.lease.as_millis()).unwrap_or(i64::MAX);
            let claimed = match queue::claim(
                &context.store,
                &lane,
                &worker,
                Utc::now(),
                lease_ms,
                free,
            )
            .await
            {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(%error, %lane, "claiming from the dispatch queue failed");
                    Vec::new()
                }
            };
            claimed_all = claimed.len() == free;
            let current = Arc::new(current);
            // Their streams in one read; a message whose read failed reads its own.
            let mut streams = if claimed.is_empty() {
                HashMap::new()
            } else {
                let ids: Vec<String> = claimed
                    .iter()
                    .map(|c| format!("message-{}", c.message_id))
                    .collect();
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                context
                    .store
                    .read_streams(&ids, 10_000)
                    .await
                    .unwrap_or_else(|error| {
                        tracing::warn!(%error, %lane, "reading the claimed messages failed");
                        HashMap::new()
                    })
            };
            for message in claimed {
                let recorded = streams.remove(&format!("message-{}", message.message_id));
                let context = Arc::clone(&context);
                let options = Arc::clone(&current);
                let lane = lane.to_string();
                in_flight.spawn(async move {
                    let accounts = context.accounts.current();
                    if let Err(error) =
                        process(&context, &accounts, &message, recorded, &options, &lane).await
                    {
                        tracing::warn!(%error, message_id = %message.message_id, %lane, "dispatch failed; the lease will expire and it is retried");
                    }
                });
            }
        }
        if claimed_all {
            // There may be more due right now: claim again at once.
            continue;
        }
        // Full, or nothing more due: wait for a slot, the next poll, or shutdown.
        tokio::select! {
            () = shutdown.cancelled() => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            () = tokio::time::sleep(current_poll(&options)) => {}
        }
    }
    // A claimed message is finished even during shutdown: its supplier call may be under way,
    // and its outcome must be recorded. The lease covers a crash.
    while in_flight.join_next().await.is_some() {}
    // The writer stops once it has written what it was given; the reporter reports the
    // successes it was given.
    drop(context);
    stop_reporting.cancel();
    let _ = tokio::join!(writer, reporter);
}

/// What every message task of a lane shares.
struct Shared {
    store: Store,
    accounts: LiveAccounts,
    cache: Cache,
    committer: Committer,
    successes: Arc<Successes>,
}

fn current_poll(options: &watch::Receiver<WorkerOptions>) -> Duration {
    options.borrow().poll_interval
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("queue: {0}")]
    Queue(#[from] sqlx::Error),
    #[error("stored event: {0}")]
    Decode(String),
    #[error("cache: {0}")]
    Cache(#[from] cache::CacheError),
    #[error("decision: {0}")]
    Domain(#[from] domain::MessageError),
}

/// A message's state folded from its stream, and the stream's version.
pub(crate) async fn load(store: &Store, stream: &str) -> Result<(MessageState, u64), ProcessError> {
    load_traced(store, stream)
        .await
        .map(|(state, version, _)| (state, version))
}

/// The trace a message was accepted in, and the span that accepted it.
#[derive(Debug, Clone)]
struct Trace {
    trace_id: String,
    span_id: Option<String>,
}

/// [`load`], with the trace the message was accepted in, if any.
async fn load_traced(
    store: &Store,
    stream: &str,
) -> Result<(MessageState, u64, Option<Trace>), ProcessError> {
    fold_traced(&store.read_stream(stream, 1, 10_000).await?)
}

/// A message's state, version and trace from its stream's events.
fn fold_traced(
    recorded: &[store::RecordedEvent],
) -> Result<(MessageState, u64, Option<Trace>), ProcessError> {
    let trace_id = recorded.first().and_then(|r| {
        let metadata = serde_json::from_str::<EventMetadata>(&r.metadata).ok()?;
        Some(Trace {
            trace_id: metadata.trace_id?,
            span_id: metadata.span_id,
        })
    });
    let mut state = MessageState::default();
    for r in recorded {
        let event = MessageEvent::decode_json(&r.event_type, r.schema_version, &r.data)
            .map_err(|e| ProcessError::Decode(e.to_string()))?;
        state = domain::message_state::apply(state, &event)?;
    }
    Ok((state, recorded.len() as u64, trace_id))
}

/// What the queue row becomes with the outcome.
pub(crate) enum Next {
    Remove,
    Reschedule(DateTime<Utc>),
    /// Into another lane (a sent message waiting for its receipt).
    MoveTo(&'static str, DateTime<Utc>),
    /// Untouched: the event is not the message's dispatch (a pulled receipt).
    Keep,
}

impl Next {
    /// The queue row's move, for a group commit.
    fn as_move(&self) -> Option<queue::Move> {
        match self {
            Next::Remove => Some(queue::Move::Remove),
            Next::Reschedule(at) => Some(queue::Move::Reschedule(*at)),
            Next::MoveTo(lane, at) => Some(queue::Move::MoveTo((*lane).to_owned(), *at)),
            Next::Keep => None,
        }
    }
}

/// Takes one claimed message through its account's supplier and records what happened, in a
/// `dispatch` span that continues the trace the message was accepted in.
async fn process(
    shared: &Shared,
    accounts: &Accounts,
    claimed: &Claimed,
    recorded: Option<Vec<store::RecordedEvent>>,
    options: &WorkerOptions,
    lane: &str,
) -> Result<(), ProcessError> {
    let stream = format!("message-{}", claimed.message_id);
    let (state, version, trace) = match recorded {
        Some(recorded) => fold_traced(&recorded)?,
        None => load_traced(&shared.store, &stream).await?,
    };
    let span = tracing::info_span!(
        "dispatch",
        message_id = %claimed.message_id,
        lane = %lane,
        trace_id = tracing::field::Empty
    );
    if let Some(trace) = &trace {
        span.record("trace_id", trace.trace_id.as_str());
        telemetry::trace::continue_trace(&span, &trace.trace_id, trace.span_id.as_deref());
    }
    let trace_id = trace.map(|t| t.trace_id);
    let loaded = Loaded {
        stream,
        state,
        version,
        trace_id,
    };
    process_loaded(shared, accounts, options, loaded)
        .instrument(span)
        .await
}

/// A claimed message's stream as [`process`] read it.
struct Loaded {
    stream: String,
    state: MessageState,
    /// The stream's version the state was folded at.
    version: u64,
    trace_id: Option<String>,
}

async fn process_loaded(
    shared: &Shared,
    accounts: &Accounts,
    options: &WorkerOptions,
    loaded: Loaded,
) -> Result<(), ProcessError> {
    let Shared {
        store,
        cache,
        committer,
        successes,
        ..
    } = shared;
    let retry = options.retry;
    let Loaded {
        stream,
        state,
        version,
        trace_id,
    } = loaded;
    let Some(accepted) = state.accepted.clone() else {
        return finish(store, &stream, Next::Remove).await;
    };
    // An account this process has not heard of may have been created since the last poll:
    // the store is asked before the message goes through another of its channel's accounts.
    let known;
    let accounts = if accounts.find(&accepted.account).is_some() {
        accounts
    } else {
        known = shared.accounts.knowing(&accepted.account).await;
        &known
    };
    // The tenant's and the template's live policy over the configured options.
    let resolved =
        options
            .policies
            .current()
            .resolve(&accepted.tenant, accepted.template_id, options);
    let options = resolved.as_ref().unwrap_or(options);
    if !matches!(
        state.status,
        Some(DeliveryStatus::Accepted | DeliveryStatus::Deferred)
    ) {
        // Already has its outcome (or was recalled): only the queue row is left to tidy.
        return finish(store, &stream, Next::Remove).await;
    }
    let now = Utc::now();
    if let Some(until) = state.deferred_until.filter(|until| *until > now) {
        return finish(store, &stream, Next::Reschedule(until)).await;
    }
    let mut metadata = EventMetadata::new(accepted.tenant.clone())
        .with_correlation_id(accepted.request_id.to_string())
        .with_actor("dispatch");
    if let Some(trace_id) = trace_id {
        metadata = metadata.with_trace_id(trace_id);
    }
    // A receipt came in for an attempt recorded as failed (the answer was lost, the message
    // went out): it was dispatched, and must not be sent again.
    if let (Some(_), Some(failure)) = (state.last_receipt, &state.last_failure) {
        let dispatched = MessageCommand::RecordDispatch {
            account: failure.account.clone(),
            supplier: failure.supplier.clone(),
            supplier_message_id: None,
            attempt: failure.attempt,
            latency_ms: 0,
            masked_words: 0,
            at: now,
        };
        return record_one(store, &stream, &metadata, dispatched, Next::Remove).await;
    }
    // The policy steps, in the order of design section 5, each recorded as its event. A
    // sandbox tenant's message to a receiver off the whitelist never goes further.
    if !options.sandbox.allows(&accepted) {
        let discard = MessageCommand::DiscardMessage {
            rule: DiscardRule::NotWhitelisted,
            at: now,
        };
        return record_one(store, &stream, &metadata, discard, Next::Remove).await;
    }
    if options.discard {
        let discard = MessageCommand::DiscardMessage {
            rule: DiscardRule::DiscardSwitch,
            at: now,
        };
        return record_one(store, &stream, &metadata, discard, Next::Remove).await;
    }
    if template_disabled(store, accepted.template_id).await? {
        let discard = MessageCommand::DiscardMessage {
            rule: DiscardRule::TemplateDisabled,
            at: now,
        };
        return record_one(store, &stream, &metadata, discard, Next::Remove).await;
    }
    match options.night.action(accepted.shield_type, now) {
        Some(NightAction::Shield) => {
            let shield = MessageCommand::ShieldMessage {
                reason: "NIGHT_DISCARD".to_owned(),
                at: now,
            };
            return record_one(store, &stream, &metadata, shield, Next::Remove).await;
        }
        Some(NightAction::Defer(until)) => {
            let defer = MessageCommand::DeferMessage {
                until,
                reason: DeferReason::NightShield,
                at: now,
            };
            return record_one(store, &stream, &metadata, defer, Next::Reschedule(until)).await;
        }
        None => {}
    }
    let (content, masked_words) = options.sensitive_words.mask(&accepted.content);
    if masked_words > 0 && options.sensitive_action == SensitiveAction::Reject {
        let discard = MessageCommand::DiscardMessage {
            rule: DiscardRule::SensitiveWords,
            at: now,
        };
        return record_one(store, &stream, &metadata, discard, Next::Remove).await;
    }
    let limits = options.limits;
    // Dedup, then the frequency cap, in one round trip. The message id owns the dedup mark, so
    // a redelivered message is not its own duplicate. The cap counts a message once (the
    // cache keeps who it counted), before its first attempt: a message that comes back after
    // a deferral or a rate limit is not counted again.
    let owner = accepted.message_id.to_string();
    let dedup_key = (!limits.dedup_window.is_zero()).then(|| policy::dedup_key(&accepted));
    let frequency = (limits.frequency_cap > 0 && state.attempts == 0)
        .then(|| policy::frequency_key(&accepted, options.night.zone, now));
    // The account the message would go through first is asked in the same round trip, only
    // if the message passes.
    let used_up = |id: &str| used_up(&state, retry, id);
    let candidates = accounts.candidates(
        accepted.channel,
        &accepted.account,
        &accepted.tenant,
        accepted.message_id,
        used_up,
    );
    let first_bucket = candidates.first().map(|first| bucket_name(first));
    let (screen, first_admission) = cache
        .screen_and_admit(
            dedup_key.as_deref().map(|key| DedupMark {
                key,
                owner: &owner,
                window: limits.dedup_window,
            }),
            frequency.as_ref().map(|(key, period_end_ms)| FrequencyUse {
                key,
                owner: &owner,
                limit: limits.frequency_cap,
                period_end_ms: *period_end_ms,
            }),
            candidates
                .first()
                .zip(first_bucket.as_deref())
                .map(|(first, name)| (first.id.as_str(), bucket(first, name))),
            now,
        )
        .await?;
    match screen {
        Screen::Pass => {}
        Screen::Duplicate { .. } => {
            let dedup = MessageCommand::DeduplicateMessage {
                rule: DedupRule::Content,
                key: dedup_key.unwrap_or_default(),
                window_secs: limits.dedup_window.as_secs(),
                at: now,
            };
            return record_one(store, &stream, &metadata, dedup, Next::Remove).await;
        }
        Screen::Exceeded { .. } => {
            let (key, period_end) = frequency.unwrap_or_default();
            let capped = MessageCommand::DeduplicateMessage {
                rule: DedupRule::Frequency,
                key,
                window_secs: u64::try_from((period_end - now.timestamp_millis()) / 1000)
                    .unwrap_or(0),
                at: now,
            };
            return record_one(store, &stream, &metadata, capped, Next::Remove).await;
        }
    }
    let (account, probe) =
        match choose(accounts, candidates, first_admission, cache, &accepted, now).await? {
            Choice::Send { account, probe } => (account, probe),
            Choice::NoAccount => {
                // No account serves this channel any more: leave it queued for when one does.
                return finish(
                    store,
                    &stream,
                    Next::Reschedule(now + chrono::Duration::minutes(1)),
                )
                .await;
            }
            Choice::UsedUp => {
                // Every account had its attempts (a message left over from a configuration with
                // fewer attempts): give up.
                let reason = state
                    .last_failure
                    .as_ref()
                    .map_or_else(|| "ACCOUNTS_EXHAUSTED".to_owned(), |f| f.error_code.clone());
                let fail = MessageCommand::FailMessage { reason, at: now };
                return record_one(store, &stream, &metadata, fail, Next::Remove).await;
            }
            Choice::Wait {
                until,
                account,
                breaker,
            } => {
                // Every account left must wait (paused, out of tokens, or its breaker open):
                // wait for the first, without spending an attempt.
                let wait = if breaker {
                    MessageCommand::DeferMessage {
                        until,
                        reason: DeferReason::CircuitOpen,
                        at: now,
                    }
                } else {
                    MessageCommand::RateLimitMessage {
                        account,
                        until,
                        at: now,
                    }
                };
                return record_one(store, &stream, &metadata, wait, Next::Reschedule(until)).await;
            }
        };
    let attempt = state.attempts + 1;
    let outbound = Outbound {
        message_id: accepted.message_id,
        tenant: &accepted.tenant,
        channel: accepted.channel,
        msg_type: accepted.msg_type,
        receiver: &accepted.receiver,
        content: &content,
        attempt,
    };
    let started = Instant::now();
    let result = account
        .supplier
        .send(&outbound)
        .instrument(tracing::info_span!(
            "supplier",
            supplier = account.supplier.name(),
            account = %account.id,
            attempt = outbound.attempt
        ))
        .await;
    let elapsed = started.elapsed();
    let latency_ms = elapsed.as_millis() as u64;
    let at = Utc::now();
    let supplier = account.supplier.name().to_owned();
    telemetry::observe(
        "herald_supplier_request_duration_seconds",
        "Supplier calls by account, supplier and result (ok, retryable, rejected...).",
        &[
            ("account", account.id.as_str()),
            ("supplier", supplier.as_str()),
            ("result", send_result(&result)),
        ],
        elapsed.as_secs_f64(),
    );
    match &result {
        Ok(_) => tracing::debug!(
            account = %account.id,
            receiver = %accepted.receiver.masked(),
            attempt,
            latency_ms,
            "handed to the supplier"
        ),
        Err(error) => tracing::info!(
            account = %account.id,
            receiver = %accepted.receiver.masked(),
            attempt,
            latency_ms,
            code = error.code(),
            %error,
            "the supplier refused or failed"
        ),
    }
    let delivers = account.supplier.delivers_on_send();
    let queries_receipts = account.supplier.queries_receipts();
    let account_id = account.id.clone();
    // The breaker hears of availability: only a retryable failure (5xx, timeout, no
    // connection) counts against the account. The outcome is recorded whatever the cache says,
    // so a cache error here is logged, not returned: returning would send the message again.
    let available = !matches!(
        result,
        Err(SendError::Retryable { .. } | SendError::Unavailable { .. })
    );
    if available && !probe {
        // Only adds to the window: reported with the lane's other successes.
        successes.add(&account_id, options.breaker);
    } else if let Err(error) = cache
        .record_result(&account_id, available, at, options.breaker)
        .await
    {
        tracing::warn!(%error, account = %account_id, "recording a result on the breaker failed");
    }
    // Another account the message could go through right away.
    let other_account = || {
        !accounts
            .candidates(
                accepted.channel,
                &accepted.account,
                &accepted.tenant,
                accepted.message_id,
                |id| id == account_id || used_up(id),
            )
            .is_empty()
    };
    // Holds every worker off the account until `until`; logged, not returned, like the breaker.
    let pause = |until: DateTime<Utc>| {
        let account_id = account_id.clone();
        async move {
            if let Err(error) = cache.pause(&account_id, until.timestamp_millis(), at).await {
                tracing::warn!(%error, account = %account_id, "pausing the account failed");
            }
        }
    };

    // The supplier's id of a sent message, remembered with the outcome.
    let mut supplier_message_id: Option<String> = None;
    // The commands depend only on the supplier's answer, so after a conflict (a recall came in)
    // they are decided again on the fresh state, and the supplier is never called twice.
    let (commands, next): (Vec<MessageCommand>, Next) = match result {
        Ok(sent) => {
            supplier_message_id.clone_from(&sent.supplier_message_id);
            let mut commands = vec![MessageCommand::RecordDispatch {
                account: account_id.clone(),
                supplier,
                supplier_message_id: sent.supplier_message_id,
                attempt,
                latency_ms,
                masked_words,
                at,
            }];
            if delivers {
                commands.push(MessageCommand::RecordReceipt {
                    outcome: ReceiptOutcome::Delivered,
                    supplier_status: "DELIVERED".to_owned(),
                    reported_at: at,
                    at,
                });
            }
            // A supplier that is asked for receipts keeps the message in the receipt lane.
            let next = if queries_receipts && !delivers {
                Next::MoveTo(
                    crate::receipts::LANE,
                    at + chrono::Duration::from_std(options.receipt_query_delay)
                        .unwrap_or_default(),
                )
            } else {
                Next::Remove
            };
            (commands, next)
        }
        Err(SendError::Throttled { retry_after, .. }) => {
            // The account is over its rate: pause it as asked for every worker, spending no
            // attempt. The message goes through another account at once if there is one.
            let until = at
                + chrono::Duration::from_std(retry_after.unwrap_or(Duration::from_secs(1)))
                    .unwrap_or_default();
            pause(until).await;
            let next = if other_account() { at } else { until };
            (
                vec![MessageCommand::RateLimitMessage {
                    account: account_id.clone(),
                    until,
                    at,
                }],
                Next::Reschedule(next),
            )
        }
        Err(error) => {
            // Retry on the same account with backoff until it had its attempts, then fail over
            // at once to the next account the message has not used up, then give up. An
            // account that cannot send at all (refused credentials, no balance) is paused and
            // the message fails over at once.
            let on_account = state
                .failures_by_account
                .get(&account_id)
                .copied()
                .unwrap_or(0)
                + 1;
            let (code, message, error_class, unavailable) = match error {
                SendError::Retryable { code, message } => {
                    (code, message, ErrorClass::Retryable, None)
                }
                SendError::Unavailable {
                    code,
                    message,
                    retry_after,
                } => (
                    code,
                    message,
                    ErrorClass::Retryable,
                    Some(retry_after.unwrap_or(Duration::from_secs(60))),
                ),
                SendError::Final { code, message } | SendError::Throttled { code, message, .. } => {
                    (code, message, ErrorClass::Final, None)
                }
            };
            let is_retryable = error_class == ErrorClass::Retryable;
            if let Some(paused_for) = unavailable {
                pause(at + chrono::Duration::from_std(paused_for).unwrap_or_default()).await;
            }
            let attempts_left = on_account < retry.attempts;
            let backoff = (is_retryable && attempts_left && unavailable.is_none()).then(|| {
                at + chrono::Duration::from_std(retry.backoff(on_account)).unwrap_or_default()
            });
            // Try again now: on another account, or on this one once its pause is over.
            let again_now = is_retryable
                && backoff.is_none()
                && (other_account() || (unavailable.is_some() && attempts_left));
            let mut commands = vec![MessageCommand::RecordDispatchFailure {
                account: account_id.clone(),
                supplier,
                attempt,
                error_class,
                error_code: code.clone(),
                error_message: message,
                retryable: backoff.is_some() || again_now,
                next_attempt_at: backoff,
                at,
            }];
            match backoff {
                Some(until) => {
                    commands.push(MessageCommand::DeferMessage {
                        until,
                        reason: DeferReason::RetryBackoff,
                        at,
                    });
                    (commands, Next::Reschedule(until))
                }
                None if again_now => (commands, Next::Reschedule(at)),
                None => {
                    commands.push(MessageCommand::FailMessage { reason: code, at });
                    (commands, Next::Remove)
                }
            }
        }
    };
    // First with the other messages in flight, decided on the state loaded before the send;
    // alone, loaded and decided again, if that batch could not be written.
    let decide = decide_all(commands);
    if let Ok(events) = decide(&state) {
        let outcome = Outcome {
            stream: stream.clone(),
            version,
            events: events.iter().map(|e| encode(e, &metadata)).collect(),
            next: next.as_move(),
            supplier_id: supplier_message_id
                .clone()
                .map(|id| (account_id.clone(), id)),
        };
        // The message's append step is its wait for the group commit that writes it.
        let span = tracing::info_span!(
            "append",
            streams = 1,
            events = outcome.events.len(),
            group_commit = true
        );
        if committer.commit(outcome).instrument(span).await {
            count_events(&state, &events);
            return Ok(());
        }
    }
    let supplier_id = supplier_message_id
        .as_deref()
        .map(|id| (account_id.as_str(), id));
    append_outcome_indexed(store, &stream, &metadata, decide, next, supplier_id).await
}

/// Whether the message has used `account` up: it had its share of failed attempts there.
fn used_up(state: &MessageState, retry: RetryPolicy, account: &str) -> bool {
    state.failures_by_account.get(account).copied().unwrap_or(0) >= retry.attempts
}

/// The name of `account`'s token bucket in the cache.
fn bucket_name(account: &Account) -> String {
    format!("account:{}", account.id)
}

/// `account`'s token bucket, named `name`, when it has a rate limit.
fn bucket<'a>(account: &Account, name: &'a str) -> Option<TokenBucket<'a>> {
    account.rate_limit.map(|(rate_per_sec, burst)| TokenBucket {
        name,
        rate_per_sec,
        burst,
    })
}

/// Which account a message goes through now.
enum Choice<'a> {
    /// Call `account`; `probe`: its breaker is half open and this call is one of its probes.
    Send { account: &'a Account, probe: bool },
    /// Every account left must wait until `until`: `account` is paused or out of tokens, or
    /// (`breaker`) has its circuit breaker open.
    Wait {
        until: DateTime<Utc>,
        account: String,
        breaker: bool,
    },
    /// No account serves the channel.
    NoAccount,
    /// Every account of the channel is used up for this message.
    UsedUp,
}

/// Walks the message's candidate accounts (the named or weighted one first) and takes the
/// first that can send now: not paused, a token in its bucket, its breaker not open. The
/// breaker is asked last, because a half-open breaker hands out its probe to whoever asks, and
/// a probe given to a message that then waits would be lost. A token taken from an account
/// whose breaker then turns out open is the only thing spent on a skipped account.
///
/// `candidates` are the message's accounts in that order, and `first` the first one's
/// admission when it was asked already (with the message's own checks).
async fn choose<'a>(
    accounts: &'a Accounts,
    candidates: Vec<&'a Account>,
    mut first: Option<Admission>,
    cache: &Cache,
    accepted: &MessageAccepted,
    now: DateTime<Utc>,
) -> Result<Choice<'a>, ProcessError> {
    if candidates.is_empty() {
        return Ok(
            if accounts
                .pick(accepted.channel, "", &accepted.tenant, accepted.message_id)
                .is_none()
            {
                Choice::NoAccount
            } else {
                Choice::UsedUp
            },
        );
    }
    let mut wait: Option<(DateTime<Utc>, String, bool)> = None;
    let mut consider = |until: DateTime<Utc>, account: &str, breaker: bool| {
        if wait.as_ref().is_none_or(|(first, ..)| until < *first) {
            wait = Some((until, account.to_owned(), breaker));
        }
    };
    let from_ms = |ms: i64| {
        DateTime::from_timestamp_millis(ms)
            .filter(|until| *until > now)
            .unwrap_or(now + chrono::Duration::seconds(1))
    };
    for candidate in candidates {
        // The pause, a token and the breaker, in one round trip.
        let admission = match first.take() {
            Some(admission) => admission,
            None => {
                let name = bucket_name(candidate);
                cache
                    .admit(&candidate.id, bucket(candidate, &name), now)
                    .await?
            }
        };
        match admission {
            Admission::Go { probe } => {
                return Ok(Choice::Send {
                    account: candidate,
                    probe,
                });
            }
            Admission::Paused { until_ms } => consider(from_ms(until_ms), &candidate.id, false),
            Admission::NoToken { retry_after_ms } => {
                let wait_ms = i64::try_from(retry_after_ms).unwrap_or(i64::MAX / 2);
                consider(
                    now + chrono::Duration::milliseconds(wait_ms.max(1)),
                    &candidate.id,
                    false,
                );
            }
            Admission::Open { until_ms } => consider(from_ms(until_ms), &candidate.id, true),
        }
    }
    let (until, account, breaker) =
        wait.unwrap_or((now + chrono::Duration::seconds(1), String::new(), true));
    Ok(Choice::Wait {
        until,
        account,
        breaker,
    })
}

/// Decides `commands` one after another on a state, as one outcome.
pub(crate) fn decide_all(
    commands: Vec<MessageCommand>,
) -> impl Fn(&MessageState) -> Result<Vec<MessageEvent>, domain::MessageError> {
    move |state: &MessageState| {
        let mut state = state.clone();
        let mut events = Vec::new();
        for command in commands.clone() {
            for event in domain::message_decide::decide(&state, command)? {
                state = domain::message_state::apply(state, &event)?;
                events.push(event);
            }
        }
        Ok(events)
    }
}

/// How long what a process read of a template's switch holds: a template switched off stops
/// its waiting messages within this time. Reading its stream for every message cost a round
/// trip and a fold of the whole stream each time.
const TEMPLATE_FRESH: Duration = Duration::from_secs(1);

/// Templates as this process last read them: the state, the stream's version, and when.
type TemplateCache = std::sync::Mutex<HashMap<TemplateId, (TemplateState, u64, Instant)>>;
static TEMPLATES: std::sync::LazyLock<TemplateCache> = std::sync::LazyLock::new(Default::default);

/// Whether the template was switched off since the message was accepted (as read at most
/// [`TEMPLATE_FRESH`] ago). A stale entry is brought up to date with the events after it.
async fn template_disabled(store: &Store, template: TemplateId) -> Result<bool, ProcessError> {
    let cached = TEMPLATES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&template)
        .cloned();
    if let Some((state, _, read_at)) = &cached
        && read_at.elapsed() < TEMPLATE_FRESH
    {
        return Ok(state.is_created() && !state.enabled);
    }
    let read_at = Instant::now();
    let (mut state, mut version) = cached.map_or_else(Default::default, |(s, v, _)| (s, v));
    for r in store
        .read_stream(&template.stream_name(), version + 1, 10_000)
        .await?
    {
        let event = TemplateEvent::decode_json(&r.event_type, r.schema_version, &r.data)
            .map_err(|e| ProcessError::Decode(e.to_string()))?;
        state = domain::template_aggregate::apply(state, &event)
            .map_err(|e| ProcessError::Decode(e.to_string()))?;
        version = r.stream_position;
    }
    let disabled = state.is_created() && !state.enabled;
    let mut templates = TEMPLATES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Templates a process no longer sends for would stay forever: start over past a bound.
    if templates.len() >= 10_000 {
        templates.clear();
    }
    templates.insert(template, (state, version, read_at));
    Ok(disabled)
}

/// Records the one event `command` decides on the message, and moves its queue row as `next`
/// says, in one transaction.
async fn record_one(
    store: &Store,
    stream: &str,
    metadata: &EventMetadata,
    command: MessageCommand,
    next: Next,
) -> Result<(), ProcessError> {
    append_outcome(store, stream, metadata, decide_all(vec![command]), next).await
}

/// Appends the decided events with the loaded version and updates the queue row, in one commit;
/// on a concurrent change, loads again and decides again.
pub(crate) async fn append_outcome(
    store: &Store,
    stream: &str,
    metadata: &EventMetadata,
    decide: impl Fn(&MessageState) -> Result<Vec<MessageEvent>, domain::MessageError>,
    next: Next,
) -> Result<(), ProcessError> {
    append_outcome_indexed(store, stream, metadata, decide, next, None).await
}

/// [`append_outcome`], also remembering the supplier's id of the message (`(account, id)`)
/// in the same commit, for receipts that name only that id.
async fn append_outcome_indexed(
    store: &Store,
    stream: &str,
    metadata: &EventMetadata,
    decide: impl Fn(&MessageState) -> Result<Vec<MessageEvent>, domain::MessageError>,
    next: Next,
    supplier_id: Option<(&str, &str)>,
) -> Result<(), ProcessError> {
    let mut tries = 0;
    loop {
        let (state, version) = load(store, stream).await?;
        let events = match decide(&state) {
            Ok(events) => events,
            // The message reached an outcome meanwhile (a recall): nothing more to record.
            Err(error) => {
                tracing::info!(%error, stream, "outcome no longer applies");
                let next = match next {
                    Next::Keep => Next::Keep,
                    _ => Next::Remove,
                };
                return finish(store, stream, next).await;
            }
        };
        let encoded: Vec<NewEvent> = events.iter().map(|e| encode(e, metadata)).collect();
        let mut tx = store.begin().await?;
        if !encoded.is_empty() {
            let append = StreamAppend {
                stream_id: stream.to_owned(),
                expected: ExpectedVersion::Exact(version),
                events: encoded,
            };
            match store.append_in(&mut tx, &[append]).await {
                Ok(_) => {}
                Err(error) if error.is_conflict() && tries < 3 => {
                    tx.rollback().await?;
                    tries += 1;
                    continue;
                }
                Err(error) => return Err(error.into()),
            }
        }
        update_queue(&mut tx, stream, &next).await?;
        if let Some((account, supplier_message_id)) = supplier_id {
            let message_id = stream.strip_prefix("message-").unwrap_or(stream);
            store::supplier_ids::record(&mut tx, account, supplier_message_id, message_id).await?;
        }
        tx.commit().await?;
        count_events(&state, &events);
        return Ok(());
    }
}

/// A supplier call's result, as a metrics label.
fn send_result<T>(result: &Result<T, SendError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(SendError::Retryable { .. }) => "retryable",
        Err(SendError::Final { .. }) => "final",
        Err(SendError::Unavailable { .. }) => "unavailable",
        Err(SendError::Throttled { .. }) => "throttled",
    }
}

/// Counts recorded outcomes for `/metrics`, by channel, account and event.
fn count_events(state: &MessageState, events: &[MessageEvent]) {
    let Some(accepted) = state.accepted.as_ref() else {
        return;
    };
    for event in events {
        let account = match event {
            MessageEvent::MessageDispatched(e) => e.account.as_str(),
            MessageEvent::DispatchFailed(e) => e.account.as_str(),
            _ => accepted.account.as_str(),
        };
        telemetry::counter(
            "herald_message_events_total",
            "Message lifecycle events recorded by dispatch, by channel, account and event.",
            &[
                ("channel", accepted.channel.as_str()),
                ("account", account),
                ("event", event.event_type()),
            ],
            1,
        );
    }
}

/// Only updates the queue row: for a message that needs no new event.
async fn finish(store: &Store, stream: &str, next: Next) -> Result<(), ProcessError> {
    let mut tx = store.begin().await?;
    update_queue(&mut tx, stream, &next).await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn update_queue(
    tx: &mut store::StoreTx,
    stream: &str,
    next: &Next,
) -> Result<(), sqlx::Error> {
    let id = stream.strip_prefix("message-").unwrap_or(stream);
    match next {
        Next::Remove => queue::remove(tx, id).await,
        Next::Reschedule(at) => queue::reschedule(tx, id, *at).await,
        Next::MoveTo(lane, at) => queue::move_to(tx, id, lane, *at).await,
        Next::Keep => Ok(()),
    }
}

pub(crate) fn encode(event: &MessageEvent, metadata: &EventMetadata) -> NewEvent {
    NewEvent {
        event_id: domain::ids::uuid_v7(),
        event_type: event.event_type().to_owned(),
        schema_version: MessageEvent::SCHEMA_VERSION,
        data: event.encode_json(),
        metadata: serde_json::to_string(metadata).unwrap_or_else(|_| "{}".to_owned()),
    }
}
