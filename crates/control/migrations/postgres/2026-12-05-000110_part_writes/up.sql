-- The requests writing a part through control now, one row each, until
-- when at most (its body's deadline and a margin). Completion waits while
-- an upload has a writer whose time has not passed: a second PUT of a part
-- still running when the upload is completed could otherwise change or
-- remove the bytes of the file it became. A request ends by removing its
-- own row; one that never ended (its process died) stops counting when its
-- time has passed, and the next writer of its upload removes it.
CREATE TABLE file_part_writers (
    id TEXT PRIMARY KEY,
    file_id TEXT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    part_number BIGINT NOT NULL,
    writing_until BIGINT NOT NULL
);
CREATE INDEX file_part_writers_file ON file_part_writers (file_id);
