//! JSON bodies of control's chat API: conversations, participants, messages
//! (with streaming), the live event stream, sharing, tool executions, usage,
//! presence, workspace invites and user settings. camelCase on the wire,
//! times in milliseconds since the Unix epoch.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::Role;

/// What the owner lets participants do besides reading and sending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParticipantsMay {
    #[serde(default)]
    pub rename: bool,
    #[serde(default)]
    pub star: bool,
    #[serde(default)]
    pub archive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: String,
    pub project_id: String,
    pub owner_id: String,
    pub title: String,
    pub is_collaborative: bool,
    pub starred: bool,
    pub archived: bool,
    pub participants_may: ParticipantsMay,
    /// The conversation this one was forked from, if any.
    pub forked_from: Option<String>,
    /// A quick chat (plan 004): a throwaway chat the UI lists apart.
    pub is_quick_chat: bool,
    /// The chat this one was branched from (`POST /conversations/{id}/branch`), if any.
    pub parent_chat_id: Option<String>,
    /// A summary of the conversation (set by a client, e.g. written by a model).
    pub summary: Option<String>,
    pub last_message_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The caller's standing: `owner`, `editor` (participant) or `viewer`
    /// (someone reading it through a share link).
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateConversation {
    pub title: String,
    #[serde(default)]
    pub is_quick_chat: bool,
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateConversation {
    pub title: Option<String>,
    pub starred: Option<bool>,
    pub archived: Option<bool>,
    pub participants_may: Option<ParticipantsMay>,
    /// Needs the right to rename.
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConversationPage {
    pub items: Vec<Conversation>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_cursor: Option<String>,
}

/// A user as shown next to messages and in participant lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UserSummary {
    pub id: String,
    pub display_name: String,
    /// Left out for people reading through a share link.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub user_id: String,
    pub added_by: String,
    pub created_at: i64,
    /// `owner` for the conversation's owner (listed first), `participant` otherwise.
    pub kind: String,
    pub user: UserSummary,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddParticipant {
    pub user_id: String,
}

/// Who wrote a message: the sender (`user`) or the model (`assistant`),
/// which is attributed to the user whose message triggered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Assistant,
}

impl MessageRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
        }
    }

    pub fn parse(s: &str) -> Option<MessageRole> {
        match s {
            "user" => Some(MessageRole::User),
            "assistant" => Some(MessageRole::Assistant),
            _ => None,
        }
    }
}

/// `streaming` while chunks are appended, `idle` when complete, `error` when
/// the generation failed (`errorMessage` says why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum MessageState {
    Streaming,
    Idle,
    Error,
}

impl MessageState {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Streaming => "streaming",
            MessageState::Idle => "idle",
            MessageState::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<MessageState> {
        match s {
            "streaming" => Some(MessageState::Streaming),
            "idle" => Some(MessageState::Idle),
            "error" => Some(MessageState::Error),
            _ => None,
        }
    }
}

/// Metadata of a file attached to a message (the bytes live elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attachment {
    pub name: String,
    pub content_type: String,
    pub size_bytes: i64,
    /// A link; for a stored file, `/files/{fileId}/content` on control.
    pub url: String,
    /// Set when the attachment is a file stored in the workspace
    /// (`GET /files/{fileId}`); download it through `/files/{fileId}/content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
}

/// An attachment of a message being sent: the id of a file of the
/// conversation's workspace (name, type and size come from the file), or a
/// link described in full.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum AttachmentInput {
    /// A file id (from an upload).
    File(String),
    /// A link to something stored elsewhere.
    Link(Attachment),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    /// The sender; for an assistant message, the user who triggered it.
    pub user_id: Option<String>,
    pub role: MessageRole,
    pub content: String,
    pub state: MessageState,
    pub error_message: Option<String>,
    pub model: Option<String>,
    pub attachments: Vec<Attachment>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Filled in by `GET /conversations/{id}/messages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_user: Option<UserSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendMessage {
    pub content: String,
    /// `user` (default) or `assistant`.
    pub role: Option<MessageRole>,
    /// `streaming` to start an assistant message that chunks are appended to.
    pub state: Option<MessageState>,
    pub model: Option<String>,
    /// File ids of the workspace, or links.
    #[serde(default)]
    pub attachments: Vec<AttachmentInput>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppendChunk {
    pub delta: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FinishMessage {
    /// Set to fail the message (state `error`); absent to complete it (`idle`).
    pub error_message: Option<String>,
}

/// One event of `GET /conversations/{id}/events` (the SSE `data:` line; the
/// SSE `event:` field carries `kind`, the SSE `id:` field carries `seq`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConversationEvent {
    pub seq: i64,
    pub kind: String,
    pub data: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartTool {
    pub tool_call_id: String,
    pub tool_name: String,
    #[serde(default)]
    pub args: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FinishTool {
    /// `completed` or `failed`.
    pub status: String,
    pub result: Option<Value>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ToolExecution {
    pub id: String,
    pub conversation_id: String,
    pub message_id: String,
    pub tool_call_id: String,
    pub tool_name: String,
    pub args: Value,
    /// `running`, `completed` or `failed`.
    pub status: String,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub started_by: String,
    pub started_at: i64,
    pub completed_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Share {
    pub share_id: String,
    pub conversation_id: String,
}

/// What `GET /shares/{shareId}?limit=&cursor=` shows: the conversation
/// read-only, with one page of its messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SharedConversation {
    pub conversation: Conversation,
    pub messages: Vec<Message>,
    pub owner: UserSummary,
    /// Pass as `cursor` for the next page of messages; `null` on the last page.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForkShare {
    pub project_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordUsage {
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// The message whose generation this was: the usage is attributed to the
    /// user who triggered it. Without it, to the caller.
    pub message_id: Option<String>,
    pub conversation_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UsageEvent {
    pub id: String,
    pub user_id: String,
    pub org_id: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub created_at: i64,
}

/// Totals for one UTC day (`YYYY-MM-DD`), one user (per-org reports) and one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UsageTotal {
    pub day: String,
    pub user_id: Option<String>,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub events: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    pub totals: Vec<UsageTotal>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PresenceEntry {
    pub user: UserSummary,
    pub last_active_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInvite {
    pub email: String,
    /// Defaults to `editor`.
    pub role: Option<Role>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Invite {
    pub id: String,
    pub workspace_id: String,
    pub email: String,
    pub role: Role,
    pub invited_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// `pending`, `accepted`, `revoked` or `expired`.
    pub status: String,
    /// Only in the answer to the creation: the secret the invitee accepts with
    /// (it is also in the email). Stored hashed; never shown again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AcceptedInvite {
    pub workspace_id: String,
    pub role: Role,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Provider → masked key (`sk-…abcd`); the full key is never returned.
    pub api_keys: std::collections::BTreeMap<String, String>,
    pub model_preferences: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateSettings {
    pub model_preferences: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutApiKey {
    pub key: String,
}
