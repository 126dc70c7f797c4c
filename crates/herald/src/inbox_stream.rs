//! The real-time inbox: `GET /inbox/stream` as Server-Sent Events, and the notifications that
//! feed it across processes.
//!
//! A client holds a receiver token (`inboxToken`, see `commands::inbox`) in `?token=` or
//! `Authorization: Bearer`. On connect the handler **subscribes first** to the receiver's channel
//! `inbox:{tenant}:{receiver}`, then sends the stored rows of the inbox projection after the
//! client's `Last-Event-ID` (header, or `lastEventId` in the query), then the live ones. Every
//! event's id is the row's [`Cursor`] (the log place of its delivery), and rows are only ever
//! read after the last cursor sent, so the catch-up and the live part can neither lose nor
//! double a message, and a reconnecting client gets exactly what it missed.
//!
//! Notifications are doorbells: on one (or on a possible loss, or every heartbeat interval as a
//! ground truth) the handler reads the projection after its cursor. The inbox projection
//! publishes them after its batch commits ([`start_publisher`]), so a notification never arrives
//! before its row; through Redis when configured, so a client connected to any instance hears of
//! a message delivered by any other, and in process otherwise.
//!
//! Heartbeats are SSE comments every `api.inbox_heartbeat_secs` (15 s by default). The stream ends
//! when the token expires; the client reconnects with a fresh token and its `Last-Event-ID`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cache::{Cache, Notice, Subscription};
use chrono::Utc;
use futures_util::Stream;
use projections::inbox::{self, Cursor, InboxMessage};
use serde::Deserialize;
use store::Store;
use tokio::sync::OnceCell;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::graphql::error;
use crate::server::AppState;

/// Rows read from the projection at a time.
const PAGE: usize = 100;

/// The channel of `receiver`'s inbox in `tenant`.
pub fn channel(tenant: &str, receiver: &str) -> String {
    format!("inbox:{tenant}:{receiver}")
}

/// The cache that carries notifications: Redis when configured (connected on first use, so the
/// API starts while Redis is down), the in-process cache otherwise, shared by every role of
/// this process.
#[derive(Clone)]
pub struct Bus {
    redis_url: String,
    prefix: String,
    cache: Arc<OnceCell<Cache>>,
}

impl Bus {
    pub fn new(redis_url: &str, prefix: &str) -> Bus {
        let cache = if redis_url.is_empty() {
            OnceCell::new_with(Some(Cache::Memory(cache::MemoryCache::new())))
        } else {
            OnceCell::new()
        };
        Bus {
            redis_url: redis_url.to_owned(),
            prefix: prefix.to_owned(),
            cache: Arc::new(cache),
        }
    }

    pub async fn get(&self) -> cache::Result<&Cache> {
        self.cache
            .get_or_try_init(|| Cache::from_url(Some(&self.redis_url), &self.prefix))
            .await
    }
}

