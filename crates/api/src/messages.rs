//! Message queries: `message(id)` with its timeline, the customer-service list
//! `messages(filter)`, and how far the projections behind them have caught up. They read the
//! trace projection (`projections::trace`), scoped to the caller's tenant.

use async_graphql::{Context, Enum, ID, InputObject, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use commands::keys::Scope;
use projections::trace::{self, MessageFilter, MessageView};

use crate::errors::{self, validation};
use crate::templates::{caller, state};
use crate::types::{Channel, MessageType, PageInfo};

/// Where a message stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "domain::DeliveryStatus")]
pub enum DeliveryStatus {
    Accepted,
    Deferred,
    Dispatched,
    Delivered,
    Undelivered,
    Failed,
    Deduplicated,
    Shielded,
    Discarded,
    Recalled,
}

/// One step of a message's life.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TimelineKind {
    Accepted,
    Deduplicated,
    Shielded,
    Discarded,
    Deferred,
    RateLimited,
    Dispatched,
    DispatchFailed,
    Failed,
    Delivered,
    Undelivered,
    Clicked,
    /// Read in the inbox without a click (`markInboxRead`).
    Read,
    RecallRequested,
    Recalled,
    RecallFailed,
}

impl TimelineKind {
    fn parse(kind: &str) -> Option<TimelineKind> {
        use TimelineKind as K;
        Some(match kind {
            "ACCEPTED" => K::Accepted,
            "DEDUPLICATED" => K::Deduplicated,
            "SHIELDED" => K::Shielded,
            "DISCARDED" => K::Discarded,
            "DEFERRED" => K::Deferred,
            "RATE_LIMITED" => K::RateLimited,
            "DISPATCHED" => K::Dispatched,
            "DISPATCH_FAILED" => K::DispatchFailed,
            "FAILED" => K::Failed,
            "DELIVERED" => K::Delivered,
            "UNDELIVERED" => K::Undelivered,
            "CLICKED" => K::Clicked,
            "READ" => K::Read,
            "RECALL_REQUESTED" => K::RecallRequested,
            "RECALLED" => K::Recalled,
            "RECALL_FAILED" => K::RecallFailed,
            _ => return None,
        })
    }
}

#[derive(SimpleObject)]
pub struct TimelineEntry {
    pub kind: TimelineKind,
    pub at: DateTime<Utc>,
    /// The event as recorded: the rule, the account, the error, the receipt's status...
    pub detail: Json<serde_json::Value>,
}

/// How far a projection has caught up with the event log when it answered.
#[derive(SimpleObject, Clone, Copy)]
pub struct AsOf {
    /// The log position of the last event the projection applied.
    pub position: i64,
    /// The log position of the newest event.
    pub head: i64,
    /// Whether it had applied every event when it answered.
    pub caught_up: bool,
    /// About how many events it has still to apply; 0 exactly when caught up.
    pub behind: i64,
}

#[derive(SimpleObject)]
pub struct Message {
    pub id: ID,
    pub status: DeliveryStatus,
    pub channel: Channel,
    pub msg_type: MessageType,
    pub receiver: String,
    pub template_id: ID,
    pub request_id: String,
    /// The channel account it went (or last tried to go) through.
    pub account: Option<String>,
    pub supplier: Option<String>,
    pub supplier_message_id: Option<String>,
    /// Supplier attempts, successful or not.
    pub attempts: i64,
    pub clicks: i64,
    pub accepted_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Every step, oldest first. Empty in lists: ask `message(id)` for it.
    pub timeline: Vec<TimelineEntry>,
}

#[derive(SimpleObject)]
pub struct MessageConnection {
    pub nodes: Vec<Message>,
    pub page_info: PageInfo,
    pub as_of: AsOf,
}

#[derive(SimpleObject)]
pub struct MessageAnswer {
    /// `null` when there is no such message for the caller's tenant (yet: see `asOf`).
    pub message: Option<Message>,
    pub as_of: AsOf,
}

/// What to look messages up by; every field narrows the list.
#[derive(InputObject, Default)]
pub struct MessageFilterInput {
    pub receiver: Option<String>,
    pub template_id: Option<ID>,
    pub request_id: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub channel: Option<Channel>,
    /// Accepted at or after.
    pub from: Option<DateTime<Utc>>,
    /// Accepted before.
    pub to: Option<DateTime<Utc>>,
}

const MAX_PAGE: i32 = 100;

