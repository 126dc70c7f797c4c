//! Herald's GraphQL API: the schema, its resolvers and its error codes. It knows nothing of the
//! web framework: the transport (the `herald` crate) authenticates the caller and attaches it.
//!
//! - [`types`]: the GraphQL objects, inputs and enums.
//! - [`templates`], [`sending`], [`messages`], [`stats`] (statistics, reconciliation and the
//!   projections' lag), [`inbox`], [`crowd`] (crowd sends): the resolvers, one root object per feature, merged below.
//! - [`channel_accounts`]: channel accounts made and changed at run time (`admin` scope).
//! - [`http_suppliers`]: declarative HTTP suppliers, defined and dry-run (`admin` scope).
//! - [`policies`]: live dispatch policy per tenant and template (`admin` scope).
//! - [`errors`]: how command errors become `extensions.code`.
//! - [`rate`]: the per-key request rate limit.
//! - [`metrics`]: counts root fields by outcome for `/metrics`.

pub mod channel_accounts;
pub mod crowd;
pub mod errors;
pub mod http_suppliers;
pub mod inbox;
pub mod messages;
pub mod metrics;
pub mod policies;
pub mod rate;
pub mod sending;
pub mod stats;
pub mod templates;
pub mod types;

use async_graphql::{EmptySubscription, MergedObject, Schema};
use commands::links::LinkSigner;
use commands::send::SendLimits;
use store::Store;

pub use commands::keys::Caller;

/// The trace a request belongs to (W3C trace id, 32 lowercase hex digits): from the caller's
/// `traceparent` header, or new; and the request's own span in it (16 hex digits). The
/// transport attaches it; sends record both in their events' metadata, so dispatch logs the
/// same trace id and continues the trace under the request's span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceId {
    pub trace_id: String,
    pub span_id: String,
}

/// What every resolver can reach.
pub struct ApiState {
    pub store: Store,
    pub links: LinkSigner,
    /// Signs the receiver tokens of `/inbox/stream`.
    pub inbox_tokens: commands::inbox::InboxTokens,
    pub send_limits: SendLimits,
    /// Templates sends read lately, checked at each write (see [`commands::send::TemplateCache`]).
    pub templates: commands::send::TemplateCache,
    pub accounts: AccountsAdmin,
}

/// What the channel-account mutations need beside the store.
#[derive(Clone)]
pub struct AccountsAdmin {
    /// Seals secrets; without a key, accounts with secrets are refused (`SECRET_KEY_MISSING`).
    pub keyring: commands::secrets::Keyring,
    /// What suppliers need, and the configuration file's accounts.
    pub catalog: std::sync::Arc<dyn commands::accounts::AccountCatalog>,
}

#[derive(MergedObject, Default)]
pub struct QueryRoot(
    templates::TemplateQuery,
    sending::AccountQuery,
    messages::MessageQuery,
    stats::StatsQuery,
    inbox::InboxQuery,
    crowd::CrowdQuery,
    channel_accounts::ChannelAccountQuery,
    policies::PolicyQuery,
    http_suppliers::HttpSupplierQuery,
);

#[derive(MergedObject, Default)]
pub struct MutationRoot(
    templates::TemplateMutation,
    sending::SendMutation,
    crowd::CrowdMutation,
    channel_accounts::ChannelAccountMutation,
    inbox::InboxMutation,
    policies::PolicyMutation,
    http_suppliers::HttpSupplierMutation,
);

pub type HeraldSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Query size limits, against deep or expensive queries.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub depth: usize,
    pub complexity: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            depth: 12,
            complexity: 500,
        }
    }
}

pub fn schema(state: ApiState, limits: QueryLimits) -> HeraldSchema {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        EmptySubscription,
    )
    .data(state)
    .extension(metrics::FieldMetrics)
    .limit_depth(limits.depth)
    .limit_complexity(limits.complexity)
    .finish()
}

/// The schema in SDL, sorted, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    let schema = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        EmptySubscription,
    )
    .finish();
    let options = async_graphql::SDLExportOptions::new()
        .sorted_fields()
        .sorted_enum_items();
    format!(
        "# Herald's GraphQL schema. Generated from the code: `UPDATE_SCHEMA=1 cargo test -p api` rewrites it,\n\
         # and the schema test fails when the two differ.\n\n{}",
        schema.sdl_with_options(options)
    )
}
