-- One-time collaboration tokens (stored hashed) and the feed of access changes.
CREATE TABLE collab_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX collab_tokens_expiry ON collab_tokens (expires_at);

-- Each row asks relays to re-check a user everywhere (user_id) or everyone
-- in a room (room_id). seq is the long-poll cursor.
CREATE TABLE access_events (
    seq BIGSERIAL PRIMARY KEY,
    room_id TEXT,
    user_id TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX access_events_created ON access_events (created_at);
