//! Template resolvers: create, edit and review templates; read one or a page of them.

use async_graphql::{Context, ID, InputObject, Json, Object, Result};
use chrono::Utc;
use commands::keys::{Caller, Scope};
use commands::templates::{self, NewTemplate, TemplateFilter};
use domain::{TemplateCommand, TemplateContent, TemplateId};

use crate::ApiState;
use crate::errors::{self, validation};
use crate::types::{
    Channel, MessageType, PageInfo, ReceiverIdType, ShieldType, Template, TemplateConnection,
};

/// Largest page of `templates`.
const MAX_PAGE: i32 = 100;

/// The caller, when it holds `scope`: UNAUTHENTICATED without a key, FORBIDDEN without the scope.
pub fn caller<'a>(ctx: &Context<'a>, scope: Scope) -> Result<&'a Caller> {
    let caller = ctx
        .data_opt::<Caller>()
        .ok_or_else(|| errors::coded("UNAUTHENTICATED", "NO_API_KEY", "an API key is required"))?;
    if !caller.allows(scope) {
        return Err(errors::coded(
            "FORBIDDEN",
            "MISSING_SCOPE",
            format!("this key lacks the {} scope", scope.as_str()),
        ));
    }
    Ok(caller)
}

pub fn state<'a>(ctx: &Context<'a>) -> &'a ApiState {
    // The schema is always built with its state (see `schema`).
    ctx.data_unchecked::<ApiState>()
}

pub fn template_id(id: &ID) -> Result<TemplateId> {
    id.parse().map_err(|_| {
        validation(
            "INVALID_TEMPLATE_ID",
            format!("{:?} is not a template id", id.as_str()),
        )
    })
}

fn content(json: Json<serde_json::Value>) -> Result<TemplateContent> {
    serde_json::from_value(json.0)
        .map_err(|e| validation("INVALID_CONTENT", format!("content: {e}")))
}

fn view(id: TemplateId, state: &domain::TemplateState) -> Result<Template> {
    Template::from_state(id, state)
        .ok_or_else(|| errors::coded("INTERNAL", "INTERNAL", "something went wrong"))
}

#[derive(InputObject)]
pub struct CreateTemplateInput {
    pub name: String,
    pub channel: Channel,
    pub msg_type: MessageType,
    /// Defaults to the channel's usual id type (PHONE for SMS, EMAIL for EMAIL...).
    pub receiver_id_type: Option<ReceiverIdType>,
    #[graphql(default_with = "ShieldType::None")]
    pub shield_type: ShieldType,
    /// The content model for the channel, e.g. `{"kind": "TEXT", "body": "Your code is ${code}"}`.
    /// An EMAIL may carry `"attachments": [{"url": "https://…", "filename": "invoice.pdf"}]`:
    /// http or https URLs only (ATTACHMENT_URL_NOT_HTTP otherwise), fetched when each message is sent.
    pub content: Json<serde_json::Value>,
    /// The channel account (or account group) that sends it.
    pub account: String,
    pub owner_team: String,
}

/// Fields left out keep their value; any change makes a new version that needs approval.
#[derive(InputObject)]
pub struct UpdateTemplateInput {
    pub id: ID,
    pub name: Option<String>,
    pub shield_type: Option<ShieldType>,
    pub content: Option<Json<serde_json::Value>>,
    pub account: Option<String>,
}

#[derive(InputObject, Default)]
pub struct TemplateFilterInput {
    pub channel: Option<Channel>,
    pub name_contains: Option<String>,
}

#[derive(Default)]
pub struct TemplateQuery;

#[Object]
impl TemplateQuery {
    /// One template of the caller's tenant.
    async fn template(&self, ctx: &Context<'_>, id: ID) -> Result<Template> {
        let caller = caller(ctx, Scope::Read)?;
        let id = template_id(&id)?;
        let (state, _) = templates::load(&state(ctx).store, &caller.tenant, id)
            .await
            .map_err(errors::command)?;
        view(id, &state)
    }

    /// The caller's templates, newest first.
    async fn templates(
        &self,
        ctx: &Context<'_>,
        filter: Option<TemplateFilterInput>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<TemplateConnection> {
        let caller = caller(ctx, Scope::Read)?;
        if !(1..=MAX_PAGE).contains(&first) {
            return Err(validation(
                "PAGE_SIZE",
                format!("first takes 1 to {MAX_PAGE}"),
            ));
        }
        let after = after.map(|a| template_id(&ID(a))).transpose()?;
        let filter = filter.unwrap_or_default();
        let filter = TemplateFilter {
            channel: filter.channel.map(Into::into),
            name_contains: filter.name_contains,
        };
        let (page, has_next_page) = templates::list(
            &state(ctx).store,
            &caller.tenant,
            &filter,
            first as usize,
            after,
        )
        .await
        .map_err(errors::command)?;
        let end_cursor = page.last().map(|(id, _)| id.to_string());
        let nodes = page
            .iter()
            .map(|(id, s)| view(*id, s))
            .collect::<Result<_>>()?;
        Ok(TemplateConnection {
            nodes,
            page_info: PageInfo {
                has_next_page,
                end_cursor,
            },
        })
    }
}

#[derive(Default)]
pub struct TemplateMutation;

#[Object]
impl TemplateMutation {
    /// Creates a template as a draft (version 1); it sends once submitted and approved.
    async fn create_template(
        &self,
        ctx: &Context<'_>,
        input: CreateTemplateInput,
    ) -> Result<Template> {
        let caller = caller(ctx, Scope::Admin)?;
        let new = NewTemplate {
            name: input.name,
            channel: input.channel.into(),
            msg_type: input.msg_type.into(),
            receiver_id_type: input.receiver_id_type.map(Into::into),
            shield_type: input.shield_type.into(),
            content: content(input.content)?,
            account: input.account,
            owner_team: input.owner_team,
        };
        let (id, state) = templates::create(
            &state(ctx).store,
            &caller.tenant,
            &caller.key_id,
            new,
            Utc::now(),
        )
        .await
        .map_err(errors::command)?;
        view(id, &state)
    }

