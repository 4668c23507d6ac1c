//! Message sets (plan 004): a conversation is a sequence of sets — a `user`
//! set and an `ai` set per turn — and an `ai` set holds several answers, one
//! `selected`. A message sent without a set is a set of one ([`flat`]).
//!
//! Every change takes the conversation's next event seq first
//! (`chat_events::next_seq`, which locks the conversation row), so changes
//! to one conversation are serialized: selecting is exclusive under
//! concurrent selects, and viewers see the changes in seq order.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use serde_json::json;
use tandem_protocol::chat::{Message, MessageRole, MessageState};
use tandem_protocol::sets::{MessagePart, MessageSet, SetMessage, SetType};

use super::conversations::{self, ConversationRow, Extra};
use super::messages::{self, MessageRow, NewMessage};
use super::{chat_events, now_ms, UserRow};
use crate::crypto;
use crate::db::schema::{message_set_members, message_sets, messages as messages_t, users};
use crate::db::{write_tx, DbConnection};
use crate::error::ApiError;
use crate::page::{cut, PageReq};

/// Most messages (answers) in one set.
pub const MAX_SET_MESSAGES: i64 = 32;
/// Most parts of one message.
pub const MAX_PARTS: usize = 64;
/// Most bytes of JSON all parts of one message may hold together.
pub const MAX_PARTS_BYTES: usize = 512 * 1024;
/// Most sets a branch copies (its cost is one transaction holding the
/// source still).
pub const MAX_BRANCH_SETS: i64 = 5_000;
/// Most messages a branch copies: ten full pages of the flat message list.
/// A branch is one write transaction (on SQLite it holds the single write
/// lock throughout) and a set may hold 32 messages, so the sets alone do
/// not bound it. In a debug build (the API tests) a branch of 2,000
/// messages took about 0.4 s on SQLite and 4.8 s on PostgreSQL (the copy
/// makes about eight statements per message, a round trip each); 5,000
/// full sets, the bound before this one, would be 80 times that.
pub const MAX_BRANCH_MESSAGES: i64 = 2_000;
/// Most bytes of message content and parts JSON (as stored) a branch copies:
/// what the copy holds in memory at most (it loads 100 sets at a time) and
/// what one branch adds to storage. A 62 MiB branch took about 0.4 s in a
/// debug build on SQLite (the API tests).
pub const MAX_BRANCH_BYTES: i64 = 64 * 1024 * 1024;
/// Most messages one page of `GET …/sets` holds: as many as the largest
/// page of the flat message list (`limit` counts sets, and a set holds up
/// to [`MAX_SET_MESSAGES`]).
pub const PAGE_MESSAGES: i64 = tandem_protocol::http::MAX_PAGE;
/// Most bytes of message content and parts JSON (as stored) one page of
/// `GET …/sets` holds, unless its first set alone is larger (a page always
/// holds at least one set, so paging always advances).
pub const PAGE_BYTES: i64 = 8 * 1024 * 1024;

/// The stored size of the messages of a join of `message_set_members` and
/// `messages`: content and parts JSON, in bytes, summed (0 when none).
/// `octet_length` is in both SQLite (≥ 3.43) and PostgreSQL.
const SUM_MESSAGE_BYTES: &str = "CAST(COALESCE(SUM(\
     CAST(octet_length(messages.content) AS BIGINT) \
     + CAST(octet_length(message_set_members.parts) AS BIGINT)), 0) AS BIGINT)";

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = message_sets)]
pub struct SetRow {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub set_type: String,
    pub level: i64,
    pub selected_block_type: String,
    pub created_by: Option<String>,
    pub created_at: i64,
}

impl SetRow {
    fn to_dto(&self, messages: Vec<SetMessage>) -> MessageSet {
        MessageSet {
            id: self.id.clone(),
            conversation_id: self.conversation_id.clone(),
            set_type: SetType::parse(&self.set_type).unwrap_or(SetType::Ai),
            level: self.level,
            selected_block_type: self.selected_block_type.clone(),
            created_by: self.created_by.clone(),
            created_at: self.created_at,
            messages,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = message_set_members)]
pub struct MemberRow {
    pub message_id: String,
    pub set_id: String,
    pub block_type: String,
    pub selected: bool,
    pub is_review: bool,
    pub parts: String,
}

impl MemberRow {
    fn parts(&self) -> Vec<MessagePart> {
        serde_json::from_str(&self.parts).unwrap_or_default()
    }

