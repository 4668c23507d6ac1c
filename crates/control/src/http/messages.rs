//! `/conversations/{id}/messages[/{messageId}/{chunks|finish|tools}]` and
//! `/conversations/{id}/tools/{toolCallId}`: sending, streaming, tool calls.

use actix_web::{web, HttpResponse};
use tandem_protocol::chat::{
    AppendChunk, Attachment, AttachmentInput, FinishMessage, FinishTool, Message, MessageRole,
    MessageState, SendMessage, StartTool, ToolExecution,
};
use tandem_protocol::http::Page;

use super::conversations::{changing_conversation, on_conversation};
use crate::authz::{Action, ResourceKind};
use crate::error::ApiError;
use crate::http::extract::AuthUser;
use crate::page::PageQuery;
use crate::state::State;
use crate::store::messages::{self, NewMessage};
use crate::validate;

const MAX_ATTACHMENTS: usize = 20;
const MAX_MODEL_CHARS: usize = 200;
const MAX_TOOL_FIELD_CHARS: usize = 200;

pub async fn list(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    page: web::Query<PageQuery>,
) -> Result<web::Json<Page<Message>>, ApiError> {
    let page = page.check()?;
    let (items, next_cursor) = on_conversation(
        &state,
        user,
        id.into_inner(),
        Action::Read,
        move |c, _, row, _| messages::list(c, &row.id, &page),
    )
    .await?;
    Ok(web::Json(Page { items, next_cursor }))
}

pub(crate) fn validate_message(
    body: SendMessage,
    max_bytes: usize,
) -> Result<NewMessage, ApiError> {
    let role = body.role.unwrap_or(MessageRole::User);
    let state = body.state.unwrap_or(MessageState::Idle);
    match (role, state) {
        (_, MessageState::Error) => {
            return Err(ApiError::validation("state must be idle or streaming"))
        }
        (MessageRole::User, MessageState::Streaming) => {
            return Err(ApiError::validation("only assistant messages stream"))
        }
        _ => {}
    }
    if body.content.len() > max_bytes {
        return Err(ApiError::PayloadTooLarge(max_bytes));
    }
    validate::free_text("content", &body.content)?;
    if role == MessageRole::User && body.content.trim().is_empty() {
        return Err(ApiError::validation("content must not be empty"));
    }
    if body.attachments.len() > MAX_ATTACHMENTS {
        return Err(ApiError::validation(format!(
            "at most {MAX_ATTACHMENTS} attachments"
        )));
    }
    let mut attachments = Vec::with_capacity(body.attachments.len());
    for a in body.attachments {
        let a = match a {
            AttachmentInput::File(id) => {
                validate::id(&id)
                    .map_err(|_| ApiError::validation("attachments: a file id is not valid"))?;
                attachments.push(Attachment {
                    name: String::new(),
                    content_type: String::new(),
                    size_bytes: 0,
                    url: String::new(),
                    file_id: Some(id),
                });
                continue;
            }
            AttachmentInput::Link(a) => a,
        };
        if a.file_id.is_some() {
            return Err(ApiError::validation(
                "attachments: give a stored file as its id string, not as a link with fileId",
            ));
        }
        validate::text("attachments.name", &a.name, 255)?;
        validate::text("attachments.contentType", &a.content_type, 255)?;
        validate::text("attachments.url", &a.url, 2048)?;
        if !(a.url.starts_with("https://") || a.url.starts_with("http://")) {
            return Err(ApiError::validation(
                "attachments.url must be an http(s) URL",
            ));
        }
        if a.size_bytes < 0 {
            return Err(ApiError::validation("attachments.sizeBytes must be ≥ 0"));
        }
        attachments.push(a);
    }
    let model = body
        .model
        .as_deref()
        .map(|m| validate::text("model", m, MAX_MODEL_CHARS))
        .transpose()?;
    Ok(NewMessage {
        sender: None,
        role,
        content: body.content,
        state,
        model,
        attachments,
        drop_foreign_files: false,
    })
}

