-- Issue 15 (admin): the per-org audit log, a hash chain; and the guest
-- access setting of a workspace.

-- Who outside the workspace's org may be a member or share-link participant,
-- and with which highest role: off | view | edit (edit = as before).
ALTER TABLE workspaces ADD COLUMN guest_access TEXT NOT NULL DEFAULT 'edit';

-- One row per privileged operation, in the transaction of the operation.
-- hash = sha256(prev_hash || canonical JSON of the entry), see
-- proto-docs/admin.md. No foreign key to orgs: the log outlives its org.
CREATE TABLE audit_log (
    org_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before TEXT,
    after TEXT,
    request_id TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (org_id, seq)
);
CREATE INDEX audit_log_action ON audit_log (org_id, action, seq);
CREATE INDEX audit_log_actor ON audit_log (org_id, actor, seq);

-- Append-only: rows are never changed or removed (TRUNCATE too).
CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
