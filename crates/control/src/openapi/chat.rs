//! The chat routes of `http::chat_routes`: conversations, sharing, usage,
//! invites, settings; one entry per route and method.

use tandem_protocol::chat::*;
use utoipa::openapi::schema::Type;
use utoipa::openapi::Content;

use super::*;
use crate::store::message_sets as sets;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::Required;

/// Conversations, sharing, usage, invites, settings (`http::chat_routes`).
pub fn operations() -> Vec<Op> {
    const C: &str = "/conversations/{id}";
    let sub = |tail: &str| format!("{C}{tail}");
    vec![
        post(
            "/projects/{id}/conversations",
            "createConversation",
            "Start a conversation in a project",
        )
        .body::<CreateConversation>()
        .errors(&[403, 404])
        .ok::<Conversation>(201),
        get(
            "/conversations",
            "listConversations",
            "The caller's conversations, newest activity first",
        )
        .query("projectId", Type::String, "Only this project's")
        .query(
            "archived",
            Type::Boolean,
            "Only archived (true) or not archived (false)",
        )
        .query(
            "starred",
            Type::Boolean,
            "Only starred (true) or not starred (false)",
        )
        .paging()
        .ok::<ConversationPage>(200),
        get(C, "getConversation", "A conversation")
            .errors(&[404])
            .ok::<Conversation>(200),
        patch(
            C,
            "updateConversation",
            "Rename, star, archive, set what participants may do",
        )
        .body::<UpdateConversation>()
        .errors(&[403, 404])
        .ok::<Conversation>(200),
        delete(C, "deleteConversation", "Delete a conversation")
            .errors(&[403, 404])
            .no_content(),
        get(&sub("/participants"), "listParticipants", "Participants")
            .errors(&[404])
            .page::<Participant>(),
        post(&sub("/participants"), "addParticipant", "Add a participant")
            .body::<AddParticipant>()
            .errors(&[403, 404, 409])
            .ok::<Participant>(201),
        delete(
            &sub("/participants/{userId}"),
            "removeParticipant",
            "Remove a participant",
        )
        .errors(&[403, 404])
        .no_content(),
        get(
            &sub("/presence"),
            "listPresence",
            "Who is active in the conversation now",
        )
        .errors(&[404])
        .page::<PresenceEntry>(),
        post(&sub("/presence"), "heartbeat", "Mark the caller as active")
            .errors(&[404])
            .no_content(),
        get(&sub("/messages"), "listMessages", "Messages, oldest first")
            .errors(&[404])
            .page::<Message>(),
        post(
            &sub("/messages"),
            "sendMessage",
            "Send a message (or start a streamed reply)",
        )
        .body::<SendMessage>()
        .errors(&[403, 404])
        .ok::<Message>(201),
        post(
            &sub("/messages/{messageId}/chunks"),
            "appendChunk",
            "Append text to a streaming message",
        )
        .body::<AppendChunk>()
        .errors(&[403, 404, 409])
        .ok_object(200, count_object("seq", "The event's sequence number")),
        post(
            &sub("/messages/{messageId}/finish"),
            "finishMessage",
            "End a streaming message",
        )
        .body::<FinishMessage>()
        .errors(&[403, 404, 409])
        .ok::<Message>(200),
        post(
            &sub("/messages/{messageId}/tools"),
            "startTool",
            "Record a tool call (200 when it exists already)",
        )
        .body::<StartTool>()
        .errors(&[403, 404, 409])
        .ok::<ToolExecution>(201),
        get(&sub("/tools/{toolCallId}"), "getTool", "A tool call")
            .errors(&[404])
            .ok::<ToolExecution>(200),
        post(
            &sub("/tools/{toolCallId}"),
            "finishTool",
            "Record a tool call's result",
        )
        .body::<FinishTool>()
        .errors(&[403, 404, 409])
        .ok::<ToolExecution>(200),
        get(
            &sub("/sets"),
            "listMessageSets",
            "The message sets of a conversation, in order",
        )
        .describe(&format!(
            "Each set with its messages (oldest first); a message sent without a set \
                 (`POST …/messages`) is a set of one, with the message's id. Takes \
                 `?limit&cursor`: `limit` (1–200, 50 when absent) counts sets, and a page also \
                 ends before the set that would take it past {} messages or {} MiB of message \
                 content and parts JSON (its first set is always included); follow \
                 `nextCursor` until it is null.",
            sets::PAGE_MESSAGES,
            sets::PAGE_BYTES >> 20,
        ))
        .errors(&[404])
        .ok::<tandem_protocol::sets::MessageSetPage>(200),
        post(
            &sub("/sets"),
            "createMessageSet",
            "Start a message set (a user or ai turn)",
        )
        .body::<tandem_protocol::sets::CreateSet>()
        .errors(&[403, 404])
        .ok::<tandem_protocol::sets::MessageSet>(201),
        post(
            &sub("/sets/{setId}/messages"),
            "addSetMessage",
            "Add a message (a question or one answer) to a set",
        )
        .describe(
            "The first message of a set is its selected one. Answers stream like any message \
             (`…/messages/{id}/chunks`, `…/finish`), several at once. Viewers get `message` \
             with the set fields.",
        )
        .body::<tandem_protocol::sets::AddSetMessage>()
        .errors(&[403, 404, 409, 413])
        .ok::<tandem_protocol::sets::SetMessage>(201),
        post(
            &sub("/messages/{messageId}/select"),
            "selectMessage",
            "Select a message of its set (the others are deselected)",
        )
        .errors(&[403, 404])
        .ok::<tandem_protocol::sets::MessageSet>(200),
        post(
            &sub("/messages/{messageId}/parts"),
            "addMessagePart",
            "Append a part to a message (its author only)",
        )
        .body::<tandem_protocol::sets::MessagePart>()
        .errors(&[403, 404, 409, 413])
        .ok_object(
            200,
            count_object("index", "The part's index in the message")
                .property(
                    "seq",
                    typed(Type::Integer).description(Some("The event's seq")),
                )
                .required("seq"),
        ),
        post(
            &sub("/branch"),
            "branchConversation",
            "Branch a conversation at a message (a new conversation with the sets up to it)",
        )
        .describe(&format!(
            "Copies the message's set and every set before it, in one transaction: at most \
             {} sets, {} messages and {} MiB of message content and parts JSON, counted \
             before anything is copied (413 beyond, saying which bound).",
            sets::MAX_BRANCH_SETS,
            sets::MAX_BRANCH_MESSAGES,
            sets::MAX_BRANCH_BYTES >> 20,
        ))
        .body::<tandem_protocol::sets::BranchConversation>()
        .errors(&[403, 404])
        .ok::<Conversation>(201),
        {
            let mut events = get(
                &sub("/events"),
                "conversationEvents",
                "Live events (Server-Sent Events)",
            )
            .describe(
                "`text/event-stream`: first a `snapshot` event (`data`: `{conversation, \
                     messages, olderMessages}`: the newest 200 messages, oldest first, and \
                     `olderMessages: true` when earlier ones exist, read through `GET …/messages`), \
                     then one event per change; each `data:` is a ConversationEvent and each \
                     `id:` its `seq`. Resume with `Last-Event-ID` (or `?after=`). The stream ends \
                     when access is lost. 429: the caller holds `TANDEM_MAX_STREAMS_PER_USER` \
                     streams on this replica already.",
            )
            .query(
                "after",
                Type::Integer,
                "Resume after this seq (like Last-Event-ID)",
            )
            .errors(&[404, 429]);
            events.builder = events.builder.parameter(
                ParameterBuilder::new()
                    .name("Last-Event-ID")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some("The last seq received: resume after it"))
                    .schema(Some(typed(Type::String))),
            );
            let schema = events.register::<ConversationEvent>();
            events.answer(
                200,
                "An event stream",
                Some(("text/event-stream", Content::new(Some(schema)))),
            )
        },
        post(&sub("/share"), "createShare", "Create a share link")
            .errors(&[403, 404])
            .ok::<Share>(201),
        delete(
            &sub("/shares"),
            "revokeShares",
            "Revoke every share link of a conversation",
        )
        .errors(&[403, 404])
        .ok_object(200, count_object("revoked", "How many links were revoked")),
        get(
            "/shares/{shareId}",
            "viewShare",
            "A shared conversation, read-only",
        )
        .describe("One page of its messages (oldest first); `nextCursor` continues.")
        .paging()
        .errors(&[404, 410])
        .ok::<SharedConversation>(200),
        delete("/shares/{shareId}", "revokeShare", "Revoke a share link")
            .errors(&[403, 404])
            .no_content(),
        post(
            "/shares/{shareId}/fork",
            "forkShare",
            "Copy a shared conversation into a project",
        )
        .body::<ForkShare>()
        .errors(&[403, 404, 410])
        .ok::<Conversation>(201),
        post(
            "/shares/{shareId}/join",
            "joinShare",
            "Join a collaborative shared conversation",
        )
        .errors(&[403, 404, 410])
        .ok::<Conversation>(200),
        get(
            "/usage",
            "myUsage",
            "The caller's token usage per day and model",
        )
        .query("days", Type::Integer, "How many days back (default 30)")
        .ok::<UsageReport>(200),
        post("/usage", "recordUsage", "Record token usage")
            .describe("At most once per message: a repeat is a 409.")
            .body::<RecordUsage>()
            .errors(&[403, 404, 409])
            .ok::<UsageEvent>(201),
        get(
            "/orgs/{id}/usage",
            "orgUsage",
            "An organization's usage (its owners only)",
        )
        .query("days", Type::Integer, "How many days back (default 30)")
        .errors(&[403, 404])
        .ok::<UsageReport>(200),
        get(
            "/workspaces/{id}/invites",
            "listInvites",
            "Pending and past invites",
        )
        .errors(&[403, 404])
        .page::<Invite>(),
        post(
            "/workspaces/{id}/invites",
            "createInvite",
            "Invite someone by email",
        )
        .body::<CreateInvite>()
        .errors(&[403, 404, 409, 429])
        .ok::<Invite>(201),
        delete(
            "/workspaces/{id}/invites/{inviteId}",
            "revokeInvite",
            "Revoke an invite",
        )
        .errors(&[403, 404, 409])
        .ok::<Invite>(200),
        post(
            "/invites/accept",
            "acceptInvite",
            "Accept an invite with its token",
        )
        .body::<crate::http::invites::AcceptBody>()
        .errors(&[404, 409, 410])
        .ok::<AcceptedInvite>(200),
        get("/me/settings", "getSettings", "The caller's settings").ok::<Settings>(200),
        patch(
            "/me/settings",
            "updateSettings",
            "Change the caller's preferences",
        )
        .body::<UpdateSettings>()
        .ok::<Settings>(200),
        put(
            "/me/settings/api-keys/{provider}",
            "putApiKey",
            "Store an API key (encrypted)",
        )
        .body::<PutApiKey>()
        .errors(&[500])
        .ok::<Settings>(200),
        delete(
            "/me/settings/api-keys/{provider}",
            "deleteApiKey",
            "Forget an API key",
        )
        .errors(&[400])
        .no_content(),
    ]
}