    fn to_dto(&self, message: Message) -> SetMessage {
        SetMessage {
            message,
            set_id: self.set_id.clone(),
            block_type: self.block_type.clone(),
            selected: self.selected,
            is_review: self.is_review,
            parts: self.parts(),
        }
    }
}

/// Makes a just-sent flat message a set of one (the set has its id).
pub fn flat(c: &mut DbConnection, m: &Message, seq: i64) -> Result<(), ApiError> {
    let set = SetRow {
        id: m.id.clone(),
        conversation_id: m.conversation_id.clone(),
        seq,
        set_type: match m.role {
            MessageRole::User => SetType::User,
            MessageRole::Assistant => SetType::Ai,
        }
        .as_str()
        .into(),
        level: 0,
        selected_block_type: String::new(),
        created_by: m.user_id.clone(),
        created_at: m.created_at,
    };
    diesel::insert_into(message_sets::table)
        .values(&set)
        .execute(c)?;
    diesel::insert_into(message_set_members::table)
        .values(&MemberRow {
            message_id: m.id.clone(),
            set_id: m.id.clone(),
            block_type: String::new(),
            selected: true,
            is_review: false,
            parts: "[]".into(),
        })
        .execute(c)?;
    Ok(())
}

/// Starts a set (no messages yet); viewers get `set_created`.
pub fn create(
    conn: &mut DbConnection,
    conversation_id: &str,
    set_type: SetType,
    level: i64,
    created_by: &str,
) -> Result<MessageSet, ApiError> {
    write_tx(conn, |c| {
        let seq = chat_events::next_seq(c, conversation_id)?;
        let row = SetRow {
            id: crypto::new_id(),
            conversation_id: conversation_id.to_string(),
            seq,
            set_type: set_type.as_str().into(),
            level,
            selected_block_type: String::new(),
            created_by: Some(created_by.to_string()),
            created_at: now_ms(),
        };
        diesel::insert_into(message_sets::table)
            .values(&row)
            .execute(c)?;
        let dto = row.to_dto(vec![]);
        chat_events::insert(c, conversation_id, seq, "set_created", &json!(dto))?;
        Ok(dto)
    })
}

fn set_in(c: &mut DbConnection, conversation_id: &str, id: &str) -> Result<SetRow, ApiError> {
    message_sets::table
        .find(id)
        .filter(message_sets::conversation_id.eq(conversation_id))
        .select(SetRow::as_select())
        .first(c)
        .optional()?
        .ok_or(ApiError::NotFound("message set"))
}

/// What a message in a set is, besides the message.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    pub block_type: String,
    pub is_review: bool,
    pub parts: Vec<MessagePart>,
}

/// Adds a message (a question, or one answer) to a set; the first message
/// of a set is its selected one. Viewers get `message` (the message with
/// its set fields). Several answers of a set can stream at once: chunks go
/// to `…/messages/{id}/chunks` as for any message.
pub fn add_message(
    conn: &mut DbConnection,
    conversation_id: &str,
    set_id: &str,
    new: NewMessage,
    member: Membership,
) -> Result<SetMessage, ApiError> {
    write_tx(conn, |c| {
        // Takes the seq (locks the conversation) before looking at the set.
        let (message, seq) = messages::insert_in_tx(c, conversation_id, new)?;
        let set = set_in(c, conversation_id, set_id)?;
        let count: i64 = message_set_members::table
            .filter(message_set_members::set_id.eq(&set.id))
            .count()
            .get_result(c)?;
        if count >= MAX_SET_MESSAGES {
            return Err(ApiError::Conflict(format!(
                "a set holds at most {MAX_SET_MESSAGES} messages"
            )));
        }
        let row = MemberRow {
            message_id: message.id.clone(),
            set_id: set.id.clone(),
            block_type: member.block_type,
            selected: count == 0,
            is_review: member.is_review,
            parts: serde_json::to_string(&member.parts).unwrap_or_else(|_| "[]".into()),
        };
        diesel::insert_into(message_set_members::table)
            .values(&row)
            .execute(c)?;
        if row.selected {
            diesel::update(message_sets::table.find(&set.id))
                .set(message_sets::selected_block_type.eq(&row.block_type))
                .execute(c)?;
        }
        let dto = row.to_dto(message);
        chat_events::insert(c, conversation_id, seq, "message", &json!(dto))?;
        Ok(dto)
    })
}

