//! Message sets (plan 004): `/conversations/{id}/sets[/{setId}/messages]`,
//! `/conversations/{id}/messages/{messageId}/{select|parts}` and
//! `/conversations/{id}/branch`. Access is plan 003's matrix: readers list,
//! owner and participants write (`CreateChild`), as for flat messages.

use actix_web::{web, HttpResponse};
use serde_json::Value;
use tandem_protocol::chat::{Conversation, MessageRole, SendMessage};
use tandem_protocol::http::Role;
use tandem_protocol::sets::{
    AddSetMessage, BranchConversation, CreateSet, MessagePart, MessageSet, MessageSetPage, SetType,
};

use super::conversations::{authorized, changing_conversation, on_conversation};
use super::{authorize, load};
use crate::authz::{Action, ResourceKind};
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::page::PageQuery;
use crate::state::State;
use crate::store::message_sets::{self, Membership, MAX_PARTS};
use crate::validate;

const MAX_BLOCK_TYPE_CHARS: usize = 100;
/// Most bytes of a part's `toolCalls` or `toolResults` (as JSON).
const MAX_TOOL_JSON_BYTES: usize = 16 * 1024;
const MAX_LEVEL: i64 = 1_000_000;

pub async fn list(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<web::Json<MessageSetPage>, ApiError> {
    let page = page.check()?;
    let (items, next_cursor) = on_conversation(
        &state,
        user,
        id.into_inner(),
        Action::Read,
        move |c, _, row, _| message_sets::list(c, &row.id, &page),
    )
    .await?;
    Ok(web::Json(MessageSetPage { items, next_cursor }))
}

fn level(l: Option<i64>) -> Result<i64, ApiError> {
    let l = l.unwrap_or(0);
    if !(0..=MAX_LEVEL).contains(&l) {
        return Err(ApiError::validation(format!(
            "level must be between 0 and {MAX_LEVEL}"
        )));
    }
    Ok(l)
}

pub async fn create(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Json<CreateSet>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let level = level(body.level)?;
    let set = changing_conversation(
        &state,
        user,
        id.into_inner(),
        Action::CreateChild,
        move |c, user, row, _| message_sets::create(c, &row.id, body.set_type, level, user.id()),
    )
    .await?;
    Ok(HttpResponse::Created().json(set))
}

fn check_part(part: &MessagePart, max_bytes: usize) -> Result<(), ApiError> {
    level(Some(part.level))?;
    if part.content.len() > max_bytes {
        return Err(ApiError::PayloadTooLarge(max_bytes));
    }
    validate::free_text("parts.content", &part.content)?;
    for (field, v) in [
        ("parts.toolCalls", &part.tool_calls),
        ("parts.toolResults", &part.tool_results),
    ] {
        if v.as_ref().map_or(0, |v| v.to_string().len()) > MAX_TOOL_JSON_BYTES {
            return Err(ApiError::validation(format!(
                "{field} must be at most {MAX_TOOL_JSON_BYTES} bytes of JSON"
            )));
        }
    }
    Ok(())
}

pub async fn add_message(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
    body: web::Json<AddSetMessage>,
) -> Result<HttpResponse, ApiError> {
    let (id, set_id) = path.into_inner();
    let body = body.into_inner();
    let max = state.config.max_chat_message_bytes;
    if body.parts.len() > MAX_PARTS {
        return Err(ApiError::validation(format!("at most {MAX_PARTS} parts")));
    }
    for p in &body.parts {
        check_part(p, max)?;
    }
    let block_type = match body.block_type.as_str() {
        "" => String::new(),
        b => validate::text("blockType", b, MAX_BLOCK_TYPE_CHARS)?,
    };
    let member = Membership {
        block_type,
        is_review: body.is_review,
        parts: body.parts,
    };
    let explicit_role = body.role;
    let send = SendMessage {
        content: body.content,
        role: None,
        state: body.state,
        model: body.model,
        attachments: vec![],
    };
    let added = changing_conversation(
        &state,
        user,
        id,
        Action::CreateChild,
        move |c, user, row, _| {
            let set = message_sets::list_one(c, &row.id, &set_id)?;
            let role = explicit_role.unwrap_or(match set {
                SetType::User => MessageRole::User,
                SetType::Ai => MessageRole::Assistant,
            });
            let mut new = super::messages::validate_message(
                SendMessage {
                    role: Some(role),
                    ..send
                },
                max,
            )?;
            new.sender = Some(user.user.summary());
            message_sets::add_message(c, &row.id, &set_id, new, member)
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(added))
}

pub async fn select(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<web::Json<MessageSet>, ApiError> {
    let (id, message_id) = path.into_inner();
    let set = changing_conversation(
        &state,
        user,
        id,
        Action::CreateChild,
        move |c, _, row, _| message_sets::select(c, &row.id, &message_id),
    )
    .await?;
    Ok(web::Json(set))
}

pub async fn add_part(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
    body: web::Json<MessagePart>,
) -> Result<web::Json<Value>, ApiError> {
    let (id, message_id) = path.into_inner();
    let part = body.into_inner();
    check_part(&part, state.config.max_chat_message_bytes)?;
    let (seq, index) = changing_conversation(
        &state,
        user,
        id,
        Action::CreateChild,
        move |c, user, row, _| message_sets::add_part(c, &row.id, &message_id, user.id(), part),
    )
    .await?;
    Ok(web::Json(serde_json::json!({ "seq": seq, "index": index })))
}

/// Branches a chat at one of its messages: anyone who reads it and may
/// create chats in its project gets their own copy up to that point.
pub async fn branch(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Json<BranchConversation>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let title = body.title.as_deref().map(validate::title).transpose()?;
    let id = id.into_inner();
    let created: Conversation = state
        .db(move |c| {
            let actor = user.actor();
            let (source, _) = authorized(c, &actor, &id, Action::Read)?;
            let (_, chain) = load::project(c, &source.project_id)?;
            authorize(
                c,
                &actor,
                Action::CreateChild,
                ResourceKind::Project,
                &chain,
            )?;
            let title = title.unwrap_or_else(|| source.title.clone());
            let row = message_sets::branch(c, &source, &body.message_id, user.id(), &title)?;
            Ok(row.to_dto(Role::Owner))
        })
        .await?;
    Ok(HttpResponse::Created().json(created))
}
