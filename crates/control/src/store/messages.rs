//! Messages of conversations (sent, or streamed in chunks), their
//! attachments, and tool executions (idempotent per `toolCallId`). Each
//! change writes its event in the same transaction.

use std::collections::HashMap;

use diesel::prelude::*;
use serde_json::{json, Value};
use tandem_protocol::chat::{
    Attachment, Message, MessageRole, MessageState, ToolExecution, UserSummary,
};

use super::{chat_events, now_ms, UserRow};
use crate::crypto;
use crate::db::schema::{
    conversations, message_attachments, messages, projects, tool_executions, users,
};
use crate::db::{write_tx, DbConnection};
use crate::error::ApiError;
use crate::page::{cut, PageReq};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub user_id: Option<String>,
    pub role: String,
    pub content: String,
    pub state: String,
    pub error_message: Option<String>,
    pub model: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl MessageRow {
    pub fn state(&self) -> MessageState {
        MessageState::parse(&self.state).unwrap_or(MessageState::Idle)
    }

    pub fn to_dto(&self, attachments: Vec<Attachment>, sender: Option<UserSummary>) -> Message {
        Message {
            id: self.id.clone(),
            conversation_id: self.conversation_id.clone(),
            user_id: self.user_id.clone(),
            role: MessageRole::parse(&self.role).unwrap_or(MessageRole::User),
            content: self.content.clone(),
            state: self.state(),
            error_message: self.error_message.clone(),
            model: self.model.clone(),
            attachments,
            created_at: self.created_at,
            updated_at: self.updated_at,
            sender_user: sender,
        }
    }
}

/// A message to write, validated by the handler.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The sender (for an assistant message, who triggered it); `None` only
    /// for copies of messages whose sender has since been deleted.
    pub sender: Option<UserSummary>,
    pub role: MessageRole,
    pub content: String,
    pub state: MessageState,
    pub model: Option<String>,
    /// Attachments with a `file_id` must be ready files of the
    /// conversation's workspace; their name, type, size and URL are filled
    /// in from the file.
    pub attachments: Vec<Attachment>,
    /// Copying (a fork): a file attachment whose file is not in the
    /// target's workspace becomes a plain link instead of an error.
    pub drop_foreign_files: bool,
}

/// Writes a message (attributed to its sender), bumps `lastMessageAt` and
/// tells viewers (`message`).
pub fn send(
    conn: &mut DbConnection,
    conversation_id: &str,
    new: NewMessage,
) -> Result<Message, ApiError> {
    write_tx(conn, |c| send_in_tx(c, conversation_id, new))
}

/// [`send`], inside the caller's write transaction: the message is a set
/// of one (`super::message_sets::flat`).
fn send_in_tx(
    c: &mut DbConnection,
    conversation_id: &str,
    new: NewMessage,
) -> Result<Message, ApiError> {
    let (dto, seq) = insert_in_tx(c, conversation_id, new)?;
    super::message_sets::flat(c, &dto, seq)?;
    chat_events::insert(c, conversation_id, seq, "message", &json!(dto))?;
    super::webhooks::message_created(c, conversation_id, &dto)?;
    Ok(dto)
}

/// Writes a message with the next seq (and bumps `lastMessageAt`), without
/// its event: the caller writes it with the returned seq. Call inside a
/// write transaction.
pub(crate) fn insert_in_tx(
    c: &mut DbConnection,
    conversation_id: &str,
    mut new: NewMessage,
) -> Result<(Message, i64), ApiError> {
    resolve_files(c, conversation_id, &mut new)?;
    let seq = chat_events::next_seq(c, conversation_id)?;
    let now = now_ms();
    let row = MessageRow {
        id: crypto::new_id(),
        conversation_id: conversation_id.to_string(),
        seq,
        user_id: new.sender.as_ref().map(|s| s.id.clone()),
        role: new.role.as_str().to_string(),
        content: new.content,
        state: new.state.as_str().to_string(),
        error_message: None,
        model: new.model,
        created_at: now,
        updated_at: now,
    };
    diesel::insert_into(messages::table)
        .values(&row)
        .execute(c)?;
    for (i, a) in new.attachments.iter().enumerate() {
        diesel::insert_into(message_attachments::table)
            .values((
                message_attachments::id.eq(crypto::new_id()),
                message_attachments::message_id.eq(&row.id),
                message_attachments::position.eq(i as i64),
                message_attachments::name.eq(&a.name),
                message_attachments::content_type.eq(&a.content_type),
                message_attachments::size_bytes.eq(a.size_bytes),
                message_attachments::url.eq(&a.url),
                message_attachments::file_id.eq(&a.file_id),
            ))
            .execute(c)?;
    }
    diesel::update(conversations::table.find(conversation_id))
        .set((
            conversations::last_message_at.eq(now),
            conversations::sort_at.eq(now),
            conversations::updated_at.eq(now),
        ))
        .execute(c)?;
    Ok((row.to_dto(new.attachments, new.sender), seq))
}

