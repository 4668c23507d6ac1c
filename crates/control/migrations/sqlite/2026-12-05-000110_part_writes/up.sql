-- The requests writing a part through control now (`writers`), and until
-- when at most (`writing_until`, the latest body deadline among them; NULL
-- when none is). Completion waits while a part is being written: a second
-- PUT of a part still running when the upload is completed could otherwise
-- change or remove the bytes of the file it became. Past `writing_until`
-- the requests are gone whatever happened to them (a process that died
-- mid-request never lowers `writers`).
ALTER TABLE file_parts ADD COLUMN writers INTEGER NOT NULL DEFAULT 0;
ALTER TABLE file_parts ADD COLUMN writing_until BIGINT;