fn message(view: MessageView, timeline: Vec<trace::TimelineEntry>) -> Result<Message> {
    let corrupt = |what: &str| errors::internal(format!("the trace holds an unknown {what}"));
    let status: domain::DeliveryStatus = view.status.parse().map_err(|_| corrupt("status"))?;
    let channel: domain::Channel = view.channel.parse().map_err(|_| corrupt("channel"))?;
    let msg_type: domain::MessageType = view.msg_type.parse().map_err(|_| corrupt("type"))?;
    let timeline = timeline
        .into_iter()
        .map(|step| {
            Ok(TimelineEntry {
                kind: TimelineKind::parse(&step.kind).ok_or_else(|| corrupt("timeline kind"))?,
                at: step.at,
                detail: Json(serde_json::from_str(&step.detail).unwrap_or_default()),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Message {
        id: ID(view.message_id),
        status: status.into(),
        channel: channel.into(),
        msg_type: msg_type.into(),
        receiver: view.receiver,
        template_id: ID(view.template_id),
        request_id: view.request_id,
        account: view.account,
        supplier: view.supplier,
        supplier_message_id: view.supplier_message_id,
        attempts: view.attempts,
        clicks: view.clicks,
        accepted_at: view.accepted_at,
        updated_at: view.updated_at,
        timeline,
    })
}

async fn as_of(ctx: &Context<'_>) -> Result<AsOf> {
    as_of_projection(ctx, projections::Projection::Trace).await
}

/// Where `projection` stands in the log: read before the projection itself, so an answer is at
/// least as fresh as it says.
pub(crate) async fn as_of_projection(
    ctx: &Context<'_>,
    projection: projections::Projection,
) -> Result<AsOf> {
    let lag = projections::lag::lag(
        &state(ctx).store,
        projection.subscription(),
        projection.category(),
    )
    .await
    .map_err(|e| errors::internal(e.to_string()))?;
    Ok(as_of_lag(lag))
}

fn as_of_lag(lag: projections::lag::Lag) -> AsOf {
    AsOf {
        // A checkpoint may stand past the newest event (on Postgres a read that found nothing
        // resumes from the visibility horizon): no event is past the head, so report that.
        position: lag.applied.global_position.min(lag.head.global_position),
        head: lag.head.global_position,
        caught_up: lag.caught_up(),
        behind: lag.behind(),
    }
}

#[derive(Default)]
pub struct MessageQuery;

#[Object]
impl MessageQuery {
    /// A message of the caller's tenant, with its whole timeline.
    async fn message(&self, ctx: &Context<'_>, id: ID) -> Result<MessageAnswer> {
        let caller = caller(ctx, Scope::Read)?;
        let id: domain::MessageId = id
            .parse()
            .map_err(|_| validation("INVALID_MESSAGE_ID", "not a message id"))?;
        // The position with the message (on Postgres in one statement): the answer is at least
        // as fresh as it says.
        let (lag, found) =
            trace::message_as_of(&state(ctx).store, caller.tenant.as_str(), &id.to_string())
                .await
                .map_err(|e| errors::internal(e.to_string()))?;
        let message = found
            .map(|(view, timeline)| message(view, timeline))
            .transpose()?;
        Ok(MessageAnswer {
            message,
            as_of: as_of_lag(lag),
        })
    }

    /// The caller's messages, newest first, for customer service.
    async fn messages(
        &self,
        ctx: &Context<'_>,
        filter: Option<MessageFilterInput>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<MessageConnection> {
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
        let input = filter.unwrap_or_default();
        let filter = MessageFilter {
            receiver: input.receiver,
            template_id: input.template_id.map(|id| id.0),
            request_id: input.request_id,
            status: input
                .status
                .map(|s| domain::DeliveryStatus::from(s).as_str().to_owned()),
            channel: input
                .channel
                .map(|c| domain::Channel::from(c).as_str().to_owned()),
            from: input.from,
            to: input.to,
        };
        let as_of = as_of(ctx).await?;
        let (page, has_next_page) = trace::messages(
            &state(ctx).store,
            caller.tenant.as_str(),
            &filter,
            first as usize,
            after.as_deref(),
        )
        .await
        .map_err(|e| errors::internal(e.to_string()))?;
        let end_cursor = page.last().map(|m| m.message_id.clone());
        let nodes = page
            .into_iter()
            .map(|view| message(view, Vec::new()))
            .collect::<Result<Vec<_>>>()?;
        Ok(MessageConnection {
            nodes,
            page_info: PageInfo {
                has_next_page,
                end_cursor,
            },
            as_of,
        })
    }
}