/// Selects a message of its set and deselects the others, in one
/// transaction; viewers get `message_selected`. Returns the set.
pub fn select(
    conn: &mut DbConnection,
    conversation_id: &str,
    message_id: &str,
) -> Result<MessageSet, ApiError> {
    write_tx(conn, |c| {
        let seq = chat_events::next_seq(c, conversation_id)?;
        let member = member_in(c, conversation_id, message_id)?;
        diesel::update(
            message_set_members::table.filter(message_set_members::set_id.eq(&member.set_id)),
        )
        .set(message_set_members::selected.eq(false))
        .execute(c)?;
        diesel::update(message_set_members::table.find(message_id))
            .set(message_set_members::selected.eq(true))
            .execute(c)?;
        diesel::update(message_sets::table.find(&member.set_id))
            .set(message_sets::selected_block_type.eq(&member.block_type))
            .execute(c)?;
        chat_events::insert(
            c,
            conversation_id,
            seq,
            "message_selected",
            &json!({
                "setId": member.set_id,
                "messageId": message_id,
                "selectedBlockType": member.block_type,
            }),
        )?;
        let set = set_in(c, conversation_id, &member.set_id)?;
        Ok(with_messages(c, vec![set])?.remove(0))
    })
}

fn member_in(
    c: &mut DbConnection,
    conversation_id: &str,
    message_id: &str,
) -> Result<MemberRow, ApiError> {
    message_set_members::table
        .inner_join(messages_t::table)
        .filter(message_set_members::message_id.eq(message_id))
        .filter(messages_t::conversation_id.eq(conversation_id))
        .select(MemberRow::as_select())
        .first(c)
        .optional()?
        .ok_or(ApiError::NotFound("message"))
}

/// Appends a part to a message (only the user it is attributed to may);
/// viewers get `message_part` with its index. Returns the event's seq.
pub fn add_part(
    conn: &mut DbConnection,
    conversation_id: &str,
    message_id: &str,
    user_id: &str,
    part: MessagePart,
) -> Result<(i64, usize), ApiError> {
    write_tx(conn, |c| {
        let seq = chat_events::next_seq(c, conversation_id)?;
        let message = messages::get(c, conversation_id, message_id)?;
        if message.user_id.as_deref() != Some(user_id) {
            return Err(ApiError::Forbidden);
        }
        let member = member_in(c, conversation_id, message_id)?;
        let mut parts = member.parts();
        if parts.len() >= MAX_PARTS {
            return Err(ApiError::Conflict(format!(
                "a message has at most {MAX_PARTS} parts"
            )));
        }
        parts.push(part.clone());
        let index = parts.len() - 1;
        let json = serde_json::to_string(&parts).unwrap_or_else(|_| "[]".into());
        if json.len() > MAX_PARTS_BYTES {
            return Err(ApiError::TooLarge(format!(
                "the parts of a message hold at most {MAX_PARTS_BYTES} bytes of JSON"
            )));
        }
        diesel::update(message_set_members::table.find(message_id))
            .set(message_set_members::parts.eq(json))
            .execute(c)?;
        chat_events::insert(
            c,
            conversation_id,
            seq,
            "message_part",
            &json!({ "messageId": message_id, "index": index, "part": part }),
        )?;
        Ok((seq, index))
    })
}

