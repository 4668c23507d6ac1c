ALTER TABLE workspaces DROP COLUMN files_ready_bytes;
