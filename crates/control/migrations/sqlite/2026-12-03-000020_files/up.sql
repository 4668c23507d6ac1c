-- Files (plan 001 phase 5): blobs uploaded by workspace members, deduplicated
-- per workspace by sha256, referenced by chat messages and sync rows, and
-- removed by the collector after a grace period once nothing refers to them.
--
-- state: pending (upload intent, bytes not checked yet) → ready (size and
-- sha256 checked) → deleted (DELETE /files/{id}; invisible) → collecting (the
-- collector marked it; its blob is being removed, then the row).
CREATE TABLE files (
    id TEXT PRIMARY KEY NOT NULL,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    -- Where the bytes are in the backend (a directory path or object key).
    storage_key TEXT NOT NULL,
    -- Part size of a multipart upload; 0 for a single PUT.
    part_bytes BIGINT NOT NULL,
    -- The S3 multipart upload id, when there is one.
    multipart_id TEXT,
    created_by TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    -- A pending upload may be completed until then.
    expires_at BIGINT NOT NULL,
    completed_at BIGINT,
    -- Since when nothing refers to it (NULL while something does); a ready
    -- file starts unreferenced at upload.
    unreferenced_since BIGINT,
    deleted_at BIGINT
);
-- Dedupe: one ready file per content per workspace (never across workspaces).
CREATE UNIQUE INDEX files_ready_content ON files (workspace_id, sha256) WHERE state = 'ready';
CREATE INDEX files_workspace ON files (workspace_id, state);
CREATE INDEX files_collectable ON files (state, unreferenced_since);

-- What refers to a file: (kind, ref_id), e.g. ('message', messageId) or
-- ('sync', 'collection/rowId').
CREATE TABLE file_refs (
    file_id TEXT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    ref_kind TEXT NOT NULL,
    ref_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (file_id, ref_kind, ref_id)
);
CREATE INDEX file_refs_ref ON file_refs (ref_kind, ref_id);

ALTER TABLE message_attachments ADD COLUMN file_id TEXT;
