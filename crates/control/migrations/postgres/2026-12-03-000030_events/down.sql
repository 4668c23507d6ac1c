DROP TABLE workspace_events;
ALTER TABLE workspaces DROP COLUMN event_seq;
