-- Local-first sync (proto-docs/sync.md): JSON rows in named collections of a
-- workspace. One row per synced row holds the winning value and hlc of each
-- field (`state`); `seq` is the workspace change counter at its last change,
-- so pulls read "rows with seq > cursor" and the table is its own compacted log.
CREATE TABLE sync_workspaces (
    workspace_id TEXT PRIMARY KEY NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    -- Last seq handed out; writers bump it first (which serializes them per workspace).
    seq BIGINT NOT NULL DEFAULT 0,
    -- Highest seq of a pruned tombstone: older cursors must reset.
    pruned_seq BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE sync_rows (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    collection TEXT NOT NULL,
    row_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    hlc TEXT NOT NULL,
    clear_hlc TEXT NOT NULL,
    clear_delete BOOLEAN NOT NULL,
    deleted BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, collection, row_id)
);
CREATE UNIQUE INDEX sync_rows_by_seq ON sync_rows (workspace_id, seq);
CREATE INDEX sync_rows_tombstones ON sync_rows (deleted, updated_at);

CREATE TABLE sync_clients (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    client_group_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    last_mutation_id BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, client_id)
);
CREATE INDEX sync_clients_by_user ON sync_clients (workspace_id, user_id, updated_at);