/// Publishes the inbox projection's notices, in order, until `shutdown`.
pub async fn start_publisher(
    bus: Bus,
    mut notices: UnboundedReceiver<inbox::Notice>,
    shutdown: CancellationToken,
) {
    loop {
        let notice = tokio::select! {
            () = shutdown.cancelled() => return,
            notice = notices.recv() => match notice {
                Some(notice) => notice,
                None => return,
            },
        };
        let payload = serde_json::json!({
            "id": notice.message_id,
            "cursor": notice.cursor.to_string(),
        })
        .to_string();
        let channel = channel(&notice.tenant, &notice.receiver);
        // A lost notification delays a client until its next look at the projection; it is
        // never a lost message.
        match bus.get().await {
            Ok(cache) => {
                if let Err(error) = cache.publish(&channel, &payload).await {
                    tracing::warn!(%error, "publishing an inbox notification failed");
                }
            }
            Err(error) => tracing::warn!(%error, "no cache to publish inbox notifications"),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct StreamParams {
    token: Option<String>,
    #[serde(rename = "lastEventId")]
    last_event_id: Option<String>,
}

/// `GET /inbox/stream`.
pub async fn stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<StreamParams>,
) -> Response {
    let token = params.token.as_deref().or_else(|| bearer(&headers));
    let Some(token) = token else {
        return error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "NO_TOKEN",
            "send an inbox token as ?token= or `Authorization: Bearer <token>`",
        );
    };
    let grant = match state.inbox_tokens.verify(token, Utc::now()) {
        Ok(grant) => grant,
        Err(refused) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                refused.code(),
                "the inbox token is not valid or has expired",
            );
        }
    };
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(params.last_event_id);
    let cursor = match last.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(last) => match last.parse::<Cursor>() {
            Ok(cursor) => Some(cursor),
            Err(()) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "VALIDATION",
                    "INVALID_LAST_EVENT_ID",
                    "Last-Event-ID is not an event id of this stream",
                );
            }
        },
    };
    let unavailable = |e: cache::CacheError| {
        tracing::warn!(error = %e, "the inbox stream cannot subscribe");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "NOTIFICATIONS_UNAVAILABLE",
            "notifications are unavailable; try again shortly",
        )
    };
    let cache = match state.bus.get().await {
        Ok(cache) => cache,
        Err(e) => return unavailable(e),
    };
    // Subscribe before the first read: a row committed after that read is announced to us.
    let subscription = match cache
        .subscribe(&channel(&grant.tenant, &grant.receiver))
        .await
    {
        Ok(subscription) => subscription,
        Err(e) => return unavailable(e),
    };
    let heartbeat = state.inbox_heartbeat;
    let expires_in = (grant.expires_at - Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    let reader = Reader {
        store: state.store.clone(),
        tenant: grant.tenant,
        receiver: grant.receiver,
        cursor,
        subscription,
        buffer: VecDeque::new(),
        must_read: true,
        heartbeat,
        expires: tokio::time::Instant::now() + expires_in,
        shutdown: state.shutdown.clone(),
    };
    Sse::new(events(reader))
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// One connection's reading state.
struct Reader {
    store: Store,
    tenant: String,
    receiver: String,
    /// The last cursor sent (or the client's `Last-Event-ID`).
    cursor: Option<Cursor>,
    subscription: Subscription,
    buffer: VecDeque<InboxMessage>,
    /// Whether the projection may hold rows after `cursor` not yet read.
    must_read: bool,
    heartbeat: Duration,
    expires: tokio::time::Instant,
    /// The server is stopping: the stream ends (the client reconnects elsewhere and resumes).
    shutdown: CancellationToken,
}

impl Reader {
    /// The next message to send, or `None` when the token has expired or the server stops.
    async fn next(&mut self) -> Option<InboxMessage> {
        loop {
            if let Some(message) = self.buffer.pop_front() {
                if self.cursor.is_some_and(|c| message.cursor <= c) {
                    continue;
                }
                self.cursor = Some(message.cursor);
                return Some(message);
            }
            if tokio::time::Instant::now() >= self.expires || self.shutdown.is_cancelled() {
                return None;
            }
            if self.must_read {
                match inbox::delivered_after(
                    &self.store,
                    &self.tenant,
                    &self.receiver,
                    self.cursor,
                    PAGE,
                )
                .await
                {
                    Ok(rows) => {
                        self.must_read = rows.len() == PAGE;
                        self.buffer.extend(rows);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "reading the inbox for a stream failed");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = tokio::time::sleep_until(self.expires) => return None,
                        }
                    }
                }
                continue;
            }
            tokio::select! {
                notice = self.subscription.recv() => {
                    self.must_read = match notice {
                        Notice::Message(payload) => self.is_new(&payload),
                        Notice::Missed => true,
                    };
                }
                // The ground truth, should a notification be lost on the way.
                () = tokio::time::sleep(self.heartbeat) => self.must_read = true,
                () = tokio::time::sleep_until(self.expires) => return None,
                () = self.shutdown.cancelled() => return None,
            }
        }
    }

    /// Whether a notification announces a row after the cursor (an unreadable one might).
    fn is_new(&self, payload: &str) -> bool {
        let announced = serde_json::from_str::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v.get("cursor")?.as_str()?.parse::<Cursor>().ok());
        match (announced, self.cursor) {
            (Some(announced), Some(cursor)) => announced > cursor,
            _ => true,
        }
    }
}

fn event(message: &InboxMessage) -> Event {
    let data = serde_json::json!({
        "id": message.message_id,
        "templateId": message.template_id,
        "kind": message.kind,
        "title": message.title,
        "body": message.body,
        "url": message.url,
        "maskedWords": message.masked_words,
        "read": message.read_at.is_some(),
        "readAt": message.read_at,
        "acceptedAt": message.accepted_at,
        "deliveredAt": message.delivered_at,
        "cursor": message.cursor.to_string(),
    });
    Event::default()
        .id(message.cursor.to_string())
        .event("message")
        .data(data.to_string())
}

fn events(reader: Reader) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    futures_util::stream::unfold(reader, |mut reader| async move {
        let message = reader.next().await?;
        Some((Ok(event(&message)), reader))
    })
}
