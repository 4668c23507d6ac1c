-- The bytes of a workspace's ready files, kept with every change of a file
-- to or from `ready` (completion, deletion, the collector's mark), so that
-- the quota check of an upload intent reads one row instead of summing every
-- file the workspace ever kept (16 ms at 100 000 files, inside the write
-- transaction). Open uploads are still summed: there are few of them.
ALTER TABLE workspaces ADD COLUMN files_ready_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE workspaces SET files_ready_bytes = (
    SELECT COALESCE(SUM(size_bytes), 0) FROM files
    WHERE files.workspace_id = workspaces.id AND files.state = 'ready'
);
