//! Message sets (plan 004): a conversation is a sequence of sets, a `user`
//! set (the question) and an `ai` set (the answers) per turn. An `ai` set
//! holds several answers — one per model or block type — of which one is
//! `selected`. A flat message (sent without a set) is a set of one.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chat::{Message, MessageRole, MessageState};

/// `user` (what was asked) or `ai` (the answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SetType {
    User,
    Ai,
}

impl SetType {
    pub fn as_str(self) -> &'static str {
        match self {
            SetType::User => "user",
            SetType::Ai => "ai",
        }
    }

    pub fn parse(s: &str) -> Option<SetType> {
        match s {
            "user" => Some(SetType::User),
            "ai" => Some(SetType::Ai),
            _ => None,
        }
    }
}

/// One part of a message at a level (a step of an agent's answer), with the
/// tool calls it made and their results (opaque JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessagePart {
    pub level: i64,
    #[serde(default)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub tool_calls: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub tool_results: Option<Value>,
}

/// A message as a member of its set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SetMessage {
    #[serde(flatten)]
    pub message: Message,
    pub set_id: String,
    pub block_type: String,
    /// Exactly one message of a set is selected (the first until another is chosen).
    pub selected: bool,
    pub is_review: bool,
    pub parts: Vec<MessagePart>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MessageSet {
    pub id: String,
    pub conversation_id: String,
    #[serde(rename = "type")]
    pub set_type: SetType,
    pub level: i64,
    /// The `blockType` of the selected message.
    pub selected_block_type: String,
    pub created_by: Option<String>,
    pub created_at: i64,
    /// Its messages, oldest first.
    pub messages: Vec<SetMessage>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSet {
    #[serde(rename = "type")]
    pub set_type: SetType,
    /// Defaults to 0.
    pub level: Option<i64>,
}

/// A message added to a set (`POST /conversations/{id}/sets/{setId}/messages`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddSetMessage {
    #[serde(default)]
    pub content: String,
    /// Defaults to the set's type: `user` in a user set, `assistant` in an ai set.
    pub role: Option<MessageRole>,
    /// `streaming` to start an answer that chunks are appended to.
    pub state: Option<MessageState>,
    pub model: Option<String>,
    /// What kind of answer this is (e.g. the model family); `""` by default.
    #[serde(default)]
    pub block_type: String,
    #[serde(default)]
    pub is_review: bool,
    #[serde(default)]
    pub parts: Vec<MessagePart>,
}

/// `POST /conversations/{id}/branch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BranchConversation {
    /// The last message carried over: its set and every set before it are copied.
    pub message_id: String,
    /// Defaults to the parent's title.
    pub title: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MessageSetPage {
    pub items: Vec<MessageSet>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_cursor: Option<String>,
}
