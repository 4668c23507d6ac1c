-- Finding the messages that attach a file (reading an attachment through its
-- conversation; the collector's reference check) uses this index.
CREATE INDEX message_attachments_file ON message_attachments (file_id);