/// Claims the files a message attaches (see [`NewMessage::attachments`]).
fn resolve_files(
    c: &mut DbConnection,
    conversation_id: &str,
    new: &mut NewMessage,
) -> Result<(), ApiError> {
    if new.attachments.iter().all(|a| a.file_id.is_none()) {
        return Ok(());
    }
    let workspace: String = conversations::table
        .inner_join(projects::table)
        .filter(conversations::id.eq(conversation_id))
        .select(projects::workspace_id)
        .first(c)?;
    for a in &mut new.attachments {
        let Some(file_id) = a.file_id.clone() else {
            continue;
        };
        match super::files::claim(c, &workspace, &file_id) {
            Ok(file) => {
                a.name = file.name;
                a.content_type = file.content_type;
                a.size_bytes = file.size_bytes;
                a.url = format!("/files/{file_id}/content");
            }
            Err(ApiError::NotFound(_)) if new.drop_foreign_files => a.file_id = None,
            Err(ApiError::NotFound(_)) => {
                return Err(ApiError::validation(format!(
                    "attachments: {file_id} is not a file of this conversation's workspace"
                )))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn get(
    conn: &mut DbConnection,
    conversation_id: &str,
    id: &str,
) -> Result<MessageRow, ApiError> {
    messages::table
        .find(id)
        .filter(messages::conversation_id.eq(conversation_id))
        .select(MessageRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(ApiError::NotFound("message"))
}

/// One page of the messages of a conversation in order, with attachments
/// and sender details, and the cursor of the next page.
pub fn list(
    conn: &mut DbConnection,
    conversation_id: &str,
    page: &PageReq,
) -> Result<(Vec<Message>, Option<String>), ApiError> {
    let mut query = messages::table
        .left_join(users::table)
        .filter(messages::conversation_id.eq(conversation_id))
        .order((messages::seq.asc(), messages::id.asc()))
        .select((MessageRow::as_select(), Option::<UserRow>::as_select()))
        .limit(page.fetch())
        .into_boxed();
    if let Some((seq, id)) = &page.after {
        query = query.filter(
            messages::seq
                .gt(*seq)
                .or(messages::seq.eq(*seq).and(messages::id.gt(id.clone()))),
        );
    }
    let (rows, next) = cut(query.load(conn)?, page, |(m, _): &(MessageRow, _)| {
        (m.seq, m.id.as_str())
    });
    Ok((with_details(conn, rows)?, next))
}

/// The newest `n` messages of a conversation in order, and whether older ones exist.
pub fn latest(
    conn: &mut DbConnection,
    conversation_id: &str,
    n: i64,
) -> Result<(Vec<Message>, bool), ApiError> {
    let mut rows: Vec<(MessageRow, Option<UserRow>)> = messages::table
        .left_join(users::table)
        .filter(messages::conversation_id.eq(conversation_id))
        .order((messages::seq.desc(), messages::id.desc()))
        .select((MessageRow::as_select(), Option::<UserRow>::as_select()))
        .limit(n + 1)
        .load(conn)?;
    let older = rows.len() as i64 > n;
    rows.truncate(n.max(0) as usize);
    rows.reverse();
    Ok((with_details(conn, rows)?, older))
}

/// Messages with their attachments and senders' details.
pub(crate) fn with_details(
    conn: &mut DbConnection,
    rows: Vec<(MessageRow, Option<UserRow>)>,
) -> Result<Vec<Message>, ApiError> {
    let ids: Vec<&str> = rows.iter().map(|(m, _)| m.id.as_str()).collect();
    let mut attachments: HashMap<String, Vec<Attachment>> = HashMap::new();
    for chunk in ids.chunks(500) {
        let found: Vec<(String, String, String, i64, String, Option<String>)> =
            message_attachments::table
                .filter(message_attachments::message_id.eq_any(chunk))
                .order((
                    message_attachments::message_id.asc(),
                    message_attachments::position.asc(),
                ))
                .select((
                    message_attachments::message_id,
                    message_attachments::name,
                    message_attachments::content_type,
                    message_attachments::size_bytes,
                    message_attachments::url,
                    message_attachments::file_id,
                ))
                .load(conn)?;
        for (mid, name, content_type, size_bytes, url, file_id) in found {
            attachments.entry(mid).or_default().push(Attachment {
                name,
                content_type,
                size_bytes,
                url,
                file_id,
            });
        }
    }
    Ok(rows
        .into_iter()
        .map(|(m, u)| {
            let a = attachments.remove(&m.id).unwrap_or_default();
            m.to_dto(a, u.as_ref().map(UserRow::summary))
        })
        .collect())
}

/// Appends a chunk to a streaming message and tells viewers (`chunk`, with
/// the offset it starts at, so a client can check it lost nothing). Only the
/// user the message is attributed to may stream into it. The content is
/// extended in the database (`content || delta`), not read and rewritten.
pub fn append_chunk(
    conn: &mut DbConnection,
    conversation_id: &str,
    id: &str,
    user_id: &str,
    delta: &str,
    max_bytes: usize,
) -> Result<i64, ApiError> {
    write_tx(conn, |c| {
        let seq = chat_events::next_seq(c, conversation_id)?;
        let (author, state, bytes, chars): (Option<String>, String, i64, i64) = messages::table
            .find(id)
            .filter(messages::conversation_id.eq(conversation_id))
            .select((
                messages::user_id,
                messages::state,
                diesel::dsl::sql::<diesel::sql_types::BigInt>(
                    "CAST(octet_length(content) AS BIGINT)",
                ),
                diesel::dsl::sql::<diesel::sql_types::BigInt>("CAST(length(content) AS BIGINT)"),
            ))
            .first(c)
            .optional()?
            .ok_or(ApiError::NotFound("message"))?;
        check_streamer(author.as_deref(), &state, user_id)?;
        if bytes as usize + delta.len() > max_bytes {
            return Err(ApiError::PayloadTooLarge(max_bytes));
        }
        diesel::update(messages::table.find(id))
            .set((
                messages::content.eq(messages::content.concat(delta)),
                messages::updated_at.eq(now_ms()),
            ))
            .execute(c)?;
        chat_events::insert(
            c,
            conversation_id,
            seq,
            "chunk",
            &json!({ "messageId": id, "offset": chars, "delta": delta }),
        )?;
        Ok(seq)
    })
}

fn check_streamer(author: Option<&str>, state: &str, user_id: &str) -> Result<(), ApiError> {
    if author != Some(user_id) {
        return Err(ApiError::Forbidden);
    }
    let state = MessageState::parse(state).unwrap_or(MessageState::Idle);
    if state != MessageState::Streaming {
        return Err(ApiError::Conflict(format!(
            "the message is {}, not streaming",
            state.as_str()
        )));
    }
    Ok(())
}

/// Completes (`idle`) or fails (`error`, with its message) a streaming message.
pub fn finish(
    conn: &mut DbConnection,
    conversation_id: &str,
    id: &str,
    user_id: &str,
    error_message: Option<String>,
) -> Result<Message, ApiError> {
    let finished = write_tx(conn, |c| {
        let seq = chat_events::next_seq(c, conversation_id)?;
        let mut row = get(c, conversation_id, id)?;
        check_streamer(row.user_id.as_deref(), &row.state, user_id)?;
        row.state = match error_message {
            Some(_) => MessageState::Error,
            None => MessageState::Idle,
        }
        .as_str()
        .to_string();
        row.error_message = error_message;
        row.updated_at = now_ms();
        diesel::update(messages::table.find(id))
            .set((
                messages::state.eq(&row.state),
                messages::error_message.eq(&row.error_message),
                messages::updated_at.eq(row.updated_at),
            ))
            .execute(c)?;
        let dto = row.to_dto(vec![], None);
        chat_events::insert(
            c,
            conversation_id,
            seq,
            "message_finished",
            &json!({ "messageId": id, "state": dto.state, "errorMessage": dto.error_message, "length": row.content.chars().count() }),
        )?;
        Ok::<_, ApiError>(dto)
    })?;
    if let Err(e) = chat_events::prune(conn, conversation_id) {
        tracing::warn!(error = %e, "pruning old conversation events failed");
    }
    Ok(finished)
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tool_executions)]
pub struct ToolRow {
    pub id: String,
    pub conversation_id: String,
    pub message_id: String,
    pub tool_call_id: String,
    pub tool_name: String,
    pub args: String,
    pub status: String,
    pub result: Option<String>,
    pub error: Option<String>,
    pub started_by: String,
    pub started_at: i64,
    pub completed_at: Option<i64>,
}

impl ToolRow {
    pub fn to_dto(&self) -> ToolExecution {
        let parse = |s: &str| serde_json::from_str(s).unwrap_or(Value::Null);
        ToolExecution {
            id: self.id.clone(),
            conversation_id: self.conversation_id.clone(),
            message_id: self.message_id.clone(),
            tool_call_id: self.tool_call_id.clone(),
            tool_name: self.tool_name.clone(),
            args: parse(&self.args),
            status: self.status.clone(),
            result: self.result.as_deref().map(parse),
            error: self.error.clone(),
            started_by: self.started_by.clone(),
            started_at: self.started_at,
            completed_at: self.completed_at,
        }
    }
}

pub fn tool(
    conn: &mut DbConnection,
    conversation_id: &str,
    tool_call_id: &str,
) -> Result<Option<ToolRow>, ApiError> {
    Ok(tool_executions::table
        .filter(tool_executions::conversation_id.eq(conversation_id))
        .filter(tool_executions::tool_call_id.eq(tool_call_id))
        .select(ToolRow::as_select())
        .first(conn)
        .optional()?)
}

/// Records the start of a tool execution, or returns the one already
/// recorded for this `toolCallId` (`false` = not created now). Concurrent
/// callers create exactly one: the unique index decides, and the losers read
/// the winner's row.
pub fn start_tool(
    conn: &mut DbConnection,
    message: &MessageRow,
    tool_call_id: &str,
    tool_name: &str,
    args: &Value,
    user_id: &str,
) -> Result<(ToolRow, bool), ApiError> {
    if message.role != MessageRole::Assistant.as_str() {
        return Err(ApiError::validation(
            "tool calls belong to assistant messages",
        ));
    }
    if let Some(existing) = tool(conn, &message.conversation_id, tool_call_id)? {
        return Ok((existing, false));
    }
    let row = ToolRow {
        id: crypto::new_id(),
        conversation_id: message.conversation_id.clone(),
        message_id: message.id.clone(),
        tool_call_id: tool_call_id.to_string(),
        tool_name: tool_name.to_string(),
        args: args.to_string(),
        status: "running".into(),
        result: None,
        error: None,
        started_by: user_id.to_string(),
        started_at: now_ms(),
        completed_at: None,
    };
    let inserted = write_tx(conn, |c| {
        let seq = chat_events::next_seq(c, &row.conversation_id)?;
        diesel::insert_into(tool_executions::table)
            .values(&row)
            .execute(c)?;
        chat_events::insert(
            c,
            &row.conversation_id,
            seq,
            "tool_started",
            &json!(row.to_dto()),
        )?;
        Ok::<_, ApiError>(())
    });
    match inserted {
        Ok(()) => Ok((row, true)),
        Err(ApiError::Conflict(_)) => {
            let existing = tool(conn, &message.conversation_id, tool_call_id)?
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("tool call vanished")))?;
            Ok((existing, false))
        }
        Err(e) => Err(e),
    }
}

/// Records the outcome of a running tool execution: only its starter may
/// (`Forbidden` otherwise); `Conflict` once it has one.
pub fn finish_tool(
    conn: &mut DbConnection,
    conversation_id: &str,
    user_id: &str,
    tool_call_id: &str,
    status: &str,
    result: Option<&Value>,
    error: Option<&str>,
) -> Result<ToolRow, ApiError> {
    write_tx(conn, |c| {
        let seq = chat_events::next_seq(c, conversation_id)?;
        let mut row =
            tool(c, conversation_id, tool_call_id)?.ok_or(ApiError::NotFound("tool call"))?;
        if row.started_by != user_id {
            return Err(ApiError::Forbidden);
        }
        if row.status != "running" {
            return Err(ApiError::Conflict(format!(
                "the tool call is already {}",
                row.status
            )));
        }
        row.status = status.to_string();
        row.result = result.map(Value::to_string);
        row.error = error.map(str::to_string);
        row.completed_at = Some(now_ms());
        diesel::update(tool_executions::table.find(&row.id))
            .set((
                tool_executions::status.eq(&row.status),
                tool_executions::result.eq(&row.result),
                tool_executions::error.eq(&row.error),
                tool_executions::completed_at.eq(row.completed_at),
            ))
            .execute(c)?;
        chat_events::insert(
            c,
            conversation_id,
            seq,
            "tool_finished",
            &json!(row.to_dto()),
        )?;
        Ok(row)
    })
}

/// Copies the messages of one conversation into another (a fork), in order,
/// keeping who sent each. Call inside a write transaction.
pub fn copy_all(conn: &mut DbConnection, from: &str, to: &str) -> Result<(), ApiError> {
    let mut page = PageReq::first(tandem_protocol::http::MAX_PAGE);
    loop {
        let (messages, next) = list(conn, from, &page)?;
        copy(conn, to, messages)?;
        match next {
            Some(cursor) => page = crate::page::check(Some(&cursor), Some(page.limit))?,
            None => return Ok(()),
        }
    }
}

fn copy(conn: &mut DbConnection, to: &str, messages: Vec<Message>) -> Result<(), ApiError> {
    for m in messages {
        send_in_tx(
            conn,
            to,
            NewMessage {
                sender: m.sender_user,
                role: m.role,
                content: m.content,
                state: match m.state {
                    MessageState::Streaming => MessageState::Idle,
                    s => s,
                },
                model: m.model,
                attachments: m.attachments,
                drop_foreign_files: true,
            },
        )?;
    }
    Ok(())
}
