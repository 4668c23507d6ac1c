-- Tenancy core: orgs, users, sessions, workspaces, projects, resources, members.
-- Ids are opaque strings, times are milliseconds since the Unix epoch.
CREATE TABLE orgs (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    domain TEXT NOT NULL UNIQUE,
    owner_id TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT,
    external_sub TEXT UNIQUE,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    org_role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX users_org ON users (org_id);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE workspaces (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    kind TEXT NOT NULL,
    owner_id TEXT REFERENCES users (id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- Exactly one team workspace per org, one personal workspace per user.
CREATE UNIQUE INDEX workspaces_one_team ON workspaces (org_id) WHERE kind = 'team';
CREATE UNIQUE INDEX workspaces_one_personal ON workspaces (owner_id) WHERE kind = 'personal';

CREATE TABLE projects (
    id TEXT PRIMARY KEY NOT NULL,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX projects_workspace ON projects (workspace_id, created_at);

-- Documents, diagrams and tasks: `kind` is doc | diagram | task.
CREATE TABLE resources (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX resources_project ON resources (project_id, kind, created_at);

-- Explicit grants. `scope_id` is the id of a workspace, project or resource
-- (ids are unique across tables); `scope_kind` says which.
CREATE TABLE members (
    scope_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope_kind TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope_id, user_id)
);
CREATE INDEX members_user ON members (user_id, scope_kind);
