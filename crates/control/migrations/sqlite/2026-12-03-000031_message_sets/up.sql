-- Plan 004's chat model: quick chats, branches, summaries; message sets.
ALTER TABLE conversations ADD COLUMN is_quick_chat BOOLEAN NOT NULL DEFAULT FALSE;
-- The chat this one was branched from (kept when that one is deleted).
ALTER TABLE conversations ADD COLUMN parent_chat_id TEXT;
ALTER TABLE conversations ADD COLUMN summary TEXT;

-- A turn of a conversation: `user` (the question) or `ai` (its answers).
-- seq orders sets in their conversation (the seq of the event that made it).
CREATE TABLE message_sets (
    id TEXT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    set_type TEXT NOT NULL,
    level BIGINT NOT NULL,
    selected_block_type TEXT NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX message_sets_conversation ON message_sets (conversation_id, seq);

-- Which set a message belongs to, and what it is there.
CREATE TABLE message_set_members (
    message_id TEXT PRIMARY KEY NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    set_id TEXT NOT NULL REFERENCES message_sets (id) ON DELETE CASCADE,
    block_type TEXT NOT NULL,
    selected BOOLEAN NOT NULL,
    is_review BOOLEAN NOT NULL,
    -- JSON array of {level, content, toolCalls, toolResults}
    parts TEXT NOT NULL
);
CREATE INDEX message_set_members_set ON message_set_members (set_id);

-- Every message so far is a set of one (the set has the message's id).
INSERT INTO message_sets (id, conversation_id, seq, set_type, level, selected_block_type, created_by, created_at)
    SELECT id, conversation_id, seq, CASE WHEN role = 'user' THEN 'user' ELSE 'ai' END, 0, '', user_id, created_at
    FROM messages;
INSERT INTO message_set_members (message_id, set_id, block_type, selected, is_review, parts)
    SELECT id, id, '', TRUE, FALSE, '[]' FROM messages;