/// One page of the sets of a conversation in order, each with its messages.
/// `page.limit` counts sets; the page also stops before a set that would
/// take it past [`PAGE_MESSAGES`] messages or [`PAGE_BYTES`] bytes (its
/// first set is always kept), and the cursor continues from there. The
/// sizes are summed in SQL first, so only the kept sets are loaded.
pub fn list(
    conn: &mut DbConnection,
    conversation_id: &str,
    page: &PageReq,
) -> Result<(Vec<MessageSet>, Option<String>), ApiError> {
    let mut query = message_sets::table
        .filter(message_sets::conversation_id.eq(conversation_id))
        .order((message_sets::seq.asc(), message_sets::id.asc()))
        .select(SetRow::as_select())
        .limit(page.fetch())
        .into_boxed();
    if let Some((seq, id)) = &page.after {
        query = query.filter(
            message_sets::seq.gt(*seq).or(message_sets::seq
                .eq(*seq)
                .and(message_sets::id.gt(id.clone()))),
        );
    }
    let rows: Vec<SetRow> = query.load(conn)?;
    let candidates = &rows[..rows.len().min(page.limit.max(0) as usize)];
    let sizes = sizes(conn, candidates)?;
    let (mut messages, mut bytes, mut keep) = (0i64, 0i64, 0usize);
    for set in candidates {
        let (n, b) = sizes.get(&set.id).copied().unwrap_or((0, 0));
        if keep > 0
            && (messages.saturating_add(n) > PAGE_MESSAGES || bytes.saturating_add(b) > PAGE_BYTES)
        {
            break;
        }
        messages = messages.saturating_add(n);
        bytes = bytes.saturating_add(b);
        keep += 1;
    }
    let kept = PageReq {
        after: None,
        limit: keep as i64,
    };
    let (rows, next) = cut(rows, &kept, |s: &SetRow| (s.seq, s.id.as_str()));
    Ok((with_messages(conn, rows)?, next))
}

/// Messages and bytes ([`SUM_MESSAGE_BYTES`]) of each of the given sets that
/// has messages.
fn sizes(c: &mut DbConnection, sets: &[SetRow]) -> Result<HashMap<String, (i64, i64)>, ApiError> {
    let ids: Vec<&str> = sets.iter().map(|s| s.id.as_str()).collect();
    let mut out = HashMap::new();
    for chunk in ids.chunks(500) {
        let rows: Vec<(String, i64, i64)> = message_set_members::table
            .inner_join(messages_t::table)
            .filter(message_set_members::set_id.eq_any(chunk))
            .group_by(message_set_members::set_id)
            .select((
                message_set_members::set_id,
                diesel::dsl::count_star(),
                diesel::dsl::sql::<BigInt>(SUM_MESSAGE_BYTES),
            ))
            .load(c)?;
        out.extend(rows.into_iter().map(|(id, n, b)| (id, (n, b))));
    }
    Ok(out)
}

/// Sets with their messages (oldest first), in the given order.
fn with_messages(c: &mut DbConnection, sets: Vec<SetRow>) -> Result<Vec<MessageSet>, ApiError> {
    let ids: Vec<&str> = sets.iter().map(|s| s.id.as_str()).collect();
    let mut by_set: HashMap<String, Vec<SetMessage>> = HashMap::new();
    for chunk in ids.chunks(100) {
        let rows: Vec<(MemberRow, MessageRow, Option<UserRow>)> = message_set_members::table
            .inner_join(messages_t::table.left_join(users::table))
            .filter(message_set_members::set_id.eq_any(chunk))
            .order((messages_t::seq.asc(), messages_t::id.asc()))
            .select((
                MemberRow::as_select(),
                MessageRow::as_select(),
                Option::<UserRow>::as_select(),
            ))
            .load(c)?;
        let (members, messages): (Vec<MemberRow>, Vec<(MessageRow, Option<UserRow>)>) =
            rows.into_iter().map(|(m, r, u)| (m, (r, u))).unzip();
        let detailed = messages::with_details(c, messages)?;
        for (member, message) in members.into_iter().zip(detailed) {
            by_set
                .entry(member.set_id.clone())
                .or_default()
                .push(member.to_dto(message));
        }
    }
    Ok(sets
        .into_iter()
        .map(|s| {
            let messages = by_set.remove(&s.id).unwrap_or_default();
            s.to_dto(messages)
        })
        .collect())
}

