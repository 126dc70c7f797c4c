//! The in-app inbox: `inbox(receiver, first, after)` reads the inbox projection
//! (`projections::inbox`), scoped to the caller's tenant. A tenant's backend asks on behalf of
//! its user, with a `read` key.
//!
//! The same `read` key mints receiver tokens (`inboxToken`) for the real-time stream
//! `/inbox/stream`, and marks messages read (`markInboxRead`): both act on behalf of a receiver
//! whose inbox the key can already read, and neither sends anything.

use async_graphql::{Context, Enum, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use commands::inbox::{MAX_MARK, MAX_TTL_SECS};
use commands::keys::Scope;
use projections::Projection;
use projections::inbox;

use crate::errors::{self, validation};
use crate::messages::{AsOf, as_of_projection};
use crate::templates::{caller, state};
use crate::types::PageInfo;

const MAX_PAGE: i32 = 100;

/// How to show a message's body.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ContentKind {
    Text,
    Markdown,
    Card,
    /// `body` is the text part, or the HTML when there is none.
    Email,
    SupplierTemplate,
}

impl ContentKind {
    fn parse(kind: &str) -> Option<ContentKind> {
        Some(match kind {
            "TEXT" => ContentKind::Text,
            "MARKDOWN" => ContentKind::Markdown,
            "CARD" => ContentKind::Card,
            "EMAIL" => ContentKind::Email,
            "SUPPLIER_TEMPLATE" => ContentKind::SupplierTemplate,
            _ => return None,
        })
    }
}

/// A message delivered to a receiver's inbox, as rendered when it was accepted (tracked links
/// included).
#[derive(SimpleObject)]
pub struct InboxMessage {
    pub id: ID,
    pub template_id: ID,
    pub kind: ContentKind,
    pub title: Option<String>,
    pub body: String,
    pub url: Option<String>,
    /// Sensitive words masked when the message was dispatched. The log keeps their number, not
    /// the masked text, so `body` is the text as accepted: a client may hide it when this is not 0.
    pub masked_words: i64,
    /// Whether the receiver opened one of its links.
    pub read: bool,
    pub read_at: Option<DateTime<Utc>>,
    pub accepted_at: DateTime<Utc>,
    pub delivered_at: DateTime<Utc>,
    /// Its place in the receiver's real-time stream: the SSE event id of `/inbox/stream`, to
    /// resume after (`Last-Event-ID`).
    pub cursor: String,
}

#[derive(SimpleObject)]
pub struct InboxConnection {
    /// Newest first.
    pub nodes: Vec<InboxMessage>,
    pub page_info: PageInfo,
    /// Unread messages in the whole inbox, not only this page.
    pub unread: i64,
    pub as_of: AsOf,
}

#[derive(Default)]
pub struct InboxQuery;

