//! The in-app inbox: `inbox(receiver, first, after)` reads the inbox projection
//! (`projections::inbox`), scoped to the caller's tenant. A tenant's backend asks on behalf of
//! its user, with a `read` key.

use async_graphql::{Context, Enum, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
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
}
