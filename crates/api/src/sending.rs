//! Send, batch send and recall, and `me`.

use std::collections::BTreeMap;

use async_graphql::{Context, ID, InputObject, Json, Object, Result};
use chrono::{DateTime, Utc};
use commands::keys::Scope;
use commands::recall::{self, RecallStatus as Status};
use commands::send::{self, SendContext, SendItem, SendRequest};

use crate::errors::{self, validation};
use crate::templates::{caller, state, template_id};
use crate::types::{Me, RecallResult, RecallStatus, RecalledMessage, SendResult, SentMessage};

#[derive(InputObject)]
pub struct SendInput {
    pub template_id: ID,
    /// Makes the request idempotent: the same id returns the same messages and sends nothing new.
    pub request_id: Option<String>,
    /// 1 to 100 receivers, in the template's receiver id type.
    pub receivers: Vec<String>,
    /// Placeholder values, e.g. `{"code": "123456"}`: every placeholder must be given, and no other.
    pub variables: Option<Json<serde_json::Value>>,
    /// Send later; at most a year ahead.
    pub send_at: Option<DateTime<Utc>>,
}

#[derive(InputObject)]
pub struct BatchSendItem {
    pub receivers: Vec<String>,
    pub variables: Option<Json<serde_json::Value>>,
}

#[derive(InputObject)]
pub struct BatchSendInput {
    pub template_id: ID,
    pub request_id: Option<String>,
    /// Each item's receivers share its variables.
    pub items: Vec<BatchSendItem>,
    pub send_at: Option<DateTime<Utc>>,
}

/// What to recall: messages by id, every message of a send request, or both.
#[derive(InputObject)]
pub struct RecallInput {
    /// Up to 100 message ids of the caller's tenant.
    #[graphql(default)]
    pub message_ids: Vec<ID>,
    /// The request id of an earlier `send` or `batchSend`: recalls every message it made.
    pub request_id: Option<String>,
}

/// Variables arrive as a JSON object; strings, numbers and booleans are taken as text.
fn variables(
    json: Option<Json<serde_json::Value>>,
    item: usize,
) -> Result<BTreeMap<String, String>> {
    let object = match json.map(|j| j.0) {
        None | Some(serde_json::Value::Null) => return Ok(BTreeMap::new()),
        Some(serde_json::Value::Object(object)) => object,
        Some(_) => {
            return Err(validation(
                "INVALID_VARIABLES",
                format!("item {item}: variables must be a JSON object"),
            ));
        }
    };
    object
        .into_iter()
        .map(|(name, value)| {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(validation(
                        "INVALID_VARIABLES",
                        format!(
                            "item {item}: variable {name:?} must be a string, number or boolean"
                        ),
                    ));
                }
            };
            Ok((name, text))
        })
        .collect()
}

#[derive(Default)]
pub struct SendMutation;

#[Object]
impl SendMutation {
    /// Sends a template to up to 100 receivers with one set of variables.
    async fn send(&self, ctx: &Context<'_>, input: SendInput) -> Result<SendResult> {
        let item = SendItem {
            receivers: input.receivers,
            variables: variables(input.variables, 0)?,
        };
        run_send(
            ctx,
            input.template_id,
            input.request_id,
            vec![item],
            input.send_at,
        )
        .await
    }

    /// Sends a template to several groups of receivers, each with its own variables, in one commit.
    async fn batch_send(&self, ctx: &Context<'_>, input: BatchSendInput) -> Result<SendResult> {
        let items = input
            .items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                Ok(SendItem {
                    receivers: item.receivers,
                    variables: variables(item.variables, i)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        run_send(
            ctx,
            input.template_id,
            input.request_id,
            items,
            input.send_at,
        )
        .await
    }

    /// Recalls messages: one not yet dispatched is cancelled at once; a dispatched one is recalled
    /// through its supplier where the channel allows.
    async fn recall(&self, ctx: &Context<'_>, input: RecallInput) -> Result<RecallResult> {
        let caller = caller(ctx, Scope::Recall)?;
        let ids: Vec<String> = input.message_ids.into_iter().map(|id| id.0).collect();
        let outcomes = recall::recall(
            &state(ctx).store,
            &caller.tenant,
            &caller.key_id,
            &ids,
            input.request_id.as_deref(),
            Utc::now(),
        )
        .await
        .map_err(errors::command)?;
        let messages = outcomes
            .into_iter()
            .map(|o| RecalledMessage {
                id: ID(o.message_id.to_string()),
                status: match o.status {
                    Status::Recalled => RecallStatus::Recalled,
                    Status::Requested => RecallStatus::Requested,
                    Status::AlreadyRequested => RecallStatus::AlreadyRequested,
                },
            })
            .collect();
        Ok(RecallResult { messages })
    }
}

async fn run_send(
    ctx: &Context<'_>,
    template: ID,
    request_id: Option<String>,
    items: Vec<SendItem>,
    send_at: Option<DateTime<Utc>>,
) -> Result<SendResult> {
    let caller = caller(ctx, Scope::Send)?;
    let state = state(ctx);
    let request = SendRequest {
        template_id: template_id(&template)?,
        request_id,
        items,
        send_at,
    };
    let cx = SendContext {
        store: &state.store,
        links: &state.links,
        limits: &state.send_limits,
        templates: &state.templates,
        trace_id: ctx
            .data_opt::<crate::TraceId>()
            .map(|t| t.trace_id.as_str()),
        span_id: ctx.data_opt::<crate::TraceId>().map(|t| t.span_id.as_str()),
    };
    let outcome = send::send(&cx, &caller.tenant, &caller.key_id, request, Utc::now())
        .await
        .map_err(errors::command)?;
    Ok(SendResult {
        request_id: outcome.request_id.to_string(),
        replayed: outcome.replayed,
        messages: outcome
            .messages
            .into_iter()
            .map(|m| SentMessage {
                id: ID(m.message_id.to_string()),
                receiver: m.receiver.value().to_owned(),
            })
            .collect(),
    })
}

#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The tenant and scopes of the calling key.
    async fn me(&self, ctx: &Context<'_>) -> Result<Me> {
        let caller = ctx.data_opt::<commands::keys::Caller>().ok_or_else(|| {
            errors::coded("UNAUTHENTICATED", "NO_API_KEY", "an API key is required")
        })?;
        Ok(Me {
            tenant: caller.tenant.to_string(),
            key_id: caller.key_id.clone(),
            scopes: caller
                .scopes
                .to_string()
                .split(',')
                .map(str::to_owned)
                .collect(),
        })
    }
}
