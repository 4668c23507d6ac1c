-- Collaborative chats: conversations, participants, messages (streamed),
-- their live event log, shares, tool executions, usage, presence, workspace
-- invites with an email outbox, user settings with encrypted API keys.

CREATE TABLE conversations (
    id TEXT PRIMARY KEY NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    owner_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    is_collaborative BOOLEAN NOT NULL,
    starred BOOLEAN NOT NULL,
    archived BOOLEAN NOT NULL,
    participants_may_rename BOOLEAN NOT NULL,
    participants_may_star BOOLEAN NOT NULL,
    participants_may_archive BOOLEAN NOT NULL,
    forked_from TEXT,
    last_message_at BIGINT,
    -- The list order: last_message_at, 0 when there is none.
    sort_at BIGINT NOT NULL,
    -- The newest event's seq: bumped (row-locked) by every event, so the
    -- events of one conversation commit in seq order.
    event_seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX conversations_owner ON conversations (owner_id, sort_at);
CREATE INDEX conversations_project ON conversations (project_id);

CREATE TABLE conversation_participants (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_participants_user ON conversation_participants (user_id);

CREATE TABLE messages (
    id TEXT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    user_id TEXT REFERENCES users (id) ON DELETE SET NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    state TEXT NOT NULL,
    error_message TEXT,
    model TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX messages_conversation ON messages (conversation_id, seq);

CREATE TABLE message_attachments (
    id TEXT PRIMARY KEY NOT NULL,
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    url TEXT NOT NULL
);
CREATE INDEX message_attachments_message ON message_attachments (message_id, position);

-- What viewers of a conversation receive live; `seq` is the SSE event id.
CREATE TABLE conversation_events (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX conversation_events_created ON conversation_events (created_at);

-- Share links; the share id is a secret, stored as its SHA-256.
CREATE TABLE shares (
    id_hash TEXT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX shares_conversation ON shares (conversation_id);

CREATE TABLE tool_executions (
    id TEXT PRIMARY KEY NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    tool_call_id TEXT NOT NULL,
    tool_name TEXT NOT NULL,
    args TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    error TEXT,
    started_by TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    completed_at BIGINT
);
-- The idempotency key: one execution per tool call of a conversation.
CREATE UNIQUE INDEX tool_executions_call ON tool_executions (conversation_id, tool_call_id);

CREATE TABLE usage_events (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id TEXT NOT NULL,
    conversation_id TEXT,
    message_id TEXT,
    model TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    -- Days since the Unix epoch (UTC), for grouping.
    day BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX usage_events_user_day ON usage_events (user_id, day);
CREATE INDEX usage_events_org_day ON usage_events (org_id, day);

CREATE TABLE presence (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    last_active_at BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX presence_active ON presence (conversation_id, last_active_at);

CREATE TABLE workspace_invites (
    id TEXT PRIMARY KEY NOT NULL,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    invited_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    accepted_at BIGINT,
    accepted_by TEXT,
    revoked_at BIGINT
);
CREATE INDEX workspace_invites_workspace ON workspace_invites (workspace_id, created_at);

-- Emails to send. The body is cleared once sent (it may hold a secret link).
CREATE TABLE outbox (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL,
    sent_at BIGINT,
    last_error TEXT
);
CREATE INDEX outbox_due ON outbox (sent_at, next_attempt_at);

CREATE TABLE user_settings (
    user_id TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    model_preferences TEXT,
    updated_at BIGINT NOT NULL
);

-- API keys, AES-256-GCM encrypted; key_id names the encryption key used.
CREATE TABLE user_api_keys (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    key_id TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, provider)
);