/// Branches a conversation at one of its messages: a new conversation
/// (owned by `owner`, `parentChatId` = the source) holding copies of the
/// message's set and every set before it, with their messages — all in one
/// transaction, so a branch is whole or absent. Streaming answers are
/// copied as they are now, idle.
pub fn branch(
    conn: &mut DbConnection,
    source: &ConversationRow,
    message_id: &str,
    owner: &str,
    title: &str,
) -> Result<ConversationRow, ApiError> {
    write_tx(conn, |c| {
        // Lock the source: the branch point and what precedes it hold still.
        chat_events::lock(c, &source.id)?;
        let point = member_in(c, &source.id, message_id)?;
        let upto = set_in(c, &source.id, &point.set_id)?.seq;
        let count: i64 = message_sets::table
            .filter(message_sets::conversation_id.eq(&source.id))
            .filter(message_sets::seq.le(upto))
            .count()
            .get_result(c)?;
        if count > MAX_BRANCH_SETS {
            return Err(ApiError::TooLarge(format!(
                "a branch copies at most {MAX_BRANCH_SETS} turns; branch from an earlier message"
            )));
        }
        // What the copy would write, summed in SQL before anything is copied.
        let (messages, bytes): (i64, i64) = message_set_members::table
            .inner_join(message_sets::table)
            .inner_join(messages_t::table)
            .filter(message_sets::conversation_id.eq(&source.id))
            .filter(message_sets::seq.le(upto))
            .select((
                diesel::dsl::count_star(),
                diesel::dsl::sql::<BigInt>(SUM_MESSAGE_BYTES),
            ))
            .first(c)?;
        if messages > MAX_BRANCH_MESSAGES {
            return Err(ApiError::TooLarge(format!(
                "a branch copies at most {MAX_BRANCH_MESSAGES} messages ({messages} up to this \
                 one); branch from an earlier message"
            )));
        }
        if bytes > MAX_BRANCH_BYTES {
            return Err(ApiError::TooLarge(format!(
                "a branch copies at most {} MiB of messages and parts ({bytes} bytes up to this \
                 one); branch from an earlier message",
                MAX_BRANCH_BYTES / (1024 * 1024)
            )));
        }
        let extra = Extra {
            is_quick_chat: source.is_quick_chat,
            parent_chat_id: Some(source.id.clone()),
            summary: None,
        };
        let copy = conversations::create_with(c, owner, &source.project_id, title, None, extra)?;
        let sets: Vec<SetRow> = message_sets::table
            .filter(message_sets::conversation_id.eq(&source.id))
            .filter(message_sets::seq.le(upto))
            .order((message_sets::seq.asc(), message_sets::id.asc()))
            .select(SetRow::as_select())
            .load(c)?;
        for chunk in sets.chunks(100) {
            for set in with_messages(c, chunk.to_vec())? {
                copy_set(c, &copy.id, set)?;
            }
        }
        conversations::get(c, &copy.id)?.ok_or(ApiError::NotFound("conversation"))
    })
}

fn copy_set(c: &mut DbConnection, to: &str, set: MessageSet) -> Result<(), ApiError> {
    let seq = chat_events::next_seq(c, to)?;
    let row = SetRow {
        id: crypto::new_id(),
        conversation_id: to.to_string(),
        seq,
        set_type: set.set_type.as_str().into(),
        level: set.level,
        selected_block_type: set.selected_block_type,
        created_by: set.created_by,
        created_at: set.created_at,
    };
    diesel::insert_into(message_sets::table)
        .values(&row)
        .execute(c)?;
    for m in set.messages {
        let new = NewMessage {
            sender: m.message.sender_user,
            role: m.message.role,
            content: m.message.content,
            state: match m.message.state {
                MessageState::Streaming => MessageState::Idle,
                s => s,
            },
            model: m.message.model,
            attachments: m.message.attachments,
            // A branch lives in the parent's workspace; a file that is gone is dropped.
            drop_foreign_files: true,
        };
        let (message, _) = messages::insert_in_tx(c, to, new)?;
        diesel::insert_into(message_set_members::table)
            .values(&MemberRow {
                message_id: message.id,
                set_id: row.id.clone(),
                block_type: m.block_type,
                selected: m.selected,
                is_review: m.is_review,
                parts: serde_json::to_string(&m.parts).unwrap_or_else(|_| "[]".into()),
            })
            .execute(c)?;
    }
    Ok(())
}

/// The type of a set of the conversation (404 when it has no such set).
pub fn list_one(
    c: &mut DbConnection,
    conversation_id: &str,
    set_id: &str,
) -> Result<SetType, ApiError> {
    let set = set_in(c, conversation_id, set_id)?;
    Ok(SetType::parse(&set.set_type).unwrap_or(SetType::Ai))
}
