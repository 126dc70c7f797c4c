//! Herald's domain: value objects, events and pure decisions for messages and templates.
//!
//! Nothing here does IO, awaits, or reads a clock: times and ids arrive in commands, so every rule is
//! a plain function tested without a database. The store, command handlers, dispatch and projections
//! build on this crate; it depends on none of them.
//!
//! Layout:
//! - [`ids`]: message, template and event ids; tenant and request ids; stream names.
//! - [`channel`]: the closed vocabularies of a template (channel, message type, receiver id type, shield type).
//! - [`channel_account`]: channel accounts managed at run time: their spec and events.
//! - [`channel_account_decide`]: their commands, state, checks and `decide`.
//! - [`receiver`]: receivers validated and normalised for their id type, and masked for logs.
//! - [`attachment`]: email attachments, named by an http(s) URL and fetched at send time.
//! - [`template`]: content models, `${name}` placeholders, rendering and link extraction.
//! - [`template_event`]: the events of one template stream.
//! - [`template_aggregate`]: the template's state, `apply` and `fold`, with the review rules.
//! - [`template_decide`]: template commands and `decide`.
//! - [`message`]: the events of one message stream.
//! - [`message_state`]: the message's state, `apply` and `fold`, with the transition rules.
//! - [`message_decide`]: message commands and `decide`.
//! - [`send`]: the send request stream that makes a retried request idempotent.
//! - [`crowd`]: the crowd send stream: a template to an audience from a CSV, once or on a cron schedule.
//! - [`crowd_state`]: a crowd send's state, its commands and `decide`, and when its runs fire.
//! - [`cron`]: cron expressions and their next firing.
//! - [`http_supplier`]: declarative HTTP suppliers: a supplier defined as data, its events and `decide`.
//! - [`http_supplier_check`]: the rules a definition must meet, each failure naming its field.
//! - [`http_template`]: the `{{name}}` templates of a definition.
//! - [`policy`]: live dispatch policy per tenant and template: its events and `decide`.
//! - [`metadata`]: the metadata stored next to every event.
//! - [`wire`]: what all event enums share: decoding errors and the `DomainEvent` trait.
//!
//! Each aggregate follows one pattern: `decide(&state, command) -> Result<Vec<Event>, Error>` and
//! `apply(state, &event) -> Result<State, Error>` share one set of rules, so `decide` never emits an event
//! that `apply` refuses.

pub mod attachment;
pub mod channel;
pub mod channel_account;
pub mod channel_account_decide;
pub mod cron;
pub mod crowd;
pub mod crowd_state;
pub mod http_supplier;
pub mod http_supplier_check;
pub mod http_template;
pub mod ids;
pub mod message;
pub mod message_decide;
pub mod message_state;
pub mod metadata;
pub mod policy;
pub mod receiver;
pub mod send;
pub mod template;
pub mod template_aggregate;
pub mod template_decide;
pub mod template_event;
pub mod wire;

pub use attachment::Attachment;
pub use channel::{Channel, MessageType, ReceiverIdType, ShieldType, lane};
pub use channel_account::{
    AccountPatch, AccountSpec, ChannelAccountCommand, ChannelAccountError, ChannelAccountEvent,
    ChannelAccountState,
};
pub use crowd::{CrowdEvent, CrowdId};
pub use crowd_state::{CrowdState, CrowdStatus};
pub use ids::{EventId, IdError, MessageId, RequestId, TemplateId, TenantId, send_stream_name};
pub use message::{
    DedupRule, DeferReason, DiscardRule, ErrorClass, MessageEvent, ReceiptOutcome, TrackedLink,
};
pub use message_decide::MessageCommand;
pub use message_state::{DeliveryStatus, MessageError, MessageState};
pub use metadata::EventMetadata;
pub use receiver::{Receiver, ReceiverError};
pub use send::{SendAccepted, SendEvent, SentMessage};
pub use template::{RenderError, TemplateContent, TemplateParam};
pub use template_aggregate::{
    TemplateError, TemplateInfo, TemplateState, TemplateVersion, VersionStatus,
};
pub use template_decide::TemplateCommand;
pub use template_event::TemplateEvent;
pub use wire::{DomainEvent, EventDecodeError, ParseEnumError};
