-- The workspace event feed: what `GET /workspaces/{id}/events` streams.
-- Each workspace numbers its events 1, 2, 3... (workspaces.event_seq, bumped
-- by the writer in the same transaction, which locks the workspace row, so
-- a workspace's events commit in seq order).
ALTER TABLE workspaces ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE workspace_events (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    -- e.g. `project.created`, `document.updated`, `member.deleted`
    kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    -- the project the entity lives in (documents, diagrams, tasks, conversations)
    project_id TEXT,
    -- JSON: the entity as of the change (without anyone's role), or null
    data TEXT NOT NULL,
    -- JSON array of user ids who also get the event (e.g. the grantees of a
    -- deleted document, who can no longer be found through its grants)
    audience TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, seq)
);
CREATE INDEX workspace_events_created ON workspace_events (created_at);
