DROP INDEX message_attachments_file;
