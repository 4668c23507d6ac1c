-- The parts of an upload sent through control, with the SHA-256 state each
-- started from (as its client claimed; NULL for the first part, or when the
-- client sent none) and the state control computed at its end (the file's
-- SHA-256 for the last part; NULL until the part is stored). `attempts`
-- counts the times the part was sent: only parts sent once prove a chain,
-- since with two attempts the store may hold either.
CREATE TABLE file_parts (
    file_id TEXT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    part_number BIGINT NOT NULL,
    start_state TEXT,
    end_state TEXT,
    attempts INTEGER NOT NULL,
    PRIMARY KEY (file_id, part_number)
);

-- Whether the upload's parts go through control (TANDEM_S3_PARTS_THROUGH_CONTROL
-- when it was begun): an upload keeps its way to the end, so presigned part
-- URLs handed out before the setting changed cannot replace a part whose
-- hash control recorded.
ALTER TABLE files ADD COLUMN parts_through_control BOOLEAN NOT NULL DEFAULT FALSE;
