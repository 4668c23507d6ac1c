DROP TABLE audit_log;
DROP FUNCTION audit_log_append_only();
ALTER TABLE workspaces DROP COLUMN guest_access;