pub async fn send(
    state: State,
    user: AuthUser,
    id: web::Path<String>,
    body: web::Json<SendMessage>,
) -> Result<HttpResponse, ApiError> {
    let mut new = validate_message(body.into_inner(), state.config.max_chat_message_bytes)?;
    new.sender = Some(user.user.summary());
    let sent = changing_conversation(
        &state,
        user,
        id.into_inner(),
        Action::CreateChild,
        |c, user, row, _| {
            if new.attachments.iter().any(|a| a.file_id.is_some()) {
                // Only files the sender may read themselves.
                let (_, chain) = super::load::project(c, &row.project_id)?;
                super::authorize(
                    c,
                    &user.actor(),
                    Action::Read,
                    ResourceKind::Workspace,
                    &chain,
                )
                .map_err(|_| {
                    ApiError::validation(
                        "attachments: you cannot attach files of a workspace you cannot read",
                    )
                })?;
            }
            messages::send(c, &row.id, new)
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(sent))
}

pub async fn append(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
    body: web::Json<AppendChunk>,
) -> Result<HttpResponse, ApiError> {
    let (id, message_id) = path.into_inner();
    let max = state.config.max_chat_message_bytes;
    validate::free_text("delta", &body.delta)?;
    let seq = changing_conversation(
        &state,
        user,
        id,
        Action::CreateChild,
        move |c, user, row, _| {
            messages::append_chunk(c, &row.id, &message_id, user.id(), &body.delta, max)
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "seq": seq })))
}

pub async fn finish(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
    body: web::Json<FinishMessage>,
) -> Result<web::Json<Message>, ApiError> {
    let (id, message_id) = path.into_inner();
    let error = body
        .into_inner()
        .error_message
        .map(|e| validate::text("errorMessage", &e, 2000))
        .transpose()?;
    let done = changing_conversation(
        &state,
        user,
        id,
        Action::CreateChild,
        move |c, user, row, _| messages::finish(c, &row.id, &message_id, user.id(), error),
    )
    .await?;
    Ok(web::Json(done))
}

/// Records a tool execution for a `toolCallId`: 201 when this call created
/// it, 200 with the existing record when it already existed.
pub async fn start_tool(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
    body: web::Json<StartTool>,
) -> Result<HttpResponse, ApiError> {
    let (id, message_id) = path.into_inner();
    let body = body.into_inner();
    let call = validate::text("toolCallId", &body.tool_call_id, MAX_TOOL_FIELD_CHARS)?;
    let name = validate::text("toolName", &body.tool_name, MAX_TOOL_FIELD_CHARS)?;
    let conversation_id = id.clone();
    let (tool, created) = on_conversation(
        &state,
        user,
        id,
        Action::CreateChild,
        move |c, user, row, _| {
            let message = messages::get(c, &row.id, &message_id)?;
            messages::start_tool(c, &message, &call, &name, &body.args, user.id())
        },
    )
    .await?;
    if created {
        state.chat_changed(&conversation_id);
        Ok(HttpResponse::Created().json(tool.to_dto()))
    } else {
        Ok(HttpResponse::Ok().json(tool.to_dto()))
    }
}

pub async fn get_tool(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<web::Json<ToolExecution>, ApiError> {
    let (id, call) = path.into_inner();
    let tool = on_conversation(&state, user, id, Action::Read, move |c, _, row, _| {
        messages::tool(c, &row.id, &call)?.ok_or(ApiError::NotFound("tool call"))
    })
    .await?;
    Ok(web::Json(tool.to_dto()))
}

pub async fn finish_tool(
    state: State,
    user: AuthUser,
    path: web::Path<(String, String)>,
    body: web::Json<FinishTool>,
) -> Result<web::Json<ToolExecution>, ApiError> {
    let (id, call) = path.into_inner();
    let body = body.into_inner();
    if !matches!(body.status.as_str(), "completed" | "failed") {
        return Err(ApiError::validation("status must be completed or failed"));
    }
    let error = body
        .error
        .as_deref()
        .map(|e| validate::text("error", e, 2000))
        .transpose()?;
    let tool = changing_conversation(
        &state,
        user,
        id,
        Action::CreateChild,
        move |c, user, row, _| {
            messages::finish_tool(
                c,
                &row.id,
                user.id(),
                &call,
                &body.status,
                body.result.as_ref(),
                error.as_deref(),
            )
        },
    )
    .await?;
    Ok(web::Json(tool.to_dto()))
}