    /// Edits a template: a new draft version; the approved version keeps sending until this one is approved.
    async fn update_template(
        &self,
        ctx: &Context<'_>,
        input: UpdateTemplateInput,
    ) -> Result<Template> {
        let caller = caller(ctx, Scope::Admin)?;
        let id = template_id(&input.id)?;
        let store = &state(ctx).store;
        let (current, _) = templates::load(store, &caller.tenant, id)
            .await
            .map_err(errors::command)?;
        let latest = current
            .latest()
            .ok_or_else(|| validation("NOT_CREATED", "template has no version"))?;
        let command = TemplateCommand::UpdateTemplate {
            name: input.name.unwrap_or_else(|| latest.name.clone()),
            shield_type: input.shield_type.map_or(latest.shield_type, Into::into),
            content: input
                .content
                .map(content)
                .transpose()?
                .unwrap_or_else(|| latest.content.clone()),
            account: input.account.unwrap_or_else(|| latest.account.clone()),
            actor: caller.key_id.clone(),
            at: Utc::now(),
        };
        run(ctx, caller, id, command).await
    }

    /// Submits a version for review (the latest, when none is named).
    async fn submit_template(
        &self,
        ctx: &Context<'_>,
        id: ID,
        version: Option<u32>,
    ) -> Result<Template> {
        let caller = caller(ctx, Scope::Admin)?;
        let id = template_id(&id)?;
        let version = match version {
            Some(v) => v,
            None => latest_version(ctx, caller, id).await?,
        };
        run(
            ctx,
            caller,
            id,
            TemplateCommand::SubmitTemplate {
                version,
                actor: caller.key_id.clone(),
                at: Utc::now(),
            },
        )
        .await
    }

    /// Approves a submitted version; the reviewer must not be its author.
    async fn approve_template(
        &self,
        ctx: &Context<'_>,
        id: ID,
        version: u32,
        comment: Option<String>,
    ) -> Result<Template> {
        let caller = caller(ctx, Scope::Admin)?;
        let command = TemplateCommand::ApproveTemplate {
            version,
            actor: caller.key_id.clone(),
            comment,
            at: Utc::now(),
        };
        run(ctx, caller, template_id(&id)?, command).await
    }

    async fn reject_template(
        &self,
        ctx: &Context<'_>,
        id: ID,
        version: u32,
        reason: String,
    ) -> Result<Template> {
        let caller = caller(ctx, Scope::Admin)?;
        let command = TemplateCommand::RejectTemplate {
            version,
            actor: caller.key_id.clone(),
            reason,
            at: Utc::now(),
        };
        run(ctx, caller, template_id(&id)?, command).await
    }

    /// Stops a template from sending, whatever its versions.
    async fn disable_template(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: Option<String>,
    ) -> Result<Template> {
        let caller = caller(ctx, Scope::Admin)?;
        let command = TemplateCommand::DisableTemplate {
            actor: caller.key_id.clone(),
            reason,
            at: Utc::now(),
        };
        run(ctx, caller, template_id(&id)?, command).await
    }

    async fn enable_template(&self, ctx: &Context<'_>, id: ID) -> Result<Template> {
        let caller = caller(ctx, Scope::Admin)?;
        let command = TemplateCommand::EnableTemplate {
            actor: caller.key_id.clone(),
            at: Utc::now(),
        };
        run(ctx, caller, template_id(&id)?, command).await
    }
}

async fn latest_version(ctx: &Context<'_>, caller: &Caller, id: TemplateId) -> Result<u32> {
    let (state, _) = templates::load(&state(ctx).store, &caller.tenant, id)
        .await
        .map_err(errors::command)?;
    Ok(state.latest().map_or(1, |v| v.version))
}

async fn run(
    ctx: &Context<'_>,
    caller: &Caller,
    id: TemplateId,
    command: TemplateCommand,
) -> Result<Template> {
    let state = templates::execute(
        &state(ctx).store,
        &caller.tenant,
        &caller.key_id,
        id,
        command,
    )
    .await
    .map_err(errors::command)?;
    view(id, &state)
}
