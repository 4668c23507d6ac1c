-- One compact Yjs update per room: what the relays saved, merged.
CREATE TABLE room_snapshots (
    room_id TEXT PRIMARY KEY NOT NULL,
    state BYTEA NOT NULL,
    size BIGINT NOT NULL,
    saves BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