#[Object]
impl InboxQuery {
    /// The INBOX messages delivered to `receiver` in the caller's tenant, newest first; recalled
    /// ones are gone.
    async fn inbox(
        &self,
        ctx: &Context<'_>,
        receiver: String,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<InboxConnection> {
        let caller = caller(ctx, Scope::Read)?;
        if !(1..=MAX_PAGE).contains(&first) {
            return Err(validation(
                "PAGE_SIZE",
                format!("first takes 1 to {MAX_PAGE}"),
            ));
        }
        let after = after
            .map(|a| {
                a.parse::<domain::MessageId>()
                    .map(|id| id.to_string())
                    .map_err(|_| validation("INVALID_CURSOR", "not a cursor from this list"))
            })
            .transpose()?;
        let as_of = as_of_projection(ctx, Projection::Inbox).await?;
        let (page, has_next_page, unread) = inbox::inbox(
            &state(ctx).store,
            caller.tenant.as_str(),
            &receiver,
            first as usize,
            after.as_deref(),
        )
        .await
        .map_err(errors::internal)?;
        let end_cursor = page.last().map(|m| m.message_id.clone());
        let nodes = page
            .into_iter()
            .map(|m| {
                Ok(InboxMessage {
                    id: ID(m.message_id),
                    template_id: ID(m.template_id),
                    kind: ContentKind::parse(&m.kind).ok_or_else(|| {
                        errors::internal("the inbox holds an unknown content kind")
                    })?,
                    title: m.title,
                    body: m.body,
                    url: m.url,
                    masked_words: m.masked_words,
                    read: m.read_at.is_some(),
                    read_at: m.read_at,
                    accepted_at: m.accepted_at,
                    delivered_at: m.delivered_at,
                    cursor: m.cursor.to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(InboxConnection {
            nodes,
            page_info: PageInfo {
                has_next_page,
                end_cursor,
            },
            unread,
            as_of,
        })
    }

    /// How many messages delivered to `receiver` in the caller's tenant are unread.
    async fn inbox_unread(&self, ctx: &Context<'_>, receiver: String) -> Result<i64> {
        let caller = caller(ctx, Scope::Read)?;
        inbox::unread(&state(ctx).store, caller.tenant.as_str(), &receiver)
            .await
            .map_err(errors::internal)
    }
}

/// A signed receiver token for `/inbox/stream`.
#[derive(SimpleObject)]
pub struct InboxToken {
    /// Pass as `?token=` or `Authorization: Bearer`.
    pub token: String,
    pub receiver: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct InboxMutation;

#[Object]
impl InboxMutation {
    /// A token that lets its holder follow `receiver`'s inbox in the caller's tenant over
    /// `/inbox/stream` for `ttlSecs` seconds (1 to 86400, default 3600). A tenant's backend
    /// mints one for its signed-in user, so the browser never holds an API key. Scope `read`.
    async fn inbox_token(
        &self,
        ctx: &Context<'_>,
        receiver: String,
        #[graphql(default = 3600)] ttl_secs: i32,
    ) -> Result<InboxToken> {
        let caller = caller(ctx, Scope::Read)?;
        if receiver.is_empty() || receiver.len() > 1024 {
            return Err(validation(
                "INVALID_RECEIVER",
                "receiver takes 1 to 1024 bytes",
            ));
        }
        if !(1..=MAX_TTL_SECS).contains(&i64::from(ttl_secs)) {
            return Err(validation(
                "INVALID_TTL",
                format!("ttlSecs takes 1 to {MAX_TTL_SECS}"),
            ));
        }
        let expires_at = Utc::now() + chrono::Duration::seconds(i64::from(ttl_secs));
        let token = state(ctx)
            .inbox_tokens
            .token(caller.tenant.as_str(), &receiver, expires_at);
        Ok(InboxToken {
            token,
            receiver,
            // The token keeps whole seconds.
            expires_at: DateTime::from_timestamp(expires_at.timestamp(), 0).unwrap_or(expires_at),
        })
    }

    /// Marks INBOX messages of the caller's tenant read (a `MessageRead` event each), as an
    /// inbox client saw them. A message read before, by a click or a mark, is left as it is;
    /// the answer lists the ids newly marked. At most 100 ids; one that is not a delivered
    /// INBOX message of the tenant is `NOT_FOUND`. Scope `read`.
    async fn mark_inbox_read(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<Vec<ID>> {
        let caller = caller(ctx, Scope::Read)?;
        if ids.len() > MAX_MARK {
            return Err(validation(
                "TOO_MANY_IDS",
                format!("markInboxRead takes at most {MAX_MARK} ids"),
            ));
        }
        let ids = ids
            .iter()
            .map(|id| {
                id.parse::<domain::MessageId>().map_err(|_| {
                    validation(
                        "INVALID_MESSAGE_ID",
                        format!("{:?} is not a message id", id.as_str()),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let marked = commands::inbox::mark_read(
            &state(ctx).store,
            &caller.tenant,
            &ids,
            "inbox",
            Utc::now(),
        )
        .await
        .map_err(errors::command)?;
        Ok(marked.into_iter().map(|id| ID(id.to_string())).collect())
    }
}
