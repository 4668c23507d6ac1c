ALTER TABLE message_attachments DROP COLUMN file_id;
DROP TABLE file_refs;
DROP TABLE files;
