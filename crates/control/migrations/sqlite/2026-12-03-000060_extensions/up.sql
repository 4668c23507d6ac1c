-- Org extensions (plan 001 phase 7): plugins and themes uploaded as zips by
-- org owners, one current version per (org, manifest id); their files; and
-- which workspaces enabled them, with settings checked against the schema.
CREATE TABLE extensions (
    -- Internal id; an upgrade (a newer version uploaded) keeps it.
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    -- The manifest's id, unique in the org.
    ext_id TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    kind TEXT NOT NULL,
    entry TEXT NOT NULL,
    description TEXT,
    -- JSON, when the manifest has one.
    settings_schema TEXT,
    file_count BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    uploaded_by TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX extensions_org_ext ON extensions (org_id, ext_id);
CREATE INDEX extensions_org_created ON extensions (org_id, created_at, id);

CREATE TABLE extension_files (
    extension_id TEXT NOT NULL REFERENCES extensions (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    content_type TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (extension_id, path)
);

CREATE TABLE workspace_extensions (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    extension_id TEXT NOT NULL REFERENCES extensions (id) ON DELETE CASCADE,
    enabled BOOLEAN NOT NULL,
    -- JSON object.
    settings TEXT NOT NULL,
    updated_by TEXT REFERENCES users (id) ON DELETE SET NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, extension_id)
);
CREATE INDEX workspace_extensions_ext ON workspace_extensions (extension_id);
