//! Statistics (`stats`), reconciliation (`reconciliation`) and how far every projection has
//! caught up (`projections`). Statistics and reconciliation read their projections
//! (`projections::stats`, `projections::reconciliation`), scoped to the caller's tenant.

use async_graphql::{ComplexObject, Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{FixedOffset, Utc};
use commands::keys::Scope;
use projections::Projection;
use projections::reconciliation::{self as recon, Window};
use projections::stats::{self, Counter, StatsFilter};

use crate::errors::{self, validation};
use crate::messages::{AsOf, as_of_projection};
use crate::templates::{caller, state};
use crate::types::{Channel, Date, PageInfo};

/// Most rows one `stats` answer holds: narrow the filter for more.
const MAX_ROWS: usize = 5000;
/// The longest span of days one `stats` call covers.
const MAX_DAYS: i64 = 366;
/// Largest page of supplier ids.
const MAX_IDS: i32 = 10_000;

/// What `stats` narrows to. Days are UTC; both ends are included. Without `from` and `to`, the
/// last seven days up to today.
#[derive(InputObject, Default)]
pub struct StatsFilterInput {
    pub from: Option<Date>,
    pub to: Option<Date>,
    pub template_id: Option<ID>,
    pub channel: Option<Channel>,
    pub account: Option<String>,
}

/// One UTC day of one template on one channel through one account. Each event counts on the day
/// it happened.
#[derive(SimpleObject)]
pub struct StatsRow {
    pub day: Date,
    pub template_id: ID,
    pub channel: Channel,
    /// The channel account of the message's latest supplier attempt; `null` for what happened
    /// before any attempt (accepted, deduplicated, shielded, discarded, a scheduled or night
    /// deferral), when no account was chosen yet.
    pub account: Option<String>,
    pub accepted: i64,
    pub deduplicated: i64,
    pub shielded: i64,
    pub discarded: i64,
    /// Deferrals (a message may be deferred several times).
    pub deferred: i64,
    pub dispatched: i64,
    /// Failed supplier attempts (a message may fail several before it is sent or fails).
    pub dispatch_failed: i64,
    pub failed: i64,
    /// Dispatched messages by their latest receipt.
    pub delivered: i64,
    pub undelivered: i64,
    /// Clicks on tracked links.
    pub clicked: i64,
    pub recalled: i64,
    /// dispatched / (dispatched + failed): the share of messages that reached a supplier among
    /// those that reached a dispatch outcome; `null` when there are none.
    pub success_ratio: Option<f64>,
    /// delivered / (delivered + undelivered): the share of receipts that say delivered; `null`
    /// without receipts.
    pub delivery_ratio: Option<f64>,
}

#[derive(SimpleObject)]
pub struct StatsAnswer {
    /// By day, template, channel and account.
    pub rows: Vec<StatsRow>,
    pub as_of: AsOf,
}

fn ratio(part: i64, rest: i64) -> Option<f64> {
    let whole = part + rest;
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn stats_row(row: stats::StatsRow) -> Result<StatsRow> {
    let channel: domain::Channel = row
        .channel
        .parse()
        .map_err(|_| errors::internal("the statistics hold an unknown channel"))?;
    let c = |counter| row.counts.get(counter);
    Ok(StatsRow {
        day: Date(row.day),
        template_id: ID(row.template_id.clone()),
        channel: channel.into(),
        account: row.account.clone(),
        accepted: c(Counter::Accepted),
        deduplicated: c(Counter::Deduplicated),
        shielded: c(Counter::Shielded),
        discarded: c(Counter::Discarded),
        deferred: c(Counter::Deferred),
        dispatched: c(Counter::Dispatched),
        dispatch_failed: c(Counter::DispatchFailed),
        failed: c(Counter::Failed),
        delivered: c(Counter::Delivered),
        undelivered: c(Counter::Undelivered),
        clicked: c(Counter::Clicked),
        recalled: c(Counter::Recalled),
        success_ratio: ratio(c(Counter::Dispatched), c(Counter::Failed)),
        delivery_ratio: ratio(c(Counter::Delivered), c(Counter::Undelivered)),
    })
}

/// What one channel account dispatched on one day, for the caller's tenant, beside the
/// supplier's billed count when it is given.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Reconciliation {
    pub account: String,
    pub date: Date,
    /// The time zone the day is taken in, such as `+08:00`.
    pub zone: String,
    pub dispatched: i64,
    pub delivered: i64,
    pub undelivered: i64,
    /// Dispatched with no receipt yet.
    pub pending: i64,
    /// Dispatched without a supplier id to compare.
    pub without_supplier_id: i64,
    /// The supplier's billed count, as given.
    pub billed: Option<i64>,
    /// (billed - dispatched) / dispatched, in percent; `null` without `billed`, or when nothing
    /// was dispatched but something billed.
    pub gap_percent: Option<f64>,
    /// Whether the gap is beyond the tolerance; `null` without `billed`.
    pub flagged: Option<bool>,
    pub as_of: AsOf,
    #[graphql(skip)]
    window: Window,
    #[graphql(skip)]
    tenant: String,
}

#[derive(SimpleObject)]
pub struct SupplierIdPage {
    /// In order.
    pub ids: Vec<String>,
    pub page_info: PageInfo,
}

#[ComplexObject]
impl Reconciliation {
    /// The supplier's ids of what was dispatched, in order, to compare with the bill's.
    async fn supplier_message_ids(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 1000)] first: i32,
        after: Option<String>,
    ) -> Result<SupplierIdPage> {
        if !(1..=MAX_IDS).contains(&first) {
            return Err(validation(
                "PAGE_SIZE",
                format!("first takes 1 to {MAX_IDS}"),
            ));
        }
        let first = first as usize;
        let mut ids = recon::supplier_ids(
            &state(ctx).store,
            &self.account,
            &self.window,
            Some(&self.tenant),
            after.as_deref(),
            Some(first + 1),
        )
        .await
        .map_err(errors::internal)?;
        let has_next_page = ids.len() > first;
        ids.truncate(first);
        Ok(SupplierIdPage {
            page_info: PageInfo {
                has_next_page,
                end_cursor: ids.last().cloned(),
            },
            ids,
        })
    }
}

