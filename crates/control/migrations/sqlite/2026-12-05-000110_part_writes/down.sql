ALTER TABLE file_parts DROP COLUMN writing_until;
ALTER TABLE file_parts DROP COLUMN writers;