/// One projection's place in the log.
#[derive(SimpleObject)]
pub struct ProjectionLag {
    /// As `herald replay` names it: trace, stats, reconciliation, inbox.
    pub name: String,
    pub caught_up: bool,
    /// About how many events it has still to apply; 0 exactly when caught up.
    pub behind: i64,
    /// The log position of the last event it applied.
    pub position: i64,
    /// The log position of the newest event it follows.
    pub head: i64,
}

#[derive(Default)]
pub struct StatsQuery;

#[Object]
impl StatsQuery {
    /// The caller's daily counters by template, channel and account.
    async fn stats(
        &self,
        ctx: &Context<'_>,
        filter: Option<StatsFilterInput>,
    ) -> Result<StatsAnswer> {
        let caller = caller(ctx, Scope::Read)?;
        let input = filter.unwrap_or_default();
        let to = input.to.map_or_else(|| Utc::now().date_naive(), |d| d.0);
        let from = input.from.map_or(to - chrono::Duration::days(6), |d| d.0);
        if from > to {
            return Err(validation("INVALID_RANGE", "from is after to"));
        }
        if (to - from).num_days() >= MAX_DAYS {
            return Err(validation(
                "RANGE_TOO_LONG",
                format!("stats covers at most {MAX_DAYS} days at a time"),
            ));
        }
        let filter = StatsFilter {
            from,
            to,
            template_id: input.template_id.map(|id| id.0),
            channel: input
                .channel
                .map(|c| domain::Channel::from(c).as_str().to_owned()),
            account: input.account,
        };
        let as_of = as_of_projection(ctx, Projection::Stats).await?;
        let rows = stats::stats(
            &state(ctx).store,
            caller.tenant.as_str(),
            &filter,
            MAX_ROWS + 1,
        )
        .await
        .map_err(errors::internal)?;
        if rows.len() > MAX_ROWS {
            return Err(validation(
                "TOO_MANY_ROWS",
                format!(
                    "more than {MAX_ROWS} rows: narrow the days or filter by template, channel or account"
                ),
            ));
        }
        let rows = rows
            .into_iter()
            .map(stats_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(StatsAnswer { rows, as_of })
    }

    /// What one channel account dispatched on one day for the caller's tenant, with the receipts'
    /// outcomes; given the supplier's billed count, the gap in percent, flagged beyond
    /// `tolerance` percent. Accounts may serve several tenants: the whole account's day, across
    /// tenants, is for the operator (`herald reconcile`).
    async fn reconciliation(
        &self,
        ctx: &Context<'_>,
        account: String,
        date: Date,
        #[graphql(default_with = "\"+00:00\".to_owned()")] zone: String,
        billed: Option<i64>,
        #[graphql(default = 2.0)] tolerance: f64,
    ) -> Result<Reconciliation> {
        let caller = caller(ctx, Scope::Read)?;
        let offset: FixedOffset = zone.parse().map_err(|_| {
            validation(
                "INVALID_ZONE",
                format!("zone must be an offset like +08:00, not {zone:?}"),
            )
        })?;
        if !(tolerance.is_finite() && tolerance >= 0.0) {
            return Err(validation(
                "INVALID_TOLERANCE",
                "tolerance is a percentage of 0 or more",
            ));
        }
        if billed.is_some_and(|b| b < 0) {
            return Err(validation(
                "INVALID_BILLED",
                "billed is a count of 0 or more",
            ));
        }
        let window = Window::day(date.0, offset);
        let as_of = as_of_projection(ctx, Projection::Reconciliation).await?;
        let tenant = caller.tenant.as_str().to_owned();
        let summary = recon::summary(&state(ctx).store, &account, &window, Some(&tenant))
            .await
            .map_err(errors::internal)?;
        let gap = billed.map(|b| recon::gap_percent(summary.dispatched, b));
        Ok(Reconciliation {
            account,
            date,
            zone: offset.to_string(),
            dispatched: summary.dispatched,
            delivered: summary.delivered,
            undelivered: summary.undelivered,
            pending: summary.pending,
            without_supplier_id: summary.without_supplier_id,
            billed,
            gap_percent: gap.flatten(),
            flagged: gap.map(|g| recon::flagged(g, tolerance)),
            as_of,
            window,
            tenant,
        })
    }

    /// How far each projection has caught up with the event log.
    async fn projections(&self, ctx: &Context<'_>) -> Result<Vec<ProjectionLag>> {
        caller(ctx, Scope::Read)?;
        let mut lags = Vec::with_capacity(Projection::ALL.len());
        for &projection in Projection::ALL {
            let as_of = as_of_projection(ctx, projection).await?;
            lags.push(ProjectionLag {
                name: projection.name().to_owned(),
                caught_up: as_of.caught_up,
                behind: as_of.behind,
                position: as_of.position,
                head: as_of.head,
            });
        }
        Ok(lags)
    }
}
